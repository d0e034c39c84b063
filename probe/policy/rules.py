"""The evaluator's vocabulary: what every policy kind is turned into before evaluation.

A policy kind's parser (networkpolicy.py for networking.k8s.io/v1) produces objects that satisfy
`PolicyRules`; evaluate.py and matrix.py walk their `Rule`s and know nothing of the kind.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

from ..model import Namespace, Selector
from ..pods import PodInfo

INGRESS, EGRESS = "Ingress", "Egress"
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class IPBlock:
    """An ipBlock: cidr minus except."""

    cidr: IPNet
    excepts: tuple[IPNet, ...] = ()

    def contains(self, ip: str) -> bool:
        """Whether an address is in the block (and in none of its excepts)."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return addr in self.cidr and not any(addr in e for e in self.excepts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """One entry of `from` / `to`."""

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRule:
    """One entry of `ports`."""

    protocol: str = "TCP"
    port: int | str | None = None  # None: every port of the protocol; str: a named port
    end_port: int | None = None

    def describe(self) -> str:
        """`5432/TCP`, `8000-8080/TCP`, `http/TCP`, `all/UDP`."""
        port = "all" if self.port is None else str(self.port)
        if self.end_port:
            port += f"-{self.end_port}"
        return f"{port}/{self.protocol}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One ingress or egress rule. peers=None: every peer; ports=(): every port."""

    peers: tuple[Peer, ...] | None
    ports: tuple[PortRule, ...] = ()


class PolicyRules(Protocol):
    """What the evaluator walks: one policy of any kind, as isolation plus allow rules.

    A pod selected by the policy is isolated in each direction of `types`; it may then only
    talk to what some rule of that direction (of any policy isolating it) allows.
    """

    @property
    def namespace(self) -> Namespace:
        """The namespace whose pods the policy can select."""

    @property
    def key(self) -> str:
        """`namespace/name`: how decisions name the policy."""

    @property
    def types(self) -> frozenset[str]:
        """The directions (INGRESS, EGRESS) the policy isolates."""

    @property
    def pod_selector(self) -> Selector:
        """The pods of `namespace` the policy applies to."""

    def rules(self, direction: str) -> tuple[Rule, ...]:
        """The allow rules of one direction."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One side of a connection: a pod, or an address outside the pod network."""

    pod: PodInfo | None = None
    ip: str = ""  # for external endpoints; "" = an unknown address outside the cluster

    def describe(self) -> str:
        """`ns/pod` or the address."""
        return self.pod.key if self.pod else (self.ip or "<external>")

    @property
    def address(self) -> str:
        """The IP used for ipBlock matching."""
        return self.pod.ip if self.pod else self.ip

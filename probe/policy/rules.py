"""The evaluator's vocabulary: what every policy kind is turned into before evaluation.

A policy kind's parser (networkpolicy.py for networking.k8s.io/v1) produces objects that satisfy
`PolicyRules`; evaluate.py and matrix.py walk their `Rule`s and know nothing of the kind.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
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


# ------------------------------------------------------------------------------- tiers
#
# Calico, AdminNetworkPolicy and ClusterNetworkPolicy evaluate ordered rules with actions, in
# ordered tiers. Their parsers (calico.py, adminpolicy.py) produce `TieredPolicy` values; a
# Kubernetes NetworkPolicy becomes one too (evaluate.py: the `default` tier, order 1000, every
# rule Allow), so one evaluator walks them all.

ALLOW, DENY, PASS, LOG = "Allow", "Deny", "Pass", "Log"


class LabelMatch(Protocol):
    """Anything that matches a label set: a Kubernetes `Selector` or a parsed Calico selector."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels are selected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointMatch:
    """What one side (source or destination) of a rule requires; every set field must hold (AND).

    A side with a selector, namespace or service-account criterion only ever matches pods;
    `nets` match addresses (pod IPs too: always for Calico nets and ANP networks, and for a
    Kubernetes ipBlock as the engine's `ipblock_matches_pods` says).
    """

    selector: LabelMatch | None = None
    not_selector: LabelMatch | None = None
    namespace_selector: LabelMatch | None = None
    namespace: str | None = None  # pinned: a namespaced policy's own namespace
    nets: tuple[IPNet, ...] = ()
    not_nets: tuple[IPNet, ...] = ()
    service_accounts: frozenset[str] | None = None
    service_account_selector: LabelMatch | None = None
    kube_ipblock: bool = False  # nets come from a Kubernetes ipBlock (engine's ipblock_matches_pods applies)

    @property
    def pods_only(self) -> bool:
        """Whether only pods can match (a selector-like criterion is set)."""
        return (self.selector is not None or self.namespace_selector is not None or self.namespace is not None
                or self.service_accounts is not None or self.service_account_selector is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TierRule:
    """One ordered rule: when it matches, its action applies. Empty src/dst: any endpoint."""

    action: str  # ALLOW, DENY, PASS, LOG
    src: tuple[EndpointMatch, ...] = ()  # any one of them (OR)
    dst: tuple[EndpointMatch, ...] = ()
    protocol: str | None = None  # None: any protocol
    not_protocol: str | None = None
    ports: tuple[PortRule, ...] = ()  # destination ports, any one of them; (): every port
    not_ports: tuple[PortRule, ...] = ()
    match_none: bool = False  # fail closed: an Accept rule over a peer we cannot model matches nothing
    label: str = ""  # "ingress rule 0" or the rule's name, for attribution


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """A Calico Tier (or a built-in one): policies in lower-order tiers are evaluated first."""

    name: str
    order: float | None  # None: after every ordered tier
    default_action: str = DENY  # what a tier that applies but matched nothing does: Deny or Pass


@dataclass(frozen=True, slots=True, kw_only=True)
class TieredPolicy:
    """One policy in a tier: which endpoints it applies to and its ordered rules per direction."""

    kind: str  # how explain names it: "GlobalNetworkPolicy", "NetworkPolicy", "Calico NetworkPolicy", ...
    api_version: str
    name: str
    namespace: str | None  # None: cluster-scoped
    tier: str
    order: float | None  # None: after every ordered policy of the tier
    order_word: str = "order"  # "priority" for the network-policy-api kinds
    selector: LabelMatch | None = None  # endpoint labels; None: every endpoint
    namespace_selector: LabelMatch | None = None
    service_account_selector: LabelMatch | None = None
    types: frozenset[str] = frozenset()
    ingress: tuple[TierRule, ...] = ()
    egress: tuple[TierRule, ...] = ()

    @property
    def key(self) -> str:
        """`Kind ns/name` (or `Kind name` when cluster-scoped): unique per apiVersion and kind."""
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    def describe(self) -> str:
        """`GlobalNetworkPolicy default-deny (tier default, order 2000)`."""
        order = "" if self.order is None else f", {self.order_word} {self.order:g}"
        return f"{self.key} (tier {self.tier}{order})"

    def rules(self, direction: str) -> tuple[TierRule, ...]:
        """The ordered rules of one direction."""
        return self.ingress if direction == INGRESS else self.egress

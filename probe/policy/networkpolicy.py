"""The Kubernetes NetworkPolicy kind (networking.k8s.io/v1): JSON → Policy, with the API's defaults.

* A pod is isolated for ingress (egress) when a policy in its namespace selects it and lists
  that direction in `policyTypes`. An empty or missing `policyTypes` defaults, as the API
  server's SetDefaults_NetworkPolicy does, to [Ingress], plus Egress when `spec.egress` has at
  least one rule (so `egress: []` alone isolates nothing, and `policyTypes: []` isolates ingress).
* A rule matches when one of its peers matches (no `from`/`to`: every peer) and one of its
  ports matches (no `ports`: every port); protocol defaults to TCP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ManifestError
from ..model import Namespace, Selector
from .matching import selector_from
from .rules import EGRESS, INGRESS, IPBlock, IPNet, Peer, PortRule, Rule


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A parsed NetworkPolicy (satisfies rules.PolicyRules)."""

    namespace: Namespace
    name: str
    pod_selector: Selector
    types: frozenset[str]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...]:
        """The rules of one direction."""
        return self.ingress if direction == INGRESS else self.egress


def _net(text: Any, where: str) -> IPNet:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise ManifestError(f"{where}: expected a CIDR such as 10.0.0.0/8, got {text!r}") from None


def _parse_peer(raw: Any, where: str) -> Peer:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a peer (podSelector, namespaceSelector or ipBlock)")
    block = None
    if "ipBlock" in raw:
        ib = raw["ipBlock"] or {}
        if "cidr" not in ib:
            raise ManifestError(f"{where}.ipBlock: cidr is required")
        block = IPBlock(cidr=_net(ib["cidr"], f"{where}.ipBlock.cidr"),
                        excepts=tuple(_net(e, f"{where}.ipBlock.except") for e in ib.get("except") or ()))
        if "podSelector" in raw or "namespaceSelector" in raw:
            raise ManifestError(f"{where}: ipBlock cannot be combined with a selector in one peer")
    return Peer(
        pod_selector=selector_from(raw["podSelector"], f"{where}.podSelector") if "podSelector" in raw else None,
        namespace_selector=selector_from(raw["namespaceSelector"], f"{where}.namespaceSelector")
        if "namespaceSelector" in raw else None,
        ip_block=block,
    )


def _parse_port(raw: Any, where: str) -> PortRule:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected {{protocol, port, endPort}}")
    protocol = str(raw.get("protocol") or "TCP").upper()
    if protocol not in ("TCP", "UDP", "SCTP"):
        raise ManifestError(f"{where}.protocol: expected TCP, UDP or SCTP, got {raw.get('protocol')!r}")
    port = raw.get("port")
    if port is not None and not isinstance(port, int | str):
        raise ManifestError(f"{where}.port: expected a number or a port name")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    end = raw.get("endPort")
    if end is not None and (not isinstance(port, int) or not isinstance(end, int) or end < port):
        raise ManifestError(f"{where}.endPort: needs a numeric port <= endPort")
    return PortRule(protocol=protocol, port=port, end_port=end)


def _parse_rules(raw: Any, peer_key: str, where: str) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list of rules")
    rules = []
    for i, r in enumerate(raw):
        r = r or {}
        if not isinstance(r, dict):
            raise ManifestError(f"{where}[{i}]: expected a rule")
        peers_raw = r.get(peer_key)
        peers = None if not peers_raw else tuple(
            _parse_peer(p, f"{where}[{i}].{peer_key}[{j}]") for j, p in enumerate(peers_raw))
        ports = tuple(_parse_port(p, f"{where}[{i}].ports[{j}]") for j, p in enumerate(r.get("ports") or ()))
        rules.append(Rule(peers=peers, ports=ports))
    return tuple(rules)


def parse_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> Policy:
    """A NetworkPolicy's JSON → Policy; ManifestError naming the policy when malformed."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", "<unnamed>"))
    ns = Namespace(str(meta.get("namespace") or default_namespace))
    where = f"NetworkPolicy {ns}/{name}"
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}: spec is missing")
    types = spec.get("policyTypes")
    if types is None or types == []:
        # SetDefaults_NetworkPolicy: an empty policyTypes is [Ingress], plus Egress only when
        # there are egress rules — `egress: []` alone does not isolate egress.
        egress = spec.get("egress")
        types = [INGRESS] + ([EGRESS] if isinstance(egress, list) and len(egress) != 0 else [])
    if not isinstance(types, list) or any(t not in (INGRESS, EGRESS) for t in types):
        raise ManifestError(f"{where}: policyTypes must list Ingress and/or Egress, got {types!r}")
    return Policy(namespace=ns, name=name,
                  pod_selector=selector_from(spec.get("podSelector"), f"{where}: spec.podSelector"),
                  types=frozenset(types),
                  ingress=_parse_rules(spec.get("ingress"), "from", f"{where}: spec.ingress"),
                  egress=_parse_rules(spec.get("egress"), "to", f"{where}: spec.egress"),
                  raw=obj)


def namespaces_from(objs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """{namespace: labels} from Namespace objects."""
    return {str(o["metadata"]["name"]): dict(o["metadata"].get("labels") or {}) for o in objs}

"""The network-policy-api kinds → `rules.TieredPolicy`:

* `AdminNetworkPolicy` and `BaselineAdminNetworkPolicy` (policy.networking.k8s.io/v1alpha1):
  `priority` (ANP only; lower first), `subject` (namespaces, or pods = namespaceSelector AND
  podSelector), ingress `from` / egress `to` peers (namespaces, pods, egress `networks`), ports
  (`portNumber`, `portRange`, `namedPort`), actions Allow / Deny / Pass (BANP: Allow / Deny).
* `ClusterNetworkPolicy` (v1alpha2): `tier` Admin or Baseline, `priority`, the same subject and
  peers, actions Accept / Deny / Pass, `protocols` (tcp/udp/sctp `destinationPort` number or range,
  `destinationNamedPort`).

As the KEP and the API reference place them (and Calico's `kube-admin` / `kube-baseline` tiers
implement them): the Admin tier is evaluated before NetworkPolicy, Baseline after it; Allow/Accept
and Deny are final, Pass goes on to the next tier. A policy with no rules in a direction does not
affect that direction. Peers we cannot model (`nodes`, `domainNames`) fail closed as the API
says for Accept rules: such a peer matches nothing; each gives a located warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ..errors import ManifestError
from ..model import Selector
from .matching import selector_from
from .rules import ALLOW, DENY, EGRESS, INGRESS, PASS, EndpointMatch, PortRule, Tier, TieredPolicy, TierRule

GROUP = "policy.networking.k8s.io"
KINDS = ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy")
ADMIN_TIER, BASELINE_TIER = "kube-admin", "kube-baseline"
# Calico releases before ClusterNetworkPolicy named the same two tiers after the v1alpha1 kinds; a
# Calico policy placed in a tier by its old name sits beside the admin policies.
LEGACY_TIER_NAMES = {"adminnetworkpolicy": ADMIN_TIER, "baselineadminnetworkpolicy": BASELINE_TIER}
# "The BaselineAdminNetworkPolicy is treated as if it had an order of 1,000, allowing Calico
# NetworkPolicy/GlobalNetworkPolicy resources to be inserted with higher/lower precedence" (Calico docs,
# "Get started with policy tiers").
BANP_ORDER = 1_000.0
# Calico's built-in tiers for these kinds (libcalico-go: order 1,000 and 10,000,000, defaultAction Pass).
BUILTIN_TIERS = (Tier(name=ADMIN_TIER, order=1_000, default_action=PASS),
                 Tier(name=BASELINE_TIER, order=10_000_000, default_action=PASS))


def _label_selector(raw: Any, where: str) -> Selector:
    if isinstance(raw, dict) and set(raw) - {"matchLabels", "matchExpressions"}:
        extra = ", ".join(sorted(set(raw) - {"matchLabels", "matchExpressions"}))
        raise ManifestError(f"{where}: expected a label selector (matchLabels, matchExpressions), got {extra} "
                            "(an older network-policy-api schema?)")
    return selector_from(raw if raw is not None else {}, where)


def _pods(raw: Any, where: str) -> EndpointMatch:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected namespaceSelector and podSelector")
    return EndpointMatch(namespace_selector=_label_selector(raw.get("namespaceSelector"),
                                                            f"{where}.namespaceSelector"),
                         selector=_label_selector(raw.get("podSelector"), f"{where}.podSelector"))


def _subject(raw: Any, where: str) -> tuple[Selector | None, Selector]:
    """(namespace selector, pod selector) of the subject."""
    if not isinstance(raw, dict) or len([k for k in ("namespaces", "pods") if k in raw]) != 1:
        raise ManifestError(f"{where}: spec.subject needs exactly one of namespaces or pods")
    if "namespaces" in raw:
        return _label_selector(raw["namespaces"], f"{where}: spec.subject.namespaces"), Selector()
    m = _pods(raw["pods"], f"{where}: spec.subject.pods")
    assert isinstance(m.namespace_selector, Selector) and isinstance(m.selector, Selector)
    return m.namespace_selector, m.selector


def _peers(raw: Any, action: str, where: str, warnings: list[str]) -> tuple[tuple[EndpointMatch, ...], bool]:
    """(peers, match_none): match_none when every peer is one we cannot model (no peers is not "any")."""
    if not isinstance(raw, list) or not raw:
        raise ManifestError(f"{where}: expected a non-empty list of peers")
    out: list[EndpointMatch] = []
    unmodelled = 0
    for j, peer in enumerate(raw):
        here = f"{where}[{j}]"
        if not isinstance(peer, dict) or len(peer) != 1:
            raise ManifestError(f"{here}: a peer sets exactly one of namespaces, pods, networks, nodes, domainNames")
        (field, value), = peer.items()
        if field == "namespaces":
            out.append(EndpointMatch(namespace_selector=_label_selector(value, f"{here}.namespaces")))
        elif field == "pods":
            out.append(_pods(value, f"{here}.pods"))
        elif field == "networks":
            try:
                nets = tuple(ipaddress.ip_network(str(c), strict=False) for c in value or ())
            except ValueError as exc:
                raise ManifestError(f"{here}.networks: expected CIDRs: {exc}") from None
            out.append(EndpointMatch(nets=nets))
        elif field in ("nodes", "domainNames"):
            unmodelled += 1
            warnings.append(f"{here}.{field}: {field} peers are not modelled; this peer matches nothing "
                            "(no pod and no address is taken to be in it)")
        else:
            raise ManifestError(f"{here}: unknown peer type {field!r}")
    return tuple(out), bool(unmodelled) and not out


def _v1alpha1_ports(raw: Any, where: str) -> tuple[PortRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list")
    out = []
    for i, p in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(p, dict) or len(p) != 1:
            raise ManifestError(f"{here}: expected one of portNumber, portRange, namedPort")
        (field, value), = p.items()
        if field == "namedPort":
            out.append(PortRule(protocol="TCP", port=str(value)))
            # a named port carries its own protocol: match TCP, UDP and SCTP container ports by name
            out += [PortRule(protocol=pr, port=str(value)) for pr in ("UDP", "SCTP")]
        elif field in ("portNumber", "portRange") and isinstance(value, dict):
            protocol = str(value.get("protocol") or "TCP").upper()
            if field == "portNumber":
                out.append(PortRule(protocol=protocol, port=int(value.get("port", 0))))
            else:
                start, end = int(value.get("start", 0)), int(value.get("end", 0))
                if start > end:
                    raise ManifestError(f"{here}.portRange: start must be <= end")
                out.append(PortRule(protocol=protocol, port=start, end_port=end))
        else:
            raise ManifestError(f"{here}: expected one of portNumber, portRange, namedPort")
    return tuple(out)


def _v1alpha2_protocols(raw: Any, where: str) -> tuple[PortRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list")
    out = []
    for i, p in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(p, dict) or len(p) != 1:
            raise ManifestError(f"{here}: expected one of tcp, udp, sctp, destinationNamedPort")
        (field, value), = p.items()
        if field == "destinationNamedPort":
            out += [PortRule(protocol=pr, port=str(value)) for pr in ("TCP", "UDP", "SCTP")]
        elif field in ("tcp", "udp", "sctp"):
            port = (value or {}).get("destinationPort") if isinstance(value, dict) else None
            if port is None:
                out.append(PortRule(protocol=field.upper()))
            elif isinstance(port, dict) and "number" in port:
                out.append(PortRule(protocol=field.upper(), port=int(port["number"])))
            elif isinstance(port, dict) and isinstance(port.get("range"), dict):
                start, end = int(port["range"].get("start", 0)), int(port["range"].get("end", 0))
                out.append(PortRule(protocol=field.upper(), port=start, end_port=end))
            else:
                raise ManifestError(f"{here}.{field}.destinationPort: expected number or range")
        else:
            raise ManifestError(f"{here}: expected one of tcp, udp, sctp, destinationNamedPort")
    return tuple(out)


def parse_admin_policy(obj: Mapping[str, Any]) -> tuple[TieredPolicy, list[str]]:
    """An AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy → (TieredPolicy, warnings)."""
    kind = str(obj.get("kind"))
    version = str(obj.get("apiVersion"))
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", "<unnamed>"))
    where = f"{kind} {name}"
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}: spec is missing")
    warnings: list[str] = []
    if kind == "ClusterNetworkPolicy":
        tier_word = spec.get("tier")
        if tier_word not in ("Admin", "Baseline"):
            raise ManifestError(f"{where}: spec.tier: expected Admin or Baseline, got {tier_word!r}")
        tier = ADMIN_TIER if tier_word == "Admin" else BASELINE_TIER
        actions = {"Accept": ALLOW, "Deny": DENY, "Pass": PASS}
    elif kind == "AdminNetworkPolicy":
        tier, actions = ADMIN_TIER, {"Allow": ALLOW, "Deny": DENY, "Pass": PASS}
    else:
        tier, actions = BASELINE_TIER, {"Allow": ALLOW, "Deny": DENY}
    priority = spec.get("priority")
    if kind != "BaselineAdminNetworkPolicy" and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000):
        raise ManifestError(f"{where}: spec.priority: expected an integer 0-1000, got {priority!r}")
    ns_sel, pod_sel = _subject(spec.get("subject"), where)
    rules: dict[str, tuple[TierRule, ...]] = {}
    for direction, peer_key in ((INGRESS, "from"), (EGRESS, "to")):
        raw = spec.get(direction.lower())
        if raw is None:
            rules[direction] = ()
            continue
        if not isinstance(raw, list):
            raise ManifestError(f"{where}: spec.{direction.lower()}: expected a list of rules")
        out = []
        for i, r in enumerate(raw):
            here = f"{where}: spec.{direction.lower()}[{i}]"
            if not isinstance(r, dict):
                raise ManifestError(f"{here}: expected a rule")
            action = actions.get(str(r.get("action")))
            if action is None:
                raise ManifestError(f"{here}.action: expected {', '.join(actions)}, got {r.get('action')!r}")
            peers, match_none = _peers(r.get(peer_key), action, f"{here}.{peer_key}", warnings)
            if kind == "ClusterNetworkPolicy":
                ports = _v1alpha2_protocols(r.get("protocols"), f"{here}.protocols")
            else:
                ports = _v1alpha1_ports(r.get("ports"), f"{here}.ports")
            label = f"{direction.lower()} rule {i}" + (f" ({r['name']})" if r.get("name") else "")
            out.append(TierRule(action=action, ports=ports, match_none=match_none, label=label,
                                src=peers if direction == INGRESS else (),
                                dst=peers if direction == EGRESS else ()))
        rules[direction] = tuple(out)
    types = frozenset(d for d in (INGRESS, EGRESS) if rules[d])
    policy = TieredPolicy(kind=kind, api_version=version, name=name, namespace=None, tier=tier,
                          order=BANP_ORDER if priority is None else float(priority), order_word="priority",
                          selector=pod_sel, namespace_selector=ns_sel, types=types,
                          ingress=rules[INGRESS], egress=rules[EGRESS])
    return policy, warnings

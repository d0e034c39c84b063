"""Calico's own policy kinds (projectcalico.org/v3, and crd.projectcalico.org/v1 as stored in CRDs):
NetworkPolicy, GlobalNetworkPolicy and Tier → `rules.TieredPolicy` / `rules.Tier`.

As Calico's reference documents them:

* A policy applies to the endpoints its `selector` selects (default `all()`); a NetworkPolicy only
  in its own namespace, a GlobalNetworkPolicy in the namespaces its `namespaceSelector` selects
  (default: every namespace); `serviceAccountSelector` narrows further.
* `types` defaults from the rules: none or ingress only → [Ingress]; egress only → [Egress];
  both → [Ingress, Egress].
* Rules are evaluated in order; `action` Allow / Deny / Pass / Log (Log takes no decision).
  `protocol`/`notProtocol`; `source`/`destination` with `selector`, `notSelector`,
  `namespaceSelector`, `nets`/`notNets`, `serviceAccounts`; `destination.ports`/`notPorts`
  (numbers, ranges "8000:8080", named ports).
* In a NetworkPolicy a rule selector without a namespaceSelector selects endpoints of the policy's
  namespace; in a GlobalNetworkPolicy, endpoints of any namespace.
* Policies sit in `spec.tier` (default `default`), ordered by `order` (none: last), then name.

What is not modelled (HostEndpoints, applyOnForward, preDNAT, doNotTrack, `services` matches,
ICMP fields, HTTP matches, source ports, ipVersion, network sets) gives a located warning
naming the policy and the field; the prediction then ignores that field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ..errors import ManifestError
from .adminpolicy import LEGACY_TIER_NAMES
from .calico_selector import And, Compare, Expr, Has, Not, Or, parse_selector
from .rules import (
    ALLOW,
    DENY,
    EGRESS,
    INGRESS,
    LOG,
    PASS,
    EndpointMatch,
    IPNet,
    PortRule,
    Tier,
    TieredPolicy,
    TierRule,
)

CALICO_GROUPS = ("projectcalico.org", "crd.projectcalico.org")
POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")
# Calico kinds read but not evaluated: a warning says so instead of a silent gap.
UNMODELLED_KINDS = {
    "HostEndpoint": "host endpoints are not modelled: policies that select them are not evaluated for hosts",
    "NetworkSet": "network sets are not modelled: a rule selector that matches this set's labels does not "
                  "match its nets",
    "GlobalNetworkSet": "network sets are not modelled: a rule selector that matches this set's labels does not "
                        "match its nets",
    "StagedNetworkPolicy": "staged policies are not enforced by Calico and are not evaluated",
    "StagedGlobalNetworkPolicy": "staged policies are not enforced by Calico and are not evaluated",
    "StagedKubernetesNetworkPolicy": "staged policies are not enforced by Calico and are not evaluated",
}
_PROTOCOLS = {"TCP": "TCP", "UDP": "UDP", "SCTP": "SCTP", "ICMP": "ICMP", "ICMPV6": "ICMPv6",
              "UDPLITE": "UDPLite", "6": "TCP", "17": "UDP", "132": "SCTP", "1": "ICMP", "58": "ICMPv6",
              "136": "UDPLite"}
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP", "UDPLite")
SA_NAME_LABEL = "projectcalico.org/name"


def is_calico(api_version: str) -> bool:
    """Whether an apiVersion is one of Calico's (projectcalico.org/v3 or crd.projectcalico.org/v1)."""
    return api_version.split("/")[0] in CALICO_GROUPS


def _selector(raw: Any, where: str) -> Expr:
    try:
        return parse_selector(raw)
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from None


def _keys(expr: Expr) -> set[str]:
    if isinstance(expr, Has | Compare):
        return {expr.key}
    if isinstance(expr, Not):
        return _keys(expr.operand)
    if isinstance(expr, And | Or):
        return set().union(*(_keys(o) for o in expr.operands))
    return set()


def _nets(raw: Any, where: str) -> tuple[IPNet, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list of CIDRs")
    out = []
    for i, text in enumerate(raw):
        try:
            out.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            raise ManifestError(f"{where}[{i}]: expected a CIDR such as 10.0.0.0/8, got {text!r}") from None
    return tuple(out)


def _protocol(raw: Any, where: str) -> str | None:
    if raw is None:
        return None
    name = _PROTOCOLS.get(str(raw).upper())
    if name is None:
        if isinstance(raw, int) and 1 <= raw <= 255:
            return f"proto-{raw}"  # a protocol netprobe never probes: matches none of its checks
        raise ManifestError(f"{where}: expected TCP, UDP, SCTP, ICMP, ICMPv6, UDPLite or 1-255, got {raw!r}")
    return name


def _ports(raw: Any, protocol: str | None, where: str) -> tuple[PortRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list of ports")
    if protocol not in _PORT_PROTOCOLS:
        raise ManifestError(f"{where}: ports need the rule's protocol to be TCP, UDP, SCTP or UDPLite "
                            f"(Calico rejects them otherwise), got {protocol or 'no protocol'}")
    out = []
    for i, p in enumerate(raw):
        if isinstance(p, int):
            out.append(PortRule(protocol=protocol, port=p))
            continue
        text = str(p)
        if ":" in text:
            lo, _, hi = text.partition(":")
            if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
                raise ManifestError(f"{where}[{i}]: expected a port range such as \"8000:8080\", got {p!r}")
            out.append(PortRule(protocol=protocol, port=int(lo), end_port=int(hi)))
        elif text.isdigit():
            out.append(PortRule(protocol=protocol, port=int(text)))
        elif text:
            out.append(PortRule(protocol=protocol, port=text))  # a named port
        else:
            raise ManifestError(f"{where}[{i}]: empty port")
    return tuple(out)


def _side(raw: Any, policy_ns: str | None, where: str, warnings: list[str]) -> EndpointMatch | None:
    """A rule's source or destination → EndpointMatch (None: no criteria, any endpoint)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a mapping (selector, namespaceSelector, nets, ports, ...)")
    for field in ("services",):
        if raw.get(field):
            warnings.append(f"{where}.{field}: Service matches are not modelled; the rule is evaluated "
                            "as if this field were absent")
    if raw.get("domains"):
        warnings.append(f"{where}.domains: domain matches are not modelled; the rule is evaluated as if this "
                        "field were absent")
    sel = _selector(raw["selector"], f"{where}.selector") if raw.get("selector") else None
    not_sel = _selector(raw["notSelector"], f"{where}.notSelector") if raw.get("notSelector") else None
    ns_sel = _selector(raw["namespaceSelector"], f"{where}.namespaceSelector") \
        if raw.get("namespaceSelector") else None
    sa = raw.get("serviceAccounts")
    sa_names: frozenset[str] | None = None
    sa_sel = None
    if sa is not None:
        if not isinstance(sa, dict):
            raise ManifestError(f"{where}.serviceAccounts: expected names and/or selector")
        if sa.get("names"):
            sa_names = frozenset(str(n) for n in sa["names"])
        if sa.get("selector"):
            sa_sel = _selector(sa["selector"], f"{where}.serviceAccounts.selector")
            if _keys(sa_sel) - {SA_NAME_LABEL}:
                warnings.append(f"{where}.serviceAccounts.selector: service accounts' own labels are not read; "
                                f"only {SA_NAME_LABEL} is known")
    pinned = None
    if policy_ns is not None and ns_sel is None and (sel is not None or not_sel is not None or sa is not None):
        pinned = policy_ns
    match = EndpointMatch(selector=sel, not_selector=not_sel, namespace_selector=ns_sel, namespace=pinned,
                          nets=_nets(raw.get("nets"), f"{where}.nets"),
                          not_nets=_nets(raw.get("notNets"), f"{where}.notNets"),
                          service_accounts=sa_names, service_account_selector=sa_sel)
    return None if match == EndpointMatch() else match


def _rules(raw: Any, direction: str, policy_ns: str | None, where: str,
           warnings: list[str]) -> tuple[TierRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list of rules")
    out = []
    for i, r in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(r, dict):
            raise ManifestError(f"{here}: expected a rule with an action")
        action = r.get("action")
        if action not in (ALLOW, DENY, PASS, LOG):
            raise ManifestError(f"{here}.action: expected Allow, Deny, Pass or Log, got {action!r}")
        for field, what in (("icmp", "ICMP type/code"), ("notICMP", "ICMP type/code"), ("http", "HTTP"),
                            ("ipVersion", "ipVersion")):
            if r.get(field) is not None:
                warnings.append(f"{here}.{field}: {what} matches are not modelled; the rule is evaluated as if "
                                "this field were absent")
        protocol = _protocol(r.get("protocol"), f"{here}.protocol")
        not_protocol = _protocol(r.get("notProtocol"), f"{here}.notProtocol")
        src_raw, dst_raw = r.get("source") or {}, r.get("destination") or {}
        if isinstance(src_raw, dict) and (src_raw.get("ports") or src_raw.get("notPorts")):
            warnings.append(f"{here}.source.ports: source ports are not modelled; the rule is evaluated as if "
                            "this field were absent")
        src = _side(src_raw, policy_ns, f"{here}.source", warnings)
        dst = _side(dst_raw, policy_ns, f"{here}.destination", warnings)
        ports = _ports(dst_raw.get("ports"), protocol, f"{here}.destination.ports") \
            if isinstance(dst_raw, dict) else ()
        not_ports = _ports(dst_raw.get("notPorts"), protocol, f"{here}.destination.notPorts") \
            if isinstance(dst_raw, dict) else ()
        out.append(TierRule(action=action, src=(src,) if src else (), dst=(dst,) if dst else (),
                            protocol=protocol, not_protocol=not_protocol, ports=ports, not_ports=not_ports,
                            label=f"{direction.lower()} rule {i}"))
    return tuple(out)


def _order(raw: Any, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ManifestError(f"{where}: expected a number, got {raw!r}")
    return float(raw)


def parse_calico_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> tuple[TieredPolicy, list[str]]:
    """A Calico NetworkPolicy or GlobalNetworkPolicy → (TieredPolicy, located warnings)."""
    kind = str(obj.get("kind"))
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", "<unnamed>"))
    namespaced = kind == "NetworkPolicy"
    ns = str(meta.get("namespace") or default_namespace) if namespaced else None
    shown = "Calico NetworkPolicy" if namespaced else kind
    where = f"{shown} {ns + '/' if ns else ''}{name}"
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}: spec is missing")
    warnings: list[str] = []
    for field, why in (("applyOnForward", "forwarded traffic (host endpoints)"),
                       ("preDNAT", "pre-DNAT policy (host endpoints)"),
                       ("doNotTrack", "untracked policy (host endpoints)")):
        if spec.get(field):
            warnings.append(f"{where}: spec.{field}: {why} is not modelled; the policy is evaluated as a normal "
                            "workload policy")
    ingress_raw, egress_raw = spec.get("ingress"), spec.get("egress")
    types = spec.get("types")
    if not types:
        # Calico: no rules or ingress rules only → Ingress; egress rules only → Egress; both → both.
        types = ([INGRESS] if ingress_raw or not egress_raw else []) + ([EGRESS] if egress_raw else [])
    if not isinstance(types, list) or any(t not in (INGRESS, EGRESS) for t in types):
        raise ManifestError(f"{where}: spec.types must list Ingress and/or Egress, got {types!r}")
    ns_sel = None
    if not namespaced and spec.get("namespaceSelector"):
        ns_sel = _selector(spec["namespaceSelector"], f"{where}: spec.namespaceSelector")
    sa_sel = None
    if spec.get("serviceAccountSelector"):
        sa_sel = _selector(spec["serviceAccountSelector"], f"{where}: spec.serviceAccountSelector")
        if _keys(sa_sel) - {SA_NAME_LABEL}:
            warnings.append(f"{where}: spec.serviceAccountSelector: service accounts' own labels are not read; "
                            f"only {SA_NAME_LABEL} is known")
    policy = TieredPolicy(
        kind=shown, api_version=str(obj.get("apiVersion")), name=name, namespace=ns,
        tier=_tier_name(spec.get("tier")), order=_order(spec.get("order"), f"{where}: spec.order"),
        selector=_selector(spec.get("selector"), f"{where}: spec.selector"),
        namespace_selector=ns_sel, service_account_selector=sa_sel, types=frozenset(types),
        ingress=_rules(ingress_raw, INGRESS, ns, f"{where}: spec.ingress", warnings),
        egress=_rules(egress_raw, EGRESS, ns, f"{where}: spec.egress", warnings))
    return policy, warnings


def _tier_name(raw: Any) -> str:
    name = str(raw or "default")
    return LEGACY_TIER_NAMES.get(name, name)


def parse_tier(obj: Mapping[str, Any]) -> Tier:
    """A Calico Tier → Tier (order: none = last; defaultAction: Deny unless Pass)."""
    meta = obj.get("metadata") or {}
    name = _tier_name(meta.get("name", "<unnamed>"))
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise ManifestError(f"Tier {name}: spec must be a mapping")
    action = spec.get("defaultAction") or DENY
    if action not in (DENY, PASS):
        raise ManifestError(f"Tier {name}: spec.defaultAction: expected Deny or Pass, got {action!r}")
    return Tier(name=name, order=_order(spec.get("order"), f"Tier {name}: spec.order"), default_action=action)

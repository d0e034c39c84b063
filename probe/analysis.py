"""Policy analysis on top of probe/policy/: the spec's expected matrix, lint findings.

Pure: the cluster's (or the manifests') pods, namespaces, services and policies come in as
values, so `netprobe expect` works offline and `run --from-policies` reads the same lists
from the cluster (four LIST calls).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Expectation, Target, TargetKind
from .pods import PodInfo
from .policy import DNS_POD, EGRESS, INGRESS, Decision, Endpoint, Half, PolicyEngine
from .policy.rules import LOG, PASS, Tier, TieredPolicy, TierRule
from .services import host_and_port, is_ip, service_for
from .spec import Spec

ALLOW, DENY = Expectation.ALLOW, Expectation.DENY


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """Where a TCP target actually lands: pods (of a Service or by IP), or outside the cluster."""

    pods: tuple[tuple[PodInfo, int], ...] = ()  # (pod, destination port after targetPort)
    external_ip: str | None = None  # "" = an unknown external address (a name we cannot resolve)
    needs_dns: bool = False
    note: str = ""


def _service_backends(svc: Mapping[str, Any], port: int, pods: Sequence[PodInfo]) -> Backend:
    spec = svc.get("spec") or {}
    ns = (svc.get("metadata") or {}).get("namespace", "default")
    selector = spec.get("selector") or {}
    name = f"{ns}/{(svc.get('metadata') or {}).get('name')}"
    if not selector:
        return Backend(external_ip="", needs_dns=True, note=f"Service {name} has no selector")
    sport = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if sport is None:
        return Backend(needs_dns=True, note=f"Service {name} has no port {port}")
    target = sport.get("targetPort", port)
    protocol = sport.get("protocol", "TCP")
    out = []
    for pod in pods:
        if pod.namespace != ns or not all(pod.labels.get(k) == v for k, v in selector.items()):
            continue
        if isinstance(target, str) and not target.isdigit():
            number = next((cp.port for cp in pod.ports if cp.name == target and cp.protocol == protocol), None)
            if number is None:
                continue
        else:
            number = int(target)
        out.append((pod, number))
    return Backend(pods=tuple(out), needs_dns=True,
                   note="" if out else f"Service {name} has no backend pod for port {port}")


def resolve_target(target: Target, source_ns: str, pods: Sequence[PodInfo],
                   services: Sequence[Mapping[str, Any]], target_pods: Sequence[PodInfo] = ()) -> Backend:
    """Where a target's connection lands, as policy sees it (after kube-proxy's DNAT)."""
    if target.kind is TargetKind.PODS:
        return Backend(pods=tuple((p, target.port) for p in target_pods))
    host, port = host_and_port(target) or (target.host, target.port)
    if is_ip(host):
        for pod in pods:
            if pod.ip == host:
                return Backend(pods=((pod, port),))
        for svc in services:
            if (svc.get("spec") or {}).get("clusterIP") == host:
                return _service_backends(svc, port, pods)
        return Backend(external_ip=host)
    found = service_for(host, source_ns, services)
    if found is not None:
        return _service_backends(found, port, pods)
    return Backend(external_ip="", needs_dns=True, note=f"{host} is not a known Service: treated as external")


def expect_cell(engine: PolicyEngine, src: PodInfo, target: Target, backend: Backend,
                dns_pods: Sequence[PodInfo]) -> tuple[Expectation, str]:
    """The expectation for one source pod and target, with the reason."""
    dns = engine.dns_allowed(src, dns_pods)
    if target.kind is TargetKind.DNS:
        return (ALLOW if dns.allowed else DENY), ("DNS " + dns.reason if dns.allowed else dns.reason)
    if backend.needs_dns and not dns.allowed:
        return DENY, f"DNS denied: {dns.reason}"
    if backend.external_ip is not None:
        d = engine.decide(Endpoint(pod=src), Endpoint(ip=backend.external_ip), target.port)
        return (ALLOW if d.allowed else DENY), d.reason + (f" ({backend.note})" if backend.note else "")
    if not backend.pods:
        return DENY, backend.note or "no destination pod"
    for pod, port in backend.pods:
        d = engine.decide(Endpoint(pod=src), Endpoint(pod=pod), port)
        if not d.allowed:
            return DENY, d.reason
    return ALLOW, engine.decide(Endpoint(pod=src), Endpoint(pod=backend.pods[0][0]), backend.pods[0][1]).reason


def expect_spec(spec: Spec, engine: PolicyEngine, pods: Sequence[PodInfo],
                services: Sequence[Mapping[str, Any]]) -> tuple[dict[tuple[str, str], Expectation],
                                                               dict[tuple[str, str], str], list[str]]:
    """({cell: expectation}, {cell: reason}, warnings) for a spec's sources and targets."""
    usable = [p for p in pods if not p.is_probe and p.phase == "Running"]
    dns_pods = [p for p in usable if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
    expect: dict[tuple[str, str], Expectation] = {}
    reasons: dict[tuple[str, str], str] = {}
    warnings: list[str] = []
    for source in spec.sources:
        members = [p for p in usable if p.namespace == source.namespace and source.selector.matches(p.labels)]
        if not members:
            warnings.append(f"--from-policies: source {source.name} matches no pod; its expectations are unknown")
        for target in spec.targets:
            tpods = [p for p in usable if target.kind is TargetKind.PODS and target.selector is not None
                     and p.namespace == target.namespace and target.selector.matches(p.labels)]
            outcomes = []
            for pod in members:
                backend = resolve_target(target, pod.namespace, usable, services, tpods)
                outcomes.append(expect_cell(engine, pod, target, backend, dns_pods))
            if not outcomes:
                continue
            key = (source.name, target.name)
            kinds = {e for e, _ in outcomes}
            if len(kinds) > 1:
                warnings.append(f"--from-policies: {source.name} → {target.name}: policies allow some "
                                "source pods and deny others; expecting deny")
            chosen = next((o for o in outcomes if o[0] is DENY), outcomes[0])
            expect[key], reasons[key] = chosen
    return expect, reasons, warnings


def compare(spec_expect: Mapping[tuple[str, str], Expectation],
            policy_expect: Mapping[tuple[str, str], Expectation],
            reasons: Mapping[tuple[str, str], str]) -> list[str]:
    """Warnings where the spec and the policies disagree."""
    out = []
    for key, exp in sorted(spec_expect.items()):
        other = policy_expect.get(key)
        if other is not None and other is not exp:
            out.append(f"spec says {key[0]} → {key[1]} {exp}, the policies say {other} ({reasons.get(key, '')})")
    return out


# ---------------------------------------------------------------------------------- lint


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One lint finding: a stable code, the object, what is wrong and how to fix it."""

    code: str
    object: str
    message: str
    fix: str


def lint(engine: PolicyEngine, pods: Sequence[PodInfo]) -> list[Finding]:
    """Common NetworkPolicy mistakes (README "netprobe lint" lists the codes)."""
    findings: list[Finding] = []
    usable = [p for p in pods if not p.is_probe]
    dns_pods = [p for p in usable if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
    for pod in usable:
        if not engine.selecting(pod, EGRESS):
            continue
        pols = ", ".join(p.key for p in engine.selecting(pod, EGRESS))
        if not engine.dns_allowed(pod, dns_pods).allowed:
            findings.append(Finding(
                code="NP001", object=f"Pod {pod.key}",
                message=f"egress-isolated (by {pols}) with no DNS allowance: every name lookup will time out",
                fix="add an egress rule to namespace kube-system pods k8s-app=kube-dns on UDP and TCP 53"))
        elif not engine.dns_allowed(pod, dns_pods, "TCP").allowed:
            findings.append(Finding(
                code="NP006", object=f"Pod {pod.key}",
                message=f"egress-isolated (by {pols}): DNS over UDP is allowed but not over TCP, so answers "
                        "too large for UDP (truncated) fail",
                fix="allow TCP 53 to kube-dns in the same rule as UDP 53"))
    for pol in engine.policies:
        ns_pods = [p for p in usable if p.namespace == pol.namespace]
        if not any(pol.pod_selector.matches(p.labels) for p in ns_pods):
            findings.append(Finding(
                code="NP002", object=f"NetworkPolicy {pol.key}",
                message=f"spec.podSelector ({pol.pod_selector}) selects no pod in namespace {pol.namespace}",
                fix="check the labels, or the namespace the policy was applied to"))
        for direction in (INGRESS, EGRESS):
            for i, rule in enumerate(pol.rules(direction)):
                where = f"NetworkPolicy {pol.key} {direction.lower()}[{i}]"
                for peer in rule.peers or ():
                    if peer.pod_selector is not None and peer.namespace_selector is None \
                            and not peer.pod_selector.is_empty:
                        here = [p for p in ns_pods if peer.pod_selector.matches(p.labels)]
                        elsewhere = sorted({p.namespace for p in usable if p.namespace != pol.namespace
                                            and peer.pod_selector.matches(p.labels)})
                        if not here and elsewhere:
                            findings.append(Finding(
                                code="NP003", object=where,
                                message=f"podSelector {peer.pod_selector} only selects pods in {pol.namespace}, "
                                        f"where none match; matching pods live in {', '.join(elsewhere)}",
                                fix="add a namespaceSelector to the same peer (one list item) to select "
                                    "pods in other namespaces"))
                    if peer.ip_block is not None:
                        for exc in peer.ip_block.excepts:
                            if exc.version != peer.ip_block.cidr.version or \
                                    not exc.subnet_of(peer.ip_block.cidr):  # type: ignore[arg-type]
                                findings.append(Finding(
                                    code="NP004", object=where,
                                    message=f"ipBlock except {exc} is not inside cidr {peer.ip_block.cidr}",
                                    fix="remove it, or fix the cidr (the API server rejects this in "
                                        "newer versions)"))
                for rp in rule.ports:
                    if not isinstance(rp.port, str):
                        continue
                    if direction == INGRESS:
                        dests = [p for p in ns_pods if pol.pod_selector.matches(p.labels)]
                    else:
                        dests = [p for p in usable if rule.peers is None or any(
                            engine.peer_matches(peer, pol.namespace, Endpoint(pod=p)) for peer in rule.peers)]
                        dests += [DNS_POD] if not dns_pods else []
                    if not any(cp.name == rp.port and cp.protocol == rp.protocol for p in dests for cp in p.ports):
                        findings.append(Finding(
                            code="NP005", object=where,
                            message=f"named port {rp.port!r}/{rp.protocol} is defined by no destination container",
                            fix="use the containerPort's name exactly as declared, or a number"))
    if engine.tiered:
        findings += lint_tiered(engine, usable, dns_pods)
    return findings


def _is_match_all(rule: TierRule, protocol: str | None) -> bool:
    """A rule that matches every packet (of `protocol`, when it names one)."""
    return (not rule.src and not rule.dst and not rule.ports and not rule.not_ports and not rule.match_none
            and rule.not_protocol is None and rule.protocol in (None, protocol))


def _covers(earlier: TierRule, later: TierRule) -> bool:
    """Whether `earlier` matches every packet `later` matches (judged on the rules' text, conservatively)."""
    if earlier.action == LOG or earlier.match_none:
        return False
    if _is_match_all(earlier, later.protocol):
        return True
    return (earlier.src in ((), later.src) and earlier.dst in ((), later.dst)
            and earlier.ports in ((), later.ports) and earlier.not_ports in ((), later.not_ports)
            and earlier.protocol in (None, later.protocol) and earlier.not_protocol in (None, later.not_protocol))


def lint_tiered(engine: PolicyEngine, pods: Sequence[PodInfo], dns_pods: Sequence[PodInfo]) -> list[Finding]:
    """The Calico / admin-policy forms of the classic mistakes (codes NP101-NP103)."""
    findings: list[Finding] = []
    for pod in pods:
        applying = engine.applying_policies(pod, EGRESS)
        if not any(p.kind != "NetworkPolicy" for p in applying):
            continue  # only Kubernetes NetworkPolicies: NP001 covers it
        dns = engine.dns_allowed(pod, dns_pods)
        if not dns.allowed:
            findings.append(Finding(
                code="NP101", object=f"Pod {pod.key}",
                message=f"DNS is denied: {dns.egress.reason if not dns.egress.allowed else dns.ingress.reason}",
                fix="allow egress before the deny, e.g. in the default-deny GlobalNetworkPolicy: "
                    "{action: Allow, protocol: UDP, destination: {namespaceSelector: projectcalico.org/name == "
                    "'kube-system', selector: k8s-app == 'kube-dns', ports: [53]}} and the same for TCP"))
    tier_names = [tier.name for tier, _ in engine.ordered]
    for pol in engine.tiered:
        for direction in (INGRESS, EGRESS):
            targets = [p for p in pods if engine.policy_applies(pol, p, direction)]
            for i, rule in enumerate(pol.rules(direction)):
                if rule.action != PASS or not targets:
                    continue
                later = tier_names[tier_names.index(pol.tier) + 1:]
                if not any(tier.name in later for p in targets for tier, _ in engine.applying(p, direction)):
                    findings.append(Finding(
                        code="NP102", object=f"{pol.key} {direction.lower()}[{i}]",
                        message=f"Pass, but no later tier has a {direction.lower()} policy for the "
                                f"{len(targets)} pod(s) this policy applies to: passed traffic is allowed "
                                "by the profile",
                        fix="use Allow or Deny, or add the policy the traffic should be passed to "
                            "(a later tier's policy, a NetworkPolicy or a baseline policy)"))
    # network-policy-api: equal priorities in a tier are undefined precedence where subjects overlap
    admin_kinds = ("AdminNetworkPolicy", "ClusterNetworkPolicy", "BaselineAdminNetworkPolicy")
    for tier, pols in engine.ordered:
        admins = [p for p in pols if p.kind in admin_kinds and p.order is not None]
        for i, a in enumerate(admins):
            for b in admins[i + 1:]:
                if a.order != b.order:
                    continue
                both = [p.key for p in pods if any(engine.policy_applies(a, p, d) and engine.policy_applies(b, p, d)
                                                   for d in (INGRESS, EGRESS))]
                if both:
                    findings.append(Finding(
                        code="NP104", object=f"{b.key}",
                        message=f"same priority {a.order:g} as {a.key} in tier {tier.name}, and both apply to "
                                f"{len(both)} pod(s) (e.g. {both[0]}): which one decides is undefined",
                        fix="give the policies distinct priorities"))
    # shadowed rules: within a policy, and by a match-all rule of an earlier policy of the same tier
    for tier, pols in engine.ordered:
        for direction in (INGRESS, EGRESS):
            earlier_catch_all: list[tuple[TieredPolicy, int, set[str]]] = []
            for pol in pols:
                rules = pol.rules(direction)
                if direction not in pol.types:
                    continue
                selected = {p.key for p in pods if engine.policy_applies(pol, p, direction)}
                for j, rule in enumerate(rules):
                    shadow = next((f"{direction.lower()}[{i}] ({rules[i].action})" for i in range(j)
                                   if _covers(rules[i], rule)), None)
                    if shadow is None and selected:
                        shadow = next((f"{other.key} {direction.lower()}[{i}] ({other.rules(direction)[i].action})"
                                       for other, i, covered in earlier_catch_all
                                       if selected <= covered and _is_match_all(other.rules(direction)[i],
                                                                               rule.protocol)), None)
                    if shadow is not None and rule.action != LOG:
                        findings.append(Finding(
                            code="NP103", object=f"{pol.key} {direction.lower()}[{j}]",
                            message=f"never takes effect: {shadow} matches everything it matches, earlier "
                                    f"(tier {tier.name})",
                            fix="reorder the rules (or the policies' order), or remove the shadowed rule"))
                if selected:
                    for i, rule in enumerate(rules):
                        if rule.action != LOG and _is_match_all(rule, None):
                            earlier_catch_all.append((pol, i, selected))
                            break
    return findings


def explain_text(decision: Decision, src: str, dst: str, port: int, protocol: str) -> str:
    """`netprobe explain` output."""

    def half(label: str, h: Half) -> str:
        iso = f" (isolated by {', '.join(h.isolated_by)})" if h.isolated_by else ""
        return f"  {label}: {'allowed' if h.allowed else 'DENIED'} — {h.reason}{iso if h.allowed else ''}"

    verdict = "ALLOWED" if decision.allowed else "DENIED"
    return "\n".join([f"{src} → {dst} {port}/{protocol}: {verdict}",
                      half(f"egress  of {src}", decision.egress),
                      half(f"ingress of {dst}", decision.ingress)]) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """Everything the policy analysis reads: from manifests or from a live cluster."""

    pods: tuple[PodInfo, ...]
    namespaces: Mapping[str, Mapping[str, str]]
    policies: tuple[Any, ...]
    services: tuple[Mapping[str, Any], ...]

    ipblock_matches_pods: bool = True
    tiers: tuple[Tier, ...] = ()  # Calico Tier objects read
    warnings: tuple[str, ...] = ()  # located: what was read but is not modelled

    def engine(self) -> PolicyEngine:
        """A PolicyEngine over this world."""
        return PolicyEngine(self.pods, self.namespaces, self.policies, tiers=self.tiers,
                            ipblock_matches_pods=self.ipblock_matches_pods)

    def all_warnings(self) -> list[str]:
        """What was read but not modelled, and what the engine noticed (an undefined tier)."""
        return [*self.warnings, *self.engine().warnings]

    def pod(self, ref: str) -> PodInfo:
        """A pod by `namespace/name` (or `name` in default); KeyError with the candidates."""
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        for p in self.pods:
            if p.namespace == ns and p.name == name:
                return p
        raise KeyError(ref)


# Where the tiered kinds are served, in the order they are read. Calico's API server
# (projectcalico.org/v3) is preferred; without it the same objects are read from Calico's CRDs
# (crd.projectcalico.org/v1) — never both, which would count each policy twice.
CALICO_SOURCES = (("projectcalico.org", "v3"), ("crd.projectcalico.org", "v1"))
CALICO_PLURALS = ("tiers", "networkpolicies", "globalnetworkpolicies",
                  # read only to warn that they are not modelled (a selector matching a set's labels)
                  "globalnetworksets", "networksets", "hostendpoints")
ADMIN_SOURCES = (("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies"),
                 ("policy.networking.k8s.io", "v1alpha1", "baselineadminnetworkpolicies"),
                 ("policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies"))
# Calico's API server also lists its own views of Kubernetes and admin policies under these
# names; they are read from their own APIs instead.
_CALICO_VIEWS = ("knp.default.", "kanp.", "kbanp.", "kcnp.")


def tiered_objects_from_cluster(cluster: Any) -> list[dict[str, Any]]:
    """Calico and network-policy-api objects, from whichever of their APIs the cluster serves.

    An API that is not served (no CRD, no Calico API server) is normal and silent; a forbidden LIST
    raises PermissionDenied naming the RBAC rule to add."""
    objs: list[dict[str, Any]] = []
    for group, version in CALICO_SOURCES:
        found = [cluster.list_custom_objects(group, version, plural) for plural in CALICO_PLURALS]
        if any(items is not None for items in found[:3]):
            for items in found:
                objs += [o for o in items or () if not str((o.get("metadata") or {}).get("name", ""))
                         .startswith(_CALICO_VIEWS)]
            break
    for group, version, plural in ADMIN_SOURCES:
        objs += cluster.list_custom_objects(group, version, plural) or []
    return objs


def world_from_cluster(cluster: Any) -> World:
    """Read pods, namespaces, policies and services (four LIST calls, plus one per served policy CRD)."""
    from .manifests import tiered_from_objects
    from .policy import namespaces_from, parse_policy

    tiered, tiers, warnings = tiered_from_objects(tiered_objects_from_cluster(cluster))
    return World(
        pods=tuple(p for p in cluster.list_pods(None) if not p.is_probe),
        namespaces=namespaces_from(cluster.list_namespaces()),
        policies=tuple([*(parse_policy(o) for o in cluster.list_network_policies(None)), *tiered]),
        services=tuple(cluster.list_services(None)),
        tiers=tuple(tiers), warnings=tuple(warnings),
    )


def world_from_manifests(paths: Sequence[str], namespace: str = "default") -> World:
    """Read manifests (files/directories) into a World."""
    from .manifests import load_manifests

    m = load_manifests(paths, namespace)
    return World(pods=tuple(m.pods), namespaces=m.namespaces, policies=tuple(m.policies),
                 services=tuple(m.services), tiers=tuple(m.tiers), warnings=tuple(m.warnings))


def pod_matrix(world: World, ports: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """`netprobe expect --pods -o json` (version 1): pod_to_pod per port/protocol, plus DNS and external columns."""
    engine = world.engine()
    keys = [p.key for p in world.pods]
    dns_pods = [p for p in world.pods if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
    out: dict[str, Any] = {"version": 1, "pods": keys, "pod_to_pod": [], "external": []}
    for port, protocol in ports:
        rows = engine.matrix(port, protocol)
        matrix = {src: {dst: "allow" if rows[i] >> j & 1 else "deny" for j, dst in enumerate(keys)}
                  for i, src in enumerate(keys)}
        out["pod_to_pod"].append({"port": port, "protocol": protocol, "matrix": matrix})
        out["external"].append({"port": port, "protocol": protocol, "matrix": {
            p.key: "allow" if engine.decide(Endpoint(pod=p), Endpoint(ip=""), port, protocol).allowed else "deny"
            for p in world.pods}})
    out["dns"] = {p.key: "allow" if engine.dns_allowed(p, dns_pods).allowed else "deny" for p in world.pods}
    return out


def endpoint_for(world: World, ref: str) -> Endpoint:
    """`namespace/name` → a pod endpoint; an IP → an external endpoint; InputError otherwise."""
    from .errors import InputError

    try:
        return Endpoint(pod=world.pod(ref))
    except KeyError:
        try:
            ipaddress.ip_address(ref)
        except ValueError:
            known = ", ".join(p.key for p in world.pods[:10])
            raise InputError(f"no pod {ref!r} (expected namespace/name or an IP); pods: {known}") from None
        return Endpoint(ip=ref)


def expect_document(world: World, ports: Sequence[tuple[int, str]], spec: Spec | None = None) -> dict[str, Any]:
    """`netprobe expect --pods -o json`: the pod matrix, plus the spec's computed `expect` section."""
    doc = pod_matrix(world, ports)
    if spec is not None:
        doc |= spec_section(world, spec)
    elif world.all_warnings():
        doc["warnings"] = world.all_warnings()
    return doc


def spec_section(world: World, spec: Spec) -> dict[str, Any]:
    """`expect`, `reasons` and `warnings`: the spec's expect section computed from the policies."""
    computed, reasons, warnings = expect_spec(spec, world.engine(), world.pods, world.services)
    return {"expect": {s.name: {t.name: str(computed[(s.name, t.name)]) for t in spec.targets
                                if (s.name, t.name) in computed} for s in spec.sources},
            "reasons": {f"{s} -> {t}": r for (s, t), r in reasons.items()},
            "warnings": [*world.all_warnings(), *warnings]}

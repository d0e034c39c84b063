"""Evaluation: isolation per direction, allow per direction, and the rule that decided.

* A connection is allowed iff the source's egress allows it (or the source is not
  egress-isolated, or is not a pod) AND the destination's ingress allows it (or it is not
  ingress-isolated, or is not a pod). Allowed traffic is the union over all policies.
* The evaluator walks `rules.PolicyRules` only: any policy kind parsed into rules plugs in.

The tier model (used as soon as one `rules.TieredPolicy` — Calico, AdminNetworkPolicy,
ClusterNetworkPolicy — is present), as Calico's Tier reference documents it:

* "each tier that contains a policy that applies to the endpoint processes the packet. Tiers are
  sorted by their order - smallest number first. Policies in each Tier are then processed in order."
  (then by name; a missing order sorts last). Per direction: a policy applies for the directions
  of its `types`.
* First matching Allow or Deny decides; Pass jumps to the next tier that applies; Log decides
  nothing. "If the Tier applies to the endpoint, but takes no action on the packet the packet is
  dropped" unless the tier's defaultAction is Pass.
* Kubernetes NetworkPolicies sit in the `default` tier (order 1,000,000) with order 1000, every
  rule an Allow — which is exactly their union semantics. AdminNetworkPolicy and Admin
  ClusterNetworkPolicy sit in `kube-admin` (order 1,000, defaultAction Pass), Baseline ones in
  `kube-baseline` (order 10,000,000, defaultAction Pass).
* When no tier applies, or every applying tier passed, the endpoint's profile allows (Calico's
  per-namespace profiles allow everything).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model import Namespace, Selector
from ..pods import ContainerPort, PodInfo
from . import matching
from .adminpolicy import BUILTIN_TIERS
from .calico import SA_NAME_LABEL
from .matching import NS_NAME_LABEL
from .rules import (
    ALLOW,
    DENY,
    EGRESS,
    INGRESS,
    LOG,
    PASS,
    Endpoint,
    EndpointMatch,
    Peer,
    PolicyRules,
    PortRule,
    Tier,
    TieredPolicy,
    TierRule,
)

DEFAULT_TIER = Tier(name="default", order=1_000_000, default_action=DENY)
KUBE_NP_ORDER = 1000.0  # where Calico places Kubernetes NetworkPolicies within the default tier
CALICO_NS_LABEL = "projectcalico.org/namespace"
CALICO_NAME_LABEL = "projectcalico.org/name"

# The cluster DNS, when no kube-dns pod is known: what kubeadm, kind and the lab deploy.
DNS_POD = PodInfo(name="kube-dns", namespace=Namespace("kube-system"), labels={"k8s-app": "kube-dns"},
                  ports=(ContainerPort(name="dns", port=53, protocol="UDP"),
                         ContainerPort(name="dns-tcp", port=53, protocol="TCP")))


@dataclass(frozen=True, slots=True, kw_only=True)
class Half:
    """The decision of one direction."""

    allowed: bool
    reason: str
    isolated_by: tuple[str, ...] = ()
    allowed_by: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Both directions of one connection, with words."""

    allowed: bool
    egress: Half
    ingress: Half

    @property
    def reason(self) -> str:
        """The deciding half's reason (the failing one, or both when allowed)."""
        if self.allowed:
            return f"egress: {self.egress.reason}; ingress: {self.ingress.reason}"
        return self.egress.reason if not self.egress.allowed else self.ingress.reason


class PolicyEngine:
    """Evaluates connections against a set of policies (any kind satisfying PolicyRules)."""

    def __init__(self, pods: Sequence[PodInfo], namespaces: Mapping[str, Mapping[str, str]],
                 policies: Sequence[PolicyRules | TieredPolicy], *, tiers: Sequence[Tier] = (),
                 ipblock_matches_pods: bool = True) -> None:
        self.pods = list(pods)
        self.ns_labels: dict[str, dict[str, str]] = {}
        # Kubernetes NetworkPolicies (`policies`, walked by the union evaluator and lint) and the
        # tiered kinds (`tiered`); with any of the latter, every decision goes through the tiers.
        self.policies: list[PolicyRules] = [p for p in policies if not isinstance(p, TieredPolicy)]
        self.tiered: list[TieredPolicy] = [p for p in policies if isinstance(p, TieredPolicy)]
        for ns in {p.namespace for p in pods} | set(namespaces) | {p.namespace for p in self.policies} \
                | {p.namespace for p in self.tiered if p.namespace}:
            self.ns_labels[ns] = {**dict(namespaces.get(ns, {})), NS_NAME_LABEL: ns}
        self.ipblock_matches_pods = ipblock_matches_pods
        self._by_ns: dict[str, list[PolicyRules]] = {}
        for pol in self.policies:
            self._by_ns.setdefault(pol.namespace, []).append(pol)
        self.warnings: list[str] = []
        self.tiers: dict[str, Tier] = {t.name: t for t in (DEFAULT_TIER, *BUILTIN_TIERS, *tiers)}
        self.ordered: list[tuple[Tier, list[TieredPolicy]]] = []
        self._applying_cache: dict[tuple[str, str], list[tuple[Tier, list[TieredPolicy]]]] = {}
        self._ep_labels: dict[str, dict[str, str]] = {}
        if self.tiered:
            self._build_tiers()

    def namespace_labels(self, ns: str) -> dict[str, str]:
        """A namespace's labels, always with kubernetes.io/metadata.name (as 1.21+ sets it)."""
        return self.ns_labels.get(ns) or {NS_NAME_LABEL: ns}

    def selecting(self, pod: PodInfo, direction: str) -> list[PolicyRules]:
        """The policies that isolate `pod` in `direction`."""
        return [p for p in self._by_ns.get(pod.namespace, ())
                if direction in p.types and p.pod_selector.matches(pod.labels)]

    def peer_matches(self, peer: Peer, policy_ns: str, remote: Endpoint) -> bool:
        """Whether a rule's peer selects the remote endpoint."""
        return matching.peer_matches(peer, policy_ns, remote, self.namespace_labels,
                                     ipblock_matches_pods=self.ipblock_matches_pods)

    @staticmethod
    def port_matches(rule_port: PortRule, port: int, protocol: str, dst: PodInfo | None) -> bool:
        """Whether a rule's port entry admits port/protocol to `dst` (named ports resolved there)."""
        return matching.port_matches(rule_port, port, protocol, dst)

    def _half(self, pod: PodInfo | None, direction: str, remote: Endpoint, port: int, protocol: str,
              dst: PodInfo | None) -> Half:
        if pod is None:
            return Half(allowed=True, reason="not a pod (no policy applies)")
        if self.tiered:
            return self._tiered_half(pod, direction, remote, port, protocol)
        isolating = self.selecting(pod, direction)
        word = direction.lower()
        if not isolating:
            return Half(allowed=True, reason=f"{pod.key} is not {word}-isolated")
        for policy in isolating:
            for i, rule in enumerate(policy.rules(direction)):
                peers_ok = rule.peers is None or any(self.peer_matches(p, policy.namespace, remote)
                                                     for p in rule.peers)
                ports_ok = not rule.ports or any(self.port_matches(rp, port, protocol, dst) for rp in rule.ports)
                if peers_ok and ports_ok:
                    return Half(allowed=True, allowed_by=f"{policy.key} {word} rule {i}",
                                isolated_by=tuple(p.key for p in isolating),
                                reason=f"allowed by {policy.key} {word} rule {i}")
        names = ", ".join(p.key for p in isolating)
        return Half(allowed=False, isolated_by=tuple(p.key for p in isolating),
                    reason=f"{pod.key} is {word}-isolated by {names} and no {word} rule allows "
                           f"{remote.describe()} on {port}/{protocol}")

    def decide(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Decision:
        """Is src → dst:port/protocol allowed? Both halves, with the rule that decided each."""
        egress = self._half(src.pod, EGRESS, dst, port, protocol, dst.pod)
        ingress = self._half(dst.pod, INGRESS, src, port, protocol, dst.pod)
        return Decision(allowed=egress.allowed and ingress.allowed, egress=egress, ingress=ingress)

    def dns_allowed(self, src: PodInfo, dns_pods: Sequence[PodInfo] = (), protocol: str = "UDP") -> Decision:
        """Can `src` query the cluster DNS (UDP 53 to a kube-dns pod, as a resolver first tries)?"""
        pods = list(dns_pods) or [DNS_POD]
        decisions = [self.decide(Endpoint(pod=src), Endpoint(pod=d), 53, protocol) for d in pods]
        return next((d for d in decisions if d.allowed), decisions[0])

    def matrix(self, port: int, protocol: str = "TCP") -> list[int]:
        """Row bitsets: bit j of row i is set iff pods[i] → pods[j]:port/protocol is allowed."""
        if self.tiered:
            from .tiered_matrix import tiered_rows

            return tiered_rows(self, port, protocol)
        from .matrix import allowed_rows

        return allowed_rows(self, port, protocol)

    # ------------------------------------------------------------------ the tier model

    def _build_tiers(self) -> None:
        """Every policy (Kubernetes ones converted) in its tier; tiers and policies in evaluation order."""
        by_tier: dict[str, list[TieredPolicy]] = {}
        for pol in [*(kube_in_default_tier(p) for p in self.policies), *self.tiered]:
            if pol.tier not in self.tiers:
                self.warnings.append(f"{pol.describe()}: tier {pol.tier!r} is not defined (no Tier object was "
                                     "read); it is evaluated after every ordered tier, with defaultAction Deny")
                self.tiers[pol.tier] = Tier(name=pol.tier, order=None)
            by_tier.setdefault(pol.tier, []).append(pol)
        for name in sorted(by_tier, key=lambda t: _order_key(self.tiers[t].order, t)):
            pols = sorted(by_tier[name], key=lambda p: _order_key(p.order, p.key))
            self.ordered.append((self.tiers[name], pols))

    def endpoint_labels(self, pod: PodInfo) -> dict[str, str]:
        """A pod's labels as Calico selectors see them (plus projectcalico.org/namespace, ...)."""
        labels = self._ep_labels.get(pod.key)
        if labels is None:
            labels = {**pod.labels, CALICO_NS_LABEL: pod.namespace, "projectcalico.org/orchestrator": "k8s"}
            if pod.service_account:
                labels["projectcalico.org/serviceaccount"] = pod.service_account
            self._ep_labels[pod.key] = labels
        return labels

    def calico_namespace_labels(self, ns: str) -> dict[str, str]:
        """A namespace's labels plus projectcalico.org/name (what Calico namespaceSelectors see)."""
        return {**self.namespace_labels(ns), CALICO_NAME_LABEL: ns}

    def policy_applies(self, pol: TieredPolicy, pod: PodInfo, direction: str) -> bool:
        """Whether a tiered policy applies to `pod` in `direction`."""
        if direction not in pol.types or (pol.namespace is not None and pod.namespace != pol.namespace):
            return False
        if pol.namespace_selector is not None and \
                not pol.namespace_selector.matches(self.calico_namespace_labels(pod.namespace)):
            return False
        if pol.selector is not None and not pol.selector.matches(self.endpoint_labels(pod)):
            return False
        return pol.service_account_selector is None or \
            pol.service_account_selector.matches({SA_NAME_LABEL: pod.service_account})

    def applying(self, pod: PodInfo, direction: str) -> list[tuple[Tier, list[TieredPolicy]]]:
        """The tiers that apply to `pod` in `direction`, each with its applying policies, in order."""
        key = (pod.key, direction)
        found = self._applying_cache.get(key)
        if found is None:
            found = []
            for tier, pols in self.ordered:
                mine = [p for p in pols if self.policy_applies(p, pod, direction)]
                if mine:
                    found.append((tier, mine))
            self._applying_cache[key] = found
        return found

    def side_matches(self, m: EndpointMatch, ep: Endpoint) -> bool:
        """Whether one rule side (source or destination criteria) matches an endpoint."""
        pod = ep.pod
        if pod is None:
            if m.pods_only:
                return False
        else:
            if m.namespace is not None and pod.namespace != m.namespace:
                return False
            if m.namespace_selector is not None and \
                    not m.namespace_selector.matches(self.calico_namespace_labels(pod.namespace)):
                return False
            if m.selector is not None or m.not_selector is not None:
                labels = self.endpoint_labels(pod)
                if m.selector is not None and not m.selector.matches(labels):
                    return False
                if m.not_selector is not None and m.not_selector.matches(labels):
                    return False
            if m.service_accounts is not None and pod.service_account not in m.service_accounts:
                return False
            if m.service_account_selector is not None and \
                    not m.service_account_selector.matches({SA_NAME_LABEL: pod.service_account}):
                return False
        if m.nets or m.not_nets:
            if pod is not None and m.kube_ipblock and not self.ipblock_matches_pods:
                return False
            return nets_match(m, ep.address)
        return True

    def rule_matches(self, rule: TierRule, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> bool:
        """Whether a tiered rule matches src → dst:port/protocol."""
        if rule.match_none:
            return False
        if (rule.protocol is not None and rule.protocol != protocol) or rule.not_protocol == protocol:
            return False
        if rule.src and not any(self.side_matches(m, src) for m in rule.src):
            return False
        if rule.dst and not any(self.side_matches(m, dst) for m in rule.dst):
            return False
        if rule.ports and not any(matching.port_matches(rp, port, protocol, dst.pod) for rp in rule.ports):
            return False
        return not any(matching.port_matches(rp, port, protocol, dst.pod) for rp in rule.not_ports)

    def applying_policies(self, pod: PodInfo, direction: str) -> list[TieredPolicy]:
        """Every tiered policy (Kubernetes ones included) that applies to `pod` in `direction`."""
        return [p for _, pols in self.applying(pod, direction) for p in pols]

    def _tiered_half(self, pod: PodInfo, direction: str, remote: Endpoint, port: int, protocol: str) -> Half:
        word = direction.lower()
        applying = self.applying(pod, direction)
        local = Endpoint(pod=pod)
        src, dst = (local, remote) if direction == EGRESS else (remote, local)
        isolated_by = tuple(p.key for _, pols in applying for p in pols)
        if not applying:
            return Half(allowed=True, reason=f"no policy applies to {pod.key} for {word}: allowed by its profile")
        trail: list[str] = []

        def after() -> str:
            return f" (after: {'; '.join(trail)})" if trail else ""

        for tier, pols in applying:
            passed = False
            for pol in pols:
                for rule in pol.rules(direction):
                    if rule.action == LOG or not self.rule_matches(rule, src, dst, port, protocol):
                        continue
                    where = f"{pol.describe()}, {rule.label} {rule.action}"
                    if rule.action == ALLOW:
                        return Half(allowed=True, allowed_by=where, isolated_by=isolated_by,
                                    reason=f"allowed by {where}{after()}")
                    if rule.action == DENY:
                        return Half(allowed=False, isolated_by=isolated_by, reason=f"denied by {where}{after()}")
                    trail.append(f"passed by {where}")
                    passed = True
                    break
                if passed:
                    break
            if passed:
                continue
            names = ", ".join(p.describe() for p in pols)
            if tier.default_action == PASS:
                trail.append(f"tier {tier.name} matched nothing (defaultAction Pass)")
                continue
            return Half(allowed=False, isolated_by=isolated_by,
                        reason=f"denied by tier {tier.name}'s defaultAction Deny: {pod.key} is {word}-isolated "
                               f"by {names} and no {word} rule matches {remote.describe()} on {port}/{protocol}"
                               f"{after()}")
        return Half(allowed=True, isolated_by=isolated_by,
                    reason=f"{'; '.join(trail)}; no later tier applies: allowed by {pod.key}'s profile")


def _order_key(order: float | None, name: str) -> tuple[bool, float, str]:
    return (order is None, order or 0.0, name)


def nets_match(m: EndpointMatch, address: str) -> bool:
    """An address in some of `nets` (when given) and in none of `not_nets`; "" (unknown) only in 0/0."""
    if not address:
        return not m.not_nets and (not m.nets or any(n.prefixlen == 0 for n in m.nets))
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    if m.nets and not any(addr in n for n in m.nets):
        return False
    return not any(addr in n for n in m.not_nets)


def _peer_match(peer: Peer, ns: str) -> EndpointMatch:
    if peer.ip_block is not None:
        return EndpointMatch(nets=(peer.ip_block.cidr,), not_nets=peer.ip_block.excepts, kube_ipblock=True)
    return EndpointMatch(selector=peer.pod_selector if peer.pod_selector is not None else Selector(),
                         namespace_selector=peer.namespace_selector,
                         namespace=ns if peer.namespace_selector is None else None)


def kube_in_default_tier(pol: PolicyRules) -> TieredPolicy:
    """A Kubernetes NetworkPolicy as Calico runs it: tier default, order 1000, every rule an Allow."""
    rules: dict[str, tuple[TierRule, ...]] = {}
    for direction in (INGRESS, EGRESS):
        out = []
        for i, rule in enumerate(pol.rules(direction)):
            remote = () if rule.peers is None else tuple(_peer_match(p, pol.namespace) for p in rule.peers)
            out.append(TierRule(action=ALLOW, ports=rule.ports, label=f"{direction.lower()} rule {i}",
                                src=remote if direction == INGRESS else (),
                                dst=remote if direction == EGRESS else ()))
        rules[direction] = tuple(out)
    name = pol.key.split("/", 1)[1]
    return TieredPolicy(kind="NetworkPolicy", api_version="networking.k8s.io/v1", name=name,
                        namespace=pol.namespace, tier=DEFAULT_TIER.name, order=KUBE_NP_ORDER,
                        selector=pol.pod_selector, types=pol.types, ingress=rules[INGRESS], egress=rules[EGRESS])

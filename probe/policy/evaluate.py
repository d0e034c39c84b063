"""Evaluation: isolation per direction, allow per direction, and the rule that decided.

* A connection is allowed iff the source's egress allows it (or the source is not
  egress-isolated, or is not a pod) AND the destination's ingress allows it (or it is not
  ingress-isolated, or is not a pod). Allowed traffic is the union over all policies.
* The evaluator walks `rules.PolicyRules` only: any policy kind parsed into rules plugs in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..model import Namespace
from ..pods import ContainerPort, PodInfo
from . import matching
from .matching import NS_NAME_LABEL
from .rules import EGRESS, INGRESS, Endpoint, Peer, PolicyRules, PortRule

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
                 policies: Sequence[PolicyRules], *, ipblock_matches_pods: bool = True) -> None:
        self.pods = list(pods)
        self.ns_labels: dict[str, dict[str, str]] = {}
        for ns in {p.namespace for p in pods} | set(namespaces) | {p.namespace for p in policies}:
            self.ns_labels[ns] = {**dict(namespaces.get(ns, {})), NS_NAME_LABEL: ns}
        self.policies = list(policies)
        self.ipblock_matches_pods = ipblock_matches_pods
        self._by_ns: dict[str, list[PolicyRules]] = {}
        for pol in self.policies:
            self._by_ns.setdefault(pol.namespace, []).append(pol)

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
        from .matrix import allowed_rows

        return allowed_rows(self, port, protocol)

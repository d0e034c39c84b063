"""NetworkPolicy semantics (networking.k8s.io/v1) → expected connectivity, with reasons.

Pure: pods, namespaces and policies come in as values. The rules, as the API reference
defines them:

* A pod is isolated for ingress (egress) when any policy in its namespace selects it and
  lists that direction in `policyTypes`. `policyTypes` defaults to [Ingress], plus Egress
  when the spec has an `egress` section.
* A connection is allowed iff the source's egress allows it (or the source is not
  egress-isolated, or is not a pod) AND the destination's ingress allows it (or it is not
  ingress-isolated, or is not a pod). Allowed traffic is the union over all policies.
* A rule matches when one of its peers matches (no `from`/`to`: every peer) and one of its
  ports matches (no `ports`: every port). Peers: `podSelector` (pods of the policy's own
  namespace), `namespaceSelector` (pods of matching namespaces), both in one peer (AND),
  `ipBlock` cidr minus `except` (also applied to pod IPs, as Calico does; configurable).
* Ports: protocol defaults to TCP; a numeric port with optional `endPort`; a named port is
  resolved against the destination pod's container ports (for egress rules too).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ManifestError
from .model import Namespace, Requirement, Selector
from .pods import ContainerPort, PodInfo

NS_NAME_LABEL = "kubernetes.io/metadata.name"
INGRESS, EGRESS = "Ingress", "Egress"
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

# The cluster DNS, when no kube-dns pod is known: what kubeadm, kind and the lab deploy.
DNS_POD = PodInfo(name="kube-dns", namespace=Namespace("kube-system"), labels={"k8s-app": "kube-dns"},
                  ports=(ContainerPort(name="dns", port=53, protocol="UDP"),
                         ContainerPort(name="dns-tcp", port=53, protocol="TCP")))


def selector_from(raw: Any, where: str) -> Selector:
    """A LabelSelector's JSON → Selector; ManifestError naming `where` when malformed."""
    if raw is None:
        return Selector()
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a label selector, got {type(raw).__name__}")
    labels = raw.get("matchLabels") or {}
    exprs = raw.get("matchExpressions") or []
    if not isinstance(labels, dict) or not isinstance(exprs, list):
        raise ManifestError(f"{where}: matchLabels must be a mapping and matchExpressions a list")
    reqs = []
    for i, e in enumerate(exprs):
        if not isinstance(e, dict) or e.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ManifestError(f"{where}.matchExpressions[{i}]: expected key, operator "
                                "(In, NotIn, Exists, DoesNotExist) and values")
        reqs.append(Requirement(key=str(e.get("key", "")), operator=e["operator"],
                                values=tuple(str(v) for v in e.get("values") or ())))
    return Selector(match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                    match_expressions=tuple(reqs))


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A parsed NetworkPolicy."""

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
    if types is None:
        types = [INGRESS] + ([EGRESS] if "egress" in spec else [])
    if not isinstance(types, list) or any(t not in (INGRESS, EGRESS) for t in types):
        raise ManifestError(f"{where}: policyTypes must list Ingress and/or Egress, got {types!r}")
    return Policy(namespace=ns, name=name,
                  pod_selector=selector_from(spec.get("podSelector"), f"{where}: spec.podSelector"),
                  types=frozenset(types),
                  ingress=_parse_rules(spec.get("ingress"), "from", f"{where}: spec.ingress"),
                  egress=_parse_rules(spec.get("egress"), "to", f"{where}: spec.egress"),
                  raw=obj)


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
    """Evaluates connections against a set of NetworkPolicies."""

    def __init__(self, pods: Sequence[PodInfo], namespaces: Mapping[str, Mapping[str, str]],
                 policies: Sequence[Policy], *, ipblock_matches_pods: bool = True) -> None:
        self.pods = list(pods)
        self.ns_labels: dict[str, dict[str, str]] = {}
        for ns in {p.namespace for p in pods} | set(namespaces) | {p.namespace for p in policies}:
            self.ns_labels[ns] = {**dict(namespaces.get(ns, {})), NS_NAME_LABEL: ns}
        self.policies = list(policies)
        self.ipblock_matches_pods = ipblock_matches_pods
        self._by_ns: dict[str, list[Policy]] = {}
        for pol in self.policies:
            self._by_ns.setdefault(pol.namespace, []).append(pol)

    def namespace_labels(self, ns: str) -> dict[str, str]:
        """A namespace's labels, always with kubernetes.io/metadata.name (as 1.21+ sets it)."""
        return self.ns_labels.get(ns) or {NS_NAME_LABEL: ns}

    def selecting(self, pod: PodInfo, direction: str) -> list[Policy]:
        """The policies that isolate `pod` in `direction`."""
        return [p for p in self._by_ns.get(pod.namespace, ())
                if direction in p.types and p.pod_selector.matches(pod.labels)]

    def peer_matches(self, peer: Peer, policy_ns: str, remote: Endpoint) -> bool:
        """Whether a rule's peer selects the remote endpoint."""
        if peer.ip_block is not None:
            if remote.pod is not None and not self.ipblock_matches_pods:
                return False
            if not remote.address:  # an unknown external address: only "everything" matches
                return peer.ip_block.cidr.prefixlen == 0 and not peer.ip_block.excepts
            return peer.ip_block.contains(remote.address)
        if remote.pod is None:
            return False  # selectors only ever select pods
        pod = remote.pod
        if peer.namespace_selector is not None:
            if not peer.namespace_selector.matches(self.namespace_labels(pod.namespace)):
                return False
        elif pod.namespace != policy_ns:
            return False
        return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)

    @staticmethod
    def port_matches(rule_port: PortRule, port: int, protocol: str, dst: PodInfo | None) -> bool:
        """Whether a rule's port entry admits port/protocol to `dst` (named ports resolved there)."""
        if rule_port.protocol != protocol:
            return False
        if rule_port.port is None:
            return True
        if isinstance(rule_port.port, str):
            if dst is None:
                return False
            return any(cp.name == rule_port.port and cp.protocol == protocol and cp.port == port
                       for cp in dst.ports)
        if rule_port.end_port is not None:
            return rule_port.port <= port <= rule_port.end_port
        return rule_port.port == port

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

    # -- bulk: the whole pod-to-pod matrix on one port, with bitsets

    def matrix(self, port: int, protocol: str = "TCP") -> list[int]:
        """Row bitsets: bit j of row i is set iff pods[i] → pods[j]:port/protocol is allowed."""
        n = len(self.pods)
        everyone = (1 << n) - 1
        pod_bits: dict[tuple[str, Selector | None, Selector | None, IPBlock | None], int] = {}
        by_ns: dict[str, list[int]] = {}
        for i, p in enumerate(self.pods):
            by_ns.setdefault(p.namespace, []).append(i)
        addrs: list[ipaddress.IPv4Address | ipaddress.IPv6Address | None] = []
        for p in self.pods:
            try:
                addrs.append(ipaddress.ip_address(p.ip) if p.ip else None)
            except ValueError:
                addrs.append(None)

        def peer_bits(peer: Peer, ns: str) -> int:
            key = (ns, peer.pod_selector, peer.namespace_selector, peer.ip_block)
            if key in pod_bits:
                return pod_bits[key]
            bits = 0
            block = peer.ip_block
            if block is not None:
                if self.ipblock_matches_pods:
                    for i, addr in enumerate(addrs):
                        if addr is not None and addr in block.cidr and not any(addr in e for e in block.excepts):
                            bits |= 1 << i
            else:
                if peer.namespace_selector is None:
                    namespaces = [ns]
                else:
                    namespaces = [n for n in by_ns if peer.namespace_selector.matches(self.namespace_labels(n))]
                sel = peer.pod_selector
                for n in namespaces:
                    for i in by_ns.get(n, ()):
                        if sel is None or sel.matches(self.pods[i].labels):
                            bits |= 1 << i
            pod_bits[key] = bits
            return bits

        named: dict[tuple[str, str], int] = {}

        def named_port_bits(rp: PortRule) -> int:
            key = (str(rp.port), rp.protocol)
            if key not in named:
                bits = 0
                for i, p in enumerate(self.pods):
                    if self.port_matches(rp, port, protocol, p):
                        bits |= 1 << i
                named[key] = bits
            return named[key]

        def rule_dst_ports(rule: Rule) -> int:
            """Pods (as destinations) for which the rule's ports admit port/protocol."""
            if not rule.ports:
                return everyone
            bits = 0
            for rp in rule.ports:
                if isinstance(rp.port, str):
                    bits |= named_port_bits(rp)
                elif self.port_matches(rp, port, protocol, None):
                    return everyone
            return bits

        def rule_peers(rule: Rule, ns: str) -> int:
            if rule.peers is None:
                return everyone
            bits = 0
            for peer in rule.peers:
                bits |= peer_bits(peer, ns)
            return bits

        def allowed_peers(direction: str, k: int, pod: PodInfo) -> int:
            """Egress: the destinations pod k may reach. Ingress: the sources pod k accepts."""
            isolating = self.selecting(pod, direction)
            if not isolating:
                return everyone
            bits = 0
            for pol in isolating:
                for rule in pol.rules(direction):
                    ports = rule_dst_ports(rule)  # as destinations: the peers (egress) or pod k (ingress)
                    if direction == EGRESS:
                        bits |= rule_peers(rule, pol.namespace) & ports
                    elif ports >> k & 1:
                        bits |= rule_peers(rule, pol.namespace)
            return bits

        egress = [allowed_peers(EGRESS, i, p) for i, p in enumerate(self.pods)]
        ingress_from = [allowed_peers(INGRESS, j, p) for j, p in enumerate(self.pods)]
        # transpose: rejects[i] has bit j iff pod j's ingress does not accept pod i
        rejects = [0] * n
        for j, srcs in enumerate(ingress_from):
            if srcs == everyone:
                continue
            rest = everyone & ~srcs
            while rest:
                low = rest & -rest
                i = low.bit_length() - 1
                rejects[i] |= 1 << j
                rest ^= low
        return [egress[i] & ~rejects[i] for i in range(n)]


def namespaces_from(objs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """{namespace: labels} from Namespace objects."""
    return {str(o["metadata"]["name"]): dict(o["metadata"].get("labels") or {}) for o in objs}

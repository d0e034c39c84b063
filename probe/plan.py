"""Sources × targets → one agent plan per network identity.

Pure: the pods come in as PodInfo values (from cluster.py or a test). The manifest that
carries a plan into the cluster is probepod.py; the results coming back are observe.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .model import Expectation, Source, Target, TargetKind
from .pods import Identity, PodInfo, group_identities
from .services import Backend

WARMUP_MODES = ("gate", "fixed")
GATE_CANDIDATES = 3  # checks polled per gate condition; each must show what the spec expects


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRef:
    """Which cell a check of a plan feeds."""

    target: str
    pod: str = ""  # ns/name of the destination pod: a pod-selector target's pod, or a Service backend


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbePlan:
    """One probe pod: an identity, the sources it stands for, and the agent's checks."""

    index: int
    identity: Identity
    sources: tuple[str, ...]
    example_pod: PodInfo  # a real pod of this identity (node for --same-node, --via ephemeral)
    checks: tuple[Mapping[str, Any], ...]
    refs: Mapping[str, CheckRef]
    timeout: float
    attempts: int = 1
    warmup: float = 0.0  # the gate's bound, or the fixed wait (warmup_mode "fixed")
    warmup_mode: str = "gate"
    gate_connect: tuple[str, ...] = ()  # check ids the expectations say must connect
    gate_block: tuple[str, ...] = ()  # check ids the expectations say must not connect
    node_answered: frozenset[str] = frozenset()  # check ids a node itself may answer (plan.reaches_a_node)

    @property
    def budget_s(self) -> float:
        """The longest the agent may run: DNS then connect, per attempt, plus slack."""
        longest = max((float(c.get("timeout", self.timeout)) for c in self.checks),
                      default=self.timeout)
        return self.warmup + self.attempts * (2 * longest + 1) + 5


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetPods:
    """A pod-selector target's resolved pods (possibly sampled)."""

    target: str
    pods: tuple[PodInfo, ...]
    total: int  # before sampling


def build_checks(
    targets: Sequence[Target], target_pods: Mapping[str, TargetPods],
    timeouts: Mapping[str, float], default_timeout: float
) -> tuple[list[dict[str, Any]], dict[str, CheckRef]]:
    """The agent checks for every target (one per pod for pod-selector targets)."""
    checks: list[dict[str, Any]] = []
    refs: dict[str, CheckRef] = {}
    for ti, target in enumerate(targets):
        extra: dict[str, Any] = {}
        if target.name in timeouts and timeouts[target.name] != default_timeout:
            extra["timeout"] = timeouts[target.name]
        if target.kind is TargetKind.PODS:
            for pi, pod in enumerate(target_pods[target.name].pods):
                cid = f"t{ti}p{pi}"
                checks.append({"id": cid, "kind": "tcp", "host": pod.ip, "port": target.port, **extra})
                refs[cid] = CheckRef(target=target.name, pod=pod.key)
            continue
        cid = f"t{ti}"
        if target.kind is TargetKind.DNS:
            checks.append({"id": cid, "kind": "dns", "name": target.host, **extra})
        elif target.kind is TargetKind.HTTP:
            checks.append({"id": cid, "kind": "http", "url": target.host, **extra})
        else:
            checks.append({"id": cid, "kind": "tcp", "host": target.host, "port": target.port, **extra})
        refs[cid] = CheckRef(target=target.name)
    return checks, refs


def _gate_rank(check: Mapping[str, Any], ref: CheckRef, *, connect: bool) -> int:
    """Which checks tell the gate most, lowest first.

    In-cluster answers come in milliseconds, far inside the gate's short timeout, and from
    something that listens. A "block" check shows a fail-open start is over only if its
    target would answer an un-isolated pod: the cluster DNS always does, then target pods,
    then names (Services), then IP addresses (often external: slower, or a black hole that
    never answers). A "connect" check shows more when its packets also pass the target's
    ingress policy, which the enforcer programs for the new pod's address asynchronously too
    (on another node, by another agent): target pods first, then names, then the DNS (rarely
    isolated), then IP addresses.
    """
    if check["kind"] == "dns":
        return 2 if connect else 0
    if ref.pod:
        return 0 if connect else 1
    if _ip(_check_host(check)) is None:
        return 1 if connect else 2
    return 3


def _check_host(check: Mapping[str, Any]) -> str:
    """The host a tcp/http check connects to, lower case, without brackets or a trailing dot."""
    if check["kind"] == "http":
        try:
            host = urlsplit(str(check.get("url", ""))).hostname or ""
        except ValueError:
            host = ""
    else:
        host = str(check.get("host") or "")
    return host.strip("[]").rstrip(".").lower()


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IPAddress | None:
    """An address in one form whatever its spelling (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else ip


def node_addresses(pods: Iterable[PodInfo]) -> frozenset[IPAddress]:
    """The addresses of the nodes these pods run on (their status.hostIPs), in one spelling."""
    return frozenset(ip for p in pods for a in p.host_ips if (ip := _ip(a)) is not None)


def reaches_a_node(check: Mapping[str, Any], nodes: Collection[IPAddress]) -> bool:
    """Whether a node itself may answer a check rather than the pod network: an address of a
    node (a hostNetwork pod's is its node's), or the API server by its Service name (its
    endpoints are the control plane's addresses). A Service endpoint without a pod is another
    (`make_plans` knows it from the endpoint).

    Some enforcers never filter a pod's traffic to its own node, not even while a fail-closed
    start drops everything else (the lab's; Calico drops an unknown workload interface's traffic,
    host-bound included, unless DefaultEndpointToHostAction is ACCEPT): such a connection shows
    nothing about the pod's policy, so the gate must not wait for it, and it does not show the
    pod's network up.
    """
    if check["kind"] == "dns":
        return False
    host = _check_host(check)
    ip = _ip(host)
    if ip is not None:
        return ip in nodes
    return host in ("kubernetes", "kubernetes.default", "kubernetes.default.svc") or \
        host.startswith("kubernetes.default.svc.")


def gate_checks(
    checks: Sequence[Mapping[str, Any]], refs: Mapping[str, CheckRef], sources: Sequence[str],
    expect: Mapping[tuple[str, str], Expectation], node_answered: Collection[str] = (),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(connect, block): the check ids the readiness gate polls, best first.

    A check qualifies only when every source the probe pod stands for expects the same of
    its target (one identity can stand for several sources with different expectations), and
    as a "connect" check only when its answer must come through the pod network (not in
    `node_answered`: see `reaches_a_node`).
    """
    connect: list[tuple[int, int, str]] = []
    block: list[tuple[int, int, str]] = []
    for order, check in enumerate(checks):
        ref = refs[check["id"]]
        wanted = {expect.get((source, ref.target)) for source in sources}
        if wanted == {Expectation.ALLOW}:
            if check["id"] in node_answered:
                continue
            connect.append((_gate_rank(check, ref, connect=True), order, check["id"]))
        elif wanted == {Expectation.DENY}:
            block.append((_gate_rank(check, ref, connect=False), order, check["id"]))
    return (tuple(cid for *_, cid in sorted(connect)[:GATE_CANDIDATES]),
            tuple(cid for *_, cid in sorted(block)[:GATE_CANDIDATES]))


def make_plans(
    sources: Sequence[Source], pods_by_source: Mapping[str, Sequence[PodInfo]],
    targets: Sequence[Target], target_pods: Mapping[str, TargetPods], *,
    timeout: float, timeouts: Mapping[str, float] | None = None, attempts: int = 1,
    per_pod: bool = False, only: Mapping[str, set[str]] | None = None, warmup: float = 0.0,
    warmup_mode: str = "gate", expect: Mapping[tuple[str, str], Expectation] | None = None,
    first_index: int = 0, backends: Mapping[tuple[str, str], Sequence[Backend]] | None = None,
) -> list[ProbePlan]:
    """One plan per identity. `only` restricts a source to some targets (re-probes).

    `backends[(target, namespace)]` are the ready backends of the Service a TCP/HTTP target
    lands on from that namespace: each is probed directly too, beside the Service itself,
    because a connection through the ClusterIP reaches only one of them.

    `warmup` bounds the readiness gate, whose checks come from `expect` (none: the gate
    has no candidate and waits the whole bound); with warmup_mode "fixed" it is a plain wait.
    Indices start at `first_index`: they name the probe Jobs, so later rounds of a run must
    continue the numbering.
    """
    if warmup_mode not in WARMUP_MODES:
        raise ValueError(f"warmup_mode: expected one of {', '.join(WARMUP_MODES)}, got {warmup_mode!r}")
    checks, refs = build_checks(targets, target_pods, timeouts or {}, timeout)
    # The nodes a run knows of: those of its source and target pods (a probe pod lands on one).
    nodes = node_addresses([*(p for pods in pods_by_source.values() for p in pods),
                            *(p for found in target_pods.values() for p in found.pods)])
    at_a_node = {c["id"] for c in checks if reaches_a_node(c, nodes)}
    plans: list[ProbePlan] = []
    for ident, pod, names in group_identities(sources, pods_by_source, per_pod=per_pod):
        mine = checks
        if only is not None:
            wanted = set().union(*(only.get(n, set()) for n in names))
            if not wanted:
                continue
            mine = [c for c in checks if refs[c["id"]].target in wanted]
        mine_refs = {c["id"]: refs[c["id"]] for c in mine}
        extra = _backend_checks(mine, mine_refs, ident.namespace, backends or {})
        # Where a node may answer: node addresses, the API server, an endpoint without a pod, and
        # a Service whose every endpoint is one (it lands outside the pod network too).
        podless = {ref.target for _, ref, has_pod in extra if not has_pod} - {
            ref.target for _, ref, has_pod in extra if has_pod}
        node_answered = frozenset(
            {c["id"] for c in mine
             if c["id"] in at_a_node or (refs[c["id"]].target in podless and not refs[c["id"]].pod)}
            | {c["id"] for c, _, has_pod in extra if not has_pod or reaches_a_node(c, nodes)})
        mine = [*mine, *(c for c, _, _ in extra)]
        mine_refs.update({c["id"]: ref for c, ref, _ in extra})
        connect, block = gate_checks(mine, mine_refs, names, expect or {}, node_answered)
        plans.append(ProbePlan(index=first_index + len(plans), identity=ident, sources=tuple(names),
                               example_pod=pod, checks=tuple(mine), refs=mine_refs,
                               timeout=timeout, attempts=attempts, warmup=warmup,
                               warmup_mode=warmup_mode, gate_connect=connect, gate_block=block,
                               node_answered=node_answered))
    return plans



def _backend_checks(checks: Sequence[Mapping[str, Any]], refs: Mapping[str, CheckRef], namespace: str,
                    backends: Mapping[tuple[str, str], Sequence[Backend]]
                    ) -> list[tuple[dict[str, Any], CheckRef, bool]]:
    """A direct TCP check per ready backend of the Service behind each check (from `namespace`),
    its ref, and whether a pod is behind the endpoint."""
    out: list[tuple[dict[str, Any], CheckRef, bool]] = []
    for check in checks:
        ref = refs[check["id"]]
        if ref.pod:
            continue
        extra = {"timeout": check["timeout"]} if "timeout" in check else {}
        for i, b in enumerate(backends.get((ref.target, namespace), ())):
            out.append(({"id": f"{check['id']}b{i}", "kind": "tcp", "host": b.ip, "port": b.port, **extra},
                        CheckRef(target=ref.target, pod=b.pod), b.has_pod))
    return out

"""`netprobe expect` per workload: equivalence classes named by the workload owning their pods.

Pure. A workload is a pod's controlling owner — a ReplicaSet stamped by a Deployment is named
after the Deployment, `ns/name[Deployment]` — or the pod itself (`ns/name[Pod]`). Connectivity
is computed once per equivalence class (probe/policy/classes.py); a workload whose pods fall in
several classes (a canary's extra label, replicas on both sides of an ipBlock) is split into
`…#1`, `…#2` with a warning, never merged: one replica that can reach more is a finding.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from .analysis import World
from .pods import PodInfo
from .policy.classes import class_connectivity
from .policy.portset import ALL_PORTS, PortSet, describe, merge, subtract
from .policy.rules import Endpoint, IPNet

DNS_DESTINATION, EXTERNAL_DESTINATION = "DNS", "external"


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """Pods of one owner (and one equivalence class): a row and a column of the output."""

    id: str  # `ns/name[Kind]`, plus `#n` when the owner's pods are split over classes
    namespace: str
    kind: str
    name: str
    pods: tuple[str, ...]  # pod names
    dns: PortSet  # UDP/TCP 53 to the cluster DNS
    external: PortSet  # ports open to an address outside the cluster that no policy names
    ip_blocks: tuple[tuple[str, PortSet], ...] = ()  # (ipBlock, ports) its egress rules open


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadView:
    """Who may reach whom, per workload: the answer to `netprobe expect`."""

    ports: PortSet  # the ports evaluated (every port, or those asked with --port)
    workloads: tuple[Workload, ...]  # sorted by id
    connections: tuple[tuple[int, int, PortSet], ...]  # (source, destination) workload indices, allowed ports
    classes: int
    warnings: tuple[str, ...] = ()

    @property
    def pod_count(self) -> int:
        """How many pods the workloads hold."""
        return sum(len(w.pods) for w in self.workloads)

    def connlist(self) -> Iterator[tuple[str, str, PortSet]]:
        """(source id, destination id | DNS | external | an ipBlock, ports): every allowed connection, by source."""
        conns = self.connections
        k = 0
        for i, w in enumerate(self.workloads):
            while k < len(conns) and conns[k][0] == i:
                yield w.id, self.workloads[conns[k][1]].id, conns[k][2]
                k += 1
            if w.dns:
                yield w.id, DNS_DESTINATION, w.dns
            if w.external:
                yield w.id, EXTERNAL_DESTINATION, w.external
            for block, ports in w.ip_blocks:
                yield w.id, block, ports


def workload_of(pod: PodInfo) -> tuple[str, str]:
    """(kind, name) of the workload owning a pod; ReplicaSets of a Deployment name the Deployment."""
    if pod.owner_kind == "ReplicaSet":
        stamp = pod.labels.get("pod-template-hash", "")
        if stamp and pod.owner_name.endswith(f"-{stamp}"):
            return "Deployment", pod.owner_name[:-len(stamp) - 1]
    if pod.owner_kind and pod.owner_name:
        return pod.owner_kind, pod.owner_name
    return "Pod", pod.name


def _with_network(pods: Sequence[PodInfo]) -> list[PodInfo]:
    # Finished pods (a Job's Succeeded pods) have no network left: they are no one's peer.
    return [p for p in pods if not p.is_probe and p.phase not in ("Succeeded", "Failed")]


def workload_view(world: World, ports: PortSet | None = None) -> WorkloadView:
    """Connectivity per workload on `ports` (single ports), or on every port when None."""
    pods = _with_network(world.pods)
    engine = replace(world, pods=tuple(pods)).engine()
    dns_pods = [p for p in pods if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
    conn = class_connectivity(engine, ports, dns_pods)
    owners: dict[tuple[str, str, str], dict[int, list[str]]] = {}
    for pod, c in zip(pods, conn.classes.class_of, strict=True):
        kind, name = workload_of(pod)
        owners.setdefault((pod.namespace, kind, name), {}).setdefault(c, []).append(pod.name)
    rows: list[tuple[str, int, Workload]] = []
    warnings = []
    for (ns, kind, name), by_class in owners.items():
        base = f"{ns}/{name}[{kind}]"
        split = len(by_class) > 1
        if split:
            warnings.append(f"{base}: its pods differ as policies see them (labels, named ports or IPs "
                            f"inside an ipBlock), so it is shown as {len(by_class)} rows {base}#1..#{len(by_class)}")
        for n, (c, names) in enumerate(by_class.items(), start=1):
            wid = f"{base}#{n}" if split else base
            rows.append((wid, c, Workload(id=wid, namespace=ns, kind=kind, name=name, pods=tuple(sorted(names)),
                                          dns=conn.dns[c], external=conn.external[c],
                                          ip_blocks=conn.ip_blocks[c])))
    rows.sort(key=lambda r: r[0])
    by_class_rows: dict[int, list[int]] = {}
    for idx, (_, c, _) in enumerate(rows):
        by_class_rows.setdefault(c, []).append(idx)
    connections = [(wi, wj, ports_) for (ci, cj), ports_ in conn.pairs.items()
                   for wi in by_class_rows.get(ci, ()) for wj in by_class_rows.get(cj, ())]
    connections.sort(key=lambda t: (t[0], t[1]))
    return WorkloadView(ports=conn.space, workloads=tuple(w for _, _, w in rows), connections=tuple(connections),
                        classes=len(conn.classes.representatives), warnings=tuple(warnings))


# How many allowed port ranges of one cell get their rule named (the rest: `netprobe explain`).
EXPLAINED_RANGES = 4
# Ports a denial is explained on when the target declares none that is denied: what readers try first.
_COMMON_PORTS = (("TCP", 443), ("TCP", 80))


class WorkloadExplainer:
    """Why a cell of a WorkloadView is what it is, in (term, words) pairs: the rule that allows each
    allowed port range (decided at its first port: `why TCP 5432`) and, for the ports it denies, the
    policy that isolates them (decided at one of them: `why not TCP 80` — a port the target declares
    when there is one, else 443 or 80, else the first).

    Every pod of a workload is alike to every policy (one equivalence class), so one pod of each
    stands for all of them; the words are the engine's decisions, as `netprobe explain` prints them,
    and each term says what that decision was (a `why not` inside the allowed ports would be a bug).
    """

    def __init__(self, world: World, view: WorkloadView) -> None:
        pods = _with_network(world.pods)
        self._engine = replace(world, pods=tuple(pods)).engine()
        by_key = {p.key: p for p in pods}
        self._pods = [by_key[f"{w.namespace}/{w.pods[0]}"] for w in view.workloads]
        self._dns_pods = [p for p in pods if p.namespace == "kube-system" and p.labels.get("k8s-app") == "kube-dns"]
        self._view = view
        self._pairs = {(i, j): ports for i, j, ports in view.connections}

    def pod_of(self, i: int) -> str:
        """`namespace/name` of the pod that stands for workload i in the decisions (they name it)."""
        return self._pods[i].key

    def pair(self, i: int, j: int) -> list[tuple[str, str]]:
        """Workload i → workload j: each allowed range's rules, the denied rest's isolation, the command."""
        src, dst = self._pods[i], self._pods[j]
        preferred = (*((p.protocol, p.port) for p in dst.ports), *_COMMON_PORTS)

        def decide(port: int, proto: str) -> tuple[bool, str]:
            d = self._engine.decide(Endpoint(pod=src), Endpoint(pod=dst), port, proto)
            return d.allowed, d.reason

        out, (proto, port) = self._why(self._pairs.get((i, j), ()), preferred, decide)
        return [*out, ("explain", f"netprobe explain {src.key} {dst.key} --port {port} --protocol {proto}")]

    def external(self, i: int) -> list[tuple[str, str]]:
        """Workload i → an address outside the cluster that no policy names: only egress decides."""
        src = self._pods[i]

        def decide(port: int, proto: str) -> tuple[bool, str]:
            d = self._engine.decide(Endpoint(pod=src), Endpoint(ip=""), port, proto)
            return d.allowed, d.egress.reason

        return self._why(self._view.workloads[i].external, _COMMON_PORTS, decide)[0]

    def dns(self, i: int) -> list[tuple[str, str]]:
        """Workload i → the cluster DNS, on UDP and on TCP 53."""
        found = []
        for proto in ("UDP", "TCP"):
            d = self._engine.dns_allowed(self._pods[i], self._dns_pods, proto)
            found.append((d.allowed, d.reason, (proto, 53, 53)))
        return _terms(found)

    def _why(self, allowed: PortSet, preferred: Sequence[tuple[str, int]],
             decide: Callable[[int, str], tuple[bool, str]]) -> tuple[list[tuple[str, str]], tuple[str, int]]:
        """(term, words) for the allowed ranges and the denied rest, and the port a reader would check
        first (a preferred one where it can, among the allowed ports when there are any)."""

        def example(ports: PortSet) -> tuple[str, int]:
            return next(((proto, port) for proto, port in preferred if _holds(ports, proto, port)),
                        (ports[0][0], ports[0][1]))

        out = _terms([(*decide(lo, proto), (proto, lo, hi)) for proto, lo, hi in allowed[:EXPLAINED_RANGES]])
        if len(allowed) > EXPLAINED_RANGES:
            out.append(("why the others", f"{len(allowed) - EXPLAINED_RANGES} more allowed port ranges: netprobe "
                                           "explain names the rule of each port"))
        denied = subtract(self._view.ports, allowed)
        if denied:
            proto, port = example(denied)
            out += _terms([(*decide(port, proto), (proto, port, port))])
        return out, example(allowed or denied)


def _terms(decisions: Sequence[tuple[bool, str, tuple[str, int, int]]]) -> list[tuple[str, str]]:
    """`why PORTS` / `why not PORTS` and the words; ranges decided alike in the same words are one term."""
    merged: list[tuple[bool, list[tuple[str, int, int]], str]] = []
    for ok, words, ports in decisions:
        if merged and merged[-1][0] == ok and merged[-1][2] == words:
            merged[-1][1].append(ports)
        else:
            merged.append((ok, [ports], words))
    return [(f"why {'' if ok else 'not '}{'every port' if (m := merge(r)) == ALL_PORTS else describe(m)}", words)
            for ok, r, words in merged]


def _holds(ports: PortSet, proto: str, port: int) -> bool:
    return any(p == proto and lo <= port <= hi for p, lo, hi in ports)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One line of `expect --diff`: a connection the change adds (+) or removes (-), on these ports."""

    sign: str  # "+" or "-"
    source: str
    destination: str
    ports: PortSet


def _intervals(block: str) -> list[tuple[int, int, int]]:
    """An ipBlock as written (`cidr[ except a,b]`), or a range the tier model found (`cidr, cidr, ...`)
    → merged (version, first, last) address intervals."""
    cidrs, _, excepts = block.partition(" except ")
    nets: list[IPNet] = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(",") if c.strip()]
    for text in filter(None, excepts.split(",")):
        cut = ipaddress.ip_network(text, strict=False)
        kept: list[IPNet] = []
        for net in nets:
            if net.version != cut.version or not net.overlaps(cut):
                kept.append(net)
            elif cut.supernet_of(net):  # type: ignore[arg-type]
                continue
            else:
                kept += list(net.address_exclude(cut))  # type: ignore[arg-type]
        nets = kept
    spans = sorted((n.version, int(n.network_address), int(n.broadcast_address)) for n in nets)
    merged: list[tuple[int, int, int]] = []
    for v, lo, hi in spans:
        if merged and merged[-1][0] == v and lo <= merged[-1][2] + 1:
            merged[-1] = (v, merged[-1][1], max(merged[-1][2], hi))
        else:
            merged.append((v, lo, hi))
    return merged


def _covered(block: str, ports: PortSet, others: Mapping[str, PortSet]) -> bool:
    """Whether the other ipBlocks, each on at least these ports, hold every address of `block`."""
    union = [span for other, p in others.items() if not subtract(ports, p) for span in _intervals(other)]
    union.sort()
    for v, lo, hi in _intervals(block):
        at = lo
        for uv, ulo, uhi in union:
            if uv == v and ulo <= at <= uhi:
                at = uhi + 1
            if at > hi:
                break
        if at <= hi:
            return False
    return True


def diff_views(before: WorkloadView, after: WorkloadView) -> list[Change]:
    """What `after` allows that `before` did not (+), and the reverse (-), per connection and port.

    An ipBlock line that only changed its wording (its addresses are inside the other side's
    ipBlocks, on the same ports) is no change; workloads, DNS and external compare port by port.
    """
    old: Mapping[tuple[str, str], PortSet] = {(s, d): p for s, d, p in before.connlist()}
    new: Mapping[tuple[str, str], PortSet] = {(s, d): p for s, d, p in after.connlist()}
    blocks: dict[str, dict[str, dict[str, PortSet]]] = {"old": {}, "new": {}}  # side → source → block → ports
    for side, conns in (("old", old), ("new", new)):
        for (src, dst), ports in conns.items():
            if _is_block(dst):
                blocks[side].setdefault(src, {})[dst] = ports
    changes = []
    for key in sorted(old.keys() | new.keys()):
        removed = subtract(old.get(key, ()), new.get(key, ()))
        added = subtract(new.get(key, ()), old.get(key, ()))
        if _is_block(key[1]):
            if removed and _covered(key[1], removed, blocks["new"].get(key[0], {})):
                removed = ()
            if added and _covered(key[1], added, blocks["old"].get(key[0], {})):
                added = ()
        if removed:
            changes.append(Change(sign="-", source=key[0], destination=key[1], ports=removed))
        if added:
            changes.append(Change(sign="+", source=key[0], destination=key[1], ports=added))
    return changes


def _is_block(destination: str) -> bool:
    return destination not in (DNS_DESTINATION, EXTERNAL_DESTINATION) and "[" not in destination

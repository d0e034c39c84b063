"""Equivalence classes of pods, and connectivity computed once per class.

Two pods are in one class when no policy can tell them apart: same namespace, same values (or
absence) of every label key some selector reads, same container ports of every name some rule
names, and — when ipBlock applies to pod IPs — the same membership in every ipBlock. Every
decision of the evaluator then treats them alike (as source and as destination), so a matrix
over one representative per class, expanded, is the pod matrix (a property test holds that).
The service account is in the key too, though NetworkPolicy cannot see it: policy kinds that can
(Calico) then need no change here, and replicas share theirs anyway. A policy kind that looks at
anything else of a pod must add it to the key (the property test in tests/test_classes.py is the
check: give its strategies the new kind).
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from ..pods import PodInfo
from .evaluate import PolicyEngine
from .matrix import BulkMatrix
from .portset import PortSet, intersect, merge, segments
from .rules import EGRESS, INGRESS, Endpoint, IPBlock, IPNet, PolicyRules, Rule

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True, kw_only=True)
class Classes:
    """Pods partitioned into equivalence classes (indices into the engine's pods)."""

    representatives: tuple[PodInfo, ...]  # one pod per class
    class_of: tuple[int, ...]  # the class of each pod
    members: tuple[tuple[int, ...], ...]  # the pods of each class


def _what_policies_read(policies: Sequence[PolicyRules]) -> tuple[list[str], set[tuple[str, str]], list[IPBlock]]:
    keys: set[str] = set()
    named: set[tuple[str, str]] = set()
    blocks: dict[IPBlock, None] = {}
    for pol in policies:
        selectors = [pol.pod_selector]
        for direction in (INGRESS, EGRESS):
            for rule in pol.rules(direction):
                for peer in rule.peers or ():
                    if peer.pod_selector is not None:
                        selectors.append(peer.pod_selector)
                    if peer.ip_block is not None:
                        blocks[peer.ip_block] = None
                named |= {(rp.port, rp.protocol) for rp in rule.ports if isinstance(rp.port, str)}
        for sel in selectors:
            keys |= {k for k, _ in sel.match_labels} | {r.key for r in sel.match_expressions}
    return sorted(keys), named, list(blocks)


def equivalence_classes(engine: PolicyEngine) -> Classes:
    """Partition engine.pods into classes no policy of the engine can tell apart."""
    keys, named, blocks = _what_policies_read(engine.policies)
    if not engine.ipblock_matches_pods:
        blocks = []
    index: dict[tuple[object, ...], int] = {}
    class_of: list[int] = []
    members: list[list[int]] = []
    reps: list[PodInfo] = []
    for i, pod in enumerate(engine.pods):
        ip_facts: tuple[bool, ...] = ()
        if blocks:
            try:
                addr = ipaddress.ip_address(pod.ip) if pod.ip else None
            except ValueError:
                addr = None
            if addr is None:  # as matching.block_matches: an unknown address is only in "everything"
                ip_facts = tuple(b.cidr.prefixlen == 0 and not b.excepts for b in blocks)
            else:
                ip_facts = tuple(addr in b.cidr and not any(addr in e for e in b.excepts) for b in blocks)
        # Calico / admin policies read more than label values (has(), selectors over service
        # accounts, nets): until the key models them, every pod is its own class.
        own = (pod.key, pod.ip) if engine.tiered else ()
        key = (*own, pod.namespace, pod.service_account, tuple(pod.labels.get(k) for k in keys),
               tuple(sorted((cp.name, cp.protocol, cp.port) for cp in pod.ports
                            if (cp.name, cp.protocol) in named)), ip_facts)
        c = index.get(key)
        if c is None:
            c = index[key] = len(reps)
            reps.append(pod)
            members.append([])
        class_of.append(c)
        members[c].append(i)
    return Classes(representatives=tuple(reps), class_of=tuple(class_of), members=tuple(map(tuple, members)))


def _bits(x: int) -> list[int]:
    return [k for k, c in enumerate(reversed(bin(x)[2:])) if c == "1"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassConnectivity:
    """What each class may reach, on which ports: allowed pairs, external, cluster DNS."""

    classes: Classes
    space: PortSet  # the ports that were evaluated
    pairs: dict[tuple[int, int], PortSet]  # (source class, destination class) → allowed ports
    external: tuple[PortSet, ...]  # per class: ports open to an address outside the cluster
    dns: tuple[PortSet, ...]  # per class: UDP/TCP 53 to the cluster DNS
    # per class: (ipBlock as written, ports) that egress rules open to address ranges (the
    # ranges may hold pod IPs too: those pod connections are in `pairs`, both ends checked)
    ip_blocks: tuple[tuple[tuple[str, PortSet], ...], ...] = ()


def block_text(block: IPBlock) -> str:
    """`203.0.113.0/24`, `0.0.0.0/0 except 10.0.0.0/8`."""
    return str(block.cidr) + (f" except {','.join(map(str, block.excepts))}" if block.excepts else "")


def _rule_ports_outside(rule: Rule, space: PortSet) -> PortSet:
    """The ports a rule admits to an address outside the cluster (a named port never matches one)."""
    if not rule.ports:
        return space
    ranges = [(rp.protocol, rp.port, rp.end_port or rp.port) for rp in rule.ports if isinstance(rp.port, int)]
    return intersect(merge(ranges), space)


def egress_ip_blocks(engine: PolicyEngine, pod: PodInfo, space: PortSet) -> tuple[tuple[str, PortSet], ...]:
    """The ipBlocks the egress rules isolating `pod` open, with their ports; () when not egress-isolated."""
    found: dict[str, PortSet] = {}
    for pol in engine.selecting(pod, EGRESS):
        for rule in pol.rules(EGRESS):
            for peer in rule.peers or ():
                if peer.ip_block is not None:
                    ports = _rule_ports_outside(rule, space)
                    if ports:
                        text = block_text(peer.ip_block)
                        found[text] = merge((*found.get(text, ()), *ports))
    return tuple(sorted(found.items()))


def _egress_nets(engine: PolicyEngine) -> list[IPNet]:
    """Every address range an egress rule of the tier model names (nets, notNets, ipBlock excepts)."""
    nets: dict[IPNet, None] = {}
    for _tier, pols in engine.ordered:
        for pol in pols:
            for rule in pol.egress:
                for side in rule.dst:
                    nets.update(dict.fromkeys((*side.nets, *side.not_nets)))
    return list(nets)


def _atoms(nets: Sequence[IPNet]) -> list[tuple[IPAddr, IPAddr]]:
    """The address intervals no rule tells apart: each IP version's whole space, cut at every range's
    first and past-last address. The intervals outside every range are kept too: a `notNets` rule
    opens exactly those (and no address there is the "external" column's unknown address)."""
    atoms: list[tuple[IPAddr, IPAddr]] = []
    for version in (4, 6):
        mine = [n for n in nets if n.version == version]
        top = (1 << (32 if version == 4 else 128)) - 1
        cuts = sorted({0} | {int(n.network_address) for n in mine}
                      | {int(n.broadcast_address) + 1 for n in mine if int(n.broadcast_address) < top})
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        atoms += [(make(lo), make(hi - 1)) for lo, hi in itertools.pairwise([*cuts, top + 1])]
    return atoms


def tiered_ip_ranges(engine: PolicyEngine, reps: Sequence[PodInfo],
                     space: PortSet) -> tuple[tuple[tuple[str, PortSet], ...], ...]:
    """Per representative, the address ranges its egress reaches on which ports, by the tier model
    (`space`: port segments, each decided at its first port).

    With Calico or admin policies a range one rule opens may be cut by another's Deny, Pass or
    notNets, so the ranges as written would not be the answer. Every rule's range boundary cuts the
    address space into intervals no rule tells apart; each interval is decided once at its first
    address (an address outside the pod network), adjacent intervals with the same ports are
    merged and shown as CIDRs. Pods whose egress the same policies decide share the work."""
    nets = _egress_nets(engine)
    if not nets:  # no rule tells addresses apart: the "external" column is the whole answer
        return tuple(() for _ in reps)
    atoms = _atoms(nets)
    done: dict[tuple[object, ...], tuple[tuple[str, PortSet], ...]] = {}
    out = []
    for rep in reps:
        applying = engine.applying_policies(rep, EGRESS)
        # The destination is an address, so only the applying policies' rules decide; unless a rule's
        # own source side tests the pod (labels, namespace and its labels, service account, IP):
        # then this pod's answer is its own.
        reads_source = any(rule.src for pol in applying for rule in pol.egress)
        key = (tuple(p.key for p in applying), rep.key if reads_source else "")
        if not applying:
            done[key] = ()  # not egress-isolated: every address is reachable, shown as "external"
        if key not in done:
            decided = [(lo, hi, merge(seg for seg in space if engine.decide(
                Endpoint(pod=rep), Endpoint(ip=str(lo)), seg[1], seg[0]).allowed)) for lo, hi in atoms]
            ranges: list[tuple[IPAddr, IPAddr, PortSet]] = []
            for lo, hi, ports in decided:
                if ranges and ranges[-1][2] == ports and int(ranges[-1][1]) + 1 == int(lo) \
                        and ranges[-1][0].version == lo.version:
                    ranges[-1] = (ranges[-1][0], hi, ports)
                else:
                    ranges.append((lo, hi, ports))
            done[key] = tuple((", ".join(str(n) for n in ipaddress.summarize_address_range(lo, hi)), ports)
                              for lo, hi, ports in ranges if ports)
        out.append(done[key])
    return tuple(out)


def class_connectivity(engine: PolicyEngine, ports: PortSet | None = None,
                       dns_pods: Sequence[PodInfo] = ()) -> ClassConnectivity:
    """Allowed connectivity between classes on `ports` (points), or on every port when None."""
    classes = equivalence_classes(engine)
    reps = classes.representatives
    space = ports if ports is not None else segments(engine.policies, engine.pods, engine.tiered)
    by_class = PolicyEngine(reps, engine.ns_labels, [*engine.policies, *engine.tiered],
                            tiers=list(engine.tiers.values()), ipblock_matches_pods=engine.ipblock_matches_pods)
    # one port per segment is exact: no rule tells two ports of a segment apart
    if by_class.tiered:
        rows = [by_class.matrix(lo, proto) for proto, lo, _ in space]
    else:
        bulk = BulkMatrix(by_class)
        rows = [bulk.rows(lo, proto) for proto, lo, _ in space]
    seg_sets = [((proto, lo, hi),) for proto, lo, hi in space]
    union = merge(space)
    pairs: dict[tuple[int, int], PortSet] = {}
    combos: dict[tuple[int, ...], PortSet] = {}
    for i in range(len(reps)):
        mine = [r[i] for r in rows]
        every, some = -1, 0
        for r in mine:
            every &= r
            some |= r
        every &= some
        for j in _bits(every):
            pairs[(i, j)] = union
        for j in _bits(some & ~every):
            which = tuple(s for s, r in enumerate(mine) if r >> j & 1)
            if which not in combos:
                combos[which] = merge(r for s in which for r in seg_sets[s])
            pairs[(i, j)] = combos[which]
    external = tuple(merge(seg for seg in space
                           if engine.decide(Endpoint(pod=rep), Endpoint(ip=""), seg[1], seg[0]).allowed)
                     for rep in reps)
    dns = tuple(merge((proto, 53, 53) for proto in ("UDP", "TCP")
                      if engine.dns_allowed(rep, dns_pods, proto).allowed) for rep in reps)
    if engine.tiered:
        blocks = tiered_ip_ranges(engine, reps, space)  # per segment: a range may be open on some ports only
    else:
        blocks = tuple(egress_ip_blocks(engine, rep, union) for rep in reps)
    return ClassConnectivity(classes=classes, space=union, pairs=pairs, external=external, dns=dns,
                             ip_blocks=blocks)

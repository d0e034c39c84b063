"""Sets of ports per protocol, and the port segments a set of policies can tell apart.

Two ports in the same segment are treated alike by every rule (no numeric port, endPort or
named port of any policy splits them), so evaluating one port per segment is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

from ..pods import PodInfo
from .rules import EGRESS, INGRESS, PolicyRules, TieredPolicy

PROTOCOLS = ("TCP", "UDP", "SCTP")
MAX_PORT = 65535

# (protocol, first port, last port), sorted and merged: an immutable, hashable port set
PortSet = tuple[tuple[str, int, int], ...]
ALL_PORTS: PortSet = tuple((p, 1, MAX_PORT) for p in PROTOCOLS)


def merge(ranges: Iterable[tuple[str, int, int]]) -> PortSet:
    """Sort and merge overlapping or adjacent ranges, per protocol."""
    out: list[tuple[str, int, int]] = []
    for proto, lo, hi in sorted(ranges, key=lambda r: (PROTOCOLS.index(r[0]), r[1], r[2])):
        if out and out[-1][0] == proto and lo <= out[-1][2] + 1:
            out[-1] = (proto, out[-1][1], max(out[-1][2], hi))
        else:
            out.append((proto, lo, hi))
    return tuple(out)


def subtract(a: PortSet, b: PortSet) -> PortSet:
    """The ports of `a` that are not in `b`."""
    out = []
    for proto, lo, hi in a:
        pieces = [(lo, hi)]
        for bproto, blo, bhi in b:
            if bproto != proto:
                continue
            nxt = []
            for plo, phi in pieces:
                if bhi < plo or blo > phi:
                    nxt.append((plo, phi))
                    continue
                if plo < blo:
                    nxt.append((plo, blo - 1))
                if bhi < phi:
                    nxt.append((bhi + 1, phi))
            pieces = nxt
        out += [(proto, plo, phi) for plo, phi in pieces]
    return merge(out)


def intersect(a: PortSet, b: PortSet) -> PortSet:
    """The ports in both."""
    return subtract(a, subtract(a, b))


def describe(ports: PortSet) -> str:
    """`All Connections`, or e.g. `TCP 5432,8000-8100;UDP 53` (netpol-analyzer's wording)."""
    if ports == ALL_PORTS:
        return "All Connections"
    parts = []
    for proto in PROTOCOLS:
        ranges = [(lo, hi) for p, lo, hi in ports if p == proto]
        if not ranges:
            continue
        if ranges == [(1, MAX_PORT)]:
            parts.append(f"{proto} all ports")
        else:
            parts.append(f"{proto} " + ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges))
    return ";".join(parts) or "none"


def segments(policies: Sequence[PolicyRules], pods: Sequence[PodInfo],
             tiered: Sequence[TieredPolicy] = ()) -> PortSet:
    """Every protocol's 1-65535 cut where some rule's port, range or resolved named port starts or ends."""
    cuts: dict[str, set[int]] = {p: {1, MAX_PORT + 1} for p in PROTOCOLS}
    named: set[tuple[str, str]] = set()
    port_rules = [rp for pol in policies for direction in (INGRESS, EGRESS)
                  for rule in pol.rules(direction) for rp in rule.ports]
    # a tiered rule's ports and notPorts both cut, for every protocol (its protocol may be "any")
    tiered_rules = [rp for pol in tiered for rule in (*pol.ingress, *pol.egress)
                    for rp in (*rule.ports, *rule.not_ports)]
    for rp in tiered_rules:
        if isinstance(rp.port, int):
            for proto in PROTOCOLS:
                cuts[proto] |= {rp.port, (rp.end_port or rp.port) + 1}
        elif isinstance(rp.port, str):
            named |= {(rp.port, proto) for proto in PROTOCOLS}
    for rp in port_rules:
        if rp.port is None:
            continue
        if isinstance(rp.port, str):
            named.add((rp.port, rp.protocol))
            continue
        cuts[rp.protocol] |= {rp.port, (rp.end_port or rp.port) + 1}
    if named:
        for pod in pods:
            for cp in pod.ports:
                if (cp.name, cp.protocol) in named and cp.protocol in cuts:
                    cuts[cp.protocol] |= {cp.port, cp.port + 1}
    out = []
    for proto in PROTOCOLS:
        edges = sorted(c for c in cuts[proto] if 1 <= c <= MAX_PORT + 1)
        out += [(proto, lo, hi - 1) for lo, hi in pairwise(edges)]
    return tuple(out)

"""The bulk matrix: every pod → every pod on one port, as Python-int bitsets.

Same semantics as PolicyEngine.decide (a property test holds them equal), computed per peer and
per rule instead of per cell: each distinct peer's set of pods is built once, as a bitset.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..model import Selector
from ..pods import PodInfo
from .matching import port_matches
from .rules import EGRESS, INGRESS, IPBlock, Peer, PortRule, Rule

if TYPE_CHECKING:
    from .evaluate import PolicyEngine


def allowed_rows(engine: PolicyEngine, port: int, protocol: str = "TCP") -> list[int]:
    """Row bitsets over engine.pods: bit j of row i is set iff pods[i] → pods[j]:port/protocol is allowed."""
    pods = engine.pods
    n = len(pods)
    everyone = (1 << n) - 1
    pod_bits: dict[tuple[str, Selector | None, Selector | None, IPBlock | None], int] = {}
    by_ns: dict[str, list[int]] = {}
    for i, p in enumerate(pods):
        by_ns.setdefault(p.namespace, []).append(i)
    addrs: list[ipaddress.IPv4Address | ipaddress.IPv6Address | None] = []
    for p in pods:
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
            if engine.ipblock_matches_pods:
                for i, addr in enumerate(addrs):
                    if addr is not None and addr in block.cidr and not any(addr in e for e in block.excepts):
                        bits |= 1 << i
        else:
            if peer.namespace_selector is None:
                namespaces = [ns]
            else:
                namespaces = [n for n in by_ns if peer.namespace_selector.matches(engine.namespace_labels(n))]
            sel = peer.pod_selector
            for n in namespaces:
                for i in by_ns.get(n, ()):
                    if sel is None or sel.matches(pods[i].labels):
                        bits |= 1 << i
        pod_bits[key] = bits
        return bits

    named: dict[tuple[str, str], int] = {}

    def named_port_bits(rp: PortRule) -> int:
        key = (str(rp.port), rp.protocol)
        if key not in named:
            bits = 0
            for i, p in enumerate(pods):
                if port_matches(rp, port, protocol, p):
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
            elif port_matches(rp, port, protocol, None):
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
        isolating = engine.selecting(pod, direction)
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

    egress = [allowed_peers(EGRESS, i, p) for i, p in enumerate(pods)]
    ingress_from = [allowed_peers(INGRESS, j, p) for j, p in enumerate(pods)]
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

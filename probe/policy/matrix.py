"""The bulk matrix: every pod → every pod on one port, as Python-int bitsets.

Same semantics as PolicyEngine.decide (a property test holds them equal), computed per peer and
per rule instead of per cell: each distinct peer's set of pods is built once, as a bitset, and
reused for every port asked of the same BulkMatrix.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..model import Selector
from .matching import port_matches
from .rules import EGRESS, INGRESS, IPBlock, Peer, PolicyRules, PortRule, Rule

if TYPE_CHECKING:
    from .evaluate import PolicyEngine


class BulkMatrix:
    """The allowed matrix over engine.pods, one port at a time; port-independent work is cached."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self.pods = engine.pods
        self.everyone = (1 << len(self.pods)) - 1
        self._by_ns: dict[str, list[int]] = {}
        for i, p in enumerate(self.pods):
            self._by_ns.setdefault(p.namespace, []).append(i)
        self._peer_bits: dict[tuple[str, Selector | None, Selector | None, IPBlock | None], int] = {}
        self._namespaces: dict[Selector, list[str]] = {}
        self._addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address | None] = []
        for p in self.pods:
            try:
                self._addresses.append(ipaddress.ip_address(p.ip) if p.ip else None)
            except ValueError:
                self._addresses.append(None)
        self._selecting = {d: [engine.selecting(p, d) for p in self.pods] for d in (INGRESS, EGRESS)}

    def peer_bits(self, peer: Peer, ns: str) -> int:
        """The pods a rule's peer selects (for a policy of namespace `ns`)."""
        # only a bare podSelector depends on the policy's namespace: share the rest across namespaces
        scope = ns if peer.ip_block is None and peer.namespace_selector is None else ""
        key = (scope, peer.pod_selector, peer.namespace_selector, peer.ip_block)
        cached = self._peer_bits.get(key)
        if cached is not None:
            return cached
        bits = 0
        block = peer.ip_block
        if block is not None:
            if self.engine.ipblock_matches_pods:
                everything = block.cidr.prefixlen == 0 and not block.excepts  # as matching.block_matches
                for i, addr in enumerate(self._addresses):
                    if everything if addr is None else (addr in block.cidr
                                                         and not any(addr in e for e in block.excepts)):
                        bits |= 1 << i
        else:
            ns_sel = peer.namespace_selector
            if ns_sel is None:
                namespaces = [ns]
            else:
                if ns_sel not in self._namespaces:
                    self._namespaces[ns_sel] = [n for n in self._by_ns
                                                if ns_sel.matches(self.engine.namespace_labels(n))]
                namespaces = self._namespaces[ns_sel]
            sel = peer.pod_selector
            for n in namespaces:
                for i in self._by_ns.get(n, ()):
                    if sel is None or sel.matches(self.pods[i].labels):
                        bits |= 1 << i
        self._peer_bits[key] = bits
        return bits

    def rows(self, port: int, protocol: str = "TCP") -> list[int]:
        """Row bitsets: bit j of row i is set iff pods[i] → pods[j]:port/protocol is allowed."""
        pods, everyone = self.pods, self.everyone
        named: dict[tuple[str, str], int] = {}

        def named_port_bits(rp: PortRule) -> int:
            key = (str(rp.port), rp.protocol)
            if key not in named:
                named[key] = sum(1 << i for i, p in enumerate(pods) if port_matches(rp, port, protocol, p))
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
                bits |= self.peer_bits(peer, ns)
            return bits

        def allowed_peers(direction: str, k: int, isolating: list[PolicyRules]) -> int:
            """Egress: the destinations pod k may reach. Ingress: the sources pod k accepts."""
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

        egress = [allowed_peers(EGRESS, i, iso) for i, iso in enumerate(self._selecting[EGRESS])]
        # Transpose the ingress side: rejects[i] has bit j iff pod j's ingress does not accept pod i.
        # Destinations accepting the same sources are handled together (most share a few sets).
        accepting: dict[int, int] = {}
        for j, iso in enumerate(self._selecting[INGRESS]):
            srcs = allowed_peers(INGRESS, j, iso)
            if srcs != everyone:
                accepting[srcs] = accepting.get(srcs, 0) | 1 << j
        rejects = [0] * len(pods)
        for srcs, dsts in accepting.items():
            rest = everyone & ~srcs
            while rest:
                low = rest & -rest
                rejects[low.bit_length() - 1] |= dsts
                rest ^= low
        return [egress[i] & ~rejects[i] for i in range(len(pods))]


def allowed_rows(engine: PolicyEngine, port: int, protocol: str = "TCP") -> list[int]:
    """Row bitsets over engine.pods: bit j of row i is set iff pods[i] → pods[j]:port/protocol is allowed."""
    return BulkMatrix(engine).rows(port, protocol)

"""The bulk matrix under the tier model: every pod → every pod on one port, as Python-int bitsets.

Same semantics as PolicyEngine.decide with tiered policies (a property test holds them equal).
Per local pod and direction, the remote pods still undecided walk the tiers as one bitset: each
rule takes its matching share (Allow adds it to the allowed set, Deny drops it, Pass keeps it for
the next tier), the tier's defaultAction takes the rest, and what every tier passed is allowed by
the profile. Each distinct rule side's set of pods is built once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .matching import port_matches
from .rules import ALLOW, EGRESS, INGRESS, LOG, PASS, Endpoint, EndpointMatch, PortRule, Tier, TieredPolicy, TierRule

if TYPE_CHECKING:
    from .evaluate import PolicyEngine


def tiered_rows(engine: PolicyEngine, port: int, protocol: str = "TCP") -> list[int]:
    """Row bitsets over engine.pods: bit j of row i is set iff pods[i] → pods[j]:port/protocol is allowed."""
    pods = engine.pods
    n = len(pods)
    everyone = (1 << n) - 1
    endpoints = [Endpoint(pod=p) for p in pods]
    by_ns: dict[str, list[int]] = {}
    for i, p in enumerate(pods):
        by_ns.setdefault(p.namespace, []).append(i)
    side_cache: dict[EndpointMatch, int] = {}  # by value: equal peers of different policies share a set
    port_cache: dict[tuple[tuple[PortRule, ...], tuple[PortRule, ...]], int] = {}

    def side_bits(m: EndpointMatch) -> int:
        bits = side_cache.get(m)
        if bits is None:
            # narrow by namespace first (a namespace selector is evaluated once per namespace)
            if m.namespace is not None:
                candidates: list[int] | range = by_ns.get(m.namespace, [])
            elif m.namespace_selector is not None:
                sel = m.namespace_selector
                candidates = [i for ns, idx in by_ns.items() if sel.matches(engine.calico_namespace_labels(ns))
                              for i in idx]
            else:
                candidates = range(n)
            bits = 0
            for i in candidates:
                if engine.side_matches(m, endpoints[i]):
                    bits |= 1 << i
            side_cache[m] = bits
        return bits

    def any_side(sides: tuple[EndpointMatch, ...]) -> int:
        if not sides:
            return everyone
        bits = 0
        for m in sides:
            bits |= side_bits(m)
        return bits

    def dst_port_bits(rule: TierRule) -> int:
        """Pods (as destinations) for which the rule's ports and notPorts admit port/protocol."""
        key = (rule.ports, rule.not_ports)
        bits = port_cache.get(key)
        if bits is None:
            if not rule.ports and not rule.not_ports:
                bits = everyone
            elif not any(isinstance(rp.port, str) for rp in (*rule.ports, *rule.not_ports)):
                ok = (not rule.ports or any(port_matches(rp, port, protocol, None) for rp in rule.ports)) \
                    and not any(port_matches(rp, port, protocol, None) for rp in rule.not_ports)
                bits = everyone if ok else 0
            else:
                bits = 0
                for i, p in enumerate(pods):
                    if (not rule.ports or any(port_matches(rp, port, protocol, p) for rp in rule.ports)) \
                            and not any(port_matches(rp, port, protocol, p) for rp in rule.not_ports):
                        bits |= 1 << i
            port_cache[key] = bits
        return bits

    def remote_bits(rule: TierRule, direction: str, k: int) -> int:
        """The remote pods for which the rule matches, with pod k on the local side."""
        if rule.match_none or (rule.protocol is not None and rule.protocol != protocol) \
                or rule.not_protocol == protocol:
            return 0
        if direction == EGRESS:
            if not any_side(rule.src) >> k & 1:
                return 0
            return any_side(rule.dst) & dst_port_bits(rule)
        if not any_side(rule.dst) >> k & 1 or not dst_port_bits(rule) >> k & 1:
            return 0
        return any_side(rule.src)

    # which pods each policy applies to, as a bitset (the same criteria as a rule side's)
    applies: dict[int, int] = {}
    for _, pols in engine.ordered:
        for pol in pols:
            applies[id(pol)] = side_bits(EndpointMatch(
                selector=pol.selector, namespace_selector=pol.namespace_selector, namespace=pol.namespace,
                service_account_selector=pol.service_account_selector))

    def applying_to(k: int, direction: str) -> list[tuple[Tier, list[TieredPolicy]]]:
        out = []
        for tier, pols in engine.ordered:
            mine = [p for p in pols if direction in p.types and applies[id(p)] >> k & 1]
            if mine:
                out.append((tier, mine))
        return out

    def allowed_peers(direction: str, k: int) -> int:
        applying = applying_to(k, direction)
        if not applying:
            return everyone
        undecided, allowed = everyone, 0
        for tier, pols in applying:
            live, passed = undecided, 0
            for pol in pols:
                for rule in pol.rules(direction):
                    if not live:
                        break
                    if rule.action == LOG:
                        continue
                    hit = remote_bits(rule, direction, k) & live
                    if not hit:
                        continue
                    if rule.action == ALLOW:
                        allowed |= hit
                    elif rule.action == PASS:
                        passed |= hit
                    live &= ~hit
            if tier.default_action == PASS:
                passed |= live
            undecided = passed
            if not undecided:
                break
        return allowed | undecided

    egress = [allowed_peers(EGRESS, i) for i in range(n)]
    rejects = [0] * n
    for j in range(n):
        srcs = allowed_peers(INGRESS, j)
        if srcs == everyone:
            continue
        rest = everyone & ~srcs
        while rest:
            low = rest & -rest
            rejects[low.bit_length() - 1] |= 1 << j
            rest ^= low
    return [egress[i] & ~rejects[i] for i in range(n)]


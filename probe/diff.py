"""Compare observed verdicts with expectations, and say in words why a cell mismatched.

One sub-check (one identity of the source probing one destination) maps onto the
expectation by this table (documented in the README, "Verdicts"):

| observed      | expect allow          | expect deny                               |
|---------------|-----------------------|-------------------------------------------|
| allowed       | match                 | MISMATCH: it connected                    |
| blocked       | MISMATCH: timed out   | match, proof `dropped`                    |
| refused       | MISMATCH: RST         | match, proof `rejected`                   |
| unreachable   | MISMATCH: ICMP        | match, proof `rejected`                   |
| dns-timeout   | MISMATCH: DNS cause   | match, proof `not-resolvable` (1)         |
| nxdomain      | MISMATCH: wrong name  | MISMATCH: wrong name, nothing tested      |
| no-endpoints  | not probed            | not probed (kube-proxy's reject: no proof)|
| error         | not probed            | not probed                                |

(1) `dropped` for a DNS target, where the lookup is the check; with --strict, not probed.

A cell is the conjunction of its sub-checks: it matches only when every one of them does.
When some connected and some did not, the cell is `partial` — a mismatch whatever the
expectation, since one replica or identity that connects where it must not is a leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .model import PROOF_STRENGTH, Expectation, Proof, SubResult, Target, TargetKind, Verdict, worst

_DENY_MATCHES = frozenset(
    {Verdict.BLOCKED, Verdict.REFUSED, Verdict.UNREACHABLE, Verdict.DNS_TIMEOUT}
)
_NOT_PROBED = frozenset({Verdict.ERROR, Verdict.NO_ENDPOINTS})


def matches(expected: Expectation, observed: Verdict) -> bool | None:
    """True/False per the table above; None when nothing was proven (not probed)."""
    if observed in _NOT_PROBED:
        return None
    if observed in (Verdict.NXDOMAIN, Verdict.PARTIAL):
        return False
    if expected is Expectation.ALLOW:
        return observed is Verdict.ALLOWED
    return observed in _DENY_MATCHES


def proof_of(target: Target, observed: Verdict) -> Proof | None:
    """How `observed` establishes a deny, or None when it establishes none."""
    if observed is Verdict.BLOCKED:
        return Proof.DROPPED
    if observed in (Verdict.REFUSED, Verdict.UNREACHABLE):
        return Proof.REJECTED
    if observed is Verdict.DNS_TIMEOUT:
        # For a DNS target the lookup *is* the check; for a TCP/HTTP target by name it only
        # says the name could not be resolved, so the port was never tested.
        return Proof.DROPPED if target.kind is TargetKind.DNS else Proof.NOT_RESOLVABLE
    return None


def sub_matches(target: Target, expected: Expectation, sub: SubResult, *, strict: bool = False) -> bool | None:
    """One sub-check against the expectation.

    With `strict` only a drop proves a deny: a DNS failure never tested the port, and an RST
    or ICMP reply means the packet got through the network (on a dropping CNI such as Calico,
    the policy let it pass and nothing listened).
    """
    ok = matches(expected, sub.verdict)
    if ok and expected is Expectation.DENY and strict and proof_of(target, sub.verdict) is not Proof.DROPPED:
        return None
    return ok


def combine(subs: Sequence[SubResult]) -> Verdict:
    """The cell's observed verdict from its sub-checks (no expectation needed)."""
    if not subs:
        return Verdict.ERROR
    connected = any(s.connected for s in subs)
    failed = [s.verdict for s in subs if not s.connected and s.verdict not in _NOT_PROBED]
    if connected and failed:
        return Verdict.PARTIAL
    if connected:
        return Verdict.ALLOWED
    if failed:
        return worst(failed)
    return worst(s.verdict for s in subs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """A cell's verdict, match, proof and words, from its sub-checks."""

    observed: Verdict
    match: bool | None
    proof: Proof | None
    detail: str
    reason: str
    subresults: tuple[SubResult, ...]


def judge(target: Target, expected: Expectation, subs: Sequence[SubResult], *, strict: bool = False) -> Judgement:
    """Decide one cell: every sub-check must match (README "Verdicts", the cell model)."""
    observed = combine(subs)
    name_failed = [s for s in subs if not s.pod and s.verdict in (Verdict.DNS_TIMEOUT, Verdict.NXDOMAIN)]
    if expected is Expectation.ALLOW and name_failed:
        # The workload reaches its target by name: when the name does not resolve, that is the
        # finding, whatever direct probes of the Service's backends saw.
        first = name_failed[0]
        return Judgement(observed=first.verdict, match=False, proof=None, detail=_detail(subs),
                         reason=explain(target, expected, first.verdict, first.detail, strict=strict),
                         subresults=tuple(subs))
    if name_failed and target.kind is not TargetKind.PODS:
        # A deny of a target by name whose name did not resolve rests on DNS (proof
        # not-resolvable; --strict: not probed); that identity's direct backend probes are kept
        # in the JSON but do not decide the cell.
        unresolved = {s.identity for s in name_failed}
        subs = [s for s in subs if not (s.pod and s.identity in unresolved)]
        observed = combine(subs)
    proven = tuple(_with_proof(target, expected, s, strict) for s in subs)
    verdicts = [sub_matches(target, expected, s, strict=strict) for s in proven]
    if observed is Verdict.PARTIAL or False in verdicts:
        match: bool | None = False
    elif None in verdicts or not verdicts:
        match = None
    else:
        match = True
    proof = None
    if match is True and expected is Expectation.DENY:
        proof = min((s.proof for s in proven if s.proof), key=PROOF_STRENGTH.index, default=None)
    detail = _detail(proven)
    return Judgement(observed=observed, match=match, proof=proof, detail=detail,
                     reason=_reason(target, expected, observed, match, proven, detail, strict),
                     subresults=proven)


def _with_proof(target: Target, expected: Expectation, sub: SubResult, strict: bool) -> SubResult:
    if expected is not Expectation.DENY or sub_matches(target, expected, sub, strict=strict) is not True:
        return sub
    return replace(sub, proof=proof_of(target, sub.verdict))


def _varies(subs: Sequence[SubResult]) -> tuple[bool, bool]:
    """(pods vary, identities vary) among a cell's sub-checks: what names one of them."""
    return len({s.pod for s in subs}) > 1, len({s.identity for s in subs}) > 1


def _label(sub: SubResult, subs: Sequence[SubResult]) -> str:
    """How to name one sub-check among its siblings: by what varies."""
    pods, identities = _varies(subs)
    where = _short(sub.pod) if sub.pod else "via the Service"
    if pods and identities:
        return f"{where} from [{sub.identity}]"
    if pods:
        return where
    return sub.identity or _short(sub.pod) or "the probe"


def _short(pod: str) -> str:
    return pod.split("/", 1)[-1]


def _noun(subs: Sequence[SubResult]) -> str:
    pods, identities = _varies(subs)
    if pods and identities:
        return "identity × pod checks"
    return "pods" if pods else "identities"


def _detail(subs: Sequence[SubResult]) -> str:
    if len(subs) == 1:
        return subs[0].detail
    parts = []
    for s in subs:
        text = f"{_label(s, subs)}: {s.verdict}"
        if s.detail and not s.connected:
            text += f" ({s.detail})"
        parts.append(text)
    return "; ".join(parts)


def partial_text(subs: Sequence[SubResult]) -> str:
    """"reached 1 of 3 pods: db-abcde; blocked: db-xyz12, db-qrs34" — what connected and what not."""
    reached = [_label(s, subs) for s in subs if s.connected]
    by_verdict: dict[str, list[str]] = {}
    for s in subs:
        if not s.connected:
            by_verdict.setdefault(str(s.verdict), []).append(_label(s, subs))
    verb = "reached" if _varies(subs)[0] else "connected from"
    text = f"{verb} {len(reached)} of {len(subs)} {_noun(subs)}: {', '.join(reached)}"
    return "; ".join([text, *(f"{v}: {', '.join(names)}" for v, names in by_verdict.items())])


def _what(target: Target) -> str:
    if target.kind is TargetKind.DNS:
        return f"{target.name} (DNS {target.host})"
    if target.kind is TargetKind.HTTP:
        return f"{target.name} ({target.host})"
    return f"{target.name}:{target.port}"


def _reason(target: Target, expected: Expectation, observed: Verdict, match: bool | None,
            subs: Sequence[SubResult], detail: str, strict: bool) -> str:
    if match is True:
        return ""
    what = _what(target)
    if observed is Verdict.PARTIAL:
        if expected is Expectation.DENY:
            return (f"{what} partly reachable — {partial_text(subs)}; a connection was made where it "
                    "should be denied: a policy misses a replica or identity")
        return (f"{what} partly reachable — {partial_text(subs)}; some replicas or identities are "
                "treated differently by a policy")
    if match is None:
        unprobed = [s for s in subs if sub_matches(target, expected, s, strict=strict) is None]
        if len(subs) > 1 and len(unprobed) < len(subs):
            why = explain(target, expected, unprobed[0].verdict, unprobed[0].detail, strict=strict)
            return f"{len(unprobed)} of {len(subs)} {_noun(subs)} not probed: {why}"
        pick = unprobed[0] if unprobed else subs[0] if subs else None
        return explain(target, expected, pick.verdict if pick else Verdict.ERROR,
                       pick.detail if pick else detail, strict=strict)
    wrong = [s for s in subs if sub_matches(target, expected, s, strict=strict) is False]
    first = wrong[0] if wrong else None
    text = explain(target, expected, first.verdict if first else observed, first.detail if first else detail,
                   strict=strict)
    if len(subs) > 1 and wrong:
        text += f" (all {len(subs)} {_noun(subs)})" if len(wrong) == len(subs) else \
            f" ({len(wrong)} of {len(subs)} {_noun(subs)})"
    return text


def explain(target: Target, expected: Expectation, observed: Verdict, detail: str = "", *,
            strict: bool = False) -> str:
    """Why one verdict does not match, in words a user understands; '' when it matches."""
    ok = matches(expected, observed)
    if ok and not (strict and expected is Expectation.DENY and proof_of(target, observed) is not Proof.DROPPED):
        return ""
    what = _what(target)
    host = target.host
    if observed is Verdict.ERROR:
        return f"{what} could not be probed: {detail or 'the probe failed'}"
    if observed is Verdict.NO_ENDPOINTS:
        return (f"{what} not probed — kube-proxy rejects connections to a Service without endpoints, "
                f"which says nothing about the policy: {detail or 'the Service has no ready endpoints'}")
    if ok and observed is Verdict.DNS_TIMEOUT:  # strict, and the deny rests on DNS only
        return (f"{what} not probed (--strict): the name {host} did not resolve (DNS timed out), so "
                "the port itself was never tested")
    if ok:  # strict, and the deny rests on a reply (RST / ICMP)
        return (f"{what} not probed (--strict): the connection was {observed} — the packet got through "
                "the network and was answered, which a dropping policy never does")
    if observed is Verdict.NXDOMAIN:
        name = host if target.kind is not TargetKind.PODS else what
        return (f"{what} not tested: DNS says {name} does not exist (NXDOMAIN) — the name in "
                "the spec is wrong or the Service is missing; this is not a policy decision")
    if expected is Expectation.DENY:
        via = f" ({detail})" if detail else ""
        if target.kind is TargetKind.DNS:
            return (f"{what} resolved{via} but should be denied — egress to the cluster DNS "
                    "is allowed")
        return (f"{what} connected{via} but should be denied — a policy is missing, or one "
                "allows more than intended")
    # expected allow, observed a failure
    if observed is Verdict.DNS_TIMEOUT:
        lookup = host if target.kind is not TargetKind.PODS else "the name"
        return (f"{what} unreachable: DNS lookup of {lookup} timed out — is egress to kube-dns "
                "(kube-system, UDP and TCP 53) allowed?")
    if observed is Verdict.BLOCKED:
        return (f"{what} blocked: no answer within the timeout — packets are dropped, usually by "
                "a NetworkPolicy (check the source's egress and the destination's ingress)")
    if observed is Verdict.REFUSED:
        return (f"{what} refused: the connection was reset — the network let it through but "
                "nothing listens on that port (or the CNI rejects instead of dropping)")
    if observed is Verdict.UNREACHABLE:
        return f"{what} unreachable: no route to the host (ICMP unreachable){': ' + detail if detail else ''}"
    return f"{what}: observed {observed}, expected {expected}"


def deciding_round(expected: Expectation, rounds: Sequence[Sequence[SubResult]], *, reprobes: bool = True) -> int:
    """Which probe round decides a cell: the last that probed it, except that a connection is proof.

    Re-probes rule out a slow start (a new pod whose policy is not programmed yet); they may
    turn an expected-allow cell green, never erase a connection seen on an expected-deny cell.
    With `reprobes` (--attempts: later rounds probe again only what was not proven), a round that
    probed nothing of the cell never overrides an earlier one that did; without (--settle: every
    round probes everything, and only the last state counts), the last round decides.
    """
    if expected is Expectation.DENY:
        for i, subs in enumerate(rounds):
            if any(s.connected for s in subs):
                return i
    if reprobes:
        # A re-probe whose pod never showed its network (or that found no endpoints) could not
        # look: a mismatch seen once is not hidden behind it.
        for i in range(len(rounds) - 1, -1, -1):
            if not rounds[i] or not all(s.verdict in _NOT_PROBED for s in rounds[i]):
                return i
    return len(rounds) - 1


def needs_reprobe(expected: Expectation, rounds: Sequence[Sequence[SubResult]], *,
                  target: Target | None = None, strict: bool = False) -> bool:
    """--attempts: re-probe an expected-allow cell that did not connect, or a cell not probed.

    A connection on an expected-deny cell is final: re-probing it could only add history.
    With `strict` (and the target known), a deny that rests on DNS alone counts as not probed.
    """
    if not rounds:
        return True
    if expected is Expectation.DENY and any(s.connected for subs in rounds for s in subs):
        return False
    last = rounds[-1]
    if any(s.verdict in _NOT_PROBED for s in last):
        return True
    if target is not None and any(sub_matches(target, expected, s, strict=strict) is None for s in last):
        return True
    return expected is Expectation.ALLOW and combine(last) is not Verdict.ALLOWED

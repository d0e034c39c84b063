"""Compare observed verdicts with expectations, and say in words why a cell mismatched.

The mapping (documented in the README, "Verdicts"):

| observed      | expect allow          | expect deny                           |
|---------------|-----------------------|---------------------------------------|
| allowed       | match                 | MISMATCH: it connected                |
| blocked       | MISMATCH: timed out   | match (dropped, as a policy does)     |
| refused       | MISMATCH: RST         | match (no connection was made)        |
| unreachable   | MISMATCH: ICMP        | match (no connection was made)        |
| dns-timeout   | MISMATCH: DNS cause   | match (nothing could be reached)      |
| nxdomain      | MISMATCH: wrong name  | MISMATCH: wrong name, nothing tested  |
| error         | could not probe       | could not probe                       |

`nxdomain` never matches: the DNS server answered, so the probe proves nothing about the
policy; the name in the spec is wrong. `error` is neither a match nor a mismatch: the
cell is reported as not probed and the run exits 3.
"""

from __future__ import annotations

from .model import Expectation, Target, TargetKind, Verdict

_DENY_MATCHES = frozenset(
    {Verdict.BLOCKED, Verdict.REFUSED, Verdict.UNREACHABLE, Verdict.DNS_TIMEOUT}
)


def matches(expected: Expectation, observed: Verdict) -> bool | None:
    """True/False per the table above; None when the cell could not be probed."""
    if observed is Verdict.ERROR:
        return None
    if observed is Verdict.NXDOMAIN:
        return False
    if expected is Expectation.ALLOW:
        return observed is Verdict.ALLOWED
    return observed in _DENY_MATCHES


def _what(target: Target) -> str:
    if target.kind is TargetKind.DNS:
        return f"{target.name} (DNS {target.host})"
    if target.kind is TargetKind.HTTP:
        return f"{target.name} ({target.host})"
    return f"{target.name}:{target.port}"


def explain(target: Target, expected: Expectation, observed: Verdict, detail: str = "") -> str:
    """Why a cell does not match, in words a user understands; '' when it matches."""
    ok = matches(expected, observed)
    if ok:
        return ""
    what = _what(target)
    host = target.host
    if observed is Verdict.ERROR:
        return f"{what} could not be probed: {detail or 'the probe failed'}"
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

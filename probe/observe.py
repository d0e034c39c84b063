"""Agent results → observations: what one probe round saw for each source × target cell.

An observation keeps every sub-check (each identity of the source × each destination pod),
never a summary: the diff decides the cell from all of them (README "Verdicts").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .agent_protocol import GATE_NETWORK_CHECK
from .diff import combine
from .model import SubResult, Verdict
from .plan import ProbePlan


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One source × target in one probe round: every sub-check it stands for."""

    subresults: tuple[SubResult, ...]
    elapsed_ms: int | None = None

    @property
    def verdict(self) -> Verdict:
        """The combined verdict (`partial` when some sub-checks connected and some did not)."""
        return combine(self.subresults)


def failed(identity: str, why: str) -> Observation:
    """The observation of a cell whose probe pod failed: nothing is known."""
    return Observation(subresults=(SubResult(identity=identity, verdict=Verdict.ERROR, detail=why),))


def _sub(identity: str, pod: str, ip: str, r: Mapping[str, Any] | None) -> tuple[SubResult, int]:
    if r is None:
        return SubResult(identity=identity, pod=pod, ip=ip, verdict=Verdict.ERROR,
                         detail="the agent returned no result for this check"), 0
    verdict, detail = Verdict(r["verdict"]), str(r.get("detail", ""))
    history = [Verdict(h) for h in r.get("history") or [verdict]]
    if verdict is not Verdict.ALLOWED and Verdict.ALLOWED in history:
        # The agent only re-runs failed checks, but should one ever connect and then fail,
        # the connection is what counts: it proves the path was open.
        attempt = history.index(Verdict.ALLOWED) + 1
        verdict, detail = Verdict.ALLOWED, f"connected on attempt {attempt} of {len(history)}; later: {detail}"
    return SubResult(identity=identity, pod=pod, ip=ip, verdict=verdict, detail=detail), int(r.get("elapsed_ms") or 0)


def observe(plan: ProbePlan, results: Mapping[str, Mapping[str, Any]], identity: str = "") -> dict[str, Observation]:
    """{target name: Observation} for one plan's agent results; `identity` labels its sub-checks."""
    who = identity or plan.identity.describe()
    subs: dict[str, list[SubResult]] = {}
    elapsed: dict[str, int] = {}
    checks = {str(c["id"]): c for c in plan.checks}
    for cid, ref in plan.refs.items():
        ip = str(checks.get(cid, {}).get("host", "")) if ref.pod else ""
        sub, ms = _sub(who, ref.pod, ip, results.get(cid))
        subs.setdefault(ref.target, []).append(sub)
        elapsed[ref.target] = max(elapsed.get(ref.target, 0), ms)
    return {t: Observation(subresults=tuple(s), elapsed_ms=elapsed[t]) for t, s in subs.items()}


def merge_observations(observations: Iterable[Observation]) -> Observation:
    """Several identities of one source → one cell: every sub-check of every identity."""
    items = list(observations)
    if len(items) == 1:
        return items[0]
    return Observation(subresults=tuple(s for o in items for s in o.subresults),
                       elapsed_ms=max((o.elapsed_ms or 0) for o in items))



def _state(sub: SubResult) -> str:
    if sub.connected:
        return "connected"
    return "unknown" if sub.verdict in (Verdict.ERROR, Verdict.NO_ENDPOINTS) else "failed"


def evidence(obs: Observation) -> frozenset[tuple[str, str, str]]:
    """What a round proved, per sub-check: (identity, destination, connected|failed|unknown).

    Two rounds of --settle agree when their evidence is equal; `blocked` then `refused` is the
    same evidence (no connection), one identity leaking then another is not.
    """
    return frozenset((s.identity, s.pod, _state(s)) for s in obs.subresults)


def conflicting(before: Observation, after: Observation) -> bool:
    """A sub-check that connected in one round and, probed, failed in the other: unstable."""
    seen = {(s.identity, s.pod): _state(s) for s in before.subresults}
    return any({seen.get((s.identity, s.pod)), _state(s)} == {"connected", "failed"} for s in after.subresults)


# A real check that connected: the pod's network was up. (A `refused` is not counted: a
# fail-closed enforcer may reject a new pod's packets rather than drop them. A DNS answer shows
# the pod's own side only, like the gate's look.)
_CONNECTED = "allowed"
_DNS_REPLIED = frozenset({"allowed", "nxdomain"})


def network_unshown(gate: Mapping[str, Any] | None, results: Mapping[str, Mapping[str, Any]],
                    kinds: Mapping[str, str], node_answered: Collection[str] = ()) -> str | None:
    """Which failures of this probe pod prove nothing: "all", "denies" (its expected allows'
    failures stand), or None. `kinds` is {check id: tcp | dns | http}; a connection of a check in
    `node_answered` (one its node itself may answer: plan.reaches_a_node) shows nothing.

    A failure seen while a fail-closed CNI still drops every packet of the new pod (Calico, until
    its policy is programmed) proves no deny. Where its gate's "connect" condition was not met
    within --warmup:
    * if the real checks then saw it met (every check the gate polled connected, one of them a
      connection rather than a DNS answer), None;
    * else "denies" if anything showed the pod's network up -- a connection, a reply of its
      nameserver (to the gate's look, network_seen, or to a check): its expected allows really
      failed, but a deny seen beside allows that never connected may be the targets' side of the
      policy still on its way; "all" if nothing did.
    An all-deny pod (its condition is its nameserver replying) whose nameserver never replied, or
    did but not to the gate's last look (a fail-open start, then a policy that denies DNS): "all".
    """
    if gate is None:
        return None
    verdict = {cid: str(r.get("verdict")) for cid, r in results.items()}
    connected = any(v == _CONNECTED and kinds.get(cid) != "dns" and cid not in node_answered
                    for cid, v in verdict.items())
    replied = gate.get("network_seen") is True or any(
        v in _DNS_REPLIED if kinds.get(cid) == "dns" else v == "nxdomain" for cid, v in verdict.items())
    polled = [str(c) for c in gate.get("connect") or ()]
    if gate.get("opened") == "bound-reached" and "connect" in (gate.get("unmet") or ()):
        if polled == [GATE_NETWORK_CHECK]:
            return None if connected else "all"  # a connection on an all-deny pod is a leak: shown
        if polled and all(verdict.get(cid) == _CONNECTED for cid in polled) \
                and any(kinds.get(cid) != "dns" for cid in polled):
            return None  # late, but seen: a connection through the targets' side too
        return "denies" if connected or replied else "all"
    if gate.get("opened") == "no-candidate" and "connect" in (gate.get("missing") or ()):
        return None if connected or replied else "all"
    return None


_WHY_UNSHOWN = {
    "all": ("not probed: nothing showed this probe pod's network up when its --warmup wait ended (no "
            "check connected, and its nameserver did not answer when its gate last looked): its policy "
            "may not have been programmed yet, or it denies the pod DNS (then --warmup-mode fixed rests "
            "its denies on a fixed wait)"),
    "denies": ("not probed: none of the checks this probe pod was expected to connect did within "
               "--warmup, though its nameserver replied: the targets' side of its policy may not have "
               "been programmed yet, so a deny it saw proves nothing (its expected allows' failures "
               "stand)"),
}


def without_network(observations: Mapping[str, Observation], level: str,
                    keep: Collection[str] = ()) -> dict[str, Observation]:
    """Observations of a probe pod whose network was not shown up (network_unshown's `level`):
    its failures prove nothing, those of the targets in `keep` excepted."""
    why = _WHY_UNSHOWN[level]
    return {target: obs if target in keep else Observation(subresults=tuple(
        s if s.connected else SubResult(identity=s.identity, pod=s.pod, ip=s.ip, verdict=Verdict.ERROR,
                                        detail=f"{why}; it saw {s.verdict}: {s.detail}")
        for s in obs.subresults), elapsed_ms=obs.elapsed_ms) for target, obs in observations.items()}

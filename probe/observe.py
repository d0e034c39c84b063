"""Agent results → observations: what one probe round saw for each source × target cell."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import Verdict, worst
from .plan import CheckRef, ProbePlan


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One source × target after a probe round."""

    verdict: Verdict
    detail: str
    elapsed_ms: int | None = None
    attempts: int = 1
    history: tuple[Verdict, ...] = ()
    pods: tuple[tuple[str, Verdict], ...] = ()



def observe(plan: ProbePlan, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Observation]:
    """{target name: Observation} for one plan's agent results."""
    by_target: dict[str, list[tuple[CheckRef, Mapping[str, Any] | None]]] = {}
    for cid, ref in plan.refs.items():
        by_target.setdefault(ref.target, []).append((ref, results.get(cid)))
    out = {}
    for target, entries in by_target.items():
        verdicts, details, pods = [], [], []
        elapsed, attempts = 0, 1
        history: tuple[Verdict, ...] = ()
        for ref, r in entries:
            if r is None:
                v, d = Verdict.ERROR, "the agent returned no result for this check"
            else:
                v, d = Verdict(r["verdict"]), str(r.get("detail", ""))
                elapsed = max(elapsed, int(r.get("elapsed_ms") or 0))
                attempts = max(attempts, int(r.get("attempts") or 1))
                if len(entries) == 1:
                    history = tuple(Verdict(h) for h in r.get("history", [v]))
            verdicts.append(v)
            if ref.pod:
                pods.append((ref.pod, v))
                details.append(f"{ref.pod}: {v}" + (f" ({d})" if v is not Verdict.ALLOWED else ""))
            else:
                details.append(d)
        out[target] = Observation(verdict=worst(verdicts), detail="; ".join(details),
                                  elapsed_ms=elapsed, attempts=attempts, history=history,
                                  pods=tuple(pods))
    return out


def merge_observations(observations: Iterable[tuple[str, Observation]]) -> Observation:
    """Several identities of one source → one cell: the worst verdict, every detail."""
    items = list(observations)
    if len(items) == 1:
        return items[0][1]
    verdicts = [o.verdict for _, o in items]
    return Observation(
        verdict=worst(verdicts),
        detail="; ".join(f"[{who}] {o.detail}" for who, o in items),
        elapsed_ms=max((o.elapsed_ms or 0) for _, o in items),
        attempts=max(o.attempts for _, o in items),
        pods=tuple(p for _, o in items for p in o.pods),
    )

"""Baselines for post-deploy smoke checks: a saved JSON result, and drift against it.

`netprobe run --save-baseline FILE` saves the run's JSON result; `--baseline FILE` reports
every cell whose observed verdict changed since then (drift, exit 1), whatever the
expectations say. A spec without `expect` may use the baseline as its expectation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import InputError
from .model import Expectation, RunResult, Verdict
from .result import load_result
from .spec import Spec


def load_baseline(path: str | Path) -> RunResult:
    """Read a baseline (a `-o json` / `--save-baseline` result)."""
    return load_result(path)


def expectations_from_baseline(spec: Spec, base: RunResult) -> tuple[dict[tuple[str, str], Expectation],
                                                                     dict[tuple[str, str], str]]:
    """The baseline's observations as expectations: allowed → allow, anything else → deny.

    A baseline cell that was not probed or only partly reachable says nothing certain, so it
    becomes `deny`: the direction in which every connection is reported, never hidden.
    """
    expect, by = {}, {}
    for s in spec.sources:
        for t in spec.targets:
            try:
                cell = base.cell(s.name, t.name)
            except KeyError:
                raise InputError(f"baseline has no cell {s.name} → {t.name} (run {base.run_id or '?'}); "
                                 "was the spec changed since it was saved?") from None
            certain = cell.match is not None and cell.observed is not Verdict.PARTIAL
            expect[(s.name, t.name)] = Expectation.ALLOW if certain and cell.observed is Verdict.ALLOWED \
                else Expectation.DENY
            note = ""
            if cell.match is None:
                note = " (not probed in the baseline: assumed deny, so any connection is reported)"
            elif cell.observed is Verdict.PARTIAL:
                note = " (partly reachable in the baseline: assumed deny, so any connection is reported)"
            by[(s.name, t.name)] = f"baseline {base.run_id}: {cell.observed}{note}"
    return expect, by


def with_drift(result: RunResult, base: RunResult) -> RunResult:
    """The result with every cell whose verdict differs from the baseline listed as drift."""
    drift = []
    for cell in result.cells:
        try:
            before = base.cell(cell.source, cell.target).observed
        except KeyError:
            continue
        unknown = (Verdict.ERROR, Verdict.NO_ENDPOINTS)
        if before is not cell.observed and before not in unknown and cell.observed not in unknown:
            drift.append((cell.source, cell.target, before, cell.observed))
    return replace(result, drift=tuple(drift), meta={**result.meta, "baseline_run_id": base.run_id})

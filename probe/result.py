"""A run's result as a versioned JSON document, and back (README "JSON result").

Version 2 (this release) carries every sub-check of a cell (`subresults`), how a deny was
proven (`proof`) and `unstable` cells; version 1 documents (netprobe 0.1, and baselines saved
by it) still load: their per-pod `pods` become sub-results. Keys are only ever added within
a version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .diff import combine, matches
from .errors import InputError
from .model import Cell, Expectation, Proof, RunResult, SubResult, Verdict

RESULT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def _sub_to_dict(sub: SubResult) -> dict[str, Any]:
    return {"identity": sub.identity, "pod": sub.pod, "ip": sub.ip, "verdict": str(sub.verdict),
            "detail": sub.detail, "proof": str(sub.proof) if sub.proof else None}


def cell_to_dict(cell: Cell) -> dict[str, Any]:
    """One cell in the JSON result's shape."""
    return {
        "source": cell.source,
        "target": cell.target,
        "expected": str(cell.expected),
        "observed": str(cell.observed),
        "match": cell.match,
        "proof": str(cell.proof) if cell.proof else None,
        "unstable": cell.unstable,
        "detail": cell.detail,
        "reason": cell.reason,
        "attempts": cell.attempts,
        "history": [str(v) for v in cell.history],
        "elapsed_ms": cell.elapsed_ms,
        "subresults": [_sub_to_dict(s) for s in cell.subresults],
        "pods": [{"pod": p, "verdict": str(v)} for p, v in cell.pods],
        "expected_by": cell.expected_by,
    }


def to_dict(result: RunResult) -> dict[str, Any]:
    """The versioned JSON document."""
    return {
        "version": RESULT_VERSION,
        "ok": result.ok,
        "exit_code": result.exit_code,
        "run_id": result.run_id,
        "started": result.started,
        "duration_s": round(result.duration_s, 3),
        "settle_s": result.settle_s,
        "sources": list(result.sources),
        "targets": list(result.targets),
        "problems": list(result.problems),
        "warnings": list(result.warnings),
        "summary": {
            "cells": len(result.cells),
            "match": sum(1 for c in result.cells if c.match is True),
            "mismatch": len(result.mismatches),
            "not_probed": len(result.errors),
            "unstable": len(result.unstable),
        },
        "cells": [cell_to_dict(c) for c in result.cells],
        "drift": [{"source": s, "target": t, "before": str(a), "now": str(b)} for s, t, a, b in result.drift],
        "meta": dict(result.meta),
    }


def to_json(result: RunResult) -> str:
    """The JSON document, indented."""
    return json.dumps(to_dict(result), indent=2, ensure_ascii=False) + "\n"


def _sub_from_dict(raw: Mapping[str, Any]) -> SubResult:
    proof = raw.get("proof")
    return SubResult(identity=str(raw.get("identity", "")), pod=str(raw.get("pod", "")),
                     ip=str(raw.get("ip", "")), verdict=Verdict(raw["verdict"]),
                     detail=str(raw.get("detail", "")), proof=Proof(proof) if proof else None)


def _cell_from_dict(raw: Mapping[str, Any], version: int) -> Cell:
    match = raw["match"]
    if match is not None and not isinstance(match, bool):
        raise ValueError(f"match: expected true, false or null, got {match!r}")
    expected, observed = Expectation(raw["expected"]), Verdict(raw["observed"])
    if version >= 2:
        subs = tuple(_sub_from_dict(s) for s in raw["subresults"])
    else:
        # Version 1 summarised a pod-selector cell with its worst verdict, so a deny cell in
        # which one pod connected was saved as a match: judge it again from its pods.
        subs = tuple(SubResult(pod=str(p["pod"]), verdict=Verdict(p["verdict"])) for p in raw.get("pods", []))
        if subs:
            observed = combine(subs)
            again = False if observed is Verdict.PARTIAL else matches(expected, observed)
            match = again if again is False or match is not None else None
    proof = raw.get("proof")
    return Cell(
        source=str(raw["source"]),
        target=str(raw["target"]),
        expected=expected,
        observed=observed,
        match=match,
        detail=str(raw.get("detail", "")),
        reason=str(raw.get("reason", "")),
        attempts=int(raw.get("attempts", 1)),
        history=tuple(Verdict(v) for v in raw.get("history", [])),
        elapsed_ms=raw.get("elapsed_ms"),
        subresults=subs,
        proof=Proof(proof) if proof else None,
        unstable=bool(raw.get("unstable", False)),
        expected_by=str(raw.get("expected_by", "")),
    )


def from_dict(doc: Any, origin: str = "<result>") -> RunResult:
    """Rebuild a RunResult from its JSON document (version 1 or 2); InputError naming what is wrong."""
    if not isinstance(doc, dict):
        raise InputError(f"{origin}: expected a netprobe JSON result (an object), got {type(doc).__name__}")
    if doc.get("version") not in READABLE_VERSIONS:
        raise InputError(f"{origin}: version: expected one of {', '.join(map(str, READABLE_VERSIONS))}, "
                         f"got {doc.get('version')!r} (is this a netprobe JSON result?)")
    cells_raw = doc.get("cells")
    if not isinstance(cells_raw, list):
        raise InputError(f"{origin}: cells: expected a list")
    cells = []
    for i, raw in enumerate(cells_raw):
        try:
            cells.append(_cell_from_dict(raw, int(doc["version"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{origin}: cells[{i}]: invalid cell ({exc!r})") from None
    sources = doc.get("sources") or list(dict.fromkeys(c.source for c in cells))
    targets = doc.get("targets") or list(dict.fromkeys(c.target for c in cells))
    try:
        drift = tuple((str(d["source"]), str(d["target"]), Verdict(d["before"]), Verdict(d["now"]))
                      for d in doc.get("drift") or [])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{origin}: drift: invalid entry ({exc!r})") from None
    return RunResult(
        sources=tuple(map(str, sources)), targets=tuple(map(str, targets)), cells=tuple(cells),
        run_id=str(doc.get("run_id", "")), started=str(doc.get("started", "")),
        duration_s=float(doc.get("duration_s") or 0.0),
        problems=tuple(map(str, doc.get("problems", []))),
        warnings=tuple(map(str, doc.get("warnings", []))),
        settle_s=doc.get("settle_s"), meta=dict(doc.get("meta") or {}), drift=drift,
    )


def load_result(path: str | Path) -> RunResult:
    """Read a saved `-o json` result (or a baseline)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    return from_dict(doc, str(p))

"""Render a RunResult as table, json, junit or markdown; read a saved json result back.

The JSON document is versioned (RESULT_VERSION) and documented in the README ("JSON
result"). Renderers are pure functions from a RunResult to text.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from tabulate import tabulate

from .errors import InputError
from .model import Cell, Expectation, RunResult, Verdict

RESULT_VERSION = 1
FORMATS = ("table", "json", "junit", "markdown")

_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _mark(cell: Cell) -> str:
    if cell.is_error:
        return "?"
    return "✓" if cell.observed is Verdict.ALLOWED else "✗"


def _cell_text(cell: Cell, colour: bool) -> str:
    text = f"{_mark(cell)} {cell.observed}"
    if cell.attempts > 1:
        text += f" ({cell.attempts}x)"
    if cell.match is False:
        text += " ‼"
    if not colour:
        return text
    hue = _YELLOW if cell.is_error else _RED if cell.match is False else _GREEN
    return f"{hue}{text}{_RESET}"


def _attempts_note(cell: Cell) -> str:
    if cell.attempts <= 1:
        return ""
    return f" [{cell.attempts} attempts: {', '.join(map(str, cell.history))}]"


def _summary(result: RunResult) -> str:
    n = len(result.cells)
    ok = sum(1 for c in result.cells if c.match is True)
    bad, err = len(result.mismatches), len(result.errors)
    text = f"{n} cells: {ok} match, {bad} mismatch, {err} not probed"
    if result.drift:
        text += f", {len(result.drift)} drifted"
    if result.settle_s is not None:
        text += f"; settled after {result.settle_s:.1f}s"
    return text + ("" if not result.duration_s else f" ({result.duration_s:.1f}s)")


def render_table(result: RunResult, *, colour: bool = False) -> str:
    """Rows = sources, columns = targets; mismatches flagged ‼ and explained underneath."""
    rows = []
    for src in result.sources:
        row = [src]
        for tgt in result.targets:
            try:
                row.append(_cell_text(result.cell(src, tgt), colour))
            except KeyError:
                row.append("-")
        rows.append(row)
    out = [tabulate(rows, headers=["source \\ target", *result.targets], tablefmt="simple")]
    out.append("")
    out.append("✓ connected/resolved   ✗ not   ? could not probe   ‼ differs from the expectation")
    bad = result.mismatches
    if bad:
        title = f"Mismatches ({len(bad)}):"
        out += ["", f"{_BOLD}{title}{_RESET}" if colour else title]
        out += [f"  {c.source} → {c.target}: {c.reason}{_attempts_note(c)}" for c in bad]
    if result.errors:
        out += ["", "Not probed:"]
        out += [f"  {c.source} → {c.target}: {c.detail or c.reason}" for c in result.errors]
    if result.problems:
        out += ["", "Problems:"] + [f"  {p}" for p in result.problems]
    if result.warnings:
        out += ["", "Warnings:"] + [f"  {w}" for w in result.warnings]
    if result.drift:
        out += ["", f"Drift since the baseline ({len(result.drift)}):"]
        out += [f"  {s} → {t}: {a} → {b}" for s, t, a, b in result.drift]
    out += ["", _summary(result)]
    return "\n".join(out) + "\n"


def render_markdown(result: RunResult) -> str:
    """A GitHub-flavoured markdown table plus the list of mismatches."""
    rows = [[f"**{src}**"] + [
        _cell_text(result.cell(src, tgt), False).replace("‼", "**‼**")
        if (src, tgt) in {(c.source, c.target) for c in result.cells} else "-"
        for tgt in result.targets] for src in result.sources]
    out = ["## netprobe: " + ("all cells match ✅" if result.ok else "mismatches ❌"), ""]
    out.append(tabulate(rows, headers=["source \\ target", *result.targets], tablefmt="github"))
    if result.mismatches:
        out += ["", "### Mismatches", ""]
        out += [f"- **{c.source} → {c.target}**: {c.reason}{_attempts_note(c)}" for c in result.mismatches]
    if result.errors:
        out += ["", "### Not probed", ""]
        out += [f"- **{c.source} → {c.target}**: {c.detail or c.reason}" for c in result.errors]
    if result.problems:
        out += ["", "### Problems", ""] + [f"- {p}" for p in result.problems]
    if result.drift:
        out += ["", "### Drift since the baseline", ""] + [f"- **{s} → {t}**: {a} → {b}" for s, t, a, b in result.drift]
    out += ["", _summary(result)]
    return "\n".join(out) + "\n"


def cell_to_dict(cell: Cell) -> dict[str, Any]:
    """One cell in the JSON result's shape."""
    return {
        "source": cell.source,
        "target": cell.target,
        "expected": str(cell.expected),
        "observed": str(cell.observed),
        "match": cell.match,
        "detail": cell.detail,
        "reason": cell.reason,
        "attempts": cell.attempts,
        "history": [str(v) for v in cell.history],
        "elapsed_ms": cell.elapsed_ms,
        "pods": [{"pod": p, "verdict": str(v)} for p, v in cell.pods],
        "expected_by": cell.expected_by,
    }


def to_dict(result: RunResult) -> dict[str, Any]:
    """The versioned JSON document (README: "JSON result")."""
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
        },
        "cells": [cell_to_dict(c) for c in result.cells],
        "drift": [{"source": s, "target": t, "before": str(a), "now": str(b)} for s, t, a, b in result.drift],
        "meta": dict(result.meta),
    }


def render_json(result: RunResult) -> str:
    """The JSON document, indented."""
    return json.dumps(to_dict(result), indent=2, ensure_ascii=False) + "\n"


def render_junit(result: RunResult) -> str:
    """JUnit XML: one testcase per cell; failures carry the reason, errors the probe failure."""
    suite = ET.Element("testsuite", {
        "name": "netprobe",
        "tests": str(len(result.cells) + len(result.drift) + len(result.problems)),
        "failures": str(len(result.mismatches) + len(result.drift)),
        "errors": str(len(result.errors) + len(result.problems)),
        "time": f"{result.duration_s:.3f}",
    })
    for c in result.cells:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"netprobe.{c.source}",
            "name": f"{c.source} -> {c.target} expect {c.expected}",
            "time": f"{(c.elapsed_ms or 0) / 1000:.3f}",
        })
        if c.match is False:
            fail = ET.SubElement(case, "failure", {"message": c.reason, "type": str(c.observed)})
            fail.text = f"{c.reason}\nobserved: {c.observed}; detail: {c.detail}{_attempts_note(c)}"
        elif c.match is None:
            err = ET.SubElement(case, "error", {"message": c.detail or c.reason, "type": "error"})
            err.text = c.detail or c.reason
        ET.SubElement(case, "system-out").text = (
            f"observed {c.observed} ({c.detail}); attempts {c.attempts}")
    for s, t, a, b in result.drift:
        case = ET.SubElement(suite, "testcase", {"classname": "netprobe.drift", "name": f"{s} -> {t} unchanged"})
        ET.SubElement(case, "failure", {"message": f"drift: {a} -> {b}", "type": "drift"}).text = \
            f"{s} -> {t} was {a} in the baseline, now {b}"
    for i, problem in enumerate(result.problems):
        case = ET.SubElement(suite, "testcase", {"classname": "netprobe.run", "name": f"problem {i + 1}"})
        ET.SubElement(case, "error", {"message": problem, "type": "problem"}).text = problem
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render(result: RunResult, fmt: str, *, colour: bool = False) -> str:
    """Render in one of FORMATS."""
    if fmt == "table":
        return render_table(result, colour=colour)
    if fmt == "json":
        return render_json(result)
    if fmt == "junit":
        return render_junit(result)
    if fmt == "markdown":
        return render_markdown(result)
    raise InputError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _cell_from_dict(raw: Mapping[str, Any]) -> Cell:
    return Cell(
        source=str(raw["source"]),
        target=str(raw["target"]),
        expected=Expectation(raw["expected"]),
        observed=Verdict(raw["observed"]),
        match=raw["match"] if raw["match"] in (True, False, None) else bool(raw["match"]),
        detail=str(raw.get("detail", "")),
        reason=str(raw.get("reason", "")),
        attempts=int(raw.get("attempts", 1)),
        history=tuple(Verdict(v) for v in raw.get("history", [])),
        elapsed_ms=raw.get("elapsed_ms"),
        pods=tuple((str(p["pod"]), Verdict(p["verdict"])) for p in raw.get("pods", [])),
        expected_by=str(raw.get("expected_by", "")),
    )


def from_dict(doc: Any, origin: str = "<result>") -> RunResult:
    """Rebuild a RunResult from its JSON document; InputError naming what is wrong."""
    if not isinstance(doc, dict):
        raise InputError(f"{origin}: expected a netprobe JSON result (an object), got {type(doc).__name__}")
    if doc.get("version") != RESULT_VERSION:
        raise InputError(f"{origin}: version: expected {RESULT_VERSION}, got {doc.get('version')!r} "
                         "(is this a netprobe JSON result?)")
    cells_raw = doc.get("cells")
    if not isinstance(cells_raw, list):
        raise InputError(f"{origin}: cells: expected a list")
    cells = []
    for i, raw in enumerate(cells_raw):
        try:
            cells.append(_cell_from_dict(raw))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{origin}: cells[{i}]: invalid cell ({exc!r})") from None
    sources = doc.get("sources") or list(dict.fromkeys(c.source for c in cells))
    targets = doc.get("targets") or list(dict.fromkeys(c.target for c in cells))
    return RunResult(
        sources=tuple(map(str, sources)), targets=tuple(map(str, targets)), cells=tuple(cells),
        run_id=str(doc.get("run_id", "")), started=str(doc.get("started", "")),
        duration_s=float(doc.get("duration_s") or 0.0),
        problems=tuple(map(str, doc.get("problems", []))),
        warnings=tuple(map(str, doc.get("warnings", []))),
        settle_s=doc.get("settle_s"), meta=dict(doc.get("meta") or {}),
        drift=tuple((str(d["source"]), str(d["target"]), Verdict(d["before"]), Verdict(d["now"]))
                    for d in doc.get("drift") or []),
    )


def load_result(path: str | Path) -> RunResult:
    """Read a saved `-o json` result."""
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

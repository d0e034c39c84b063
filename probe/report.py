"""Render a RunResult as table, json, junit or markdown (html: probe/report_html/).

Renderers are pure functions from a RunResult to text; the JSON document itself (versioned,
and read back by `netprobe report` and `--baseline`) is probe/result.py.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TextIO

from .errors import InputError
from .model import Cell, RunResult, Verdict
from .result import to_json

# tabulate (~25 ms with wcwidth) and xml.etree are imported by the renderers that use them, not here:
# `netprobe run` imports this module before its first API request, and renders once the probing is over.

FORMATS = ("table", "json", "junit", "markdown", "html")

_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _mark(cell: Cell) -> str:
    if cell.is_error:
        return "?"
    if cell.observed is Verdict.PARTIAL:
        return "◐"
    return "✓" if cell.observed is Verdict.ALLOWED else "✗"


def _cell_text(cell: Cell, colour: bool) -> str:
    text = f"{_mark(cell)} {cell.observed}"
    if cell.attempts > 1:
        text += f" ({cell.attempts}x)"
    if cell.unstable:
        text += " ~"
    if cell.match is False:
        text += " ‼"
    if not colour:
        return text
    hue = _YELLOW if cell.is_error else _RED if cell.match is False else _GREEN
    return f"{hue}{text}{_RESET}"


LEGEND = ("✓ connected/resolved  ✗ not  ◐ partial: some connected  ? not probed  ‼ differs from the "
          "expectation  ~ unstable\n"
          "a deny is proven by: blocked = dropped, refused/unreachable = rejected, dns-timeout = not "
          "resolvable (port not tested)")


def _attempts_note(cell: Cell) -> str:
    if cell.attempts <= 1:
        return ""
    return f" [{cell.attempts} rounds: {', '.join(map(str, cell.history))}]"


def _proofs(result: RunResult) -> str:
    counts = Counter(str(c.proof) for c in result.cells if c.match is True and c.proof)
    if not counts:
        return ""
    return " (denies " + ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) + ")"


def _summary(result: RunResult) -> str:
    n = len(result.cells)
    ok = sum(1 for c in result.cells if c.match is True)
    bad, err = len(result.mismatches), len(result.errors)
    text = f"{n} cells: {ok} match{_proofs(result)}, {bad} mismatch, {err} not probed"
    if result.unstable:
        text += f", {len(result.unstable)} unstable"
    if result.drift:
        text += f", {len(result.drift)} drifted"
    if result.settle_s is not None:
        text += f"; settled after {result.settle_s:.1f}s"
    return text + ("" if not result.duration_s else f" ({result.duration_s:.1f}s)")


def _sections(result: RunResult) -> list[tuple[str, list[str]]]:
    """The lists under the matrix, shared by the table and markdown renderers."""
    out: list[tuple[str, list[str]]] = []
    bad = result.mismatches
    if bad:
        out.append((f"Mismatches ({len(bad)})", [f"{c.source} → {c.target}: {c.reason}{_attempts_note(c)}"
                                                 for c in bad]))
    if result.errors:
        out.append((f"Not probed ({len(result.errors)})", [f"{c.source} → {c.target}: {c.reason or c.detail}"
                                                           for c in result.errors]))
    if result.problems:
        out.append(("Problems", list(result.problems)))
    if result.warnings:
        out.append(("Warnings", list(result.warnings)))
    if result.drift:
        out.append((f"Drift since the baseline ({len(result.drift)})",
                    [f"{s} → {t}: {a} → {b}" for s, t, a, b in result.drift]))
    return out


def render_table(result: RunResult, *, colour: bool = False) -> str:
    """Rows = sources, columns = targets; mismatches flagged ‼ and explained underneath."""
    from tabulate import tabulate

    rows = []
    for src in result.sources:
        row = [src]
        for tgt in result.targets:
            try:
                row.append(_cell_text(result.cell(src, tgt), colour))
            except KeyError:
                row.append("-")
        rows.append(row)
    out = [tabulate(rows, headers=["source \\ target", *result.targets], tablefmt="simple"), "", LEGEND]
    for title, lines in _sections(result):
        out += ["", f"{_BOLD}{title}:{_RESET}" if colour and title.startswith("Mismatches") else f"{title}:"]
        out += [f"  {line}" for line in lines]
    out += ["", _summary(result)]
    return "\n".join(out) + "\n"


def render_markdown(result: RunResult) -> str:
    """A GitHub-flavoured markdown table plus the lists of mismatches and unprobed cells."""
    from tabulate import tabulate

    present = {(c.source, c.target) for c in result.cells}
    rows = [[f"**{src}**"] + [
        _cell_text(result.cell(src, tgt), False).replace("‼", "**‼**") if (src, tgt) in present else "-"
        for tgt in result.targets] for src in result.sources]
    verdict = "all cells match ✅" if result.ok else "mismatches ❌" if result.exit_code == 1 else "not probed ⚠️"
    out = ["## netprobe: " + verdict, ""]
    out.append(tabulate(rows, headers=["source \\ target", *result.targets], tablefmt="github"))
    out += ["", LEGEND.replace("\n", "  \n")]
    for title, lines in _sections(result):
        out += ["", f"### {title}", ""] + [f"- {_md_line(line)}" for line in lines]
    out += ["", _summary(result)]
    return "\n".join(out) + "\n"


def _md_line(line: str) -> str:
    head, sep, rest = line.partition(": ")
    return f"**{head}**{sep}{rest}" if " → " in head else line


def render_json(result: RunResult) -> str:
    """The JSON document (probe/result.py), indented."""
    return to_json(result)


def _junit_out(c: Cell) -> str:
    lines = [f"observed {c.observed}; match {c.match}"
             + (f"; deny proven: {c.proof}" if c.proof else "")
             + f"; rounds {c.attempts}" + (f" ({', '.join(map(str, c.history))})" if c.attempts > 1 else "")]
    if c.detail:
        lines.append(f"detail: {c.detail}")
    lines += [f"  [{s.identity}] {s.pod or s.ip or '-'}: {s.verdict}" + (f" ({s.detail})" if s.detail else "")
              for s in c.subresults if len(c.subresults) > 1]
    return "\n".join(lines)


def render_junit(result: RunResult) -> str:
    """JUnit XML: one testcase per cell; failures carry the reason, errors the probe failure."""
    import xml.etree.ElementTree as ET

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
            fail.text = f"{c.reason}\n{_junit_out(c)}"
        elif c.match is None:
            err = ET.SubElement(case, "error", {"message": c.reason or c.detail, "type": str(c.observed)})
            err.text = f"{c.reason or c.detail}\n{_junit_out(c)}"
        ET.SubElement(case, "system-out").text = _junit_out(c)
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
    if fmt == "html":
        from .report_html.run_view import render_html  # the HTML views load the policy engine: only when asked

        return render_html(result)
    raise InputError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")



"""The run report: `--report html=PATH` and `netprobe report RESULT.json --format html`.

Summary and mismatches first (every detail in plain HTML), then the matrix of sources × targets,
grouped beyond MATRIX_LIMIT. Pure: no I/O, no clock (the page shows the run's own start time).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Any

from .. import __version__
from ..model import Cell, Proof, RunResult, Verdict
from .page import (
    EMPTY_CELL,
    MATRIX_LIMIT,
    TABLE_END,
    Strings,
    beside_detail,
    group_columns,
    group_row_head,
    groups,
    is_tall,
    legend,
    page_html,
    row_head,
    table_head,
    toolbar,
)

# Mismatches listed with their full detail in the page itself; the rest get one line each.
DETAILED_LIMIT = 30
# Mismatches listed at all (one line each); the matrix and its filter show every one.
LISTED_LIMIT = 250

_MARK_OF_STATE = {"connected": "✓", "denied": "✗", "partial": "◐", "unprobed": "?"}

_PROOF_WORDS = {
    Proof.DROPPED: "dropped — the connection timed out: packets were dropped, as a policy does",
    Proof.REJECTED: "rejected — RST or ICMP: no connection was made (a rejecting CNI, or nothing listens)",
    Proof.NOT_RESOLVABLE: "not resolvable — DNS failed, so the port itself was never tested",
}

_EXIT_WORDS = {0: "every cell matches", 1: "mismatch or drift", 3: "not everything could be probed"}


def mark(cell: Cell) -> str:
    """The cell's symbol, as in the text table: ✓ connected, ✗ not, ◐ partial, ? not probed."""
    return _MARK_OF_STATE[_family(cell)]


def _family(cell: Cell) -> str:
    if cell.is_error:
        return "unprobed"
    if cell.observed is Verdict.PARTIAL:
        return "partial"
    return "connected" if cell.observed is Verdict.ALLOWED else "denied"


def _state(cell: Cell) -> str:
    """match | mismatch | unprobed: what the cell says about the expectation."""
    return "unprobed" if cell.match is None else "match" if cell.match else "mismatch"


def _flags(cell: Cell, drifted: bool) -> str:
    return ("~" if cell.unstable else "") + ("Δ" if drifted else "") + ("‼" if cell.match is False else "")


def _cell_label(cell: Cell, drift: tuple[Verdict, Verdict] | None) -> str:
    """The words a screen reader says for one cell (row and column headers say which)."""
    words = [str(cell.observed), f"expected {cell.expected}",
             {"match": "matches", "mismatch": "MISMATCH", "unprobed": "not probed"}[_state(cell)]]
    if cell.proof:
        words.append(f"deny proven {cell.proof}")
    if cell.unstable:
        words.append("unstable")
    if drift:
        words.append(f"drifted from {drift[0]}")
    return ", ".join(words)



def _namespace_of(cells: Iterable[Cell]) -> str:
    """The namespace of a source, from its probe identities (`ns/labels`); '' when unknown or mixed."""
    found = {s.identity.split("/", 1)[0] for c in cells for s in c.subresults if "/" in s.identity}
    return found.pop() if len(found) == 1 else ""


def _target_namespace(cells: Iterable[Cell]) -> str:
    found = {s.pod.split("/", 1)[0] for c in cells for s in c.subresults if "/" in s.pod}
    return found.pop() if len(found) == 1 else ""




# A cell in the embedded data is a list in this order (an absent value is -1, trailing ones left
# out): 2500 cells as objects with keys would be twice the size. The script zips it with CELL_FIELDS.
CELL_FIELDS = ("s", "t", "e", "o", "st", "l", "ms", "d", "by", "sub", "r", "pr", "u", "a", "h", "dr")


def _cell_row(fields: Mapping[str, Any]) -> list[Any]:
    row = [fields.get(k, -1) for k in CELL_FIELDS]
    while row and row[-1] == -1:
        row.pop()
    return row


def _cell_data(cell: Cell, si: int, ti: int, strings: Strings,
               drift: tuple[Verdict, Verdict] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"s": si, "t": ti, "e": strings(str(cell.expected)), "o": strings(str(cell.observed)),
                           "st": strings(_state(cell)), "l": strings(_cell_label(cell, drift))}
    if cell.proof:
        out["pr"] = str(cell.proof)
    if cell.unstable:
        out["u"] = 1
    if cell.attempts > 1:
        out["a"] = cell.attempts
        out["h"] = [str(v) for v in cell.history]
    if cell.elapsed_ms is not None:
        out["ms"] = cell.elapsed_ms
    # Reasons and details repeat across a column (the same target, the same words), and a policy
    # explanation is an egress part (per source) and an ingress part (per target): interned, 50 × 50
    # stays small.
    if cell.reason:
        out["r"] = strings(cell.reason)
    if cell.detail and len(cell.subresults) <= 1:
        # Several sub-checks: the cell's detail summarises them, and the sub-check table shows each.
        out["d"] = strings(cell.detail)
    if cell.expected_by:
        out["by"] = [strings(part) for part in cell.expected_by.split("; ")]
    if drift:
        out["dr"] = [str(drift[0]), str(drift[1])]
    # Sub-checks are many (identities × target pods): [verdict, identity, pod, ip, detail, proof] as
    # string-table indexes, -1 for none; a lone sub-check's detail is the cell's (-2: not repeated).
    subs = []
    for s in cell.subresults:
        subs.append([strings(str(s.verdict)), strings(s.identity) if s.identity else -1,
                     strings(s.pod) if s.pod else -1, strings(s.ip) if s.ip else -1,
                     -2 if s.detail == cell.detail else strings(s.detail),
                     strings(str(s.proof)) if s.proof else -1])
    if subs:
        out["sub"] = subs
    return out


def _gates(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """meta.gates (each probe pod's readiness gate), as far as it has the expected shape."""
    raw = meta.get("gates")
    if not isinstance(raw, list):
        return []
    return [g for g in raw if isinstance(g, dict)]


def _fmt_meta(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return str(value)


_KNOWN_META = {"context": "cluster context", "netprobe_version": "netprobe version",
               "baseline_run_id": "baseline run", "identities": "identities", "probe_pods": "probe pods",
               "api_calls": "API calls"}


def _facts(result: RunResult) -> str:
    meta = result.meta
    rows: list[tuple[str, str]] = [("run", result.run_id or "?"), ("started", result.started or "?"),
                                   ("duration", f"{result.duration_s:.1f}s")]
    if result.settle_s is not None:
        rows.append(("settled after", f"{result.settle_s:.1f}s"))
    rows.append(("cluster context", _fmt_meta(meta["context"]) if meta.get("context") else "not recorded"))
    version = meta.get("netprobe_version")
    rows.append(("netprobe version", f"{_fmt_meta(version)} (report rendered by {__version__})"
                 if version and version != __version__ else __version__))
    for key in ("baseline_run_id", "identities", "probe_pods", "api_calls"):
        if key in meta:
            rows.append((_KNOWN_META[key], _fmt_meta(meta[key])))
    gates = _gates(meta)
    if gates:
        waits = [float(g.get("waited_ms") or 0) / 1000 for g in gates]
        opened = Counter(str(g.get("opened") or g.get("mode") or "?") for g in gates)
        rows.append(("gate wait", f"max {max(waits):.2f}s over {len(gates)} probe pod(s) ("
                     + ", ".join(f"{n} {k}" for k, n in sorted(opened.items())) + ")"))
    for key, value in meta.items():
        if key not in _KNOWN_META and key != "gates":
            rows.append((str(key), _fmt_meta(value)))
    return "<dl class=\"facts\">" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"


def _counts(result: RunResult) -> str:
    cells = result.cells
    proofs = Counter(str(c.proof) for c in cells if c.match is True and c.proof)
    proof_text = (" (denies: " + ", ".join(f"{n} {p}" for p, n in sorted(proofs.items())) + ")") if proofs else ""
    items = [("", f"{len(cells)} cells"),
             ("", f"{sum(1 for c in cells if c.match is True)} match{proof_text}"),
             ("bad" if result.mismatches else "", f"{len(result.mismatches)} mismatch"),
             ("bad" if result.errors else "", f"{len(result.errors)} not probed")]
    if result.unstable:
        items.append(("bad", f"{len(result.unstable)} unstable"))
    if result.drift:
        items.append(("bad", f"{len(result.drift)} drifted"))
    if result.problems:
        items.append(("bad", f"{len(result.problems)} problem(s)"))
    return ("<ul class=\"counts\" aria-label=\"counts\">"
            + "".join((f"<li class=\"{k}\">" if k else "<li>") + f"{escape(t)}</li>" for k, t in items) + "</ul>")


def _status(result: RunResult) -> str:
    code = result.exit_code
    kind, word = ("pass", "PASS") if code == 0 else ("fail", "FAIL") if code == 1 else ("warn", "NOT PROBED")
    return (f"<p><span class=\"status {kind}\" id=\"np-status\">{word}</span> exit status {code}: "
            f"{escape(_EXIT_WORDS.get(code, ''))}</p>")


def _detail_dl(cell: Cell, drift: tuple[Verdict, Verdict] | None, gates: Sequence[Mapping[str, Any]],
               baseline: str) -> str:
    """A cell's full detail as markup (the mismatch list; the script builds the same for any cell)."""
    items: list[tuple[str, str]] = []
    by = cell.expected_by
    items.append(("expected", f"{cell.expected}" + (" (the spec)" if by in ("", "spec") else "")))
    if by and by != "spec":
        if by.startswith("policies: "):
            items.append(("decided by the policies", by[len("policies: "):]))
        else:
            items.append(("expected by", by))
    items.append(("observed", str(cell.observed) + (" (unstable: still changing between rounds)"
                                                    if cell.unstable else "")))
    if cell.proof:
        items.append(("deny proven", _PROOF_WORDS[cell.proof]))
    if cell.reason:
        items.append(("why", cell.reason))
    if cell.detail:
        items.append(("detail", cell.detail))
    if drift:
        items.append(("baseline drift", f"{drift[0]} → {drift[1]} (baseline {baseline or '?'})"))
    items.append(("rounds", str(cell.attempts) + (f" ({', '.join(map(str, cell.history))})" if cell.history else "")))
    if cell.elapsed_ms is not None:
        items.append(("time", f"{cell.elapsed_ms} ms"))
    identities = {s.identity for s in cell.subresults}
    for g in gates:
        if g.get("identity") in identities or cell.source in (g.get("sources") or []):
            unmet = g.get("unmet") or g.get("missing")
            items.append(("gate wait", f"probe pod {g.get('probe_pod', '?')}: "
                          f"{float(g.get('waited_ms') or 0) / 1000:.2f}s, {g.get('opened') or g.get('mode') or ''}"
                          + (f" ({', '.join(map(str, unmet))})" if isinstance(unmet, list) and unmet else "")))
    out = ["<dl class=\"d\">"] + [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items] + ["</dl>"]
    if cell.subresults:
        out.append(f"<p>{len(cell.subresults)} sub-check(s): every identity × destination must match</p>")
        heads = ("identity", "target pod", "address", "verdict", "proof", "detail")
        rows = [(s.identity, s.pod, s.ip, str(s.verdict), str(s.proof) if s.proof else "", s.detail)
                for s in cell.subresults]
        used = [k for k in range(len(heads)) if any(r[k] for r in rows)]  # no empty columns
        out.append("<table class=\"subs\"><thead><tr>" + "".join(f"<th scope=\"col\">{heads[k]}</th>" for k in used)
                   + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{escape(r[k])}</td>" for k in used) + "</tr>" for r in rows]
        out.append("</tbody></table>")
    return "".join(out)


def _issue_lists(result: RunResult, index: Mapping[tuple[str, str], int],
                 drifts: Mapping[tuple[str, str], tuple[Verdict, Verdict]], gates: Sequence[Mapping[str, Any]],
                 *, linked: bool) -> str:
    out: list[str] = []
    baseline = str(result.meta.get("baseline_run_id") or "")

    def cell_items(title: str, css: str, cells: Sequence[Cell], why: Callable[[Cell], str]) -> None:
        out.append(f"<section class=\"issues {css}\" id=\"np-{css}\"><h2>{escape(title)} ({len(cells)})</h2><ol>")
        for n, c in enumerate(cells):
            i = index[(c.source, c.target)]
            head = f"<span class=\"mono\">{escape(c.source)} → {escape(c.target)}</span>: {escape(why(c))}"
            if linked:
                head += f" <a class=\"noprint\" href=\"#c-{i}\">in the matrix</a>"
            if n >= LISTED_LIMIT:
                break
            if n < DETAILED_LIMIT:
                out.append(f"<li id=\"d-{i}\" data-c=\"{i}\"><details><summary>{head}</summary>"
                           f"{_detail_dl(c, drifts.get((c.source, c.target)), gates, baseline)}</details></li>")
            else:
                out.append(f"<li id=\"d-{i}\" data-c=\"{i}\">{head}</li>")
        out.append("</ol>")
        if len(cells) > DETAILED_LIMIT:
            shown = min(len(cells), LISTED_LIMIT)
            out.append(f"<p class=\"note\">{shown} of {len(cells)} listed, the first {DETAILED_LIMIT} with their "
                       "detail; the matrix below marks every one (filter: only mismatches) and the JSON result "
                       "has them all.</p>")
        out.append("</section>")

    if result.mismatches:
        cell_items("Mismatches", "mismatches", result.mismatches, lambda c: c.reason)
    if result.errors:
        cell_items("Not probed", "unprobed", result.errors, lambda c: c.reason or c.detail)
    if result.drift:
        out.append(f"<section class=\"issues\" id=\"np-drift\"><h2>Drift since the baseline {escape(baseline)} "
                   f"({len(result.drift)})</h2><ol>")
        out += [f"<li><span class=\"mono\">{escape(s)} → {escape(t)}</span>: {escape(str(a))} → {escape(str(b))}</li>"
                for s, t, a, b in result.drift]
        out.append("</ol></section>")
    for title, lines in (("Problems", result.problems), ("Warnings", result.warnings)):
        if lines:
            out.append(f"<section class=\"issues\" id=\"np-{title.lower()}\"><h2>{title} ({len(lines)})</h2><ul>"
                       + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul></section>")
    return "\n".join(out)


def _legend() -> str:
    items = [("f-connected", "✓", "connected / resolved"), ("f-denied", "✗", "not connected"),
             ("f-partial", "◐", "partial: some sub-checks connected"), ("f-unprobed", "?", "not probed"),
             ("f-denied nx", "✗", "nxdomain: the name does not exist"),
             ("f-denied s-mismatch", "✗‼", "‼ differs from the expectation"),
             ("f-connected", "✓~", "~ unstable between rounds"),
             ("f-denied drift", "✗Δ", "Δ changed since the baseline")]
    return legend(items, "a matching deny is proven by: blocked = dropped, refused/unreachable = rejected, "
                         "dns-timeout = not resolvable (the port was not tested)")


def _matrix(result: RunResult, index: Mapping[tuple[str, str], int],
            drifts: Mapping[tuple[str, str], tuple[Verdict, Verdict]],
            by_source: Mapping[str, list[Cell]]) -> str:
    out = [table_head("source \\ target", [escape(t) for t in result.targets], tall=is_tall(result.targets),
                      table_id="np-matrix", caption="sources (rows) × targets (columns)")]
    for src in result.sources:
        out.append(row_head(src, _namespace_of(by_source.get(src, [])), escape(src)))
        for tgt in result.targets:
            i = index.get((src, tgt))
            if i is None:
                out.append(EMPTY_CELL)
                continue
            cell = result.cells[i]
            drift = drifts.get((src, tgt))
            classes = (f"c f-{_family(cell)} s-{_state(cell)}" + (" nx" if cell.observed is Verdict.NXDOMAIN else "")
                       + (" unstable" if cell.unstable else "") + (" drift" if drift else ""))
            # A matching cell's words are set by the script (50 × 50 stays small); what needs attention
            # carries them in the markup, for readers without scripts too.
            label = "" if cell.match is True and not drift and not cell.unstable else \
                f" aria-label=\"{escape(_cell_label(cell, drift))}\""
            out.append(f"<td class=\"{classes}\" data-c=\"{i}\"{label}>"
                       f"{mark(cell)}{_flags(cell, drift is not None)}</td>")
        out.append("</tr>")
    out.append(TABLE_END)
    return "".join(out)




def _grouped_matrix(result: RunResult, index: Mapping[tuple[str, str], int],
                    drifts: Mapping[tuple[str, str], tuple[Verdict, Verdict]],
                    by_source: Mapping[str, list[Cell]], data_groups: dict[str, list[int]]) -> str:
    src_ns = {s: _namespace_of(by_source.get(s, [])) for s in result.sources}
    by_target: dict[str, list[Cell]] = {}
    for c in result.cells:
        by_target.setdefault(c.target, []).append(c)
    tgt_ns = {t: _target_namespace(by_target.get(t, [])) for t in result.targets}
    rows = groups(result.sources, src_ns)
    cols = (groups(result.targets, tgt_ns) if len(result.targets) > MATRIX_LIMIT
            else {t: [t] for t in result.targets})
    out = [table_head("source group \\ target", group_columns(cols), tall=True, table_id="np-matrix",
                      caption="source groups (rows) × targets or target groups (columns)")]
    for r, (gname, members) in enumerate(rows.items()):
        out.append(group_row_head(gname, members, src_ns, "sources"))
        for col, (cname, targets) in enumerate(cols.items()):
            found = [result.cells[i] for s in members for t in targets if (i := index.get((s, t))) is not None]
            if not found:
                out.append(EMPTY_CELL)
                continue
            bad = sum(1 for x in found if x.match is False)
            unprobed = sum(1 for x in found if x.match is None)
            drifted = sum(1 for x in found if (x.source, x.target) in drifts)
            unstable = sum(1 for x in found if x.unstable)
            key = f"{r},{col}"
            data_groups[key] = [index[(x.source, x.target)] for x in found
                                if x.match is not True or x.unstable or (x.source, x.target) in drifts]
            state = "mismatch" if bad else "unprobed" if unprobed else "match"
            families = {_family(x) for x in found}
            family = (families.pop() if len(families) == 1 else "partial") if state == "match" else \
                "unprobed" if state == "unprobed" else "denied"
            text = (f"‼{bad}" if bad else f"?{unprobed}" if unprobed else _MARK_OF_STATE[family]) + \
                ("Δ" if drifted else "") + ("~" if unstable else "")
            words = f"{len(found)} cells: {bad} mismatch, {unprobed} not probed, " \
                    f"{len(found) - bad - unprobed} match" + (f", {drifted} drifted" if drifted else "") + \
                    (f", {unstable} unstable" if unstable else "")
            classes = f"c g f-{family} s-{state}" + (" drift" if drifted else "") + (" unstable" if unstable else "")
            out.append(f"<td class=\"{classes}\" data-g=\"{key}\" data-title=\"{escape(gname)} → {escape(cname)}\" "
                       f"aria-label=\"{escape(words)}\">{text}</td>")
        out.append("</tr>")
    out.append(TABLE_END)
    return "".join(out)


def render_html(result: RunResult) -> str:
    """The run as one self-contained HTML page: summary and mismatches first, then the matrix."""
    index = {(c.source, c.target): i for i, c in enumerate(result.cells)}
    drifts = {(s, t): (a, b) for s, t, a, b in result.drift}
    by_source: dict[str, list[Cell]] = {}
    for c in result.cells:
        by_source.setdefault(c.source, []).append(c)
    gates = _gates(result.meta)
    grouped = len(result.sources) > MATRIX_LIMIT or len(result.targets) > MATRIX_LIMIT
    strings = Strings()
    data_groups: dict[str, list[int]] = {}
    if grouped:
        matrix = _grouped_matrix(result, index, drifts, by_source, data_groups)
        # Beyond the matrix limit only what needs attention carries its detail (the page stays small).
        keep = {i for ids in data_groups.values() for i in ids}
    else:
        matrix = _matrix(result, index, drifts, by_source)
        keep = set(range(len(result.cells)))
    src_index = {s: i for i, s in enumerate(result.sources)}
    tgt_index = {t: i for i, t in enumerate(result.targets)}
    cells_data: list[list[Any] | None] = [
        _cell_row(_cell_data(c, src_index.get(c.source, -1), tgt_index.get(c.target, -1), strings,
                             drifts.get((c.source, c.target)))) if i in keep else None
        for i, c in enumerate(result.cells)]
    data = {"kind": "run", "grouped": grouped, "sources": list(result.sources), "targets": list(result.targets),
            "fields": CELL_FIELDS, "cells": cells_data, "strings": strings.items, "groups": data_groups,
            "proofs": {str(p): w for p, w in _PROOF_WORDS.items()}, "gates": gates,
            "baseline": str(result.meta.get("baseline_run_id") or "")}
    word = "PASS" if result.exit_code == 0 else "FAIL" if result.exit_code == 1 else "NOT PROBED"
    title = f"netprobe {word}: {len(result.mismatches)} mismatch, run {result.run_id or '?'}"
    note = ""
    if grouped:
        note = (f"<p class=\"note\" id=\"np-grouped\">{len(result.sources)} sources × {len(result.targets)} "
                f"targets is more than {MATRIX_LIMIT} × {MATRIX_LIMIT}: rows are grouped (by namespace, or by "
                "name prefix), each group cell counts its mismatches (‼n) and unprobed cells (?n); select "
                "one to list them. Every cell is in the JSON result.</p>")
    body = "\n".join([
        "<header>", f"<h1>netprobe report: {escape(result.run_id or 'run')}</h1>", _status(result), _counts(result),
        _facts(result), "</header>", "<main>", _issue_lists(result, index, drifts, gates, linked=not grouped),
        "<h2 id=\"np-matrix-title\">Matrix</h2>", _legend(), note,
        toolbar("source group" if grouped else "source"),
        beside_detail(f"<div class=\"scroll\" role=\"region\" aria-labelledby=\"np-matrix-title\" "
                       f"tabindex=\"-1\">{matrix}</div>"), "</main>"])
    return page_html(title, body, data)

"""`netprobe expect -o html` per workload (the default view): source workloads × target workloads,
with the DNS, external and ipBlock columns, each cell coloured and marked by how much it allows
(✓ every port evaluated, ◐ some ports, ✗ none) and its detail — the ports allowed and denied,
the pods, the rule that allows each port range and the policy that isolates the rest.

Up to MATRIX_LIMIT × MATRIX_LIMIT every pair is a cell with its full detail; beyond, rows (and
columns past MATRIX_LIMIT workloads) are grouped by namespace, or by name prefix within one, each
group cell counting its allowed pairs and listing them when selected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ..expect_report import render_connlist, summary_line
from ..policy.portset import ALL_PORTS, PortSet, describe, merge, subtract
from ..workloads import DNS_DESTINATION, EXTERNAL_DESTINATION, WorkloadExplainer, WorkloadView
from .expect_view import spec_sections
from .page import (
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

BLOCKS_COLUMN = "ipBlocks"
DNS_PORTS: PortSet = merge((("UDP", 53, 53), ("TCP", 53, 53)))
# Allowed connections listed under the matrix (one line each; `-o connlist` has every one).
LISTED_LIMIT = 250
# Allowed pairs a group cell lists when selected.
GROUP_LISTED = 40
POD_NAMES = 8  # pod names shown in a cell's detail, then a count

_MARKS = {"connected": "✓", "partial": "◐", "denied": "✗"}
_NOTES = {DNS_DESTINATION: "UDP and TCP 53 to the cluster DNS (the kube-dns pods)",
          EXTERNAL_DESTINATION: "an address outside the cluster that no policy names",
          BLOCKS_COLUMN: "address ranges (ipBlocks) its egress rules open; pods inside them are the workload cells"}


@dataclass(frozen=True, slots=True)
class _Column:
    name: str  # a workload id, DNS, external or ipBlocks
    index: int = -1  # the workload's, for a workload column


@dataclass(frozen=True, slots=True)
class _Cell:
    family: str  # connected | partial | denied: the class (colour) and the symbol
    words: str  # what a screen reader says, and the detail's heading
    ports: PortSet = ()  # allowed
    space: PortSet = ()  # evaluated


def _ports_words(ports: PortSet) -> str:
    return "every port" if ports == ALL_PORTS else describe(ports)


def _cell(view: WorkloadView, pairs: Mapping[tuple[int, int], PortSet], i: int, col: _Column) -> _Cell:
    w = view.workloads[i]
    if col.name == BLOCKS_COLUMN and col.index < 0:
        n = len(w.ip_blocks)
        return _Cell(family="partial" if n else "denied",
                     words=f"{n} ipBlock(s) opened" if n else "no ipBlock opened")
    ports = (pairs.get((i, col.index), ()) if col.index >= 0 else w.dns if col.name == DNS_DESTINATION
             else w.external)
    space = DNS_PORTS if col.index < 0 and col.name == DNS_DESTINATION else view.ports
    if not ports:
        return _Cell(family="denied", words=f"denied on {_ports_words(space)}", space=space)
    if not subtract(space, ports):
        return _Cell(family="connected", words=f"allowed on {_ports_words(space)}", ports=ports, space=space)
    return _Cell(family="partial", words=f"allowed on {describe(ports)} only", ports=ports, space=space)


def _pod_names(pods: Sequence[str]) -> str:
    more = len(pods) - POD_NAMES
    return ", ".join(pods[:POD_NAMES]) + (f" … and {more} more" if more > 0 else "")


def _detail(view: WorkloadView, i: int, col: _Column, cell: _Cell,
            explain: WorkloadExplainer | None) -> list[tuple[str, str]]:
    """(term, words) of one cell: the ports, the pods, what decided it."""
    w = view.workloads[i]
    if col.index < 0 and col.name == BLOCKS_COLUMN:
        return [*((f"to {block}", _ports_words(ports)) for block, ports in w.ip_blocks),
                ("source pods", _pod_names(w.pods)), ("ipBlocks", _NOTES[BLOCKS_COLUMN])]
    out = [("allowed on", _ports_words(cell.ports) if cell.ports else "no port")]
    denied = subtract(cell.space, cell.ports)
    if cell.ports and denied:
        out.append(("denied on", _ports_words(denied)))
    out.append(("source pods", _pod_names(w.pods)))
    if col.index >= 0:
        out.append(("target pods", _pod_names(view.workloads[col.index].pods)))
    else:
        out.append((col.name, _NOTES[col.name]))
    if explain is not None:
        out += (explain.pair(i, col.index) if col.index >= 0 else explain.dns(i) if col.name == DNS_DESTINATION
                else explain.external(i))
    return out


def _columns(view: WorkloadView) -> list[_Column]:
    out = [_Column(name=w.id, index=j) for j, w in enumerate(view.workloads)]
    out += [_Column(name=DNS_DESTINATION), _Column(name=EXTERNAL_DESTINATION)]
    if any(w.ip_blocks for w in view.workloads):
        out.append(_Column(name=BLOCKS_COLUMN))
    return out


def _interned(text: str, names: Sequence[str], strings: Strings) -> int | list[int]:
    """A detail's words as string-table references: cut around the pods it names, so the rest of the
    sentence (the same for every target of a source, or every source of a target) is stored once."""
    parts = [text]
    for name in names:
        parts = [piece for part in parts for k, cut in enumerate(part.split(name))
                 for piece in ((name, cut) if k else (cut,))]
    refs = [strings(part) for part in parts if part] or [strings("")]
    return refs[0] if len(refs) == 1 else refs


def _td(cell: _Cell, attrs: str, text: str) -> str:
    return (f"<td class=\"c f-{cell.family}\" {attrs} aria-label=\"{escape(cell.words)}\">"
            f"{escape(text)}</td>")


def _matrix(view: WorkloadView, columns: Sequence[_Column], pairs: Mapping[tuple[int, int], PortSet],
            explain: WorkloadExplainer | None, strings: Strings, cells: list[dict[str, Any]]) -> str:
    names = [c.name for c in columns]
    out = [table_head("from \\ to", [escape(n) for n in names], tall=is_tall(names), table_id="np-matrix",
                      caption="source workloads (rows) × target workloads, DNS and external (columns)")]
    for i, w in enumerate(view.workloads):
        pods = f"{len(w.pods)} pod{'' if len(w.pods) == 1 else 's'}"
        out.append(row_head(w.id, w.namespace, f"{escape(w.id)} <small>({pods})</small>"))
        for t, col in enumerate(columns):
            cell = _cell(view, pairs, i, col)
            # the pods that stand for the two ends are named in the rules' words
            names = [] if explain is None else [explain.pod_of(k) for k in (i, col.index) if k >= 0]
            flat = [ref for term, words in _detail(view, i, col, cell, explain)
                    for ref in (strings(term), _interned(words, names, strings))]
            out.append(_td(cell, f"data-c=\"{len(cells)}\"", _MARKS[cell.family]))
            cells.append({"s": i, "t": t, "w": strings(cell.words), "dl": flat})
        out.append("</tr>")
    out.append(TABLE_END)
    return "".join(out)


def _grouped_matrix(view: WorkloadView, columns: Sequence[_Column], pairs: Mapping[tuple[int, int], PortSet],
                    strings: Strings, cells: list[dict[str, Any]], data_groups: dict[str, list[int]],
                    more: dict[str, int]) -> str:
    ws = view.workloads
    namespaces = {w.id: w.namespace for w in ws}
    by_name = {c.name: c for c in columns}
    rows = groups([w.id for w in ws], namespaces)
    workload_cols = [c.name for c in columns if c.index >= 0]
    cols = groups(workload_cols, namespaces) if len(workload_cols) > MATRIX_LIMIT else {n: [n] for n in workload_cols}
    cols |= {c.name: [c.name] for c in columns if c.index < 0}
    index = {w.id: i for i, w in enumerate(ws)}
    t_index = {c.name: t for t, c in enumerate(columns)}
    out = [table_head("workload group \\ to", group_columns(cols), tall=True, table_id="np-matrix",
                      caption="workload groups (rows) × target workloads or groups, DNS and external (columns)")]
    for r, (gname, members) in enumerate(rows.items()):
        out.append(group_row_head(gname, members, namespaces, "workloads"))
        for col_n, (cname, targets) in enumerate(cols.items()):
            found = [(index[m], by_name[t]) for m in members for t in targets]
            judged = [(i, col, _cell(view, pairs, i, col)) for i, col in found]
            full = sum(1 for _, _, c in judged if c.family == "connected")
            some = sum(1 for _, _, c in judged if c.family == "partial")
            family = "connected" if full == len(judged) else "denied" if not full + some else "partial"
            key = f"{r},{col_n}"
            allowed = [(i, col, c) for i, col, c in judged if c.family != "denied"]
            data_groups[key] = []
            for i, col, c in allowed[:GROUP_LISTED]:
                data_groups[key].append(len(cells))
                cells.append({"s": i, "t": t_index[col.name], "w": strings(c.words)})
            if len(allowed) > GROUP_LISTED:
                more[key] = len(allowed) - GROUP_LISTED
            words = (f"{len(judged)} cells: {full} allowed on every port evaluated, {some} on some ports, "
                     f"{len(judged) - full - some} on none")
            text = _MARKS[family] + (str(full + some) if family == "partial" else "")
            out.append(f"<td class=\"c g f-{family}\" data-g=\"{key}\" "
                       f"data-title=\"{escape(gname)} → {escape(cname)}\" aria-label=\"{escape(words)}\">"
                       f"{escape(text)}</td>")
        out.append("</tr>")
    out.append(TABLE_END)
    return "".join(out)


def _connections(view: WorkloadView) -> str:
    lines = render_connlist(view).splitlines()
    shown = lines[:LISTED_LIMIT]
    note = (f"<p class=\"note\">{len(shown)} of {len(lines)} listed; `netprobe expect -o connlist` prints every "
            "one.</p>") if len(lines) > len(shown) else ""
    return (f"<section class=\"issues\" id=\"np-connections\"><h2>Allowed connections ({len(lines)})</h2>"
            "<details><summary>one line per allowed connection, as <code>-o connlist</code> prints them"
            "</summary><ol class=\"mono\">" + "".join(f"<li>{escape(line)}</li>" for line in shown)
            + f"</ol>{note}</details></section>")


def render_workload_html(view: WorkloadView, explain: WorkloadExplainer | None = None,
                         spec_section: Mapping[str, Any] | None = None, warnings: Sequence[str] = ()) -> str:
    """`netprobe expect -o html`: the per-workload matrix as one self-contained page.

    `explain` names the rules in each cell's detail (without it the detail has the ports and pods);
    `spec_section` (`analysis.spec_section`) adds the spec's computed `expect` matrix; `warnings` are
    what was read but not modelled (the view's own warnings are always shown).
    """
    pairs = {(i, j): ports for i, j, ports in view.connections}
    columns = _columns(view)
    grouped = len(view.workloads) > MATRIX_LIMIT
    strings = Strings()
    cells: list[dict[str, Any]] = []
    data_groups: dict[str, list[int]] = {}
    more: dict[str, int] = {}
    if grouped:
        matrix = _grouped_matrix(view, columns, pairs, strings, cells, data_groups, more)
        note = (f"<p class=\"note\" id=\"np-grouped\">{len(view.workloads)} workloads is more than {MATRIX_LIMIT} × "
                f"{MATRIX_LIMIT}: rows are grouped (by namespace, or by name prefix), each group cell counts its "
                "allowed pairs (◐n); select one to list them.</p>")
    else:
        matrix = _matrix(view, columns, pairs, explain, strings, cells)
        note = ""
    every = "every port" if view.ports == ALL_PORTS else f"every port evaluated ({describe(view.ports)})"
    sections = [f"<div class=\"scroll\" role=\"region\" aria-labelledby=\"np-matrix-title\" tabindex=\"-1\">"
                f"{matrix}</div>"]
    if spec_section is not None:  # its cells follow the workload cells in `cells` (data-c numbers continue)
        sections += spec_sections(spec_section, cells)
    notes = [*view.warnings, *warnings]
    body = "\n".join([
        "<header><h1>netprobe expect: connectivity per workload</h1>",
        f"<p id=\"np-summary\">{escape(summary_line(view))}, computed from the policies.</p></header><main>",
        *(["<section class=\"issues\" id=\"np-warnings\"><h2>Warnings</h2><ul>"
           + "".join(f"<li>{escape(w)}</li>" for w in notes) + "</ul></section>"] if notes else []),
        "<h2 id=\"np-matrix-title\">Matrix</h2>",
        legend([("f-connected", "✓", f"allowed on {every}"), ("f-partial", "◐", "allowed on some ports (select "
                "the cell for which)"), ("f-denied", "✗", "denied on every port evaluated")],
               f"DNS: {_NOTES[DNS_DESTINATION]}; external: {_NOTES[EXTERNAL_DESTINATION]}"),
        note, toolbar("workload group" if grouped else "from", mismatches=False), beside_detail(*sections),
        _connections(view), "</main>"])
    data = {"kind": "workloads", "grouped": grouped, "sources": [w.id for w in view.workloads],
            "targets": [c.name for c in columns], "cells": cells, "strings": strings.items, "groups": data_groups,
            "more": more, "moreHint": "netprobe expect -o connlist lists every one",
            "groupNone": "no connection is allowed in this group"}
    return page_html(f"netprobe expect: {len(view.workloads)} workloads", body, data)

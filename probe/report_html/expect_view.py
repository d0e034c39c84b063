"""`netprobe expect --pods -o html`: the pod matrices (per port, with DNS and external) and the
spec's computed `expect` section, each cell with the rule or policy that decided it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from .page import (
    EMPTY_CELL,
    MATRIX_LIMIT,
    TABLE_END,
    beside_detail,
    group_columns,
    group_row_head,
    groups,
    is_tall,
    page_html,
    row_head,
    table_head,
    toolbar,
)

GROUP_LISTED = 40  # pod pairs a grouped cell's detail names


def verdict_matrix(title: str, rows: Sequence[str], cols: Sequence[str],
                   verdict: Callable[[str, str], str | None], reason: Callable[[str, str], str],
                   cells: list[dict[str, Any]]) -> str:
    """One allow/deny matrix under its heading; each cell's detail is appended to `cells`."""
    out = [f"<h2>{escape(title)}</h2><div class=\"scroll\">",
           table_head("from \\ to", [escape(c) for c in cols], tall=is_tall(cols))]
    for src in rows:
        out.append(row_head(src, src.split("/", 1)[0] if "/" in src else "", escape(src)))
        for col in cols:
            v = verdict(src, col)
            if v is None:
                out.append(EMPTY_CELL)
                continue
            allow = v == "allow"
            i = len(cells)
            cells.append({"src": src, "dst": col, "e": v, "r": reason(src, col), "title": title})
            out.append(f"<td class=\"c f-{'connected' if allow else 'denied'} s-match\" data-c=\"{i}\" "
                       f"aria-label=\"{'allowed' if allow else 'denied'}\">{'✓' if allow else '✗'}</td>")
        out.append("</tr>")
    out.append(TABLE_END + "</div>")
    return "".join(out)


def grouped_verdict_matrix(title: str, pods: Sequence[str], extra: Sequence[str],
                           verdict: Callable[[str, str], str | None], cells: list[dict[str, Any]]) -> str:
    """Beyond MATRIX_LIMIT pods: the matrix by namespace (pods `ns/name`), the `extra` columns (DNS,
    external) kept; a cell is ✓ when every pod pair of its two groups is allowed, ✗ when none is,
    ◐n when n are, and its detail names the pairs allowed (and denied) up to GROUP_LISTED."""
    namespaces = {p: p.split("/", 1)[0] for p in pods if "/" in p}
    rows = groups(pods, namespaces)
    cols: dict[str, list[str]] = {**rows, **{e: [e] for e in extra}}
    out = [f"<h2>{escape(title)} <small>(by namespace: {len(pods)} pods)</small></h2><div class=\"scroll\">",
           table_head("from \\ to", group_columns(cols), tall=is_tall(list(cols)))]
    for g, members in rows.items():
        out.append(group_row_head(g, members, namespaces, "pods"))
        for c, targets in cols.items():
            pairs = [(s, t, verdict(s, t)) for s in members for t in targets]
            pairs = [(s, t, v) for s, t, v in pairs if v is not None]
            if not pairs:
                out.append(EMPTY_CELL)
                continue
            allowed = [(s, t) for s, t, v in pairs if v == "allow"]
            denied = [(s, t) for s, t, v in pairs if v != "allow"]
            family, mark = (("connected", "✓") if not denied else ("denied", "✗") if not allowed
                            else ("partial", f"◐{len(allowed)}"))
            words = f"{len(allowed)} of {len(pairs)} pod pair(s) allowed"
            listed = "; ".join(
                f"{name}: " + ", ".join(f"{s} → {t}" for s, t in some[:GROUP_LISTED])
                + (f" (+{len(some) - GROUP_LISTED} more)" if len(some) > GROUP_LISTED else "")
                for name, some in (("allowed", allowed), ("denied", denied)) if some)
            i = len(cells)
            cells.append({"src": g, "dst": c, "e": "allow" if not denied else "deny" if not allowed else "partial",
                          "w": words, "r": listed, "title": title})
            out.append(f"<td class=\"c f-{family} s-match\" data-c=\"{i}\" aria-label=\"{escape(words)}\">"
                       f"{mark}</td>")
        out.append("</tr>")
    out.append(TABLE_END + "</div>")
    return "".join(out)


def spec_sections(section: Mapping[str, Any], cells: list[dict[str, Any]]) -> list[str]:
    """The spec's `expect` section computed from the policies (`reasons` say which rule), and its warnings."""
    expect = section["expect"]
    reasons = section.get("reasons", {})
    sources = [str(s) for s in expect]
    targets = list(dict.fromkeys(str(t) for row in expect.values() for t in row))
    out = [verdict_matrix("expect section computed from the policies", sources, targets,
                          lambda s, t: _opt_str(expect.get(s, {}).get(t)),
                          lambda s, t: str(reasons.get(f"{s} -> {t}", "")), cells)]
    warnings = section.get("warnings") or []
    if warnings:
        out.append("<section class=\"issues\"><h2>Warnings</h2><ul>"
                   + "".join(f"<li>{escape(str(w))}</li>" for w in warnings) + "</ul></section>")
    return out


def render_expect_html(doc: Mapping[str, Any]) -> str:
    """`netprobe expect --pods -o html`: the computed matrices (pod-to-pod per port, DNS, external) and the
    spec's computed `expect` section with the rule or policy that decided each cell.

    Reads the expect document as `analysis.expect_document` builds it today (`pods`, `pod_to_pod`,
    `external`, `dns`, and with --spec `expect`, `reasons`, `warnings`).
    """
    pods = [str(p) for p in doc.get("pods", [])]
    dns = doc.get("dns", {})
    sections: list[str] = []
    cells: list[dict[str, Any]] = []
    for block, ext in zip(doc.get("pod_to_pod", []), doc.get("external", []), strict=False):
        grid = block.get("matrix", {})
        ext_m = ext.get("matrix", {})
        cols = [*pods, "DNS", "external"]

        def pick(src: str, dst: str, grid: Mapping[str, Any] = grid, ext_m: Mapping[str, Any] = ext_m) -> str | None:
            if dst == "DNS":
                found = dns.get(src)
            elif dst == "external":
                found = ext_m.get(src)
            else:
                found = grid.get(src, {}).get(dst)
            return None if found is None else str(found)

        title = f"port {block.get('port')}/{block.get('protocol')}"
        if len(pods) > MATRIX_LIMIT:
            sections.append(grouped_verdict_matrix(title, pods, ["DNS", "external"], pick, cells))
        else:
            sections.append(verdict_matrix(title, pods, cols, pick, lambda s, d: "", cells))
    if isinstance(doc.get("expect"), Mapping):
        sections += spec_sections(doc, cells)
    body = "\n".join(["<header><h1>netprobe expect: computed connectivity</h1>",
                      f"<p>{len(pods)} pod(s); ✓ allowed, ✗ denied by the NetworkPolicies. Select a cell of the "
                      "expect section for the rule or policy that decided it.</p></header><main>",
                      toolbar("from", mismatches=False), beside_detail(*sections), "</main>"])
    data = {"kind": "expect", "cells": cells, "strings": []}
    return page_html("netprobe expect", body, data)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)

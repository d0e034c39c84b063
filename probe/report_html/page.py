"""The page every HTML view shares: skeleton, CSS and script (report.css, report.js), the filter
toolbar, the detail panel, matrix table parts and the grouping used beyond MATRIX_LIMIT.

The script reads the embedded JSON (`np-data`, never markup) and writes with textContent; its
`data.kind` ("run", "expect", "workloads") picks how a cell's detail is built.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from html import escape
from importlib.resources import files
from typing import Any

from .. import __version__

# Up to this many rows and columns a matrix shows every cell; beyond, rows (and columns) are
# grouped by namespace or name prefix, each group cell counting what it holds.
MATRIX_LIMIT = 50

_ASSETS = files("probe.report_html")
# Both start on the line after their tag: the bytes (and so the script's CSP hash) are the files'.
CSS = "\n" + _ASSETS.joinpath("report.css").read_text(encoding="utf-8")
SCRIPT = "\n" + _ASSETS.joinpath("report.js").read_text(encoding="utf-8")


def _script_hash() -> str:
    digest = hashlib.sha256(SCRIPT.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def json_for_script(value: Any) -> str:
    """JSON safe inside <script type=application/json>: no `</script>` or `<!--` can appear."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_html(title: str, body: str, data: Mapping[str, Any]) -> str:
    """The whole self-contained document: CSP allowing only the page's own script, CSS, body, data, script."""
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src '{_script_hash()}'; img-src data:"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta name=\"generator\" content=\"netprobe {escape(__version__)}\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script type=\"application/json\" id=\"np-data\">{json_for_script(data)}</script>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def toolbar(row_noun: str, *, mismatches: bool = True) -> str:
    """The filters (shown once the script runs): mismatches only, a row by name, a row namespace."""
    only_bad = ("<label><input type=\"checkbox\" id=\"np-only-bad\"> only rows and columns with a mismatch, "
                "an unprobed cell, drift or an unstable cell</label>") if mismatches else ""
    return (
        "<div class=\"toolbar noprint\" role=\"search\" aria-label=\"filter the matrix\">" + only_bad +
        f"<label>{escape(row_noun)} <input type=\"search\" id=\"np-source\" list=\"np-sources\" "
        "placeholder=\"name contains\"></label><datalist id=\"np-sources\"></datalist>"
        "<label>namespace <select id=\"np-namespace\"><option value=\"\">all</option></select></label>"
        "<span id=\"np-shown\" role=\"status\" aria-live=\"polite\"></span></div>"
    )


_DETAIL_PANEL = "<section id=\"np-detail\" aria-live=\"polite\" aria-label=\"cell detail\"></section>"
_HINT = ("<p class=\"note noprint\">Select a cell (click, or Tab into the matrix and use the arrow keys) for its "
         "detail.</p>")


def beside_detail(*parts: str) -> str:
    """The matrix (or matrices) with the detail panel beside it (below it on a narrow screen)."""
    return f"<div class=\"mwrap\"><div class=\"col\">{''.join(parts)}</div>{_DETAIL_PANEL}</div>{_HINT}"


def legend(items: Sequence[tuple[str, str, str]], *notes: str) -> str:
    """What the cells' colours and symbols mean: (cell classes, symbol, words) a sample cell each, then notes."""
    return ("<ul class=\"legend\" aria-label=\"legend\">"
            + "".join(f"<li><span class=\"c {c}\" aria-hidden=\"true\">{m}</span> {escape(w)}</li>"
                      for c, m, w in items)
            + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")


# ------------------------------------------------------------------------ matrix tables

EMPTY_CELL = "<td class=\"c empty\" aria-label=\"no cell\">-</td>"
TABLE_END = "</tbody></table>"


def is_tall(columns: Sequence[str]) -> bool:
    """Many or long column names are written vertically."""
    return len(columns) > 8 or any(len(c) > 12 for c in columns)


def table_head(corner: str, columns: Sequence[str], *, tall: bool, table_id: str = "", caption: str = "") -> str:
    """A matrix table up to its `<tbody>`: the sticky header row; `columns` are markup (escaped already)."""
    return (f"<table class=\"m{' tall' if tall else ''}\"" + (f" id=\"{table_id}\"" if table_id else "") + ">"
            + (f"<caption class=\"visually-hidden\">{escape(caption)}</caption>" if caption else "")
            + f"<thead><tr><th class=\"corner\" scope=\"col\">{escape(corner)}</th>"
            + "".join(f"<th class=\"t\" scope=\"col\">{c}</th>" for c in columns) + "</tr></thead><tbody>")


def row_head(name: str, namespace: str, header: str) -> str:
    """A matrix row's start: what the filters read (name, namespace) and its sticky header (markup)."""
    return f"<tr data-name=\"{escape(name)}\" data-ns=\"{escape(namespace)}\"><th scope=\"row\">{header}</th>"


def group_columns(columns: Mapping[str, Sequence[str]]) -> list[str]:
    """A grouped matrix's column headers (markup): each group's name, and its size when it holds several."""
    return [f"{escape(k)}{f' ({len(v)})' if len(v) > 1 else ''}" for k, v in columns.items()]


def group_row_head(name: str, members: Sequence[str], namespaces: Mapping[str, str], noun: str) -> str:
    """A grouped matrix's row start: its namespace when all members share one, and how many it holds."""
    found = {namespaces.get(m, "") for m in members}
    return row_head(name, found.pop() if len(found) == 1 else "",
                    f"{escape(name)} <small>({len(members)} {escape(noun)})</small>")


def _group_key(name: str, namespace: str, use_namespace: bool) -> str:
    if use_namespace:
        return namespace or "(namespace unknown)"
    for sep in ("/", ".", "-", "_"):
        if sep in name:
            return name.split(sep, 1)[0] + sep + "*"
    return name


def groups(names: Sequence[str], namespaces: Mapping[str, str]) -> dict[str, list[str]]:
    """Group names by namespace when most are known and they span several; otherwise by name prefix."""
    known = [namespaces[n] for n in names if namespaces.get(n)]
    use_ns = len(set(known)) > 1 and len(known) * 2 >= len(names)
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(_group_key(n, namespaces.get(n, ""), use_ns), []).append(n)
    return out


class Strings:
    """Interning of the strings that repeat across cells (identities, pods, rules): the page stays small."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(text)
        return self._index[text]

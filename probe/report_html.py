"""A RunResult (or an `expect` document) as one self-contained HTML page.

`--report html=PATH`, `netprobe report RESULT.json -o html` and `netprobe expect -o html`.
The page is a single file with inline CSS and one small inline script: no CDN, no external
font, script or style, so it opens offline from a CI artifact store. What the script adds
(cell detail on click or keyboard focus, filters, arrow-key navigation) is an enhancement:
with scripts blocked (some artifact viewers do) the summary, the mismatch list with every
detail and the coloured, symbol-marked matrix are all plain HTML.

Everything that comes from the cluster or the spec (names, details, reasons, meta) is
untrusted: it is escaped with `html.escape` in markup, `<`, `>` and `&` are escaped inside
the embedded JSON, the script writes it with `textContent` only, and a Content-Security-Policy
allows no script but the page's own (by hash) — an injected `<script>` cannot run.

Pure functions: no I/O, no clock (the page shows the run's own start time), so the same result
renders to the same bytes (the golden tests rely on it).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Any

from . import __version__
from .model import Cell, Proof, RunResult, Verdict

# Up to this many sources and targets the matrix shows every cell; beyond, rows (and columns)
# are grouped by namespace or name prefix, each group cell counting what it holds.
MATRIX_LIMIT = 50
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


# ------------------------------------------------------------------------ shared page shell

_CSS = """
:root{--ok:#1a7f37;--bad:#c8102e;--warn:#9a6700;--fg:#1f2328;--mute:#59636e;--line:#d0d7de;
--connected:#cdeccf;--denied:#e6e9ee;--partial:#ffd8a8;--unprobed:#fff1a8;--nx:#e4d7f5}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;padding:16px 20px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:18px 0 6px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.status{display:inline-block;padding:4px 10px;border-radius:6px;font-weight:700;color:#fff}
.status.pass{background:var(--ok)}.status.fail{background:var(--bad)}.status.warn{background:var(--warn)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:10px 0}
.facts dt{color:var(--mute)}.facts dd{margin:0}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0;padding:0;list-style:none}
.counts li{border:1px solid var(--line);border-radius:6px;padding:3px 9px}
.counts li.bad{border-color:var(--bad);color:var(--bad);font-weight:700}
.issues li{margin:3px 0}.issues summary{cursor:pointer}
.issues ol{max-height:50vh;overflow:auto;padding-right:8px}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin:8px 0;padding:0;list-style:none;color:var(--mute)}
.legend .c{display:inline-block;width:auto;min-width:26px;height:22px;line-height:22px;padding:0 4px}
.toolbar{display:none;gap:14px;align-items:center;flex-wrap:wrap;margin:10px 0;padding:8px;
background:#f6f8fa;border:1px solid var(--line);border-radius:6px}
.js .toolbar{display:flex}
.scroll{overflow:auto;max-height:80vh;border:1px solid var(--line);border-radius:6px}
table.m{border-collapse:separate;border-spacing:0}
table.m th{background:#fff;font-weight:600;text-align:left;padding:3px 6px;border-bottom:1px solid var(--line)}
table.m thead th{position:sticky;top:0;z-index:2;vertical-align:bottom}
table.m thead th.corner{left:0;z-index:3}
table.m tbody th{position:sticky;left:0;z-index:1;border-right:1px solid var(--line);white-space:nowrap}
table.m.tall thead th.t{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;max-height:220px;
padding:6px 2px}
td.c{min-width:30px;height:26px;text-align:center;border:1px solid #fff;cursor:pointer;font-weight:600;
white-space:nowrap;padding:0 3px}
.c.f-connected{background:var(--connected)}.c.f-denied{background:var(--denied)}
.c.f-partial{background:var(--partial)}
.c.f-unprobed{background:repeating-linear-gradient(45deg,var(--unprobed),var(--unprobed) 4px,#fff8d0 4px,#fff8d0 8px)}
.c.nx{background:var(--nx)}
.c.s-mismatch{box-shadow:inset 0 0 0 3px var(--bad);color:var(--bad)}
.c.drift{background-image:linear-gradient(225deg,#0550ae 0 7px,transparent 7px)}
.c.empty{background:#fff;color:var(--mute);cursor:default}
.c:focus{outline:3px solid #0969da;outline-offset:-1px}
.c.sel{outline:3px solid #0969da}
tr.hide,.hide{display:none}
.g small{font-weight:400;color:var(--mute)}
.mwrap{display:flex;gap:14px;align-items:flex-start}
.mwrap>.col{flex:1 1 auto;min-width:0}
#np-detail{display:none;flex:0 0 440px;position:sticky;top:8px;z-index:10;background:#fff;border:2px solid #0969da;
border-radius:6px;padding:8px 12px;max-height:94vh;overflow:auto;box-shadow:0 4px 12px rgba(0,0,0,.12)}
.js #np-detail.open{display:block}
@media (max-width:1000px){
.mwrap{display:block}
#np-detail{position:fixed;left:0;right:0;bottom:0;top:auto;border-radius:0;border-width:3px 0 0;max-height:42vh}
.js body.detail-open{padding-bottom:44vh}
}
#np-detail button{float:right}
#np-detail h3{margin:0 0 4px;font-size:15px}
dl.d{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0}
dl.d dt{color:var(--mute)}dl.d dd{margin:0;overflow-wrap:anywhere}
table.subs{border-collapse:collapse;margin:4px 0;font-size:12.5px;width:100%}
table.subs th,table.subs td{border:1px solid var(--line);padding:2px 6px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
table.subs th{white-space:nowrap}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.note{color:var(--mute)}
@media print{
body{padding:0;font-size:11px}.toolbar,#np-detail,.noprint{display:none!important}
.scroll,.issues ol{overflow:visible;max-height:none;border:0}
table.m thead th,table.m tbody th{position:static}
td.c{-webkit-print-color-adjust:exact;print-color-adjust:exact;min-width:18px;height:18px}
.status{-webkit-print-color-adjust:exact;print-color-adjust:exact}
tr{break-inside:avoid}
}
"""

# The page's one script. It reads the embedded JSON (never markup) and writes with textContent.
_JS = r"""
(function () {
  "use strict";
  var root = document.documentElement;
  var data = JSON.parse(document.getElementById("np-data").textContent);
  if (data.fields) {  // cells travel as lists (CELL_FIELDS); -1 is "none"
    data.cells = data.cells.map(function (row) {
      if (!row) { return row; }
      var c = {};
      data.fields.forEach(function (f, k) { if (k < row.length && row[k] !== -1) { c[f] = row[k]; } });
      return c;
    });
  }
  root.classList.add("js");
  var panel = document.getElementById("np-detail");
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.m"));
  var cells = Array.prototype.slice.call(document.querySelectorAll("table.m td.c"));
  var rows = [];
  tables.forEach(function (t) { rows = rows.concat(Array.prototype.slice.call(t.tBodies[0].rows)); });
  var current = null;
  var stateWords = {match: "matches", mismatch: "MISMATCH", unprobed: "not probed"};

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function str(i) { return i === undefined || i === null || i < 0 ? "" : data.strings[i]; }
  function pair(dl, term, value) {
    if (value === undefined || value === null || value === "") { return; }
    dl.appendChild(el("dt", term));
    dl.appendChild(el("dd", value));
  }
  function gatesOf(c) {
    var ids = {};
    (c.sub || []).forEach(function (s) { ids[str(s[1])] = true; });
    return (data.gates || []).filter(function (g) {
      return ids[g.identity] || (g.sources || []).indexOf(data.sources[c.s]) >= 0;
    });
  }
  function subTable(c) {
    // Columns no sub-check fills (no target pods, no proof) are left out, as in the mismatch list.
    var heads = ["identity", "target pod", "address", "verdict", "proof", "detail"];
    var rows = c.sub.map(function (s) {
      return [str(s[1]), str(s[2]), str(s[3]), str(s[0]), str(s[5]), str(s[4] === -2 ? c.d : s[4])];
    });
    var used = heads.map(function (h, k) { return rows.some(function (r) { return r[k] !== ""; }); });
    var t = el("table", null, "subs");
    var head = t.createTHead().insertRow();
    heads.forEach(function (h, k) {
      if (used[k]) { var th = el("th", h); th.scope = "col"; head.appendChild(th); }
    });
    var body = t.createTBody();
    rows.forEach(function (row) {
      var r = body.insertRow();
      row.forEach(function (v, k) { if (used[k]) { r.insertCell().textContent = v; } });
    });
    return t;
  }
  function runDetail(c) {
    var box = el("div");
    box.appendChild(el("h3", data.sources[c.s] + " \u2192 " + data.targets[c.t] + ": " + stateWords[str(c.st)]));
    var dl = el("dl", null, "d");
    var by = (c.by || []).map(str).join("; ");
    var fromSpec = !by || by === "spec";
    pair(dl, "expected", str(c.e) + (fromSpec ? " (the spec)" : ""));
    if (!fromSpec) {
      var policies = by.indexOf("policies: ") === 0;
      pair(dl, policies ? "decided by the policies" : "expected by", policies ? by.slice(10) : by);
    }
    pair(dl, "observed", str(c.o) + (c.u ? " (unstable: still changing between rounds)" : ""));
    if (c.pr) { pair(dl, "deny proven", data.proofs[c.pr] || c.pr); }
    pair(dl, "why", str(c.r));
    pair(dl, "detail", str(c.d));
    if (c.dr) {
      pair(dl, "baseline drift", c.dr[0] + " \u2192 " + c.dr[1] + " (baseline " + (data.baseline || "?") + ")");
    }
    pair(dl, "rounds", String(c.a || 1) + " (" + (c.h ? c.h.join(", ") : str(c.o)) + ")");
    if (c.ms !== undefined) { pair(dl, "time", c.ms + " ms"); }
    gatesOf(c).forEach(function (g) {
      var unmet = g.unmet || g.missing;
      pair(dl, "gate wait", "probe pod " + g.probe_pod + ": " + ((g.waited_ms || 0) / 1000).toFixed(2) + "s, " +
           (g.opened || g.mode || "") + (Array.isArray(unmet) && unmet.length ? " (" + unmet.join(", ") + ")" : ""));
    });
    box.appendChild(dl);
    if (c.sub && c.sub.length) {
      box.appendChild(el("p", c.sub.length + " sub-check(s): every identity \u00d7 destination must match"));
      box.appendChild(subTable(c));
    }
    return box;
  }
  function expectDetail(c) {
    var box = el("div");
    box.appendChild(el("h3", c.src + " \u2192 " + c.dst + ": " + (c.e === "allow" ? "allowed" : "denied")));
    var dl = el("dl", null, "d");
    pair(dl, "matrix", c.title);
    pair(dl, "decided by", c.r || "(the pod matrix: see `netprobe explain` for the rule)");
    box.appendChild(dl);
    return box;
  }
  function groupDetail(td) {
    var box = el("div");
    var g = data.groups[td.getAttribute("data-g")];
    box.appendChild(el("h3", td.getAttribute("data-title")));
    box.appendChild(el("p", td.getAttribute("aria-label")));
    var ul = el("ul");
    g.forEach(function (i) {
      var c = data.cells[i];
      ul.appendChild(el("li", data.sources[c.s] + " \u2192 " + data.targets[c.t] + ": " +
                        stateWords[str(c.st)] + " \u2014 " + (str(c.r) || str(c.d) || str(c.o))));
    });
    if (!g.length) { ul.appendChild(el("li", "every cell of this group matches")); }
    box.appendChild(ul);
    return box;
  }
  function hide() { panel.classList.remove("open"); document.body.classList.remove("detail-open"); }
  function show(td) {
    if (!td || td.classList.contains("empty")) { return; }
    if (current) { current.classList.remove("sel"); }
    current = td; td.classList.add("sel");
    while (panel.firstChild) { panel.removeChild(panel.firstChild); }
    var close = el("button", "close (Esc)", "noprint");
    close.type = "button";
    close.addEventListener("click", function () { hide(); td.focus(); });
    panel.appendChild(close);
    var box;
    if (td.hasAttribute("data-g")) { box = groupDetail(td); }
    else {
      var c = data.cells[+td.getAttribute("data-c")];
      box = data.kind === "expect" ? expectDetail(c) : runDetail(c);
    }
    panel.appendChild(box);
    panel.classList.add("open");
    document.body.classList.add("detail-open");
  }

  // Keyboard: one tab stop per matrix (roving tabindex), arrows move, focus shows the detail.
  function visible(td) { return !td.classList.contains("hide") && !td.parentNode.classList.contains("hide"); }
  function focusCell(td) {
    if (!td) { return; }
    td.closest("table").querySelectorAll("td.c").forEach(function (x) { x.tabIndex = -1; });
    td.tabIndex = 0; td.focus({preventScroll: true});
    td.scrollIntoView({block: "nearest", inline: "nearest"});
  }
  function resetTabStops() {
    tables.forEach(function (t) {
      var all = Array.prototype.slice.call(t.querySelectorAll("td.c"));
      all.forEach(function (x) { x.tabIndex = -1; });
      var first = all.filter(function (x) { return visible(x) && x.classList.contains("s-mismatch"); })[0] ||
                  all.filter(visible)[0];
      if (first) { first.tabIndex = 0; }
    });
  }
  function step(td, dr, dc) {
    if (dc) {
      var n = td;
      do { n = dc > 0 ? n.nextElementSibling : n.previousElementSibling; }
      while (n && (n.tagName !== "TD" || !visible(n)));
      return n;
    }
    var row = td.parentNode;
    do { row = dr > 0 ? row.nextElementSibling : row.previousElementSibling; }
    while (row && row.classList.contains("hide"));
    return row ? row.cells[td.cellIndex] : null;
  }
  tables.forEach(function (table) {
    table.setAttribute("role", "grid");
    table.querySelectorAll("td.c").forEach(function (td) {
      td.setAttribute("role", "gridcell");
      var c = td.hasAttribute("data-c") ? data.cells[+td.getAttribute("data-c")] : null;
      if (c && c.l !== undefined && !td.hasAttribute("aria-label")) { td.setAttribute("aria-label", str(c.l)); }
    });
    table.addEventListener("keydown", function (ev) {
      var td = ev.target.closest("td.c");
      if (!td) { return; }
      var moves = {ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0]};
      if (moves[ev.key]) { ev.preventDefault(); focusCell(step(td, moves[ev.key][0], moves[ev.key][1]) || td); }
      else if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); show(td); }
    });
    table.addEventListener("focusin", function (ev) { if (ev.target.matches("td.c")) { show(ev.target); } });
    table.addEventListener("click", function (ev) {
      var td = ev.target.closest("td.c");
      if (td) { focusCell(td); show(td); }
    });
  });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { hide(); } });

  // Filters: mismatches only, a source (or group) by name, a source namespace.
  var onlyBad = document.getElementById("np-only-bad");
  var srcBox = document.getElementById("np-source");
  var nsBox = document.getElementById("np-namespace");
  var shown = document.getElementById("np-shown");
  var nsSeen = {}, names = {};
  rows.forEach(function (r) {
    var ns = r.getAttribute("data-ns");
    if (ns) { nsSeen[ns] = true; }
    names[r.getAttribute("data-name")] = true;
  });
  Object.keys(nsSeen).sort().forEach(function (ns) { nsBox.appendChild(el("option", ns)); });
  if (!Object.keys(nsSeen).length) { nsBox.disabled = true; }
  var list = document.getElementById("np-sources");
  Object.keys(names).forEach(function (n) { list.appendChild(el("option", n)); });
  function isBad(td) {
    var cl = td.classList;
    return cl.contains("s-mismatch") || cl.contains("s-unprobed") || cl.contains("drift") || cl.contains("unstable");
  }
  function apply() {
    var text = srcBox.value.trim().toLowerCase(), ns = nsBox.value, bad = onlyBad ? onlyBad.checked : false;
    var nrows = 0, ncols = 0, allcols = 0;
    tables.forEach(function (table) {
      var body = Array.prototype.slice.call(table.tBodies[0].rows);
      var width = table.tHead.rows[0].cells.length - 1, colBad = [], i;
      for (i = 0; i < width; i++) { colBad.push(false); }
      body.forEach(function (r) {
        var name = (r.getAttribute("data-name") || "").toLowerCase();
        var keep = (!text || name.indexOf(text) >= 0) && (!ns || r.getAttribute("data-ns") === ns);
        var rowBad = false;
        for (var j = 1; j < r.cells.length; j++) { if (isBad(r.cells[j])) { rowBad = true; } }
        if (bad && !rowBad) { keep = false; }
        if (keep) {
          nrows++;
          for (var k = 1; k < r.cells.length; k++) { if (isBad(r.cells[k])) { colBad[k - 1] = true; } }
        }
        r.classList.toggle("hide", !keep);
      });
      Array.prototype.forEach.call(table.rows, function (r) {
        for (var j = 1; j < r.cells.length; j++) { r.cells[j].classList.toggle("hide", bad && !colBad[j - 1]); }
      });
      for (i = 0; i < width; i++) { allcols++; if (!bad || colBad[i]) { ncols++; } }
    });
    shown.textContent = "showing " + nrows + " of " + rows.length + " rows, " + ncols + " of " + allcols + " columns";
    resetTabStops();
  }
  [onlyBad, srcBox, nsBox].forEach(function (x) {
    if (x) { x.addEventListener("input", apply); x.addEventListener("change", apply); }
  });
  apply();
  // A link to one cell (#c-12, also what the mismatch list links to) opens its detail.
  function fromHash() {
    var m = /^#c-(\d+)$/.exec(window.location.hash);
    var td = m ? document.querySelector('td.c[data-c="' + m[1] + '"]') : null;
    if (td) { focusCell(td); show(td); }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  // Printing shows every mismatch's detail, not only the ones opened on screen.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
  root.setAttribute("data-np-ready", String(cells.length));
})();
"""


def _script_hash() -> str:
    digest = hashlib.sha256(_JS.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _json_for_script(value: Any) -> str:
    """JSON safe inside <script type=application/json>: no `</script>` or `<!--` can appear."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, body: str, data: Mapping[str, Any]) -> str:
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src '{_script_hash()}'; img-src data:"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta name=\"generator\" content=\"netprobe {escape(__version__)}\">\n"
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script type=\"application/json\" id=\"np-data\">{_json_for_script(data)}</script>\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    )


def _toolbar(row_noun: str, *, mismatches: bool = True) -> str:
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


def _beside_detail(*parts: str) -> str:
    """The matrix (or matrices) with the detail panel beside it (below it on a narrow screen)."""
    return f"<div class=\"mwrap\"><div class=\"col\">{''.join(parts)}</div>{_DETAIL_PANEL}</div>{_HINT}"


# ------------------------------------------------------------------------ the run report


def _namespace_of(cells: Iterable[Cell]) -> str:
    """The namespace of a source, from its probe identities (`ns/labels`); '' when unknown or mixed."""
    found = {s.identity.split("/", 1)[0] for c in cells for s in c.subresults if "/" in s.identity}
    return found.pop() if len(found) == 1 else ""


def _target_namespace(cells: Iterable[Cell]) -> str:
    found = {s.pod.split("/", 1)[0] for c in cells for s in c.subresults if "/" in s.pod}
    return found.pop() if len(found) == 1 else ""


class _Strings:
    """Interning of the strings that repeat across cells (identities, pods, expected_by)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(text)
        return self._index[text]


# A cell in the embedded data is a list in this order (an absent value is -1, trailing ones left
# out): 2500 cells as objects with keys would be twice the size. The script zips it with CELL_FIELDS.
CELL_FIELDS = ("s", "t", "e", "o", "st", "l", "ms", "d", "by", "sub", "r", "pr", "u", "a", "h", "dr")


def _cell_row(fields: Mapping[str, Any]) -> list[Any]:
    row = [fields.get(k, -1) for k in CELL_FIELDS]
    while row and row[-1] == -1:
        row.pop()
    return row


def _cell_data(cell: Cell, si: int, ti: int, strings: _Strings,
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
    return ("<ul class=\"legend\" aria-label=\"legend\">"
            + "".join(f"<li><span class=\"c {c}\" aria-hidden=\"true\">{m}</span> {escape(w)}</li>"
                      for c, m, w in items)
            + "<li>a matching deny is proven by: blocked = dropped, refused/unreachable = rejected, "
              "dns-timeout = not resolvable (the port was not tested)</li></ul>")


def _matrix(result: RunResult, index: Mapping[tuple[str, str], int],
            drifts: Mapping[tuple[str, str], tuple[Verdict, Verdict]],
            by_source: Mapping[str, list[Cell]]) -> str:
    tall = len(result.targets) > 8 or any(len(t) > 12 for t in result.targets)
    out = [f"<table class=\"m{' tall' if tall else ''}\" id=\"np-matrix\">"
           "<caption class=\"visually-hidden\">sources (rows) × targets (columns)</caption>"
           "<thead><tr><th class=\"corner\" scope=\"col\">source \\ target</th>"]
    out += [f"<th class=\"t\" scope=\"col\">{escape(t)}</th>" for t in result.targets]
    out.append("</tr></thead><tbody>")
    for src in result.sources:
        ns = _namespace_of(by_source.get(src, []))
        out.append(f"<tr data-name=\"{escape(src)}\" data-ns=\"{escape(ns)}\"><th scope=\"row\">{escape(src)}</th>")
        for tgt in result.targets:
            i = index.get((src, tgt))
            if i is None:
                out.append("<td class=\"c empty\" aria-label=\"no cell\">-</td>")
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
    out.append("</tbody></table>")
    return "".join(out)


def _group_key(name: str, namespace: str, use_namespace: bool) -> str:
    if use_namespace:
        return namespace or "(namespace unknown)"
    for sep in ("/", ".", "-", "_"):
        if sep in name:
            return name.split(sep, 1)[0] + sep + "*"
    return name


def _groups(names: Sequence[str], namespaces: Mapping[str, str]) -> dict[str, list[str]]:
    """Group names by namespace when most are known and they span several; otherwise by name prefix."""
    known = [namespaces[n] for n in names if namespaces.get(n)]
    use_ns = len(set(known)) > 1 and len(known) * 2 >= len(names)
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(_group_key(n, namespaces.get(n, ""), use_ns), []).append(n)
    return out


def _grouped_matrix(result: RunResult, index: Mapping[tuple[str, str], int],
                    drifts: Mapping[tuple[str, str], tuple[Verdict, Verdict]],
                    by_source: Mapping[str, list[Cell]], data_groups: dict[str, list[int]]) -> str:
    src_ns = {s: _namespace_of(by_source.get(s, [])) for s in result.sources}
    by_target: dict[str, list[Cell]] = {}
    for c in result.cells:
        by_target.setdefault(c.target, []).append(c)
    tgt_ns = {t: _target_namespace(by_target.get(t, [])) for t in result.targets}
    rows = _groups(result.sources, src_ns)
    cols = (_groups(result.targets, tgt_ns) if len(result.targets) > MATRIX_LIMIT
            else {t: [t] for t in result.targets})
    out = ["<table class=\"m tall\" id=\"np-matrix\">"
           "<caption class=\"visually-hidden\">source groups (rows) × targets or target groups (columns)</caption>"
           "<thead><tr><th class=\"corner\" scope=\"col\">source group \\ target</th>"]
    out += [f"<th class=\"t\" scope=\"col\">{escape(k)}{f' ({len(v)})' if len(v) > 1 else ''}</th>"
            for k, v in cols.items()]
    out.append("</tr></thead><tbody>")
    for r, (gname, members) in enumerate(rows.items()):
        ns = {src_ns[m] for m in members}
        out.append(f"<tr data-name=\"{escape(gname)}\" data-ns=\"{escape(ns.pop() if len(ns) == 1 else '')}\">"
                   f"<th scope=\"row\">{escape(gname)} <small>({len(members)} sources)</small></th>")
        for col, (cname, targets) in enumerate(cols.items()):
            found = [result.cells[i] for s in members for t in targets if (i := index.get((s, t))) is not None]
            if not found:
                out.append("<td class=\"c empty\" aria-label=\"no cell\">-</td>")
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
    out.append("</tbody></table>")
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
    strings = _Strings()
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
        _toolbar("source group" if grouped else "source"),
        _beside_detail(f"<div class=\"scroll\" role=\"region\" aria-labelledby=\"np-matrix-title\" "
                       f"tabindex=\"-1\">{matrix}</div>"), "</main>"])
    return _page(title, body, data)


# ------------------------------------------------------------------------ netprobe expect


def render_expect_html(doc: Mapping[str, Any]) -> str:
    """`netprobe expect -o html`: the computed matrices (pod-to-pod per port, DNS, external) and the
    spec's computed `expect` section with the rule or policy that decided each cell.

    Reads the expect document as `analysis.expect_document` builds it today (`pods`, `pod_to_pod`,
    `external`, `dns`, and with --spec `expect`, `reasons`, `warnings`).
    """
    pods = [str(p) for p in doc.get("pods", [])]
    dns = doc.get("dns", {})
    sections: list[str] = []
    cells: list[dict[str, Any]] = []

    def matrix(title: str, rows: Sequence[str], cols: Sequence[str],
               verdict: Callable[[str, str], str | None], reason: Callable[[str, str], str]) -> str:
        tall = len(cols) > 8 or any(len(c) > 12 for c in cols)
        out = [f"<h2>{escape(title)}</h2><div class=\"scroll\"><table class=\"m{' tall' if tall else ''}\">"
               "<thead><tr><th class=\"corner\" scope=\"col\">from \\ to</th>"]
        out += [f"<th class=\"t\" scope=\"col\">{escape(c)}</th>" for c in cols]
        out.append("</tr></thead><tbody>")
        for src in rows:
            ns = src.split("/", 1)[0] if "/" in src else ""
            out.append(f"<tr data-name=\"{escape(src)}\" data-ns=\"{escape(ns)}\"><th scope=\"row\">{escape(src)}</th>")
            for col in cols:
                v = verdict(src, col)
                if v is None:
                    out.append("<td class=\"c empty\" aria-label=\"no cell\">-</td>")
                    continue
                allow = v == "allow"
                i = len(cells)
                cells.append({"src": src, "dst": col, "e": v, "r": reason(src, col), "title": title})
                out.append(f"<td class=\"c f-{'connected' if allow else 'denied'} s-match\" data-c=\"{i}\" "
                           f"aria-label=\"{'allowed' if allow else 'denied'}\">{'✓' if allow else '✗'}</td>")
            out.append("</tr>")
        out.append("</tbody></table></div>")
        return "".join(out)

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

        sections.append(matrix(f"port {block.get('port')}/{block.get('protocol')}", pods, cols, pick,
                               lambda s, d: ""))
    expect = doc.get("expect")
    if isinstance(expect, Mapping):
        reasons = doc.get("reasons", {})
        sources = [str(s) for s in expect]
        targets = list(dict.fromkeys(str(t) for row in expect.values() for t in row))
        sections.append(matrix("expect section computed from the policies", sources, targets,
                               lambda s, t: _opt_str(expect.get(s, {}).get(t)),
                               lambda s, t: str(reasons.get(f"{s} -> {t}", ""))))
        warnings = doc.get("warnings") or []
        if warnings:
            sections.append("<section class=\"issues\"><h2>Warnings</h2><ul>"
                            + "".join(f"<li>{escape(str(w))}</li>" for w in warnings) + "</ul></section>")
    body = "\n".join(["<header><h1>netprobe expect: computed connectivity</h1>",
                      f"<p>{len(pods)} pod(s); ✓ allowed, ✗ denied by the NetworkPolicies. Select a cell of the "
                      "expect section for the rule or policy that decided it.</p></header><main>",
                      _toolbar("from", mismatches=False), _beside_detail(*sections), "</main>"])
    data = {"kind": "expect", "cells": cells, "strings": []}
    return _page("netprobe expect", body, data)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)

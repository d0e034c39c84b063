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
    box.appendChild(el("h3", c.src + " \u2192 " + c.dst + ": " + (c.w || (c.e === "allow" ? "allowed" : "denied"))));
    var dl = el("dl", null, "d");
    pair(dl, "matrix", c.title);
    pair(dl, "decided by", c.r || "(the pod matrix: see `netprobe explain` for the rule)");
    box.appendChild(dl);
    return box;
  }
  // A workload cell: its words (w) and (term, words) pairs (dl, flat) as string-table indexes; words
  // may be a list of pieces (cut around the pod names they hold, so the rest is stored once).
  function words(v) { return Array.isArray(v) ? v.map(str).join("") : str(v); }
  function workloadDetail(c) {
    var box = el("div");
    box.appendChild(el("h3", data.sources[c.s] + " \u2192 " + data.targets[c.t] + ": " + str(c.w)));
    var dl = el("dl", null, "d");
    for (var k = 0; k + 1 < (c.dl || []).length; k += 2) { pair(dl, str(c.dl[k]), words(c.dl[k + 1])); }
    box.appendChild(dl);
    return box;
  }
  function groupLine(c) {
    if (data.kind === "workloads") { return str(c.w); }
    return stateWords[str(c.st)] + " \u2014 " + (str(c.r) || str(c.d) || str(c.o));
  }
  function groupDetail(td) {
    var box = el("div");
    var g = data.groups[td.getAttribute("data-g")];
    box.appendChild(el("h3", td.getAttribute("data-title")));
    box.appendChild(el("p", td.getAttribute("aria-label")));
    var ul = el("ul");
    g.forEach(function (i) {
      var c = data.cells[i];
      ul.appendChild(el("li", data.sources[c.s] + " \u2192 " + data.targets[c.t] + ": " + groupLine(c)));
    });
    var more = (data.more || {})[td.getAttribute("data-g")];
    if (more) { ul.appendChild(el("li", "\u2026 and " + more + " more (" + data.moreHint + ")")); }
    if (!g.length) { ul.appendChild(el("li", data.groupNone || "every cell of this group matches")); }
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
      // the cells of an expect matrix (also the --spec section under the workload matrix) name their ends
      box = c.src !== undefined ? expectDetail(c) : data.kind === "workloads" ? workloadDetail(c) : runDetail(c);
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

"""The HTML report (probe/report_html.py): structure against golden files, every cell's classes,
symbol and detail, the grouped view, size, hostile names, and a real headless chromium.

Regenerate the golden files after an intended change with
    NETPROBE_UPDATE_GOLDEN=1 python3 -m pytest tests/test_report_html.py
and review the diff: they are the page's structure, one element a line (CSS and JS left out).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from probe import report
from probe.model import RunResult, Verdict
from probe.report_html import MATRIX_LIMIT, mark, render_expect_html, render_html
from probe.result import load_result, to_json
from tests.htmlhelp import (
    BROWSER,
    ROOT,
    Page,
    active,
    artifacts_dir,
    big_result,
    browser_session,
    check_golden,
    choose_namespace,
    headless,
    needs_browser,
    outline,
    panel_text,
    png_size,
    sample_result,
    shown_rows,
    type_into_source,
)

TUTORIAL = ROOT / "examples" / "tutorial"


def cell_td(page: Page, source: str, target: str, result: RunResult):
    i = next(k for k, c in enumerate(result.cells) if (c.source, c.target) == (source, target))
    return page.root.one("td", data_c=str(i))


# ------------------------------------------------------------------------ structure


def test_run_report_structure_matches_the_golden_file():
    page = Page(render_html(sample_result()))
    check_golden("report.outline.txt", "\n".join(outline(page.root)) + "\n")


def test_the_readme_example_page_is_the_current_rendering_of_its_lab_result():
    # docs/html-report.html (the README's screenshot) is regenerated with the golden files
    docs = ROOT / "docs"
    page = render_html(load_result(docs / "html-report.json"))
    if os.environ.get("NETPROBE_UPDATE_GOLDEN") == "1":
        (docs / "html-report.html").write_text(page, encoding="utf-8")
    assert (docs / "html-report.html").read_text(encoding="utf-8") == page, \
        "docs/html-report.html is stale: rerun with NETPROBE_UPDATE_GOLDEN=1 (and retake docs/html-report.png)"
    assert (docs / "html-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_expect_report_structure_matches_the_golden_file():
    proc = subprocess.run([sys.executable, "-m", "probe", "expect", "-f", str(TUTORIAL / "workloads.yaml"),
                           "-f", str(TUTORIAL / "policies.yaml"), "--port", "5432", "--port", "8080",
                           "--spec", str(TUTORIAL / "expect.yaml"), "--pods", "-o", "html"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    page = Page(proc.stdout)
    check_golden("expect.outline.txt", "\n".join(outline(page.root)) + "\n")
    # the computed expect section: frontend may not reach db, and the cell says which policy decided it
    data = page.data()
    cell = next(c for c in data["cells"] if (c["src"], c["dst"]) == ("frontend", "db"))
    assert cell["e"] == "deny" and "ingress-isolated by default/db-ingress-from-api" in cell["r"]
    td = page.root.one("td", data_c=str(data["cells"].index(cell)))
    assert td.text == "✗" and "f-denied" in td.classes


@pytest.mark.parametrize("source, target, classes, text, label", [
    ("api", "db", {"f-connected", "s-match"}, "✓", "allowed, expected allow, matches"),
    ("api", "db-pods", {"f-partial", "s-mismatch"}, "◐‼", "partial, expected allow, MISMATCH"),
    ("api", "internet", {"f-denied", "s-match", "drift"}, "✗Δ",
     "blocked, expected deny, matches, deny proven dropped, drifted from refused"),
    ("api", "metrics", {"f-unprobed", "s-unprobed"}, "?", "no-endpoints, expected allow, not probed"),
    ("frontend", "db", {"f-connected", "s-mismatch"}, "✓‼", "allowed, expected deny, MISMATCH"),
    ("frontend", "internet", {"f-connected", "s-match", "unstable"}, "✓~",
     "allowed, expected allow, matches, unstable"),
    ("frontend", "db-pods", {"f-denied", "s-match"}, "✗", "refused, expected deny, matches, deny proven rejected"),
    ("worker", "db", {"f-denied", "s-match"}, "✗", "dns-timeout, expected deny, matches, deny proven not-resolvable"),
    ("worker", "db-pods", {"f-denied", "nx", "s-mismatch"}, "✗‼", "nxdomain, expected allow, MISMATCH"),
    ("worker", "internet", {"f-unprobed", "s-unprobed"}, "?", "error, expected allow, not probed"),
])
def test_every_cell_is_coloured_by_verdict_and_marked_by_symbol(source, target, classes, text, label):
    result = sample_result()
    page = Page(render_html(result))
    td = cell_td(page, source, target, result)
    assert classes <= td.classes
    assert td.text == text
    # what needs attention is labelled in the markup itself; a plain match gets its words from the script
    cell = result.cell(source, target)
    plain = cell.match is True and not cell.unstable and "drift" not in td.classes
    assert td.attrs.get("aria-label") == (None if plain else label)
    assert page.data()["cells"][int(td.attrs["data-c"])]["l"] == label


def test_symbols_are_the_text_tables():
    result = sample_result()
    table = report.render_table(result)
    for cell in result.cells:
        assert mark(cell) == report._mark(cell)
        assert f"{report._mark(cell)} {cell.observed}" in table


def test_a_missing_cell_is_shown_as_such_not_as_a_match():
    result = sample_result()
    result = replace(result, cells=tuple(c for c in result.cells if (c.source, c.target) != ("frontend", "db")))
    page = Page(render_html(result))
    row = page.root.one("tr", data_name="frontend")
    cells = row.find_all("td")
    assert [td.text for td in cells] == ["-", "✗", "✓~", "-"]  # db removed; the sample has no frontend → metrics
    assert [td.attrs.get("aria-label") for td in cells if "empty" in td.classes] == ["no cell", "no cell"]


def test_summary_comes_first_with_counts_exit_status_and_run_facts():
    html = render_html(sample_result())
    page = Page(html)
    assert html.index("id=\"np-mismatches\"") < html.index("id=\"np-matrix\"")
    assert page.root.one(id="np-status").text == "FAIL"
    counts = [li.text for li in page.root.one("ul", cls="counts").find_all("li")]
    assert counts == ["10 cells", "5 match (denies: 1 dropped, 1 not-resolvable, 1 rejected)", "3 mismatch",
                      "2 not probed", "1 unstable", "1 drifted", "1 problem(s)"]
    facts = page.root.one("dl", cls="facts")
    terms = dict(zip([n.text for n in facts.find_all("dt")], [n.text for n in facts.find_all("dd")], strict=True))
    assert terms["run"] == "5e1f00d1" and terms["started"] == "2026-12-02T06:00:00+00:00"
    assert terms["duration"] == "8.2s" and terms["cluster context"] == "kind-netprobe"
    assert terms["netprobe version"] == "0.1.0" and terms["baseline run"] == "0ld0ba5e"
    assert terms["gate wait"] == "max 2.00s over 2 probe pod(s) (1 bound-reached, 1 condition-met)"
    mismatches = page.root.one(id="np-mismatches").find_all("li")
    assert [li.find_all("span", cls="mono")[0].text for li in mismatches] == [
        "api → db-pods", "frontend → db", "worker → db-pods"]
    assert page.root.one(id="np-problems").text.endswith("source cron matched no running pod in namespace jobs")
    assert "api → internet: refused → blocked" in page.root.one(id="np-drift").text


def test_a_mismatch_carries_its_full_detail_in_the_page():
    result = sample_result()
    page = Page(render_html(result))
    i = next(k for k, c in enumerate(result.cells) if (c.source, c.target) == ("api", "db-pods"))
    li = page.root.one("li", id=f"d-{i}")
    detail = dict(zip([n.text for n in li.find_all("dt")], [n.text for n in li.find_all("dd")], strict=True))
    assert detail["expected"] == "allow (the spec)" and detail["observed"] == "partial"
    assert detail["why"].startswith("db-pods:5432 partly reachable — reached 2 of 3 pods")
    assert detail["gate wait"] == "probe pod 0: 0.35s, condition-met"
    table = li.one("table", cls="subs")
    assert [th.text for th in table.find_all("th")] == ["identity", "target pod", "address", "verdict", "detail"]
    rows = [[td.text for td in tr.find_all("td")] for tr in table.find_all("tr")[1:]]
    assert rows == [["shop/app=api", "shop/db-0", "10.0.0.5", "allowed", "connected to 10.0.0.5:5432"],
                    ["shop/app=api", "shop/db-1", "10.0.0.6", "blocked", "timed out after 2s"],
                    ["shop/app=api", "shop/db-2", "10.0.0.7", "allowed", "connected to 10.0.0.7:5432"]]
    j = next(k for k, c in enumerate(result.cells) if (c.source, c.target) == ("frontend", "db"))
    other = page.root.one("li", id=f"d-{j}")
    detail = dict(zip([n.text for n in other.find_all("dt")], [n.text for n in other.find_all("dd")], strict=True))
    assert detail["decided by the policies"].endswith("allowed by shop/db-ingress ingress rule 0")
    assert detail["rounds"] == "2 (allowed, blocked)"  # the connection of round 1 is not re-probed away
    assert detail["gate wait"] == "probe pod 1: 2.00s, bound-reached (block c2)"


def test_every_cell_detail_is_in_the_embedded_data():
    result = sample_result()
    data = Page(render_html(result)).data()
    assert len(data["cells"]) == len(result.cells)
    by = {(data["sources"][c["s"]], data["targets"][c["t"]]): c for c in data["cells"]}
    for cell in result.cells:
        c = by[(cell.source, cell.target)]
        assert (c["e"], c["o"], c["r"] if cell.reason else "") == (str(cell.expected), str(cell.observed),
                                                                  cell.reason)
        assert c["st"] == {True: "match", False: "mismatch", None: "unprobed"}[cell.match]
        assert c.get("by", "") == cell.expected_by
        assert [(s["identity"], s["pod"], s["ip"], s["verdict"], s["detail"], s["proof"]) for s in c["sub"]] == [
            (s.identity, s.pod, s.ip, str(s.verdict), s.detail, str(s.proof or "")) for s in cell.subresults]
    internet = by[("api", "internet")]
    assert internet["st"] == "match" and internet["pr"] == "dropped" and internet["dr"] == ["refused", "blocked"]
    assert internet["by"].startswith("policies: shop/api is egress-isolated by shop/api-egress")
    assert internet["l"] == "blocked, expected deny, matches, deny proven dropped, drifted from refused"
    unstable = by[("frontend", "internet")]
    assert unstable["u"] == 1 and unstable["h"] == ["blocked", "allowed", "allowed"]
    assert data["gates"][0]["waited_ms"] == 350 and data["baseline"] == "0ld0ba5e"


def test_a_passing_run_says_pass():
    result = sample_result()
    good = replace(result, cells=tuple(c for c in result.cells if c.match is True and not c.unstable),
                   problems=(), drift=(), warnings=())
    page = Page(render_html(good))
    assert good.exit_code == 0 and page.root.one(id="np-status").text == "PASS"
    assert not page.root.find_all(id="np-mismatches")


# ------------------------------------------------------------------------ size and the grouped view


def test_fifty_by_fifty_is_well_under_a_megabyte_and_shows_every_cell():
    # 250 mismatches, a quarter of the targets 3 pods each, a policy explanation on every cell
    result = big_result(MATRIX_LIMIT, MATRIX_LIMIT)
    html = render_html(result)
    size = len(html.encode("utf-8"))
    assert size < 650_000, f"{size} bytes for 50 × 50"
    page = Page(html)
    assert len(page.root.find_all("td", cls="c")) == 2500
    assert len(page.root.one(id="np-mismatches").find_all("li")) == len(result.mismatches) == 250
    assert len(page.root.one(id="np-mismatches").find_all("details")) == 30
    data = page.data()
    assert len(data["cells"]) == 2500 and all(c["sub"] and c["by"].startswith("policies: ") for c in data["cells"])
    print(f"50 x 50 cells: {size} bytes")


def test_everything_mismatching_at_fifty_by_fifty_stays_under_a_megabyte():
    # the worst case: two identities per source (6 sub-checks on pod targets), every cell a mismatch
    result = big_result(MATRIX_LIMIT, MATRIX_LIMIT, mismatch_every=1, identities=2)
    size = len(render_html(result).encode("utf-8"))
    assert len(result.mismatches) == 2500 and size < 900_000, size


def test_beyond_fifty_by_fifty_rows_are_grouped_by_namespace_with_counts():
    result = big_result(120, 40)
    html = render_html(result)
    page = Page(html)
    body = [r for r in page.root.one("table", id="np-matrix").find_all("tr") if "data-name" in r.attrs]
    assert [r.attrs["data-name"] for r in body] == ["team0", "team1", "team2", "team3", "team4"]
    first = body[0].find_all("td")[0]
    group_bad = sum(1 for c in result.cells if c.match is False and c.target == "backend-000"
                    and c.source.startswith("team0-"))
    assert first.text == f"‼{group_bad}" and "s-mismatch" in first.classes
    assert first.attrs["aria-label"] == f"24 cells: {group_bad} mismatch, 0 not probed, {24 - group_bad} match"
    data = page.data()
    listed = [data["cells"][i] for i in data["groups"][first.attrs["data-g"]]]
    assert len(listed) == group_bad and all(c["st"] == "mismatch" for c in listed)
    assert page.root.one(id="np-grouped")
    # matching cells beyond the limit are counted, not detailed: the page stays small
    assert sum(1 for c in data["cells"] if c is not None) == len(result.mismatches)
    assert len(html.encode("utf-8")) < 1_000_000


def test_groups_fall_back_to_name_prefixes_in_one_namespace():
    result = big_result(60, 60, namespaces=1)
    page = Page(render_html(result))
    body = [r for r in page.root.one("table", id="np-matrix").find_all("tr") if "data-name" in r.attrs]
    assert [r.attrs["data-name"] for r in body] == ["team0-*"]
    heads = [th.text for th in page.root.one("table", id="np-matrix").find_all("th", cls="t")]
    assert heads == ["backend-* (60)"]


# ------------------------------------------------------------------------ untrusted input

HOSTILE = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"
HOSTILE_IMG = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','2')\">"


def hostile_result() -> RunResult:
    base = sample_result()
    rename = {"api": f"api{HOSTILE}", "db": f"db{HOSTILE_IMG}"}
    cells = tuple(replace(c, source=rename.get(c.source, c.source), target=rename.get(c.target, c.target),
                          reason=c.reason + HOSTILE, detail=c.detail + HOSTILE_IMG + "</script><!--",
                          expected_by=c.expected_by + HOSTILE,
                          subresults=tuple(replace(s, identity=s.identity + HOSTILE, pod=s.pod + HOSTILE_IMG)
                                           for s in c.subresults))
                  for c in base.cells)
    return replace(base, sources=tuple(rename.get(s, s) for s in base.sources),
                   targets=tuple(rename.get(t, t) for t in base.targets), cells=cells,
                   problems=(HOSTILE,), warnings=(HOSTILE_IMG,), run_id=HOSTILE,
                   drift=((rename["api"], "internet", Verdict.REFUSED, Verdict.BLOCKED),),
                   meta={**base.meta, "context": HOSTILE, HOSTILE_IMG: HOSTILE,
                         "gates": [{**base.meta["gates"][0], "opened": HOSTILE, "identity": HOSTILE}]})


def test_hostile_names_are_text_never_markup():
    result = hostile_result()
    html = render_html(result)
    page = Page(html)
    assert [attrs.get("type", "") for attrs, _ in page.scripts] == ["application/json", ""]
    assert not page.root.find_all("img")
    row = page.root.one("tr", data_name=f"api{HOSTILE}")
    assert row.find_all("th")[0].text == f"api{HOSTILE}"
    assert f"api{HOSTILE}" in page.root.one(id="np-mismatches").text
    # the embedded JSON cannot end its script element early, and still carries the exact strings
    data_text = next(text for attrs, text in page.scripts if attrs.get("id") == "np-data")
    assert "<" not in data_text and ">" not in data_text
    assert json.loads(data_text)["sources"][0] == f"api{HOSTILE}"
    data = page.data()
    assert data["sources"][0] == f"api{HOSTILE}" and HOSTILE_IMG + "</script><!--" in data["cells"][0]["d"]
    assert data["cells"][0]["sub"][0]["identity"] == f"shop/app=api{HOSTILE}"


def test_the_content_security_policy_allows_only_the_pages_own_script():
    html = render_html(sample_result())
    page = Page(html)
    (csp,) = [m.attrs["content"] for m in page.root.find_all("meta") if m.attrs.get("http-equiv")]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1]
    assert not re.search(r"\b(src|href)=\"(https?:)?//", html), "an external resource"


def test_expect_html_escapes_pod_names():
    doc = {"pods": [f"ns/{HOSTILE}"], "pod_to_pod": [{"port": 80, "protocol": "TCP",
                                                     "matrix": {f"ns/{HOSTILE}": {f"ns/{HOSTILE}": "allow"}}}],
           "external": [{"port": 80, "protocol": "TCP", "matrix": {f"ns/{HOSTILE}": "deny"}}],
           "dns": {f"ns/{HOSTILE}": "allow"}}
    page = Page(render_expect_html(doc))
    assert [attrs.get("type", "") for attrs, _ in page.scripts] == ["application/json", ""]
    assert [td.text for td in page.root.find_all("td", cls="c")] == ["✓", "✓", "✗"]


def test_expect_html_beyond_the_limit_groups_pods_by_namespace():
    """60 pods in 3 namespaces: one row and column a namespace; a cell says how many pod pairs are allowed."""
    pods = [f"ns{n}/p{i}" for n in range(3) for i in range(20)]

    def verdict(src: str, dst: str) -> str:
        s, d = src.split("/")[0], dst.split("/")[0]
        if s == d:
            return "allow"
        return "allow" if (s, d) == ("ns0", "ns1") and dst.endswith(("/p0", "/p1")) else "deny"

    doc = {"pods": pods, "pod_to_pod": [{"port": 80, "protocol": "TCP",
                                         "matrix": {a: {b: verdict(a, b) for b in pods} for a in pods}}],
           "external": [{"port": 80, "protocol": "TCP", "matrix": {a: "deny" for a in pods}}],
           "dns": {a: "allow" for a in pods}}
    page = Page(render_expect_html(doc))
    rows = [tr.attrs["data-name"] for tr in page.root.find_all("tr") if "data-name" in tr.attrs]
    assert rows == ["ns0", "ns1", "ns2"]
    marks = [td.text for td in page.root.find_all("td", cls="c")]
    # ns0 → ns0, ns1 (2 of 20 targets x 20 sources = 40 pairs), ns2, DNS, external; then ns1 and ns2
    assert marks[:5] == ["✓", "◐40", "✗", "✓", "✗"] and len(marks) == 15
    cell = page.data()["cells"][1]
    assert cell["w"] == "40 of 400 pod pair(s) allowed" and cell["e"] == "partial"
    assert cell["r"].startswith("allowed: ns0/p0 → ns1/p0") and "denied: " in cell["r"] and "(+320 more)" in cell["r"]
    assert len(render_expect_html(doc)) < 1_000_000


# ------------------------------------------------------------------------ the CLI


def test_report_command_renders_html_and_keeps_the_exit_code(tmp_path):
    saved = tmp_path / "run.json"
    saved.write_text(to_json(sample_result()))
    proc = subprocess.run([sys.executable, "-m", "probe", "report", str(saved), "--format", "html"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert Page(proc.stdout).root.one(id="np-status").text == "FAIL"
    assert proc.stdout == render_html(sample_result())  # the JSON round trip loses nothing the page shows


def test_run_writes_the_html_report_file_next_to_the_table(tmp_path, capsys):
    from probe.cli import emit

    target = tmp_path / "out" / "ci" / "netprobe.html"  # parent directories are created
    emit(sample_result(), "table", [("html", target)])
    assert "‼" in capsys.readouterr().out
    assert target.read_text(encoding="utf-8") == render_html(sample_result())


def test_run_accepts_an_html_report_and_rejects_unknown_formats():
    proc = subprocess.run([sys.executable, "-m", "probe", "run", "-f", str(TUTORIAL / "expect.yaml"),
                           "--report", "pdf=out.pdf"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "html" in proc.stderr
    assert "html" in report.FORMATS


# ------------------------------------------------------------------------ CI recipes publish it


def test_ci_recipes_publish_the_html_report_as_an_artifact():
    gha = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e.yml").read_text())
    steps = gha["jobs"]["e2e-kind-calico"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    m = re.search(r"--report html=(\S+)", runs)
    assert m, "the kind job writes no HTML report"
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")
               and m.group(1) in str(s["with"]["path"])]
    assert uploads and uploads[0].get("if") == "always()", "the HTML report is not uploaded on failure too"
    gitlab = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())
    job = gitlab["netprobe"]
    m = re.search(r"--report html=(\S+)", " ".join(job["script"]))
    assert m and m.group(1) in job["artifacts"]["paths"] and job["artifacts"]["when"] == "always"
    assert "chromium" in (ROOT / ".ci" / "run").read_text()


# ------------------------------------------------------------------------ a real browser

artifacts = pytest.fixture(scope="module", name="artifacts")(artifacts_dir)
browser = pytest.fixture(scope="module", name="browser")(browser_session)


@needs_browser
def test_chromium_runs_the_script_offline_and_builds_the_ui(tmp_path, artifacts, capsys):
    result = sample_result()
    page = tmp_path / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    i = next(k for k, c in enumerate(result.cells) if (c.source, c.target) == ("api", "db-pods"))
    dom = headless(BROWSER, f"{page.as_uri()}#c-{i}", dump_dom=True)
    assert re.search(r'<html[^>]*class="js"', dom) and 'data-np-ready="12"' in dom
    assert "showing 3 of 3 rows, 4 of 4 columns" in dom
    assert 'role="grid"' in dom and dom.count('role="gridcell"') == 12
    assert dom.count('tabindex="0"') == 1  # one tab stop; arrows move inside the matrix
    # the namespace filter was built from the probe identities
    assert "<option>jobs</option>" in dom and "<option>shop</option>" in dom
    # the cell from the URL (#c-N) is open in the detail panel, built from the embedded data
    panel = dom[dom.index('id="np-detail"'):]
    panel = panel[:panel.index("</section>")]
    assert 'class="open"' in dom[dom.index('id="np-detail"') - 40:dom.index('id="np-detail"') + 80]
    assert "api → db-pods: MISMATCH" in panel and "shop/db-1" in panel and "timed out after 2s" in panel
    assert "probe pod 0: 0.35s, condition-met" in panel
    shot = artifacts / "report-sample.png"
    # tall enough that nothing scrolls (headless chromium paints a scrolled page's top blank)
    headless(BROWSER, f"{page.as_uri()}#c-{i}", screenshot=shot, size=(1280, 1800))
    assert png_size(shot) == (1280, 1800) and shot.stat().st_size > 20_000
    with capsys.disabled():
        print(f"\n  screenshot artifact: {shot}")


@needs_browser
def test_chromium_never_runs_hostile_markup_even_without_the_csp(tmp_path):
    html = render_html(hostile_result())
    for name, text in (("with-csp", html), ("no-csp", re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>',
                                                             "", html))):
        page = tmp_path / f"{name}.html"
        page.write_text(text, encoding="utf-8")
        dom = headless(BROWSER, page.as_uri() + "#c-0", dump_dom=True)
        html_tag = re.search(r"<html[^>]*>", dom).group(0)
        assert "data-np-ready" in html_tag, name  # the page's own script ran
        assert "data-pwned" not in html_tag and "<img" not in dom, name
        assert "api&lt;script&gt;" in dom, name  # the name is shown, as text


@needs_browser
def test_the_csp_blocks_a_script_that_got_in(tmp_path):
    # Defence in depth: were an escaping bug to let markup through, the policy still stops it.
    html = render_html(sample_result()).replace("<main>", "<main><script>document.documentElement"
                                                          ".setAttribute('data-pwned','3')</script>", 1)
    page = tmp_path / "injected.html"
    page.write_text(html, encoding="utf-8")
    dom = headless(BROWSER, page.as_uri(), dump_dom=True)
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-np-ready" in html_tag and "data-pwned" not in html_tag
    # and the check can see a script that does run: without the policy, the same page is pwned
    page.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html), encoding="utf-8")
    html_tag = re.search(r"<html[^>]*>", headless(BROWSER, page.as_uri(), dump_dom=True)).group(0)
    assert 'data-pwned="3"' in html_tag


@needs_browser
def test_chromium_renders_the_grouped_view_and_fifty_by_fifty(tmp_path, artifacts, capsys):
    for name, result in (("50x50", big_result(50, 50)), ("grouped-120x40", big_result(120, 40))):
        page = tmp_path / f"{name}.html"
        page.write_text(render_html(result), encoding="utf-8")
        dom = headless(BROWSER, page.as_uri(), dump_dom=True)
        cells = 2500 if name == "50x50" else 5 * 40
        assert f'data-np-ready="{cells}"' in dom, name
        shot = artifacts / f"report-{name}.png"
        headless(BROWSER, page.as_uri(), screenshot=shot, size=(1400, 1000))
        assert png_size(shot) == (1400, 1000)
        with capsys.disabled():
            print(f"\n  screenshot artifact: {shot}")


def test_browser_keyboard_one_tab_stop_arrows_move_and_show_the_detail(browser, tmp_path):
    result = sample_result()
    page = tmp_path / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    browser.open(page.as_uri())
    browser.js("document.getElementById('np-namespace').focus()")
    browser.key("Tab")  # into the matrix: its one tab stop is the first mismatch
    first = next(i for i, c in enumerate(result.cells) if c.match is False)
    assert active(browser) == f"TD {first} "
    assert panel_text(browser).startswith("close (Esc)\napi → db-pods: MISMATCH")
    browser.key("ArrowRight")  # api → internet
    assert active(browser) == "TD 2 "
    text = panel_text(browser)
    assert "api → internet: matches" in text and "deny proven\ndropped" in text
    assert "baseline drift\nrefused → blocked (baseline 0ld0ba5e)" in text
    assert "decided by the policies\nshop/api is egress-isolated by shop/api-egress" in text
    assert "gate wait\nprobe pod 0: 0.35s, condition-met" in text
    browser.key("ArrowDown")  # frontend → internet: unstable, three rounds
    text = panel_text(browser)
    assert "frontend → internet: matches" in text and "rounds\n3 (blocked, allowed, allowed)" in text
    assert "unstable: still changing between rounds" in text
    browser.key("ArrowDown")  # worker → internet
    browser.key("ArrowRight")  # past the last column: stays
    assert "worker → internet: not probed" in panel_text(browser)
    browser.key("Escape")
    assert panel_text(browser) == ""
    browser.key("Tab")  # Tab leaves the matrix: the cells are not 12 tab stops
    assert not active(browser).startswith("TD")


def test_browser_click_and_filters(browser, tmp_path):
    result = sample_result()
    page = tmp_path / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    browser.open(page.as_uri())
    i = next(k for k, c in enumerate(result.cells) if (c.source, c.target) == ("frontend", "db-pods"))
    browser.click(f'td[data-c="{i}"]')
    text = panel_text(browser)
    assert "frontend → db-pods: matches" in text and "deny proven\nrejected — RST or ICMP" in text
    assert "shop/app=frontend\tshop/db-0\t10.0.0.5\trefused\trejected\tconnection refused" in text
    cols = "Array.prototype.filter.call(document.querySelectorAll('#np-matrix thead th.t'), " \
           "function(c){return !c.classList.contains('hide')}).map(function(c){return c.textContent})"
    browser.click("#np-namespace")
    choose_namespace(browser, "jobs")
    assert shown_rows(browser) == ["worker"]
    choose_namespace(browser, "")
    type_into_source(browser, "front")
    assert shown_rows(browser) == ["frontend"]
    assert browser.js("document.getElementById('np-shown').textContent") == "showing 1 of 3 rows, 4 of 4 columns"
    browser.js("var s=document.getElementById('np-source'); s.value=''; s.dispatchEvent(new Event('input'))")
    browser.click("#np-only-bad")  # a real click on the checkbox
    # every row has something to look at; columns: db (mismatch), db-pods, internet (drift, unstable,
    # error) and metrics (not probed) all do too — so hide nothing that needs attention
    assert shown_rows(browser) == ["api", "frontend", "worker"]
    good = replace(result, cells=tuple(c if c.source != "frontend" or c.unstable else replace(c, match=True)
                                       for c in result.cells))
    page.write_text(render_html(good), encoding="utf-8")
    browser.open(page.as_uri())
    browser.click("#np-only-bad")
    assert "frontend" in shown_rows(browser)  # its unstable cell still needs a look
    calm = replace(good, cells=tuple(replace(c, unstable=False) if c.source == "frontend" else c
                                     for c in good.cells))
    page.write_text(render_html(calm), encoding="utf-8")
    browser.open(page.as_uri())
    browser.click("#np-only-bad")
    assert shown_rows(browser) == ["api", "worker"]
    assert browser.js(cols) == ["db-pods", "internet", "metrics"]


def test_browser_group_cell_lists_what_it_holds(browser, tmp_path):
    result = big_result(120, 40)
    page = tmp_path / "grouped.html"
    page.write_text(render_html(result), encoding="utf-8")
    browser.open(page.as_uri())
    browser.click('td[data-g="0,0"]')
    text = panel_text(browser)
    bad = [c for c in result.cells if c.match is False and c.target == "backend-000" and c.source.startswith("team0-")]
    assert text.startswith(f"close (Esc)\nteam0 → backend-000\n\n24 cells: {len(bad)} mismatch, 0 not probed, "
                           f"{24 - len(bad)} match")
    for c in bad:
        assert f"{c.source} → backend-000: MISMATCH — {c.reason}" in text


def test_browser_printing_drops_the_controls_keeps_colours_and_opens_every_detail(browser, tmp_path, artifacts):
    result = sample_result()
    page = tmp_path / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    browser.open(page.as_uri())
    browser.click("td.c.s-mismatch")  # a panel open on screen must not end up on paper
    details = "Array.prototype.map.call(document.querySelectorAll('details'), function(d){return d.open})"
    assert browser.js(details) == [False] * 5
    browser.call("Emulation.setEmulatedMedia", session=True, media="print")
    style = "(function(s){var e=document.querySelector(s);return getComputedStyle(e).{}})({!r})"
    assert browser.js(style.replace("{}", "display").replace("{!r}", "'.toolbar'")) == "none"
    assert browser.js(style.replace("{}", "display").replace("{!r}", "'#np-detail'")) == "none"
    assert browser.js(style.replace("{}", "position").replace("{!r}", "'#np-matrix thead th'")) == "static"
    assert browser.js(style.replace("{}", "printColorAdjust").replace("{!r}", "'td.c'")) == "exact"
    mismatch_bg = browser.js(style.replace("{}", "boxShadow").replace("{!r}", "'td.c.s-mismatch'"))
    assert "200, 16, 46" in mismatch_bg  # the red frame of a mismatch prints
    pdf = base64.b64decode(browser.call("Page.printToPDF", session=True, printBackground=True)["data"])
    assert pdf[:5] == b"%PDF-"
    (artifacts / "report-sample.pdf").write_bytes(pdf)
    assert browser.js(details) == [True] * 5  # printing opened every mismatch's detail
    browser.call("Emulation.setEmulatedMedia", session=True, media="")

"""`netprobe expect -o html` per workload (probe/report_html/workload_view.py): structure and cell
detail against golden files, the rule attribution agreeing with the matrix, the grouped view, size,
hostile names, and a real headless chromium (keyboard, filters, print).

Regenerate the golden files after an intended change with
    NETPROBE_UPDATE_GOLDEN=1 python3 -m pytest tests/test_report_html_workloads.py
and review the diff.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from probe.analysis import spec_section, world_from_manifests
from probe.policy.portset import ALL_PORTS, describe, subtract
from probe.report_html import MATRIX_LIMIT, render_workload_html
from probe.spec import load_spec
from probe.workloads import Workload, WorkloadExplainer, WorkloadView, workload_view
from tests.htmlhelp import (
    BROWSER,
    ROOT,
    Page,
    active,
    artifacts_dir,
    browser_session,
    check_golden,
    choose_namespace,
    headless,
    needs_browser,
    outline,
    panel_text,
    png_size,
    shown_rows,
    team_manifests,
    type_into_source,
)

SHOP = ROOT / "examples" / "shop"
TUTORIAL = ROOT / "examples" / "tutorial"

artifacts = pytest.fixture(scope="module", name="artifacts")(artifacts_dir)
browser = pytest.fixture(scope="module", name="browser")(browser_session)


def page_of(*paths: Path, spec: Path | None = None) -> tuple[str, WorkloadView]:
    world = world_from_manifests([str(p) for p in paths])
    view = workload_view(world)
    section = spec_section(world, load_spec(spec, "default")) if spec else None
    return render_workload_html(view, WorkloadExplainer(world, view), section), view


def teams(tmp_path: Path, namespaces: int, per_namespace: int) -> Path:
    (tmp_path / "teams.json").write_text(json.dumps(team_manifests(namespaces, per_namespace)))
    return tmp_path


def cell(data: dict, source: str, target: str) -> tuple[int, dict]:
    return next((i, c) for i, c in enumerate(data["cells"])
                if "w" in c and (data["sources"][c["s"]], data["targets"][c["t"]]) == (source, target))


def details(data: dict) -> list[str]:
    """Every workload cell's detail, as the panel shows it: heading, then term: words."""
    out = []
    for c in data["cells"]:
        if "w" in c:
            out.append(f"{data['sources'][c['s']]} → {data['targets'][c['t']]}: {c['w']}")
            out += [f"  {term}: {words}" for term, words in c["dl"]]
    return out


# ------------------------------------------------------------------------ structure


def test_workload_report_structure_and_cell_details_match_the_golden_files():
    html, _ = page_of(SHOP)
    page = Page(html)
    check_golden("workloads.outline.txt", "\n".join(outline(page.root)) + "\n")
    check_golden("workloads.details.txt", "\n".join(details(page.data())) + "\n")


@pytest.mark.parametrize("source, target, family, text, label", [
    ("kube-system/coredns[Deployment]", "monitoring/prometheus[Deployment]", "f-connected", "✓",
     "allowed on every port"),
    ("shop/api[Deployment]", "shop/db[StatefulSet]", "f-partial", "◐", "allowed on TCP 5432 only"),
    ("shop/db[StatefulSet]", "shop/api[Deployment]", "f-denied", "✗", "denied on every port"),
    ("shop/api[Deployment]", "DNS", "f-connected", "✓", "allowed on TCP 53;UDP 53"),
    ("shop/api[Deployment]", "external", "f-denied", "✗", "denied on every port"),
    ("shop/api[Deployment]", "ipBlocks", "f-partial", "◐", "1 ipBlock(s) opened"),
    ("shop/db[StatefulSet]", "ipBlocks", "f-denied", "✗", "no ipBlock opened"),
], ids=["every-port", "some-ports", "none", "dns", "external", "ipblock", "no-ipblock"])
def test_every_cell_is_coloured_and_marked_by_how_much_it_allows(source, target, family, text, label):
    page = Page(page_of(SHOP)[0])
    i, c = cell(page.data(), source, target)
    td = page.root.one("td", data_c=str(i))
    assert family in td.classes and td.text == text
    assert td.attrs["aria-label"] == label == c["w"]  # in the markup: no script needed to hear it


def test_a_cell_names_the_rule_that_allows_its_ports_and_the_policy_that_isolates_the_rest():
    data = Page(page_of(SHOP)[0]).data()
    _, c = cell(data, "shop/api[Deployment]", "shop/db[StatefulSet]")
    dl = dict(c["dl"])
    assert dl["allowed on"] == "TCP 5432" and dl["denied on"].startswith("TCP 1-5431,5433-65535")
    assert dl["why TCP 5432"] == "egress: allowed by shop/api egress rule 0; ingress: allowed by shop/db ingress rule 0"
    # the denied rest, explained on a port a reader would try (443: api's egress is the isolating side)
    assert dl["why not TCP 443"].startswith("shop/api is egress-isolated by shop/default-deny")
    assert dl["explain"] == "netprobe explain shop/api shop/db --port 5432 --protocol TCP"
    _, denied = cell(data, "monitoring/prometheus[Deployment]", "shop/db[StatefulSet]")
    # nothing allowed: the isolation is shown on the port the target declares
    assert dict(denied["dl"])["why not TCP 5432"].startswith("shop/db is ingress-isolated by shop/default-deny")
    _, dns = cell(data, "shop/db[StatefulSet]", "DNS")
    assert dict(dns["dl"])["why TCP 53;UDP 53"].startswith("egress: allowed by shop/allow-dns egress rule 0")
    _, blocks = cell(data, "shop/api[Deployment]", "ipBlocks")
    assert dict(blocks["dl"])["to 203.0.113.0/24"] == "TCP 443"


@pytest.mark.parametrize("paths", [
    [SHOP], [TUTORIAL / "workloads.yaml", TUTORIAL / "policies.yaml"],
    [TUTORIAL / "workloads.yaml", TUTORIAL / "no-dns" / "policies.yaml"],
    [TUTORIAL / "workloads.yaml", ROOT / "examples" / "tutorial-calico" / "policies.yaml"],
], ids=["shop", "tutorial", "tutorial-no-dns", "tutorial-calico-tiers"])
def test_every_explanation_agrees_with_the_matrix(paths):
    # The detail's decisions come from the pod engine, the matrix from the equivalence classes: a
    # `why` inside the denied ports, or a `why not` inside the allowed ones, would contradict the cell.
    world = world_from_manifests([str(p) for p in paths])
    view = workload_view(world)
    explain = WorkloadExplainer(world, view)
    pairs = {(i, j): p for i, j, p in view.connections}

    def check(terms: list[str], allowed: tuple) -> None:
        why = [t for t in terms if t.startswith("why ") and not t.startswith(("why not", "why the"))]
        why_not = [t for t in terms if t.startswith("why not ")]
        assert bool(why) == bool(allowed), terms
        # one denied port is explained, and only when some are denied: an allowed range the engine
        # denied would be one more `why not`
        assert len(why_not) == (1 if subtract(view.ports, allowed) else 0), terms
        for t in why_not:
            proto, port = t.removeprefix("why not ").split()
            assert not any(p == proto and lo <= int(port) <= hi for p, lo, hi in allowed), terms

    for i, w in enumerate(view.workloads):
        for j in range(len(view.workloads)):
            check([t for t, _ in explain.pair(i, j)], pairs.get((i, j), ()))
        check([t for t, _ in explain.external(i)], w.external)
        terms = [t for t, _ in explain.dns(i)]
        allowed_protocols = {p for t in terms if not t.startswith("why not") for p in re.findall(r"(TCP|UDP) 53", t)}
        assert allowed_protocols == {p for p, _, _ in w.dns}, terms


def test_the_spec_section_follows_with_the_rule_that_decided_each_cell():
    html, view = page_of(TUTORIAL / "workloads.yaml", TUTORIAL / "policies.yaml", spec=TUTORIAL / "expect.yaml")
    page = Page(html)
    data = page.data()
    workload_cells = len(view.workloads) * (len(view.workloads) + 2)
    i, spec_cell = next((k, c) for k, c in enumerate(data["cells"]) if (c.get("src"), c.get("dst")) == ("frontend",
                                                                                                       "db"))
    assert i >= workload_cells  # numbered after the workload cells: one data-c sequence for the page
    assert spec_cell["e"] == "deny" and "ingress-isolated by default/db-ingress-from-api" in spec_cell["r"]
    assert page.root.one("td", data_c=str(i)).text == "✗"


def test_a_view_without_an_explainer_still_shows_ports_and_pods():
    world = world_from_manifests([str(SHOP)])
    view = workload_view(world)
    _, c = cell(Page(render_workload_html(view)).data(), "shop/api[Deployment]", "shop/db[StatefulSet]")
    assert c["dl"] == [("allowed on", "TCP 5432"), ("denied on", describe(subtract(ALL_PORTS, c_ports(view)))),
                       ("source pods", "api"), ("target pods", "db")]


def c_ports(view: WorkloadView) -> tuple:
    ids = [w.id for w in view.workloads]
    return next(p for i, j, p in view.connections
                if (ids[i], ids[j]) == ("shop/api[Deployment]", "shop/db[StatefulSet]"))


# ------------------------------------------------------------------------ size and the grouped view


def test_fifty_workloads_show_every_cell_with_its_rules_well_under_a_megabyte(tmp_path):
    html, view = page_of(teams(tmp_path, 5, 10))
    assert len(view.workloads) == MATRIX_LIMIT
    size = len(html.encode("utf-8"))
    assert size < 500_000, f"{size} bytes for 50 × 50 workloads"  # the README says so
    page = Page(html)
    assert len(page.root.find_all("td", cls="c")) == 50 * 52  # + DNS and external
    cells = page.data()["cells"]
    assert all(any(t.startswith("why") for t, _ in c["dl"]) for c in cells)
    _, c = cell(page.data(), "team1/web-00[Deployment]", "team0/api-01[Deployment]")  # across namespaces
    assert dict(c["dl"])["why TCP 8080"] == ("egress: allowed by team1/web-to-api egress rule 0; "
                                             "ingress: allowed by team0/api ingress rule 0")
    print(f"50 x 50 workloads: {size} bytes")


def test_beyond_fifty_workloads_rows_and_columns_are_grouped_by_namespace(tmp_path):
    html, _ = page_of(teams(tmp_path, 6, 20))
    page = Page(html)
    table = page.root.one("table", id="np-matrix")
    rows = [r for r in table.find_all("tr") if "data-name" in r.attrs]
    assert [(r.attrs["data-name"], r.attrs["data-ns"]) for r in rows] == [(f"team{n}", f"team{n}") for n in range(6)]
    assert [th.text for th in table.find_all("th", cls="t")] == [f"team{n} (20)" for n in range(6)] + ["DNS",
                                                                                                       "external"]
    assert page.root.one(id="np-grouped")
    # team1's 7 web workloads reach team0's 7 apis on 8080: 49 of the 400 pairs, on some ports
    td = rows[1].find_all("td")[0]
    assert td.text == "◐49" and "f-partial" in td.classes
    assert td.attrs["aria-label"] == "400 cells: 0 allowed on every port evaluated, 49 on some ports, 351 on none"
    data = page.data()
    listed = [data["cells"][i] for i in data["groups"][td.attrs["data-g"]]]
    assert len(listed) == 40 and data["more"][td.attrs["data-g"]] == 9
    assert all(c["w"] == "allowed on TCP 8080 only" for c in listed)
    assert rows[1].find_all("td")[6].text == "✓"  # every team1 workload resolves names
    assert len(html.encode("utf-8")) < 200_000


def test_hostile_names_are_text_never_markup():
    evil = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"
    w = Workload(id=f"ns/{evil}[Pod]", namespace="ns", kind="Pod", name=evil, pods=(evil,), dns=(),
                 external=ALL_PORTS, ip_blocks=((f"10.0.0.0/8{evil}", (("TCP", 443, 443),)),))
    view = WorkloadView(ports=ALL_PORTS, workloads=(w,), connections=((0, 0, ALL_PORTS),), classes=1,
                        warnings=(evil,))
    html = render_workload_html(view)
    page = Page(html)
    assert [attrs.get("type", "") for attrs, _ in page.scripts] == ["application/json", ""]
    assert page.root.one("tr", data_name=f"ns/{evil}[Pod]").find_all("th")[0].text.startswith(f"ns/{evil}[Pod]")
    assert evil in page.root.one(id="np-warnings").text
    data_text = next(text for attrs, text in page.scripts if attrs.get("id") == "np-data")
    assert "<" not in data_text and ">" not in data_text
    assert dict(cell(page.data(), f"ns/{evil}[Pod]", "ipBlocks")[1]["dl"])[f"to 10.0.0.0/8{evil}"] == "TCP 443"


# ------------------------------------------------------------------------ a real browser


@needs_browser
def test_chromium_builds_the_workload_page_offline_and_opens_a_cell(tmp_path, artifacts, capsys):
    html, _ = page_of(SHOP)
    path = tmp_path / "expect.html"
    path.write_text(html, encoding="utf-8")
    i, _ = cell(Page(html).data(), "shop/api[Deployment]", "shop/db[StatefulSet]")
    dom = headless(BROWSER, f"{path.as_uri()}#c-{i}", dump_dom=True)
    assert re.search(r'<html[^>]*class="js"', dom) and 'data-np-ready="54"' in dom
    assert 'role="grid"' in dom and dom.count('role="gridcell"') == 54 and dom.count('tabindex="0"') == 1
    assert "showing 6 of 6 rows, 9 of 9 columns" in dom
    for ns in ("kube-system", "monitoring", "shop"):
        assert f"<option>{ns}</option>" in dom
    panel = dom[dom.index('id="np-detail"'):]
    panel = panel[:panel.index("</section>")]
    assert "shop/api[Deployment] → shop/db[StatefulSet]: allowed on TCP 5432 only" in panel
    assert "<dt>why TCP 5432</dt><dd>egress: allowed by shop/api egress rule 0; ingress: allowed by shop/db " \
           "ingress rule 0</dd>" in panel
    shot = artifacts / "expect-workloads.png"
    headless(BROWSER, f"{path.as_uri()}#c-{i}", screenshot=shot, size=(1400, 1000))
    assert png_size(shot) == (1400, 1000) and shot.stat().st_size > 20_000
    with capsys.disabled():
        print(f"\n  screenshot artifact: {shot}")


def test_browser_keyboard_and_filters_on_the_workload_matrix(browser, tmp_path):
    path = tmp_path / "expect.html"
    path.write_text(page_of(SHOP)[0], encoding="utf-8")
    browser.open(path.as_uri())
    browser.js("document.getElementById('np-namespace').focus()")
    browser.key("Tab")  # into the matrix: one tab stop, the first cell
    assert active(browser) == "TD 0 "
    assert panel_text(browser).startswith("close (Esc)\nkube-system/coredns[Deployment] → "
                                          "kube-system/coredns[Deployment]: allowed on every port")
    for key in ("ArrowDown", "ArrowDown", "ArrowRight", "ArrowRight", "ArrowRight"):
        browser.key(key)
    text = panel_text(browser)
    assert text.startswith("close (Esc)\nshop/api[Deployment] → shop/db[StatefulSet]: allowed on TCP 5432 only")
    assert "why TCP 5432\negress: allowed by shop/api egress rule 0" in text
    assert "explain\nnetprobe explain shop/api shop/db --port 5432 --protocol TCP" in text
    browser.key("Escape")
    assert panel_text(browser) == ""
    browser.key("Tab")  # out of the matrix: the cells are not 54 tab stops
    assert not active(browser).startswith("TD")
    choose_namespace(browser, "shop")
    assert shown_rows(browser) == ["shop/api[Deployment]", "shop/db[StatefulSet]", "shop/frontend[Deployment]",
                                   "shop/report[CronJob]"]
    choose_namespace(browser, "")
    type_into_source(browser, "front")
    assert shown_rows(browser) == ["shop/frontend[Deployment]"]
    assert browser.js("document.getElementById('np-shown').textContent") == "showing 1 of 6 rows, 9 of 9 columns"


def test_browser_spec_cell_and_group_cell_details(browser, tmp_path):
    html, _ = page_of(TUTORIAL / "workloads.yaml", TUTORIAL / "policies.yaml", spec=TUTORIAL / "expect.yaml")
    path = tmp_path / "spec.html"
    path.write_text(html, encoding="utf-8")
    browser.open(path.as_uri())
    i = next(k for k, c in enumerate(Page(html).data()["cells"]) if (c.get("src"), c.get("dst")) == ("frontend", "db"))
    browser.click(f'td[data-c="{i}"]')
    text = panel_text(browser)
    assert "frontend → db: denied" in text and "ingress-isolated by default/db-ingress-from-api" in text
    grouped = tmp_path / "grouped.html"
    grouped.write_text(page_of(teams(tmp_path, 6, 20))[0], encoding="utf-8")
    browser.open(grouped.as_uri())
    browser.click('td[data-g="1,0"]')
    text = panel_text(browser)
    assert text.startswith("close (Esc)\nteam1 → team0\n\n400 cells: 0 allowed on every port evaluated, 49 on some")
    assert "team1/web-00[Deployment] → team0/api-01[Deployment]: allowed on TCP 8080 only" in text
    assert text.rstrip().endswith("… and 9 more (netprobe expect -o connlist lists every one)")


def test_browser_printing_drops_the_controls_and_opens_the_connection_list(browser, tmp_path, artifacts):
    import base64

    path = tmp_path / "expect.html"
    path.write_text(page_of(SHOP)[0], encoding="utf-8")
    browser.open(path.as_uri())
    browser.click("td.c")
    opened = "document.querySelector('#np-connections details').open"
    assert browser.js(opened) is False
    browser.call("Emulation.setEmulatedMedia", session=True, media="print")
    style = "getComputedStyle(document.querySelector({!r})).{}"
    assert browser.js(style.format(".toolbar", "display")) == "none"
    assert browser.js(style.format("#np-detail", "display")) == "none"
    assert browser.js(style.format("#np-matrix thead th", "position")) == "static"
    assert browser.js(style.format("td.c", "printColorAdjust")) == "exact"
    pdf = base64.b64decode(browser.call("Page.printToPDF", session=True, printBackground=True)["data"])
    assert pdf[:5] == b"%PDF-"
    (artifacts / "expect-workloads.pdf").write_bytes(pdf)
    assert browser.js(opened) is True  # on paper every allowed connection is listed with its ports
    browser.call("Emulation.setEmulatedMedia", session=True, media="")

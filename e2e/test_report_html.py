"""The HTML report of a real run (`--report html=PATH`), checked as markup and in a real browser."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import IMAGE, ROOT, kubectl, netprobe, wait_gone

sys.path.insert(0, str(ROOT))
from tests.htmlhelp import Page, chromium, headless

SPEC = ROOT / "examples" / "tutorial" / "expect.yaml"


def test_html_report_of_a_real_run_shows_the_dns_mismatches(tutorial_no_dns: str, tmp_path: Path) -> None:
    html, result = tmp_path / "out" / "netprobe.html", tmp_path / "out" / "netprobe.json"
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial_no_dns, "--image", IMAGE,
                    "--report", f"html={html}", "--report", f"json={result}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    page = Page(html.read_text(encoding="utf-8"))
    assert page.root.one(id="np-status").text == "FAIL"
    mismatches = [li.find_all("span", cls="mono")[0].text for li in page.root.one(id="np-mismatches").find_all("li")]
    assert mismatches == ["api → dns", "api → db"]
    doc = json.loads(result.read_text())
    context = kubectl("config", "current-context").stdout.strip()
    assert doc["meta"]["context"] == context and doc["meta"]["netprobe_version"]
    facts = page.root.one("dl", cls="facts")
    terms = dict(zip([n.text for n in facts.find_all("dt")], [n.text for n in facts.find_all("dd")], strict=True))
    assert terms["cluster context"] == context and terms["run"] == doc["run_id"]
    for i, cell in enumerate(doc["cells"]):
        td = page.root.one("td", data_c=str(i))
        state = {True: "s-match", False: "s-mismatch", None: "s-unprobed"}[cell["match"]]
        assert state in td.classes, (cell["source"], cell["target"])
    # the namespace filter knows the sources' namespace from the probe identities
    assert {tr.attrs["data-ns"] for tr in page.root.find_all("tr") if "data-name" in tr.attrs} == {tutorial_no_dns}
    browser = chromium()
    if browser is not None:
        dom = headless(browser, html.as_uri() + "#c-1", dump_dom=True)
        assert f'data-np-ready="{len(doc["cells"])}"' in dom
        assert "api → db: MISMATCH" in dom and "DNS lookup of db" in dom
    assert wait_gone(tutorial_no_dns) == []


def test_report_rerenders_a_real_result_as_html(tutorial: str, tmp_path: Path) -> None:
    saved = tmp_path / "run.json"
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "--report", f"json={saved}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = netprobe("report", str(saved), "--format", "html")
    assert again.returncode == 0
    page = Page(again.stdout)
    assert page.root.one(id="np-status").text == "PASS" and not page.root.find_all(id="np-mismatches")
    assert len(page.root.find_all("td", cls="s-match")) == 10

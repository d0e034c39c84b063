"""The verdict table, the mismatch explanations and every renderer, on hand-built results."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from probe import diff
from probe.model import Cell, Expectation, RunResult, Target, TargetKind, Verdict
from probe.report import render, render_table
from probe.result import from_dict, to_dict

A, D = Expectation.ALLOW, Expectation.DENY


@pytest.mark.parametrize("observed, allow, deny", [
    (Verdict.ALLOWED, True, False),
    (Verdict.BLOCKED, False, True),
    (Verdict.REFUSED, False, True),
    (Verdict.UNREACHABLE, False, True),
    (Verdict.DNS_TIMEOUT, False, True),
    (Verdict.NXDOMAIN, False, False),
    (Verdict.ERROR, None, None),
    (Verdict.NO_ENDPOINTS, None, None),
    (Verdict.PARTIAL, False, False),
])
def test_documented_verdict_table(observed, allow, deny):
    assert diff.matches(A, observed) is allow
    assert diff.matches(D, observed) is deny


DB = Target(name="db", kind=TargetKind.TCP, host="db.default.svc.cluster.local", port=5432)
DNS = Target(name="dns", kind=TargetKind.DNS, host="db")


def test_dns_timeout_is_explained_as_dns_not_as_a_blocked_port():
    reason = diff.explain(DB, A, Verdict.DNS_TIMEOUT)
    assert reason == ("db:5432 unreachable: DNS lookup of db.default.svc.cluster.local timed out — "
                      "is egress to kube-dns (kube-system, UDP and TCP 53) allowed?")


@pytest.mark.parametrize("target, expected, observed, words", [
    (DB, A, Verdict.BLOCKED, "blocked: no answer within the timeout"),
    (DB, A, Verdict.REFUSED, "nothing listens on that port"),
    (DB, A, Verdict.UNREACHABLE, "no route to the host"),
    (DB, A, Verdict.NXDOMAIN, "does not exist (NXDOMAIN)"),
    (DB, D, Verdict.NXDOMAIN, "not a policy decision"),
    (DB, D, Verdict.ALLOWED, "connected (10.0.0.1:5432) but should be denied"),
    (DNS, D, Verdict.ALLOWED, "egress to the cluster DNS is allowed"),
    (DB, A, Verdict.ERROR, "could not be probed: boom"),
])
def test_every_mismatch_has_words(target, expected, observed, words):
    detail = "10.0.0.1:5432" if observed is Verdict.ALLOWED else "boom"
    assert words in diff.explain(target, expected, observed, detail)


def test_matching_cell_has_no_reason():
    assert diff.explain(DB, A, Verdict.ALLOWED) == ""


def cell(src, tgt, exp, obs, **kw):
    match = diff.matches(exp, obs)
    target = DB if tgt == "db" else DNS
    return Cell(source=src, target=tgt, expected=exp, observed=obs, match=match,
                reason=diff.explain(target, exp, obs, kw.get("detail", "")), **kw)


def result_with_every_verdict() -> RunResult:
    cells = [
        cell("api", "db", A, Verdict.DNS_TIMEOUT, detail="no answer", attempts=2,
             history=(Verdict.DNS_TIMEOUT, Verdict.DNS_TIMEOUT)),
        cell("api", "dns", A, Verdict.ALLOWED),
        cell("frontend", "db", D, Verdict.ALLOWED, detail="connected"),
        cell("frontend", "dns", A, Verdict.NXDOMAIN),
        cell("web", "db", D, Verdict.BLOCKED),
        cell("web", "dns", A, Verdict.ERROR, detail="image cannot be pulled"),
        cell("batch", "db", D, Verdict.REFUSED),
        cell("batch", "dns", D, Verdict.UNREACHABLE),
    ]
    return RunResult(sources=("api", "frontend", "web", "batch"), targets=("db", "dns"),
                     cells=tuple(cells), run_id="r1", duration_s=4.2)


def test_exit_code_precedence_a_mismatch_is_never_hidden_behind_not_probed():
    r = result_with_every_verdict()
    assert r.errors and r.mismatches
    assert r.exit_code == 1  # a proven mismatch outranks a cell that could not be probed
    with_problem = RunResult(sources=r.sources, targets=r.targets, cells=r.cells,
                             problems=("source web: no running pod matches app=web",))
    assert with_problem.exit_code == 1  # ... and a run-level problem (a scaled-to-zero source)
    only_errors = RunResult(sources=r.sources, targets=r.targets,
                            cells=tuple(c for c in r.cells if c.match is not False))
    assert only_errors.exit_code == 3
    ok = RunResult(sources=("a",), targets=("b",), cells=(cell("a", "db", D, Verdict.BLOCKED),))
    assert ok.exit_code == 0 and ok.ok
    problem = RunResult(sources=("a",), targets=("b",), cells=ok.cells, problems=("source a: no pod",))
    assert problem.exit_code == 3 and not problem.ok
    drift = RunResult(sources=("a",), targets=("b",), cells=ok.cells, problems=("source a: no pod",),
                      drift=(("a", "b", Verdict.BLOCKED, Verdict.ALLOWED),))
    assert drift.exit_code == 1


def test_table_flags_mismatches_and_lists_reasons():
    text = render_table(result_with_every_verdict())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["source", "\\", "target", "db"]
    api_row = next(line for line in lines if line.startswith("api "))
    assert "✗ dns-timeout (2x) ‼" in api_row and "✓ allowed" in api_row
    assert "? error" in text
    assert "Mismatches (3):" in text
    assert "api → db: db:5432 unreachable: DNS lookup" in text
    assert "[2 rounds: dns-timeout, dns-timeout]" in text
    assert "frontend → db: db:5432 connected (connected) but should be denied" in text
    assert "web → dns: dns (DNS db) could not be probed: image cannot be pulled" in text
    assert "Not probed (1):" in text
    assert "8 cells: 4 match, 3 mismatch, 1 not probed" in text
    assert "\033[" not in text


def test_table_colour_only_when_asked():
    assert "\033[31m" in render_table(result_with_every_verdict(), colour=True)


def test_json_has_the_documented_shape_and_round_trips():
    r = result_with_every_verdict()
    doc = json.loads(render(r, "json"))
    assert doc["version"] == 2 and doc["ok"] is False and doc["exit_code"] == 1
    first = doc["cells"][0]
    for key in ("source", "target", "expected", "observed", "match", "detail", "attempts"):
        assert key in first
    assert first["observed"] == "dns-timeout" and first["match"] is False and first["attempts"] == 2
    assert doc["cells"][5]["match"] is None
    assert from_dict(doc) == r
    assert to_dict(from_dict(doc)) == doc


def test_junit_one_testcase_per_cell_with_failures_and_errors():
    root = ET.fromstring(render(result_with_every_verdict(), "junit").split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 8
    assert suite.get("failures") == "3" and suite.get("errors") == "1"
    failure = cases[0].find("failure")
    assert failure is not None and "DNS lookup" in failure.get("message", "")
    error = cases[5].find("error")
    assert error is not None and "image cannot be pulled" in error.get("message", "")
    assert cases[1].find("failure") is None


def test_markdown_table_and_mismatch_list():
    text = render(result_with_every_verdict(), "markdown")
    assert text.startswith("## netprobe: mismatches ❌")
    assert "| source \\ target" in text
    assert "- **api → db**: db:5432 unreachable: DNS lookup" in text
    assert "### Not probed" in text

"""The cell model (README "Verdicts"): a cell is the conjunction of its sub-checks, a
connection is proof, and every deny says how it was proven. Pure: hand-built sub-results."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from probe import diff
from probe.model import Cell, Expectation, Proof, RunResult, SubResult, Target, TargetKind, Verdict
from probe.report import render
from probe.result import from_dict, load_result, to_dict

A, D = Expectation.ALLOW, Expectation.DENY
DB = Target(name="db", kind=TargetKind.TCP, host="db", port=5432)
DBPODS = Target(name="db-pods", kind=TargetKind.PODS, port=5432)
DNS = Target(name="dns", kind=TargetKind.DNS, host="db")
ROOT = Path(__file__).resolve().parent.parent


def pod(name: str, verdict: Verdict, identity: str = "shop/app=api", detail: str = "") -> SubResult:
    return SubResult(identity=identity, pod=f"shop/{name}", ip="10.0.0.1", verdict=verdict, detail=detail)


def ident(identity: str, verdict: Verdict) -> SubResult:
    return SubResult(identity=identity, verdict=verdict)


B, OK, R = Verdict.BLOCKED, Verdict.ALLOWED, Verdict.REFUSED


@pytest.mark.parametrize("expected", [A, D])
def test_one_replica_that_connects_makes_the_cell_partial_whatever_the_expectation(expected):
    subs = [pod("db-7f9c-abcde", OK), pod("db-7f9c-xyz12", B), pod("db-7f9c-qrs34", B)]
    j = diff.judge(DBPODS, expected, subs)
    assert j.observed is Verdict.PARTIAL and j.match is False and j.proof is None
    assert "reached 1 of 3 pods: db-7f9c-abcde; blocked: db-7f9c-xyz12, db-7f9c-qrs34" in j.reason


def test_a_partial_deny_is_called_a_leak():
    j = diff.judge(DBPODS, D, [pod("a", OK), pod("b", B)])
    assert "a connection was made where it should be denied" in j.reason


def test_source_identities_are_named_in_a_partial():
    subs = [ident("shop/app=api", B), ident("shop/app=api sa=canary", OK)]
    j = diff.judge(DB, D, subs)
    assert j.observed is Verdict.PARTIAL
    assert "connected from 1 of 2 identities: shop/app=api sa=canary; blocked: shop/app=api" in j.reason


def test_identity_and_pod_both_vary():
    subs = [pod("a", OK, "ns/app=x"), pod("b", B, "ns/app=y")]
    assert "reached 1 of 2 identity × pod checks: a from [ns/app=x]; blocked: b from [ns/app=y]" in \
        diff.judge(DBPODS, D, subs).reason
    # one pod, two identities: named by identity
    one = [pod("a", OK, "ns/app=x"), pod("a", B, "ns/app=y")]
    assert "connected from 1 of 2 identities: ns/app=x; blocked: ns/app=y" in diff.judge(DBPODS, D, one).reason


def test_every_sub_check_must_match_for_the_cell_to_match():
    assert diff.judge(DBPODS, D, [pod("a", B), pod("b", R)]).match is True
    assert diff.judge(DBPODS, A, [pod("a", OK), pod("b", OK)]).match is True
    # all failed, but one for a reason that proves nothing: the cell is a mismatch (nxdomain)
    j = diff.judge(DB, D, [ident("x", B), ident("y", Verdict.NXDOMAIN)])
    assert j.match is False and "1 of 2 identities" in j.reason


def test_a_connection_next_to_an_unprobed_sub_check_is_still_a_leak():
    j = diff.judge(DB, D, [ident("x", OK), ident("y", Verdict.ERROR)])
    assert j.observed is Verdict.ALLOWED and j.match is False


def test_an_unprobed_sub_check_leaves_the_cell_not_probed_never_a_match():
    j = diff.judge(DB, D, [ident("x", B), ident("y", Verdict.ERROR)])
    assert j.match is None and "1 of 2 identities not probed" in j.reason


@pytest.mark.parametrize("target, observed, proof", [
    (DB, Verdict.BLOCKED, Proof.DROPPED),
    (DB, Verdict.REFUSED, Proof.REJECTED),
    (DB, Verdict.UNREACHABLE, Proof.REJECTED),
    (DB, Verdict.DNS_TIMEOUT, Proof.NOT_RESOLVABLE),
    (DNS, Verdict.DNS_TIMEOUT, Proof.DROPPED),  # the lookup is the check
])
def test_every_deny_match_records_its_proof(target, observed, proof):
    j = diff.judge(target, D, [ident("x", observed)])
    assert j.match is True and j.proof is proof and j.subresults[0].proof is proof


def test_a_cell_is_only_as_proven_as_its_weakest_sub_check():
    j = diff.judge(DB, D, [ident("x", B), ident("y", Verdict.DNS_TIMEOUT)])
    assert j.match is True and j.proof is Proof.NOT_RESOLVABLE


def test_strict_makes_dns_only_denies_not_probed():
    j = diff.judge(DB, D, [ident("x", Verdict.DNS_TIMEOUT)], strict=True)
    assert j.match is None and "--strict" in j.reason and "never tested" in j.reason
    assert diff.judge(DNS, D, [ident("x", Verdict.DNS_TIMEOUT)], strict=True).match is True
    assert diff.judge(DB, D, [ident("x", B)], strict=True).proof is Proof.DROPPED


def test_no_endpoints_is_not_probed_and_says_why():
    j = diff.judge(DB, D, [ident("x", Verdict.NO_ENDPOINTS)])
    assert j.match is None and "kube-proxy" in j.reason


def test_reprobe_rules():
    # an expected-allow cell that did not connect is re-probed; one that connected is not
    assert diff.needs_reprobe(A, [[ident("x", B)]]) is True
    assert diff.needs_reprobe(A, [[ident("x", OK)]]) is False
    # a connection on an expected-deny cell is final, in any round
    assert diff.needs_reprobe(D, [[ident("x", OK)]]) is False
    assert diff.needs_reprobe(D, [[ident("x", OK)], [ident("x", Verdict.ERROR)]]) is False
    # a proven deny is not re-probed; an unprobed one is
    assert diff.needs_reprobe(D, [[ident("x", B)]]) is False
    assert diff.needs_reprobe(D, [[ident("x", B), ident("y", Verdict.ERROR)]]) is True


def test_a_round_one_leak_decides_the_cell_however_later_rounds_end():
    rounds = [[ident("x", OK)], [ident("x", B)], [ident("x", B)]]
    assert diff.deciding_round(D, rounds) == 0
    assert diff.deciding_round(A, rounds) == 2  # re-probes may turn an expected-allow cell green


def test_a_reprobe_that_could_not_look_never_hides_an_earlier_proven_result():
    # round 1 proved a mismatch (the allow was blocked, the pod's network shown up); the re-probe's
    # pod never showed its network: its "not probed" decides nothing
    rounds = [[ident("x", B)], [ident("x", Verdict.ERROR)]]
    assert diff.deciding_round(A, rounds) == 0
    assert diff.deciding_round(D, [[ident("x", Verdict.ERROR)], [ident("x", B)]]) == 1
    assert diff.deciding_round(A, [[ident("x", Verdict.ERROR)], [ident("x", Verdict.ERROR)]]) == 1
    # a re-probe that probed part of the cell decides it (one backend without endpoints aside)
    assert diff.deciding_round(A, [[ident("x", B)], [ident("x", OK), ident("y", Verdict.NO_ENDPOINTS)]]) == 1
    # --settle: every round probes everything; the last, settled, one decides
    assert diff.deciding_round(A, rounds, reprobes=False) == 1


def every_verdict_and_proof() -> RunResult:
    """One cell per verdict × proof the renderers must show."""
    rows = [
        ("api", DB, D, [ident("a", Verdict.BLOCKED)]),
        ("api", DNS, D, [ident("a", Verdict.DNS_TIMEOUT)]),
        ("web", DB, D, [ident("w", Verdict.REFUSED)]),
        ("web", DNS, A, [ident("w", Verdict.NXDOMAIN)]),
        ("batch", DB, D, [ident("b", Verdict.DNS_TIMEOUT)]),
        ("batch", DNS, A, [ident("b", Verdict.ERROR)]),
        ("cron", DB, D, [ident("c", Verdict.NO_ENDPOINTS)]),
        ("cron", DNS, A, [ident("c", Verdict.ALLOWED)]),
        ("job", DB, D, [pod("db-1", OK, "ns/app=job"), pod("db-2", B, "ns/app=job")]),
        ("job", DNS, D, [ident("j", Verdict.UNREACHABLE)]),
    ]
    cells = []
    for src, target, expected, subs in rows:
        j = diff.judge(target, expected, subs)
        cells.append(Cell(source=src, target=target.name, expected=expected, observed=j.observed,
                          match=j.match, detail=j.detail, reason=j.reason, subresults=j.subresults,
                          proof=j.proof))
    cells.append(Cell(source="api2", target="db", expected=A, observed=Verdict.ALLOWED, match=False,
                      reason="unstable: the verdict was still changing between rounds (blocked → allowed)",
                      attempts=2, history=(B, OK), unstable=True,
                      subresults=(ident("u", OK),)))
    return RunResult(sources=("api", "web", "batch", "cron", "job", "api2"), targets=("db", "dns"),
                     cells=tuple(cells), run_id="r2", duration_s=3.0)


def test_every_verdict_and_proof_through_the_table():
    text = render(every_verdict_and_proof(), "table")
    assert "◐ partial ‼" in text and "? no-endpoints" in text and "~ ‼" in text
    assert "a deny is proven by: blocked = dropped" in text
    assert "(denies 2 dropped, 1 not-resolvable, 2 rejected)" in text
    assert "reached 1 of 2 pods: db-1; blocked: db-2" in text
    assert "cron → db: db:5432 not probed" in text
    assert "1 unstable" in text


def test_every_verdict_and_proof_through_markdown():
    text = render(every_verdict_and_proof(), "markdown")
    assert "◐ partial **‼**" in text and "### Not probed (2)" in text
    assert "- **job → db**: db:5432 partly reachable — reached 1 of 2 pods" in text
    assert "blocked = dropped" in text


def test_every_verdict_and_proof_through_junit():
    root = ET.fromstring(render(every_verdict_and_proof(), "junit").split("\n", 1)[1])
    cases = {c.get("name"): c for c in root.iter("testcase")}
    partial = cases["job -> db expect deny"].find("failure")
    assert partial is not None and partial.get("type") == "partial"
    assert "[ns/app=job] shop/db-1: allowed" in (partial.text or "")
    out = cases["api -> db expect deny"].find("system-out")
    assert out is not None and "deny proven: dropped" in (out.text or "")
    err = cases["cron -> db expect deny"].find("error")
    assert err is not None and err.get("type") == "no-endpoints"


def test_every_verdict_and_proof_through_json_and_back():
    r = every_verdict_and_proof()
    doc = json.loads(render(r, "json"))
    assert doc["version"] == 2 and doc["exit_code"] == 1 and doc["summary"]["unstable"] == 1
    job = next(c for c in doc["cells"] if c["source"] == "job" and c["target"] == "db")
    assert job["observed"] == "partial" and job["match"] is False
    assert job["subresults"][0] == {"identity": "ns/app=job", "pod": "shop/db-1", "ip": "10.0.0.1",
                                    "verdict": "allowed", "detail": "", "proof": None}
    assert next(c for c in doc["cells"] if c["source"] == "api")["proof"] == "dropped"
    assert from_dict(doc) == r and to_dict(from_dict(doc)) == doc


def test_the_json_result_validates_against_its_published_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "probe" / "result.schema.json").read_text())
    jsonschema.validate(json.loads(render(every_verdict_and_proof(), "json")), schema)


def test_a_version_1_result_saved_by_netprobe_0_1_still_loads(tmp_path):
    v1 = {"version": 1, "ok": False, "exit_code": 3, "run_id": "89d3bed2", "started": "2026-11-28T02:47:10+00:00",
          "duration_s": 6.1, "settle_s": None, "sources": ["api"], "targets": ["db", "db-pods"],
          "problems": [], "warnings": [], "summary": {"cells": 2, "match": 1, "mismatch": 1, "not_probed": 0},
          "cells": [
              {"source": "api", "target": "db", "expected": "allow", "observed": "dns-timeout", "match": False,
               "detail": "DNS failed", "reason": "db:5432 unreachable", "attempts": 1, "history": ["dns-timeout"],
               "elapsed_ms": 2004, "pods": [], "expected_by": "spec"},
              {"source": "api", "target": "db-pods", "expected": "deny", "observed": "blocked", "match": True,
               "detail": "", "reason": "", "attempts": 1, "history": ["blocked"], "elapsed_ms": 1000,
               "pods": [{"pod": "shop/db-0", "verdict": "blocked"}], "expected_by": "spec"}],
          "drift": [], "meta": {"api_calls": 9}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(v1))
    r = load_result(path)
    assert r.cell("api", "db").observed is Verdict.DNS_TIMEOUT and r.exit_code == 1
    assert r.cell("api", "db-pods").subresults == (SubResult(pod="shop/db-0", verdict=B),)
    assert json.loads(render(r, "json"))["version"] == 2  # re-rendered in the current version


def test_strict_counts_only_a_drop_as_proof():
    assert diff.judge(DB, D, [ident("x", R)], strict=True).match is None
    assert "answered, which a dropping policy never does" in diff.judge(DB, D, [ident("x", R)], strict=True).reason
    assert diff.judge(DB, D, [ident("x", B)], strict=True).match is True


def test_the_shown_verdict_of_a_deny_is_its_weakest_proof():
    j = diff.judge(DBPODS, D, [pod("a", R), pod("b", B)])
    assert j.observed is Verdict.REFUSED and j.proof is Proof.REJECTED


def test_a_version_1_deny_cell_in_which_one_pod_connected_loads_as_the_mismatch_it_was():
    v1 = {"version": 1, "sources": ["api"], "targets": ["db-pods"], "cells": [
        {"source": "api", "target": "db-pods", "expected": "deny", "observed": "blocked", "match": True,
         "pods": [{"pod": "shop/db-0", "verdict": "allowed"}, {"pod": "shop/db-1", "verdict": "blocked"}]}]}
    r = from_dict(v1)
    assert r.cell("api", "db-pods").observed is Verdict.PARTIAL and r.cell("api", "db-pods").match is False
    assert r.exit_code == 1


def test_a_match_that_is_not_a_boolean_is_rejected():
    from probe.errors import InputError

    bad = {"version": 2, "cells": [{"source": "a", "target": "b", "expected": "deny", "observed": "blocked",
                                    "match": "false", "subresults": []}]}
    with pytest.raises(InputError, match="match: expected true, false or null"):
        from_dict(bad)


def test_the_agent_may_not_claim_a_verdict_of_the_diff():
    from probe.agent_protocol import parse_agent_output

    for bad in ('{"version": 1, "results": [{"id": "t0", "verdict": "partial"}]}',
                '{"version": 1, "results": [{"id": "t0", "verdict": "blocked", "history": ["no-endpoints"]}]}'):
        with pytest.raises(ValueError, match="unknown verdict"):
            parse_agent_output(bad)


def test_a_baseline_cell_not_probed_or_partial_becomes_a_deny_expectation():
    from probe.baseline import expectations_from_baseline, with_drift
    from probe.spec import parse_spec

    spec = parse_spec("version: 1\nsources: [{name: api, selector: {app: api}}]\n"
                      "targets: [{name: a, tcp: 'a:1'}, {name: b, tcp: 'b:1'}, {name: c, tcp: 'c:1'}]\n")
    base = RunResult(sources=("api",), targets=("a", "b", "c"), cells=(
        Cell(source="api", target="a", expected=A, observed=OK, match=None),  # allowed, but partly unprobed
        Cell(source="api", target="b", expected=D, observed=Verdict.PARTIAL, match=False),
        Cell(source="api", target="c", expected=A, observed=OK, match=True)), run_id="b1")
    expect, by = expectations_from_baseline(spec, base)
    assert expect == {("api", "a"): D, ("api", "b"): D, ("api", "c"): A}
    assert "not probed in the baseline" in by[("api", "a")]
    now = RunResult(sources=("api",), targets=("a",), cells=(
        Cell(source="api", target="a", expected=D, observed=Verdict.NO_ENDPOINTS, match=None),))
    assert with_drift(now, base).drift == ()  # not probed now: no evidence of a change

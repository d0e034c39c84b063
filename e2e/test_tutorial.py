"""The tutorial scenario end to end with the real CLI, on a real cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import IMAGE, ROOT, kubectl, netprobe, probe_objects, wait_gone

SPEC = ROOT / "examples" / "tutorial" / "expect.yaml"


def cells(doc: dict) -> dict[tuple[str, str], dict]:
    return {(c["source"], c["target"]): c for c in doc["cells"]}


def test_tutorial_policies_match_the_spec(tutorial: str, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "-o", "json",
                    "--report", f"junit={junit}", "--verbose", "--attempts", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    c = cells(doc)
    assert c[("api", "dns")]["observed"] == "allowed"
    assert c[("api", "db")]["observed"] == "allowed"
    assert c[("api", "db-pods")]["observed"] == "allowed"
    assert c[("api", "internet")]["observed"] == "blocked"
    assert c[("frontend", "db")]["observed"] == "blocked"
    assert c[("frontend", "api")]["observed"] == "allowed"
    assert c[("frontend", "internet")]["observed"] == "allowed"
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "0"  # type: ignore[union-attr]
    # Each probe pod's readiness gate says how long it held the checks and what held it. The
    # lab's default mode (NPL_NEW_PODS=drop, Calico-like) drops a new pod's packets until its
    # policy is programmed and never lets them through un-isolated: no gate round can have seen
    # an expected deny connect there (in allow mode some may, before the pod is isolated).
    gates = doc["meta"]["gates"]
    assert len(gates) >= 2 and all(set(g["missed"]) == {"connect", "block"} for g in gates), gates
    if os.environ.get("NETPROBE_LAB_NEW_PODS", "drop") == "drop":
        assert all(g["missed"]["block"] == 0 for g in gates), gates
    assert proc.stderr.count(": gate waited ") == len(gates), proc.stderr
    # O(identities) API calls, printed with --verbose
    assert doc["meta"]["probe_pods"] == 2
    assert "2 identities, 2 probe pod(s)" in proc.stderr
    assert doc["meta"]["api_calls"] <= 20
    assert wait_gone(tutorial) == []


def test_missing_dns_rule_is_reported_as_dns(tutorial_no_dns: str) -> None:
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial_no_dns, "--image", IMAGE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("api → db:"))
    assert "DNS lookup of db timed out" in line and "kube-dns" in line
    assert wait_gone(tutorial_no_dns) == []


def test_wrong_expectation_shows_in_every_output(tutorial: str, tmp_path: Path) -> None:
    wrong = tmp_path / "expect.yaml"
    wrong.write_text(SPEC.read_text().replace("frontend: {\"*\": allow, db: deny,",
                                              "frontend: {\"*\": allow, db: allow,"))
    out_json, out_junit = tmp_path / "r.json", tmp_path / "r.xml"
    proc = netprobe("run", "-f", str(wrong), "-n", tutorial, "--image", IMAGE,
                    "--report", f"json={out_json}", "--report", f"junit={out_junit}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Mismatches (1):" in proc.stdout and "frontend → db: db:5432 blocked" in proc.stdout
    doc = json.loads(out_json.read_text())
    bad = [c for c in doc["cells"] if c["match"] is False]
    assert [(c["source"], c["target"], c["observed"]) for c in bad] == [("frontend", "db", "blocked")]
    suite = ET.parse(out_junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failures = [tc for tc in suite.findall("testcase") if tc.find("failure") is not None]
    assert failures[0].get("name", "").startswith("frontend -> db")
    # report re-renders the saved run with the same verdict
    again = netprobe("report", str(out_json), "--format", "markdown")
    assert again.returncode == 1 and "**frontend → db**" in again.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_leaves_nothing_behind(tutorial: str, sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "probe", "run", "-f", str(SPEC), "-n", tutorial,
                             "--image", IMAGE, "--warmup", "30s", "--warmup-mode", "fixed"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not probe_objects(tutorial) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert probe_objects(tutorial), "the run never created its probe Jobs"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "probe pods were removed" in err
    assert wait_gone(tutorial) == []


def test_probe_pods_never_join_services_or_replicasets(tutorial: str) -> None:
    rs_before = kubectl("get", "rs", "-n", tutorial, "-l", "app=api", "-o", "json").stdout
    pods_before = set(kubectl("get", "pods", "-n", tutorial, "-l", "app=api", "-o", "name").stdout.split())
    proc = subprocess.Popen([sys.executable, "-m", "probe", "run", "-f", str(SPEC), "-n", tutorial,
                             "--image", IMAGE, "--warmup", "8s", "--warmup-mode", "fixed"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_probe_ips: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            probes = json.loads(kubectl("get", "pods", "-n", tutorial, "-l", "netprobe.io/run,app=api",
                                        "-o", "json").stdout)["items"]
            for p in probes:
                owners = p["metadata"].get("ownerReferences") or []
                assert [o["kind"] for o in owners] == ["Job"], owners  # never adopted by the RS
                if p["status"].get("podIP"):
                    seen_probe_ips.add(p["status"]["podIP"])
            ep = json.loads(kubectl("get", "endpoints", "api", "-n", tutorial, "-o", "json").stdout)
            ready = {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
            assert not ready & seen_probe_ips, "a probe pod became a ready endpoint of Service api"
            time.sleep(0.5)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert seen_probe_ips, "never saw the api probe pod running"
    rs_after = kubectl("get", "rs", "-n", tutorial, "-l", "app=api", "-o", "json").stdout
    pods_after = set(kubectl("get", "pods", "-n", tutorial, "-l", "app=api", "-o", "name").stdout.split())
    pods_after = {p for p in pods_after if "netprobe-" not in p}
    assert pods_after == pods_before, "the api ReplicaSet created or deleted pods during the run"
    replicas = [(r["metadata"]["name"], r["status"].get("replicas")) for r in json.loads(rs_before)["items"]]
    assert replicas == [(r["metadata"]["name"], r["status"].get("replicas"))
                        for r in json.loads(rs_after)["items"]]


def test_source_without_pods_exits_3(tutorial: str, tmp_path: Path) -> None:
    spec = tmp_path / "expect.yaml"
    spec.write_text(SPEC.read_text().replace("{app: frontend}", "{app: nothing-here}"))
    proc = netprobe("run", "-f", str(spec), "-n", tutorial, "--image", IMAGE)
    assert proc.returncode == 3
    assert "source frontend: no running pod matches app=nothing-here" in proc.stdout


def test_unpullable_image_is_a_clear_error(tutorial: str) -> None:
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", "lab.local/nosuch:1",
                    "--image-pull-policy", "IfNotPresent", "--startup-timeout", "60s")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot be pulled" in proc.stdout
    assert wait_gone(tutorial) == []


def test_cleanup_removes_leftovers_of_earlier_runs(tutorial: str) -> None:
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "--keep", "--warmup", "0")
    assert proc.returncode in (0, 1), proc.stderr
    assert probe_objects(tutorial)
    out = netprobe("cleanup", "-n", tutorial)
    assert out.returncode == 0 and "1 run(s) removed" in out.stdout
    assert wait_gone(tutorial) == []


def test_http_target_reports_the_status_from_the_fake_internet(tutorial: str, tmp_path: Path) -> None:
    host = __import__("os").environ.get("NETPROBE_LAB_INTERNET_HOST", "example.com")
    spec = tmp_path / "http.yaml"
    spec.write_text(f"""\
version: 1
sources:
  - {{name: frontend, selector: {{app: frontend}}}}
  - {{name: api, selector: {{app: api}}}}
targets:
  - {{name: web, http: "http://{host}/"}}
expect:
  frontend: {{web: allow}}
  api: {{web: deny}}
""")
    proc = netprobe("run", "-f", str(spec), "-n", tutorial, "--image", IMAGE, "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = {c["source"]: c for c in json.loads(proc.stdout)["cells"]}
    assert cells["frontend"]["observed"] == "allowed" and "HTTP 200" in cells["frontend"]["detail"]
    assert cells["api"]["observed"] == "blocked"


def test_progress_only_when_asked_off_a_terminal(tutorial: str) -> None:
    quiet = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE)
    assert quiet.returncode == 0 and "probe pods:" not in quiet.stderr
    loud = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "-o", "json", "--progress")
    assert loud.returncode == 0
    lines = [x for x in loud.stderr.splitlines() if x.startswith("probe pods: ")]
    assert lines and lines[-1] == "probe pods: 2/2 done, 0 running, 0 pending"
    assert json.loads(loud.stdout)["ok"] is True  # stdout stays pure JSON


def test_attempts_reprobe_mismatches_in_new_pods_and_settle_reports_its_time(tutorial: str, tmp_path: Path) -> None:
    wrong = tmp_path / "expect.yaml"
    text = SPEC.read_text()
    wrong.write_text(text.replace("frontend: {\"*\": allow, db: deny,", "frontend: {\"*\": allow, db: allow,"))
    proc = netprobe("run", "-f", str(wrong), "-n", tutorial, "--image", IMAGE, "--attempts", "2", "-o", "json", "-v")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    cells = {(c["source"], c["target"]): c for c in doc["cells"]}
    assert cells[("frontend", "db")]["attempts"] == 2
    assert cells[("frontend", "db")]["history"] == ["blocked", "blocked"]
    assert cells[("api", "db")]["attempts"] == 1  # matched the first time: not re-probed
    assert doc["meta"]["probe_pods"] == 3  # 2 identities, then only frontend again
    settled = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "--settle", "60s", "-o", "json")
    assert settled.returncode == 0, settled.stdout + settled.stderr
    sdoc = json.loads(settled.stdout)
    assert sdoc["settle_s"] is not None and sdoc["meta"]["probe_pods"] == 4
    assert wait_gone(tutorial) == []

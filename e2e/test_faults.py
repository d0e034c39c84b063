"""Real faults between netprobe and the API server (a proxy of the tests' own, on loopback),
and real probe faults: the run completes correctly, or fails with exit 3 and a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import IMAGE, ROOT, kubectl, netprobe, wait_gone
from faultproxy import Rule, Script, fault_proxy

SPEC = ROOT / "examples" / "tutorial" / "expect.yaml"


def _kubeconfig() -> Path:
    return Path(os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser())


def _run_via(kubeconfig: Path, *args: str, budget: str = "30") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NETPROBE_API_RETRY_BUDGET": budget}
    env.pop("KUBECONFIG", None)
    return subprocess.run([sys.executable, "-m", "probe", "run", "-f", str(SPEC), "--kubeconfig", str(kubeconfig),
                           *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_transient_api_faults_are_retried_and_the_run_is_correct(tutorial: str, tmp_path: Path) -> None:
    script = Script(rules=[
        Rule(lambda m, p: m == "GET" and "/pods" in p and "watch" not in p, ["429", "pass", "503"]),
        Rule(lambda m, p: m == "POST" and "/jobs" in p, ["500", "drop"]),
        Rule(lambda m, p: "watch=true" in p, ["gone", "cut"]),
        Rule(lambda m, p: m == "DELETE", ["503"]),
    ])
    with fault_proxy(_kubeconfig(), script, tmp_path / "kubeconfig") as kc:
        started = time.monotonic()
        proc = _run_via(kc, "-n", tutorial, "--image", IMAGE, "-o", "json")
        elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert {(c["source"], c["target"]): c["observed"] for c in doc["cells"]}[("frontend", "db")] == "blocked"
    injected = [a for _, _, a in script.log if a != "pass"]
    assert sorted(injected) == sorted(["429", "503", "500", "drop", "gone", "cut", "503"]), script.log
    assert elapsed > 1.0  # Retry-After: 1 was honoured
    assert wait_gone(tutorial) == []


def test_a_watch_expired_mid_stream_is_relisted_and_a_lost_create_still_counts(tutorial: str,
                                                                              tmp_path: Path) -> None:
    script = Script(rules=[
        Rule(lambda m, p: m == "POST" and "/jobs" in p, ["lost"]),  # committed, answer lost: 409 on retry
        Rule(lambda m, p: "watch=" in p.lower() and "netprobe.io" in p, ["gone-mid"]),
    ])
    with fault_proxy(_kubeconfig(), script, tmp_path / "kubeconfig") as kc:
        proc = _run_via(kc, "-n", tutorial, "--image", IMAGE, "-o", "json", "--timeout", "150s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    actions = [a for _, _, a in script.log]
    assert "lost" in actions and "gone-mid" in actions, script.log
    # after the ERROR 410 the client re-listed; a watch from an expired version is answered
    # 410 again, and a client that kept retrying it would never see its probe pods finish
    assert actions.count("gone") <= 1, script.log
    assert wait_gone(tutorial) == []


def test_persistent_api_faults_end_in_exit_3_with_a_clear_message(tutorial: str, tmp_path: Path) -> None:
    script = Script(always="503")
    with fault_proxy(_kubeconfig(), script, tmp_path / "kubeconfig") as kc:
        started = time.monotonic()
        proc = _run_via(kc, "-n", tutorial, "--image", IMAGE, budget="5")
        elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "HTTP 503: injected 503" in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 60
    assert len(script.log) > 1  # it did retry


def test_image_without_python_is_an_agent_failure_not_a_hang(tutorial: str) -> None:
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", "lab.local/pause:3.2"
                    if os.environ.get("NETPROBE_LAB") == "1" else "registry.k8s.io/pause:3.9",
                    "--startup-timeout", "60s")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "probe pod for api" in proc.stdout and "Traceback" not in proc.stderr
    assert wait_gone(tutorial) == []


def test_overall_timeout_bounds_the_run(tutorial: str) -> None:
    started = time.monotonic()
    proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "--warmup", "60s",
                    "--warmup-mode", "fixed", "--timeout", "8s")
    assert time.monotonic() - started < 40
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "timed out" in proc.stdout
    assert wait_gone(tutorial) == []


def test_unschedulable_probe_pods_are_reported_not_waited_for_forever(tutorial: str) -> None:
    nodes = kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    taint = "netprobe-e2e=unschedulable:NoSchedule"
    try:
        for node in nodes:  # running pods stay; new pods (the probes) cannot be scheduled
            kubectl("taint", "nodes", node, taint, "--overwrite")
        proc = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "--startup-timeout", "10s")
    finally:
        for node in nodes:
            kubectl("taint", "nodes", node, "netprobe-e2e:NoSchedule-", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "unschedulable:" in proc.stdout and "taint" in proc.stdout
    assert wait_gone(tutorial) == []


def test_probe_pod_deleted_mid_run_is_an_error_cell(tutorial: str) -> None:
    run = subprocess.Popen([sys.executable, "-m", "probe", "run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE,
                            "--warmup", "20s", "--warmup-mode", "fixed"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        victim = ""
        while not victim and time.monotonic() < deadline:
            victim = kubectl("get", "pods", "-n", tutorial, "-l", "netprobe.io/run,app=api",
                             "-o", "jsonpath={.items[0].metadata.name}", check=False).stdout
            time.sleep(0.5)
        assert victim, "no api probe pod appeared"
        kubectl("delete", "pod", victim, "-n", tutorial, "--wait=false")  # what an eviction does
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 3, out + err
    assert "probe pod for api" in out and "deleted (evicted?)" in out
    assert "frontend" in out and wait_gone(tutorial) == []

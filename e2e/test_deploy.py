"""Deployment shapes on a real cluster: minimal RBAC, the in-cluster Job, the kubectl plugin,
the pytest plugin, and what is left after SIGKILL (the Job TTL) and `netprobe cleanup`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import IMAGE, KUBECTL, ROOT, kubectl, netprobe, probe_objects, wait_gone

SPEC = ROOT / "examples" / "tutorial" / "expect.yaml"
RBAC = ROOT / "deploy" / "rbac.yaml"


def _token(namespace: str, sa: str) -> str:
    proc = kubectl("create", "token", sa, "-n", namespace, check=False)  # Kubernetes >= 1.24
    if proc.returncode == 0:
        return proc.stdout.strip()
    deadline = time.monotonic() + 30  # older clusters: the token controller fills a Secret
    while time.monotonic() < deadline:
        secret = kubectl("get", "sa", sa, "-n", namespace, "-o", "jsonpath={.secrets[0].name}").stdout
        if secret:
            data = kubectl("get", "secret", secret, "-n", namespace, "-o", "jsonpath={.data.token}").stdout
            if data:
                return base64.b64decode(data).decode()
        time.sleep(1)
    raise AssertionError(f"no token for {namespace}/{sa}")


def _kubeconfig_for(path: Path, namespace: str, sa: str) -> Path:
    raw = json.loads(kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    cluster = raw["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": cluster}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa}}],
        "users": [{"name": sa, "user": {"token": _token(namespace, sa)}}]}))
    return path


def _netprobe_as(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args, "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})


@pytest.fixture(scope="module")
def rbac() -> Iterator[None]:
    kubectl("apply", "-f", str(RBAC))
    limited = yaml.safe_load_all(RBAC.read_text())
    docs = []
    for doc in limited:  # the same role without `create jobs`, bound to another ServiceAccount
        if doc["kind"] == "ClusterRole":
            doc["metadata"]["name"] = "netprobe-nojobs"
            for rule in doc["rules"]:
                if rule["resources"] == ["jobs"]:
                    rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
        elif doc["kind"] == "ClusterRoleBinding":
            doc["metadata"]["name"] = "netprobe-nojobs"
            doc["roleRef"]["name"] = "netprobe-nojobs"
            doc["subjects"][0]["name"] = "netprobe-nojobs"
        elif doc["kind"] == "ServiceAccount":
            doc["metadata"]["name"] = "netprobe-nojobs"
        else:
            continue
        docs.append(doc)
    subprocess.run([KUBECTL, "apply", "-f", "-"], input=yaml.safe_dump_all(docs), text=True, check=True,
                   capture_output=True)
    yield
    kubectl("delete", "clusterrole,clusterrolebinding", "netprobe-nojobs", check=False)


def test_minimal_rbac_is_enough(rbac: None, tutorial: str, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig_for(tmp_path / "kubeconfig", "netprobe", "netprobe")
    proc = _netprobe_as(kubeconfig, "run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lint = _netprobe_as(kubeconfig, "lint")
    assert lint.returncode in (0, 1), lint.stderr  # list permissions for --from-policies/lint suffice
    assert wait_gone(tutorial) == []


def test_missing_permission_is_exit_3_with_a_clear_message(rbac: None, tutorial: str, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig_for(tmp_path / "kubeconfig", "netprobe", "netprobe-nojobs")
    proc = _netprobe_as(kubeconfig, "run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "forbidden (HTTP 403)" in proc.stdout and "deploy/rbac.yaml" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def site_packages() -> Iterator[Path]:
    """netprobe and its dependencies for a pod's PYTHONPATH (the lab cannot build images)."""
    target = Path("/var/tmp/netprobe-e2e-site")
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
    yield target
    shutil.rmtree(target, ignore_errors=True)


def _in_cluster_job(name: str, spec_text: str, namespace: str, site: Path) -> dict:
    job = yaml.safe_load((ROOT / "deploy" / "job.yaml").read_text())
    job["metadata"]["name"] = name
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    if os.environ.get("NETPROBE_LAB") == "1":  # no registry on the lab: the deps come from the node
        c["image"] = IMAGE
        c["command"] = ["python3", "-m", "probe"]
        c["env"] = [{"name": "PYTHONPATH", "value": "/opt/netprobe"}]
        c["volumeMounts"].append({"name": "site", "mountPath": "/opt/netprobe", "readOnly": True})
        pod["volumes"].append({"name": "site", "hostPath": {"path": str(site), "type": "Directory"}})
    c["args"] = ["run", "-f", "/spec/expect.yaml", "--namespace", namespace, "--image", IMAGE]
    pod["volumes"][0]["configMap"]["name"] = name
    subprocess.run([KUBECTL, "-n", "netprobe", "create", "configmap", name, "--from-file",
                    "expect.yaml=/dev/stdin"], input=spec_text, text=True, check=True, capture_output=True)
    return job


def _wait_job(name: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(kubectl("-n", "netprobe", "get", "job", name, "-o", "json").stdout)["status"]
        if status.get("succeeded"):
            return "Complete"
        if status.get("failed"):
            return "Failed"
        time.sleep(2)
    return "Timeout"


@pytest.mark.skipif(os.environ.get("NETPROBE_LAB") != "1" and not os.environ.get("NETPROBE_E2E_IMAGE_BUILT"),
                    reason="needs the netprobe image (deploy/Dockerfile) in the cluster; set NETPROBE_E2E_IMAGE_BUILT")
def test_in_cluster_job_exit_code_is_the_job_status(rbac: None, tutorial: str, site_packages: Path) -> None:
    good = _in_cluster_job("np-e2e-good", SPEC.read_text(), tutorial, site_packages)
    wrong_spec = SPEC.read_text().replace('frontend: {"*": allow, db: deny,', 'frontend: {"*": allow, db: allow,')
    bad = _in_cluster_job("np-e2e-bad", wrong_spec, tutorial, site_packages)
    try:
        for job in (good, bad):
            subprocess.run([KUBECTL, "apply", "-f", "-"], input=json.dumps(job), text=True, check=True,
                           capture_output=True)
        assert _wait_job("np-e2e-good") == "Complete", kubectl("-n", "netprobe", "logs", "job/np-e2e-good",
                                                              check=False).stdout
        assert _wait_job("np-e2e-bad") == "Failed"
        log = kubectl("-n", "netprobe", "logs", "job/np-e2e-bad").stdout
        assert "frontend → db" in log and "Mismatches (1):" in log
    finally:
        kubectl("-n", "netprobe", "delete", "job,configmap", "np-e2e-good", "np-e2e-bad", check=False)
    assert wait_gone(tutorial) == []


def test_kubectl_plugin(tutorial: str) -> None:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = subprocess.run([KUBECTL, "netprobe", "run", "-f", str(SPEC), "--namespace", tutorial, "--image", IMAGE],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 cells: 10 match" in proc.stdout


def test_pytest_plugin_against_the_cluster(pytester: pytest.Pytester, tutorial: str) -> None:
    pytester.makepyfile(textwrap.dedent(f"""
        def test_tutorial(netprobe):
            result = netprobe.assert_matrix({str(SPEC)!r})
            assert result.ok

        def test_wrong(netprobe, tmp_path):
            spec = tmp_path / "wrong.yaml"
            text = open({str(SPEC)!r}).read()
            spec.write_text(text.replace("api: deny, internet: deny", "api: deny, internet: allow"))
            netprobe.assert_matrix(spec)
    """))
    result = pytester.runpytest_subprocess("-p", "no:benchmark", "-p", "no:cacheprovider",
                                           "--netprobe-namespace", tutorial, "--netprobe-image", IMAGE,
                                           "--netprobe-kubeconfig", os.environ.get("KUBECONFIG", ""), timeout=300)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Mismatches (1):*", "*api → internet: internet:443 blocked*"])


def test_sigkill_leaves_only_what_the_job_ttl_removes(tutorial: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "probe", "run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE,
                             "--warmup", "0", "--ttl", "5"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not probe_objects(tutorial) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert probe_objects(tutorial), "nothing to clean up: the run finished before SIGKILL"
    # Jobs finish (the agent does not need netprobe), then the TTL controller deletes them and their pods.
    assert wait_gone(tutorial, seconds=120) == []


def test_cleanup_removes_only_netprobe_objects(tutorial: str) -> None:
    kubectl("-n", tutorial, "create", "job", "not-ours", f"--image={IMAGE}", "--", "sleep", "60")
    try:
        run = netprobe("run", "-f", str(SPEC), "-n", tutorial, "--image", IMAGE, "--keep")
        assert run.returncode == 0, run.stdout + run.stderr
        out = netprobe("cleanup", "-n", tutorial)
        assert out.returncode == 0 and "1 run(s) removed" in out.stdout
        assert wait_gone(tutorial) == []
        assert kubectl("-n", tutorial, "get", "job", "not-ours", "-o", "name").stdout.strip() == "job.batch/not-ours"
    finally:
        kubectl("-n", tutorial, "delete", "job", "not-ours", check=False)

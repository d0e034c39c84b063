"""e2e: the real `netprobe` CLI against the cluster in $KUBECONFIG (the lab, or kind + Calico).

Skipped, with the reason, when no cluster answers. On the netprobe lab (NETPROBE_LAB=1) the
lab's images are used; elsewhere public images.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL", "kubectl")
IMAGE = os.environ.get("NETPROBE_LAB_PYTHON_IMAGE") or os.environ.get("NETPROBE_IMAGE") or "python:3.12-alpine"


def kubectl(*args: str, check: bool = True, timeout: float = 120,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, check=check, timeout=timeout,
                          input=input_text)


def _cluster_problem() -> str | None:
    if shutil.which(KUBECTL) is None:
        return f"{KUBECTL} not found on PATH"
    if not os.environ.get("KUBECONFIG") and not Path("~/.kube/config").expanduser().exists():
        return "no KUBECONFIG and no ~/.kube/config (bring the lab up: eval \"$(../shared/lab/up.sh)\")"
    try:
        proc = kubectl("get", "--raw", "/readyz", check=False, timeout=15)
    except subprocess.TimeoutExpired:
        return "the cluster in KUBECONFIG did not answer within 15s"
    if proc.returncode != 0:
        return f"the cluster in KUBECONFIG does not answer: {proc.stderr.strip()[:200]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = _cluster_problem()
    if problem:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=f"no cluster: {problem}"))


def netprobe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a subprocess."""
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def probe_objects(namespace: str | None = None) -> list[str]:
    """Names of netprobe Jobs and pods still present (in a namespace or anywhere)."""
    where = ["-n", namespace] if namespace else ["-A"]
    proc = kubectl("get", "jobs,pods", *where, "-l", "netprobe.io/run", "-o", "name")
    return proc.stdout.split()


def wait_gone(namespace: str, seconds: float = 60) -> list[str]:
    deadline = time.monotonic() + seconds
    left = probe_objects(namespace)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = probe_objects(namespace)
    return left


def _namespace(prefix: str) -> Iterator[str]:
    name = f"{prefix}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", name)
    # Bare pods are refused until the controller-manager has made the namespace's default
    # ServiceAccount (seconds on a busy control plane); controllers retry, kubectl apply does not.
    deadline = time.monotonic() + 60
    while kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0 \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def _deploy(namespace: str, *extra: str) -> None:
    subprocess.run([str(ROOT / "examples" / "tutorial" / "deploy.sh"), namespace, *extra], check=True,
                   timeout=300, env={**os.environ, "KUBECTL": KUBECTL})


@pytest.fixture(scope="session")
def tutorial() -> Iterator[str]:
    """A fresh namespace with the tutorial deployed and its policies applied."""
    for ns in _namespace("np-e2e"):
        _deploy(ns)
        yield ns


@pytest.fixture(scope="session")
def tutorial_no_dns() -> Iterator[str]:
    """The tutorial with the DNS rule missing from api's egress policy."""
    for ns in _namespace("np-e2e-nodns"):
        _deploy(ns, "--no-dns")
        yield ns

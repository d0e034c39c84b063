"""The I/O boundary: one importer of `kubernetes`, and no client exception ever leaks out of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from probe import cluster
from probe.errors import ClusterError, PermissionDenied, TransientError

PACKAGE = Path(cluster.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_cluster_py_imports_kubernetes():
    importers = sorted(p.name for p in PACKAGE.rglob("*.py") if {"kubernetes", "urllib3"} & _imports(p))
    assert importers == ["cluster.py"]


def test_agent_imports_only_the_standard_library():
    import sys

    third_party = {n for n in _imports(PACKAGE / "agent.py") if n not in sys.stdlib_module_names}
    assert third_party == set()


def api_error(status: int, retry_after: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="reason")
    exc.body = '{"kind": "Status", "message": "the message"}'
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    return exc


@pytest.mark.parametrize("exc, kind, status", [
    (api_error(429, "3"), TransientError, 429),
    (api_error(500), TransientError, 500),
    (api_error(503), TransientError, 503),
    (api_error(401), PermissionDenied, 401),
    (api_error(403), PermissionDenied, 403),
    (api_error(404), ClusterError, 404),
    (api_error(422), ClusterError, 422),
    (urllib3.exceptions.MaxRetryError(None, "/api", "refused"), TransientError, None),
    (urllib3.exceptions.ProtocolError("Connection broken"), TransientError, None),
    (ConnectionResetError(104, "reset"), TransientError, None),
], ids=["429", "500", "503", "401", "403", "404", "422", "max-retry", "protocol", "reset"])
def test_client_errors_are_translated(exc, kind, status):
    out = cluster._translate(exc, "list pods")
    assert type(out) is kind and out.status == status
    assert out.args[0].startswith("list pods: ")
    if status in (401, 403):
        assert "deploy/rbac.yaml" in str(out)


def test_retry_after_is_honoured_and_bounded():
    out = cluster._translate(api_error(429, "3"), "x")
    assert isinstance(out, TransientError) and out.retry_after == 3.0


def test_retries_stop_at_the_budget(monkeypatch):
    monkeypatch.setenv("NETPROBE_API_RETRY_BUDGET", "0.5")
    calls = []

    def failing() -> None:
        calls.append(1)
        raise TransientError("x: HTTP 503", status=503, retry_after=0.1)

    with pytest.raises(TransientError):
        cluster._retrying(failing)
    assert 2 <= len(calls) <= 6


def test_permanent_errors_are_not_retried():
    calls = []

    def failing() -> None:
        calls.append(1)
        raise PermissionDenied("forbidden", status=403)

    with pytest.raises(PermissionDenied):
        cluster._retrying(failing)
    assert calls == [1]

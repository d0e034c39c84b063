"""Whole runs through the real `kubernetes` client: Runner → KubeCluster → HTTP → the stub API,
whose kubelet runs each probe pod's agent locally against loopback listeners."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stubapi import StubAPI

from probe.cluster import KubeCluster
from probe.model import Verdict
from probe.pods import RUN_LABEL
from probe.probepod import PodSettings
from probe.runner import Runner, RunOptions
from probe.spec import parse_spec


def spec(port: int, sources: tuple[str, ...] = ("api", "web"), expect_db: str = "allow",
         extra_targets: int = 0) -> object:
    targets = [f'  - {{name: db, tcp: "127.0.0.1:{port}"}}'] + [
        f'  - {{name: db{i}, tcp: "127.0.0.1:{port}"}}' for i in range(extra_targets)]
    row = ", ".join([f"db: {expect_db}"] + [f"db{i}: allow" for i in range(extra_targets)])
    return parse_spec(textwrap.dedent("""\
        version: 1
        defaults: {timeout: 1s}
        sources:
        """) + "\n".join(f"  - {{name: {s}, selector: {{app: {s}}}}}" for s in sources)
        + "\ntargets:\n" + "\n".join(targets) + "\nexpect:\n"
        + "\n".join(f"  {s}: {{{row}}}" for s in sources) + "\n")


@pytest.fixture
def stub() -> Iterator[StubAPI]:
    with StubAPI() as api:
        yield api


@pytest.fixture
def kube_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[StubAPI], KubeCluster]]:
    """KubeCluster (the real client) connected to a stub server; closed after the test."""
    monkeypatch.setenv("NETPROBE_API_RETRY_BUDGET", "20")
    made: list[KubeCluster] = []

    def connect(stub: StubAPI) -> KubeCluster:
        made.append(KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path)), request_timeout=5.0))
        return made[-1]

    yield connect
    for kube in made:
        kube.close()


def add_sources(stub: StubAPI, *apps: str) -> None:
    for i, app in enumerate(apps):
        stub.pod(f"{app}-0", labels={"app": app, "pod-template-hash": "abc"}, ip=f"10.0.0.{i + 1}")


FAST = RunOptions(warmup=0.0, pods=PodSettings(startup_timeout=10.0), overall_timeout=60.0)


def jobs_of(stub: StubAPI) -> list[dict]:
    return [o for k, o in stub.objects.items() if k[0] == "jobs"]


def test_a_run_through_the_real_client(stub, kube_for, listener):
    add_sources(stub, "api", "web")
    result = Runner(kube_for(stub), spec(listener[1]), FAST).run()
    assert result.exit_code == 0, (result.problems, [c.detail for c in result.cells])
    assert result.cell("api", "db").observed is Verdict.ALLOWED
    assert len(stub.requests_to("POST", "/jobs$")) == 2
    assert jobs_of(stub) == []  # cleaned up
    assert not any(RUN_LABEL in (o["metadata"].get("labels") or {}) for o in stub.objects.values())


def test_a_run_sends_exactly_these_api_requests(stub, kube_for, listener):
    add_sources(stub, "api", "web")
    result = Runner(kube_for(stub), spec(listener[1]), FAST).run()
    assert result.exit_code == 0, (result.problems, [c.detail for c in result.cells])
    probes = f"{RUN_LABEL}={result.run_id}"
    watches = [r for r in stub.requests if r.is_watch]
    assert len(watches) == 1 and watches[0].query.pop("resourceVersion").isdigit() \
        and 1 <= int(watches[0].query.pop("timeoutSeconds")) <= 60
    # The log of a probe pod the watch saw running is followed (its result arrives before the
    # kubelet reports the exit); these agents finish in milliseconds, so a pod may be seen only
    # once it has finished, and then it is not.
    follows = [r for r in stub.requests if r.path.endswith("/log")]
    assert len(follows) <= 2 and all(r.method == "GET" and r.query == {"follow": "true"} for r in follows)
    # Each probe pod and its Job are deleted as its result comes in, while the other runs; the
    # final sweep deletes what is left (both, when the run ends before the first delete went out).
    reaped = [r for r in stub.requests if r.method == "DELETE" and re.search(r"/(jobs|pods)/[^/]+$", r.path)]
    assert all(r.query == ({"propagationPolicy": "Background"} if "/jobs/" in r.path else {"gracePeriodSeconds": "0"})
               for r in reaped) and len(reaped) <= 4
    # sources are listed concurrently: the order of the first two is not fixed
    sent = sorted((r.method, r.path, sorted(r.query.items())) for r in stub.requests
                  if r not in follows and r not in reaped)
    page = [("limit", "500")]
    assert sent == sorted([
        ("GET", "/api/v1/namespaces/default/pods", [("labelSelector", "app=api"), *page]),
        ("GET", "/api/v1/namespaces/default/pods", [("labelSelector", "app=web"), *page]),
        ("GET", "/api/v1/services", page),  # targets reached through a Service
        ("POST", "/apis/batch/v1/namespaces/default/jobs", []),
        ("POST", "/apis/batch/v1/namespaces/default/jobs", []),
        ("GET", "/api/v1/namespaces/default/pods", [("labelSelector", probes), *page]),
        ("GET", "/api/v1/namespaces/default/pods",
         [("allowWatchBookmarks", "true"), ("labelSelector", probes), ("watch", "true")]),
        ("DELETE", "/apis/batch/v1/namespaces/default/jobs",
         [("labelSelector", probes), ("propagationPolicy", "Background")]),
        ("DELETE", "/api/v1/namespaces/default/pods", [("gracePeriodSeconds", "0"), ("labelSelector", probes)]),
    ])
    assert all(r.headers.get("authorization") == "Bearer stub-token" for r in stub.requests)


def test_a_job_create_lost_after_commit_does_not_fail_the_plan(stub, kube_for, listener):
    add_sources(stub, "api")
    stub.fault("POST", "/jobs$", "lost")
    result = Runner(kube_for(stub), spec(listener[1], ("api",)), FAST).run()
    assert result.exit_code == 0, [c.detail for c in result.cells]
    assert len(stub.requests_to("POST", "/jobs$")) == 2


def test_keep_sets_no_ttl_so_kept_jobs_stay(stub, kube_for, listener):
    add_sources(stub, "api")
    opts = RunOptions(warmup=0.0, keep=True, pods=PodSettings(startup_timeout=10.0))
    result = Runner(kube_for(stub), spec(listener[1], ("api",)), opts).run()
    assert result.exit_code == 0
    [job] = jobs_of(stub)
    assert "ttlSecondsAfterFinished" not in job["spec"]  # the TTL controller would delete it
    assert not [r for r in stub.requests if r.method == "DELETE"]  # not even the finished pod


def test_ttl_0_still_reads_a_result_too_large_for_the_termination_message(stub, kube_for, listener):
    add_sources(stub, "api")
    opts = RunOptions(warmup=0.0, pods=PodSettings(startup_timeout=10.0, ttl_seconds=0))
    big = spec(listener[1], ("api",), extra_targets=60)  # the result exceeds 4 KiB: read from the log
    result = Runner(kube_for(stub), big, opts).run()
    assert result.exit_code == 0, [c.detail for c in result.cells][:3]
    assert stub.requests_to("GET", "/log$")  # it was read from the log
    assert all(c.observed is Verdict.ALLOWED for c in result.cells)


def test_a_log_that_is_gone_fails_that_plan_only(stub, kube_for, listener):
    add_sources(stub, "api", "web")
    # no result from a followed log: both results must be read from the finished pods' logs
    stub.fault("GET", "/log$", "status", status=404, message="not now", times=99, query="follow=true")
    stub.fault("GET", "/log$", "status", status=404, message='pods "x" not found', times=1, query="tailLines")
    big = spec(listener[1], ("api", "web"), extra_targets=60)
    result = Runner(kube_for(stub), big, FAST).run()
    errors = [c for c in result.cells if c.observed is Verdict.ERROR]
    allowed = [c for c in result.cells if c.observed is Verdict.ALLOWED]
    assert errors and allowed and {c.source for c in errors} != {c.source for c in allowed}
    assert "log" in errors[0].detail and "not found" in errors[0].detail
    assert result.exit_code != 0


def test_each_wave_gets_its_own_startup_budget(kube_for, listener):
    # 3 identities, one probe pod at a time, each taking 2.5 s to start: 7.5 s in all, more
    # than one pod's start-up budget (0.5 s + the agent's 6.4 s).
    with StubAPI(kubelet_delay=2.5) as stub:
        add_sources(stub, "a", "b", "c")
        opts = RunOptions(warmup=0.0, max_parallel=1, timeout=0.2, pods=PodSettings(startup_timeout=0.5),
                          overall_timeout=60.0)
        started = time.monotonic()
        result = Runner(kube_for(stub), spec(listener[1], ("a", "b", "c")), opts).run()
        assert result.exit_code == 0, [c.detail for c in result.cells]
        assert time.monotonic() - started > 7.0  # the waves did run one after the other


def test_a_wave_that_never_starts_still_times_out(kube_for, listener):
    with StubAPI(kubelet="hold") as stub:
        add_sources(stub, "a", "b")
        opts = RunOptions(warmup=0.0, max_parallel=1, timeout=0.1, pods=PodSettings(startup_timeout=0.2),
                          overall_timeout=60.0)
        result = Runner(kube_for(stub), spec(listener[1], ("a", "b")), opts).run()
        details = [c.detail for c in result.cells]
        assert result.exit_code == 3 and all("timed out" in d and "still Pending" in d for d in details), details


EPHEMERAL = RunOptions(warmup=0.0, via="ephemeral", pods=PodSettings(startup_timeout=10.0), overall_timeout=60.0)


def test_ephemeral_rounds_use_new_container_names(stub, kube_for, listener, closed_port):
    add_sources(stub, "api")
    opts = RunOptions(warmup=0.0, via="ephemeral", attempts=2, pods=PodSettings(startup_timeout=10.0),
                      overall_timeout=60.0)
    # db expected allow but closed: the cell is re-probed in round 2 (a connection seen on an
    # expected-deny cell would be final, so that is not how to get a second round).
    result = Runner(kube_for(stub), spec(closed_port, ("api",), expect_db="allow"),
                    opts).run()
    cell = result.cell("api", "db")
    assert cell.history == (Verdict.REFUSED, Verdict.REFUSED), cell.detail  # round 2 really probed
    names = [c["name"] for c in stub.get("pods", "default", "api-0")["spec"]["ephemeralContainers"]]
    assert len(names) == 2 and len(set(names)) == 2
    assert all(n.startswith(f"netprobe-{result.run_id}") for n in names)
    assert any("cannot remove ephemeral containers" in w for w in result.warnings)


def test_ephemeral_plans_are_not_polled_before_they_are_launched(stub, kube_for, listener):
    add_sources(stub, "a", "b")
    opts = RunOptions(warmup=0.0, via="ephemeral", max_parallel=1, pods=PodSettings(startup_timeout=10.0),
                      overall_timeout=60.0)
    result = Runner(kube_for(stub), spec(listener[1], ("a", "b")), opts).run()
    assert result.exit_code == 0, [c.detail for c in result.cells]
    for pod in ("a-0", "b-0"):
        seen = [r.method for r in stub.requests if r.path.endswith(f"/pods/{pod}")
                or r.path.endswith(f"/pods/{pod}/ephemeralcontainers")]
        first_patch = seen.index("PATCH")
        # before its PATCH: one GET (the current ephemeral containers), no status polls
        assert seen[:first_patch] == ["GET"], seen


# -- the result read from the followed log (the kubelet reports an exit only at its next relist)


def probe_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith(("netprobe-log-", "netprobe-watch-"))]


def test_the_result_is_read_from_the_log_before_the_kubelet_reports_the_exit(kube_for, listener):
    # A kubelet that reports the exit 4 s after it: the run ends long before, from the log.
    with StubAPI(kubelet_report_delay=4.0) as stub:
        add_sources(stub, "api", "web")
        # a fixed 0.5 s warm-up keeps each agent running while the watch sees it Running
        opts = RunOptions(warmup=0.5, warmup_mode="fixed", pods=PodSettings(startup_timeout=10.0),
                          overall_timeout=60.0)
        lines: list[str] = []
        started = time.monotonic()
        result = Runner(kube_for(stub), spec(listener[1]), opts, log=lines.append).run()
        took = time.monotonic() - started
        assert result.exit_code == 0, [c.detail for c in result.cells]
        assert result.cell("api", "db").observed is Verdict.ALLOWED
        assert took < 3.5, lines
        follows = [r for r in stub.requests if r.path.endswith("/log")]
        assert len(follows) == 2 and all(r.query == {"follow": "true"} for r in follows)
        assert sum("result read from its log" in line for line in lines) == 2, lines
        # nothing is left reading: the watch and both log streams were shut down with the round
        deadline = time.monotonic() + 2
        while probe_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe_threads() == []


def test_a_forbidden_log_costs_only_time_the_termination_message_still_tells(kube_for, listener):
    with StubAPI(kubelet_report_delay=0.5) as stub:
        add_sources(stub, "api", "web")
        stub.fault("GET", "/log$", "status", status=403, message="pods/log is forbidden", times=99)
        opts = RunOptions(warmup=0.5, warmup_mode="fixed", pods=PodSettings(startup_timeout=10.0),
                          overall_timeout=60.0)
        lines: list[str] = []
        result = Runner(kube_for(stub), spec(listener[1], expect_db="deny"), opts, log=lines.append).run()
        # the agents connected: a leak on an expected deny, reported from the termination message
        assert result.exit_code == 1 and result.cell("api", "db").observed is Verdict.ALLOWED
        assert sum("result read from its termination message" in line for line in lines) == 2, lines
        # forbidden once: not asked again for every pod (both may have asked before the first answer)
        assert 1 <= len(stub.requests_to("GET", "/log$")) <= 2


def test_each_probe_pod_is_deleted_as_its_result_comes_in(kube_for, listener):
    # three identities one after the other: the first two are done (and deleted, with their
    # Jobs) while the third still runs; the sweep at the end finds only what is left
    with StubAPI() as stub:
        add_sources(stub, "a", "b", "c")
        opts = RunOptions(warmup=0.0, max_parallel=1, pods=PodSettings(startup_timeout=10.0), overall_timeout=60.0)
        lines: list[str] = []
        result = Runner(kube_for(stub), spec(listener[1], ("a", "b", "c")), opts, log=lines.append).run()
        assert result.exit_code == 0, [c.detail for c in result.cells]
        creates = [i for i, r in enumerate(stub.requests) if r.method == "POST" and r.path.endswith("/jobs")]
        first_job = f"netprobe-{result.run_id}-0"
        deleted = [i for i, r in enumerate(stub.requests)
                   if r.method == "DELETE" and r.path.endswith(f"/jobs/{first_job}")]
        assert len(creates) == 3 and deleted and deleted[0] < creates[2]  # deleted while the run went on
        assert any("already deleted as their results came in" in line for line in lines), lines
        assert jobs_of(stub) == [] and not [k for k in stub.objects if k[0] == "pods" and k[2].startswith("netprobe-")]

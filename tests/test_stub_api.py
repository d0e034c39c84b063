"""`KubeCluster` — the real `kubernetes` client — over real HTTP against the stub API server.

CI runs this file twice: with the newest and with the oldest `kubernetes` release that
pyproject.toml declares (see .ci/run), so both ends of the supported range are proven.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from stubapi import StubAPI

from probe.cluster import KubeCluster, ProbePodState
from probe.errors import ClusterError, TransientError
from probe.pods import RUN_LABEL

RUN = "r1"


def test_client_version(record_property):
    record_property("kubernetes", kubernetes.__version__)
    print(f"kubernetes client {kubernetes.__version__}")
    assert kubernetes.__version__


@pytest.fixture
def stub() -> Iterator[StubAPI]:
    with StubAPI(kubelet="hold") as api:
        yield api


@pytest.fixture
def kube(stub: StubAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeCluster]:
    monkeypatch.setenv("NETPROBE_API_RETRY_BUDGET", "20")
    with KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path)), request_timeout=5.0) as cluster:
        yield cluster


def probe_pod(stub: StubAPI, name: str = "p0", index: int = 0, ns: str = "default") -> None:
    stub.put("pods", {"metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: RUN, "app": "api"},
                                   "annotations": {"netprobe.io/plan": str(index)}},
                      "spec": {"containers": [{"name": "agent", "image": "python:3"}]},
                      "status": {"phase": "Pending"}})


def finish(stub: StubAPI, name: str = "p0", ns: str = "default", code: int = 0, message: str = "{}") -> None:
    stub.update("pods", ns, name, lambda p: p["status"].update(
        phase="Succeeded" if code == 0 else "Failed",
        containerStatuses=[{"name": "agent", "state": {"terminated": {"exitCode": code, "message": message}}}]))


def later(seconds: float, fn, *args) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        fn(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def watch_until_done(kube: KubeCluster, seconds: float = 8.0, ns: str | None = "default") -> list[ProbePodState]:
    seen: list[ProbePodState] = []
    for state in kube.watch_probe_pods(ns, RUN, lambda: any(s.exit_code is not None for s in seen),
                                       time.monotonic() + seconds):
        seen.append(state)
    return seen


# ------------------------------------------------------------------ watch


def test_watch_sees_a_pod_finish(stub, kube):
    probe_pod(stub)
    later(0.3, finish, stub)
    seen = watch_until_done(kube)
    assert seen[0].phase == "Pending" and seen[0].plan_index == 0
    assert seen[-1].exit_code == 0 and seen[-1].phase == "Succeeded"


def test_watch_error_410_mid_stream_leads_to_exactly_one_relist(stub, kube):
    probe_pod(stub)
    # the first event after the watch starts is replaced by ERROR 410 (the RV is compacted)
    stub.fault("GET", "/pods$", "watch-error-410", query="watch=(?i:true)", after_events=0)
    later(0.3, stub.update, "pods", "default", "p0", lambda p: p["status"].update(phase="Running"))
    later(0.8, finish, stub)
    started = time.monotonic()
    seen = watch_until_done(kube)
    assert seen[-1].exit_code == 0, seen
    assert time.monotonic() - started < 5, "the expired watch was retried instead of re-listed"
    lists = stub.requests_to("GET", "/namespaces/default/pods$", watch=False)
    assert len(lists) == 2, [r.query for r in lists]  # the start, and one re-list after 410
    watches = stub.requests_to("GET", "/namespaces/default/pods$", watch=True)
    versions = [w.query["resourceVersion"] for w in watches]
    assert len(set(versions)) == len(versions), f"an expired resourceVersion was reused: {versions}"


def test_watch_from_a_too_old_resource_version_relists_once(stub, kube):
    probe_pod(stub)
    original = stub.watch_events

    def expire_first(resource, ns, query, fault):  # the history was compacted between list and watch
        if len(stub.requests_to("GET", "/pods$", watch=True)) == 1:
            stub.put("services", {"metadata": {"name": "unrelated", "namespace": "default"}, "spec": {}})
            stub.expire()
        return original(resource, ns, query, fault)

    stub.watch_events = expire_first
    later(0.5, finish, stub)
    seen = watch_until_done(kube)
    assert seen[-1].exit_code == 0
    assert len(stub.requests_to("GET", "/pods$", watch=False)) == 2


def test_watch_bookmarks_move_the_resource_version_and_are_not_states(stub, kube):
    probe_pod(stub)
    later(0.2, stub.bookmark)
    later(0.4, finish, stub)
    seen = watch_until_done(kube)
    assert [s.phase for s in seen] == ["Pending", "Succeeded"]


def test_watch_reports_deleted_pods(stub, kube):
    probe_pod(stub)
    later(0.3, stub.delete, "pods", "default", "p0")
    seen: list[ProbePodState] = []
    for state in kube.watch_probe_pods("default", RUN, lambda: any(s.deleted for s in seen),
                                       time.monotonic() + 5):
        seen.append(state)
    assert seen[-1].deleted and seen[-1].name == "p0"


def test_watch_across_namespaces(stub, kube):
    probe_pod(stub, "a", 0, ns="one")
    probe_pod(stub, "b", 1, ns="two")
    later(0.3, finish, stub, "b", "two")
    seen = watch_until_done(kube, ns=None)
    assert {s.name for s in seen} == {"a", "b"} and seen[-1].namespace == "two"


def test_watch_survives_a_5xx_on_the_watch_request(stub, kube):
    probe_pod(stub)
    stub.fault("GET", "/pods$", "status", status=503, query="watch=(?i:true)")
    later(0.5, finish, stub)
    seen = watch_until_done(kube)
    assert seen[-1].exit_code == 0


def test_watch_error_event_other_than_410_is_an_error(stub, kube):
    probe_pod(stub)
    original = stub.watch_events

    def forbidden(resource, ns, query, fault):
        yield {"type": "ERROR", "object": {"kind": "Status", "code": 403, "reason": "Forbidden",
                                           "message": "pods is forbidden: cannot watch"}}

    stub.watch_events = forbidden
    with pytest.raises(ClusterError, match="cannot watch"):
        watch_until_done(kube)
    stub.watch_events = original


def test_watch_stops_at_the_deadline(stub, kube):
    probe_pod(stub)
    started = time.monotonic()
    seen = watch_until_done(kube, seconds=1.5)
    assert 1.0 <= time.monotonic() - started < 4 and seen[-1].phase == "Pending"


# ------------------------------------------------------------------ lists


def test_lists_follow_continue_pages(stub, kube):
    for i in range(1234):
        stub.pod(f"api-{i:04d}", labels={"app": "api"}, ip=f"10.1.{i // 250}.{i % 250 + 1}")
    found = kube.list_pods("default", "app=api")
    assert len(found) == 1234 and len({p.name for p in found}) == 1234
    pages = stub.requests_to("GET", "/namespaces/default/pods$")
    assert len(pages) == 3 and all(r.query["limit"] == "500" for r in pages)
    assert "continue" in pages[1].query


def test_a_server_that_caps_pages_smaller_is_followed(tmp_path, monkeypatch):
    with StubAPI(page_limit_cap=7) as stub:
        for i in range(30):
            stub.put("services", {"metadata": {"name": f"s{i}", "namespace": "default"}, "spec": {}})
        with KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path))) as kube:
            assert len(kube.list_services("default")) == 30


# ------------------------------------------------------------------ retries


def test_429_waits_for_retry_after(stub, kube):
    stub.pod("api-0", labels={"app": "api"})
    stub.fault("GET", "/pods$", "status", status=429, headers={"Retry-After": "1"}, message="slow down")
    started = time.monotonic()
    assert [p.name for p in kube.list_pods("default")] == ["api-0"]
    assert time.monotonic() - started >= 0.9
    assert len(stub.requests_to("GET", "/pods$")) == 2


def test_5xx_is_retried_then_succeeds(stub, kube):
    stub.pod("api-0")
    stub.fault("GET", "/pods$", "status", status=500, times=2)
    assert len(kube.list_pods("default")) == 1
    assert len(stub.requests_to("GET", "/pods$")) == 3


def test_5xx_forever_is_a_transient_error_after_the_budget(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_API_RETRY_BUDGET", "1.5")
    with KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path))) as kube:
        stub.fault("GET", "/pods$", "status", status=503, times=100, message="etcd is sad")
        with pytest.raises(TransientError, match="HTTP 503: etcd is sad"):
            kube.list_pods("default")


def test_a_slow_response_times_out_and_is_retried(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_API_RETRY_BUDGET", "20")
    with KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path)), request_timeout=0.5) as kube:
        stub.pod("api-0")
        stub.fault("GET", "/pods$", "slow", delay=2.0)
        started = time.monotonic()
        assert len(kube.list_pods("default")) == 1
        assert time.monotonic() - started < 2.0  # did not wait for the slow answer


def job_manifest(name: str = "netprobe-r1-0", run: str = RUN) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "labels": {RUN_LABEL: run},
                         "annotations": {"netprobe.io/plan": "0"}},
            "spec": {"template": {"metadata": {"labels": {RUN_LABEL: run}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "agent", "image": "python:3"}]}}}}


def test_a_create_whose_response_is_lost_after_commit_is_success(stub, kube):
    stub.fault("POST", "/jobs$", "lost")
    kube.create_job(job_manifest())  # retried, 409 AlreadyExists: it is ours, so it is fine
    posts = stub.requests_to("POST", "/jobs$")
    assert len(posts) == 2
    assert stub.get("jobs", "default", "netprobe-r1-0") is not None
    assert len([k for k in stub.objects if k[0] == "pods"]) == 1  # one Job, one pod


def test_a_409_on_an_object_of_another_run_is_an_error(stub, kube):
    stub.put("jobs", job_manifest(run="someone-else"))
    with pytest.raises(ClusterError, match="already exists") as info:
        kube.create_job(job_manifest())
    assert info.value.status == 409


def test_delete_run_removes_jobs_and_pods_by_label(stub, kube):
    kube.create_job(job_manifest())
    stub.put("jobs", job_manifest("other", run="r2"))
    kube.delete_run("default", RUN)
    assert [k[2] for k in stub.objects if k[0] == "jobs"] == ["other"]
    assert all(RUN_LABEL not in (o["metadata"].get("labels") or {}) or
               o["metadata"]["labels"][RUN_LABEL] != RUN for k, o in stub.objects.items() if k[0] == "pods")


def test_list_runs_and_job_events(stub, kube):
    kube.create_job(job_manifest())
    stub.put("events", {"metadata": {"name": "e1", "namespace": "default"}, "type": "Warning",
                        "reason": "FailedCreate", "message": "quota exceeded",
                        "involvedObject": {"kind": "Job", "name": "netprobe-r1-0"}})
    stub.put("events", {"metadata": {"name": "e2", "namespace": "default"}, "type": "Warning",
                        "reason": "Other", "message": "not ours", "involvedObject": {"name": "x"}})
    assert [(j.name, j.run_id) for j in kube.list_runs()] == [("netprobe-r1-0", RUN)]
    assert kube.job_events("default", "netprobe-r1-0") == ["FailedCreate: quota exceeded"]


def test_pod_log_of_a_deleted_pod_is_a_404_cluster_error(stub, kube):
    with pytest.raises(ClusterError) as info:
        kube.pod_log("default", "gone")
    assert info.value.status == 404 and not isinstance(info.value, TransientError)


# ------------------------------------------------------------------ version, ephemeral containers


@pytest.mark.parametrize("minor", ["31", "27+", "25-gke.1"])
def test_server_version(tmp_path, minor):
    with StubAPI() as stub:
        original = stub.handle

        def handle(method, path, query, body):  # a provider's decorated version numbers
            if path.rstrip("/") == "/version":
                return {"major": "1", "minor": minor}
            return original(method, path, query, body)

        stub.handle = handle
        with KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path))) as kube:
            assert kube.server_version() == (1, int(minor[:2]))


def ephemeral(name: str) -> dict:
    return {"name": name, "image": "python:3", "command": ["python3", "-c", "print('{}')"],
            "terminationMessagePolicy": "FallbackToLogsOnError"}


def test_ephemeral_container_is_added_and_its_state_read(tmp_path):
    with StubAPI() as stub, KubeCluster(kubeconfig=str(stub.kubeconfig(tmp_path))) as kube:
        stub.pod("api-0", labels={"app": "api"})
        kube.add_ephemeral_container("default", "api-0", ephemeral("netprobe-r1-0"))
        deadline = time.monotonic() + 10
        state = None
        while state is None and time.monotonic() < deadline:
            state = kube.ephemeral_state("default", "api-0", "netprobe-r1-0")
            time.sleep(0.1)
        assert state is not None and state.exit_code == 0
        assert kube.pod_log("default", "api-0", "netprobe-r1-0").strip() == "{}"
        # a second one keeps the first (ephemeral containers can never be removed)
        kube.add_ephemeral_container("default", "api-0", ephemeral("netprobe-r1-1"))
        names = [c["name"] for c in stub.get("pods", "default", "api-0")["spec"]["ephemeralContainers"]]
        assert names == ["netprobe-r1-0", "netprobe-r1-1"]


def test_a_duplicate_ephemeral_container_name_is_a_clear_422(stub, kube):
    stub.pod("api-0")
    with pytest.raises(ClusterError, match='Duplicate value: "app"') as info:
        kube.add_ephemeral_container("default", "api-0", ephemeral("app"))
    assert info.value.status == 422


def test_a_lost_ephemeral_patch_is_retried_without_harm(stub, kube):
    stub.pod("api-0")
    stub.fault("PATCH", "/ephemeralcontainers$", "lost")
    kube.add_ephemeral_container("default", "api-0", ephemeral("netprobe-r1-0"))
    names = [c["name"] for c in stub.get("pods", "default", "api-0")["spec"]["ephemeralContainers"]]
    assert names == ["netprobe-r1-0"]


# ------------------------------------------------------------------ the requests on the wire

ALL = {"limit": "500"}  # every LIST is paged

# (call, the requests it sends: method, path, query), one row per KubeCluster request
WIRE = [
    ("list_pods", lambda k: k.list_pods("default", "app=api"),
     [("GET", "/api/v1/namespaces/default/pods", {"labelSelector": "app=api", **ALL})]),
    ("list_pods-all", lambda k: k.list_pods(None), [("GET", "/api/v1/pods", ALL)]),
    ("list_namespaces", lambda k: k.list_namespaces(), [("GET", "/api/v1/namespaces", ALL)]),
    ("list_services", lambda k: k.list_services("default"),
     [("GET", "/api/v1/namespaces/default/services", ALL)]),
    ("list_services-all", lambda k: k.list_services(), [("GET", "/api/v1/services", ALL)]),
    ("list_endpoints", lambda k: k.list_endpoints("default"),
     [("GET", "/api/v1/namespaces/default/endpoints", ALL)]),
    ("list_endpoints-all", lambda k: k.list_endpoints(), [("GET", "/api/v1/endpoints", ALL)]),
    ("list_network_policies", lambda k: k.list_network_policies("default"),
     [("GET", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", ALL)]),
    ("list_network_policies-all", lambda k: k.list_network_policies(),
     [("GET", "/apis/networking.k8s.io/v1/networkpolicies", ALL)]),
    ("server_version", lambda k: k.server_version(), [("GET", "/version/", {})]),
    ("pod_log", lambda k: k.pod_log("default", "api-0", "app"),
     [("GET", "/api/v1/namespaces/default/pods/api-0/log", {"container": "app", "tailLines": "200"})]),
    ("job_events", lambda k: k.job_events("default", "netprobe-r1-0"),
     [("GET", "/api/v1/namespaces/default/events", {"fieldSelector": "involvedObject.name=netprobe-r1-0"})]),
    ("list_runs", lambda k: k.list_runs("default"),
     [("GET", "/apis/batch/v1/namespaces/default/jobs", {"labelSelector": RUN_LABEL, **ALL})]),
    ("list_runs-all", lambda k: k.list_runs(), [("GET", "/apis/batch/v1/jobs", {"labelSelector": RUN_LABEL, **ALL})]),
    ("create_job", lambda k: k.create_job(job_manifest()), [("POST", "/apis/batch/v1/namespaces/default/jobs", {})]),
    ("delete_run", lambda k: k.delete_run("default", RUN), [
        ("DELETE", "/apis/batch/v1/namespaces/default/jobs",
         {"labelSelector": f"{RUN_LABEL}={RUN}", "propagationPolicy": "Background"}),
        ("DELETE", "/api/v1/namespaces/default/pods",
         {"labelSelector": f"{RUN_LABEL}={RUN}", "gracePeriodSeconds": "0"})]),
    ("add_ephemeral_container", lambda k: k.add_ephemeral_container("default", "api-0", ephemeral("netprobe-r1-0")), [
        ("GET", "/api/v1/namespaces/default/pods/api-0", {}),
        ("PATCH", "/api/v1/namespaces/default/pods/api-0/ephemeralcontainers", {})]),
    ("ephemeral_state", lambda k: k.ephemeral_state("default", "api-0", "netprobe-r1-0"),
     [("GET", "/api/v1/namespaces/default/pods/api-0", {})]),
    ("list_custom_objects", lambda k: k.list_custom_objects("crd.projectcalico.org", "v1", "tiers"),
     [("GET", "/apis/crd.projectcalico.org/v1", {})]),  # discovery: the stub serves no CRDs
]


@pytest.mark.parametrize("call, expected", [(c, e) for _, c, e in WIRE], ids=[i for i, _, _ in WIRE])
def test_each_call_sends_the_api_request_the_reference_names(stub, kube, call, expected):
    stub.pod("api-0")
    stub.logs[("default", "api-0", "app")] = "a log\n"
    call(kube)
    sent = stub.requests
    assert [(r.method, r.path, r.query) for r in sent] == expected
    for r in sent:  # the ApiClient's auth applies: the kubeconfig's bearer token goes with every request
        assert r.headers["authorization"] == "Bearer stub-token" and r.headers["accept"] == "application/json"


def test_bodies_are_json_and_the_ephemeral_patch_is_a_strategic_merge(stub, kube):
    stub.pod("api-0")
    kube.create_job(job_manifest())
    kube.add_ephemeral_container("default", "api-0", ephemeral("netprobe-r1-0"))
    (post,) = stub.requests_to("POST", "/jobs$")
    assert post.headers["content-type"] == "application/json" and post.body == job_manifest()
    (patch,) = stub.requests_to("PATCH", "/ephemeralcontainers$")
    assert patch.headers["content-type"] == "application/strategic-merge-patch+json"
    assert patch.body == {"spec": {"ephemeralContainers": [ephemeral("netprobe-r1-0")]}}


def test_a_watch_asks_for_bookmarks_from_the_listed_version_within_its_window(stub, kube):
    probe_pod(stub)
    listed_version = str(stub.rv)  # nothing changes after this: the list answers with this version
    seen = watch_until_done(kube, seconds=3.0)
    assert [s.phase for s in seen] == ["Pending"]
    (listed,) = stub.requests_to("GET", "/namespaces/default/pods$", watch=False)
    assert listed.query == {"labelSelector": f"{RUN_LABEL}={RUN}", **ALL}
    watch = stub.requests_to("GET", "/namespaces/default/pods$", watch=True)[0]
    version, window = watch.query.pop("resourceVersion"), watch.query.pop("timeoutSeconds")
    assert watch.query == {"labelSelector": f"{RUN_LABEL}={RUN}", "watch": "true", "allowWatchBookmarks": "true"}
    assert version == listed_version and 1 <= int(window) <= 3  # the server ends it by the deadline


_API_CLASSES = """
import json, sys
import kubernetes
eager = "kubernetes.client.api.core_v1_api" in sys.modules  # clients before the lazy package (< 33)
from probe.cluster import KubeCluster
with KubeCluster(kubeconfig=sys.argv[1]) as kube:
    kube.list_pods("default")
    kube.create_job(json.loads(sys.argv[2]))
    kube.list_runs("default")
imported = sorted(m for m in sys.modules if m.startswith("kubernetes.client.api."))
print(json.dumps({"eager": eager, "imported": imported}))
"""


def test_requests_import_none_of_the_generated_api_classes(stub, tmp_path):
    """With the pydantic-era client, importing CoreV1Api alone takes over a second (issue 12)."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _API_CLASSES, str(stub.kubeconfig(tmp_path)),
                           json.dumps(job_manifest())],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    if out["eager"]:
        pytest.skip(f"kubernetes {kubernetes.__version__} imports every API class on `import kubernetes`")
    assert stub.requests_to("POST", "/jobs$")  # the requests were made
    assert out["imported"] == []  # neither core_v1_api, batch_v1_api nor any other


# ------------------------------------------------------------------ memory of large lists

_MEASURE = """
import sys, tracemalloc
from probe.cluster import KubeCluster
kube = KubeCluster(kubeconfig=sys.argv[1])
tracemalloc.start()
pods = kube.list_pods(None, "")
current, peak = tracemalloc.get_traced_memory()
print(len(pods), peak)
"""


def test_listing_5000_pods_keeps_only_what_is_used(tmp_path):
    """Peak memory of list_pods over 5,000 realistic pods (measured in a separate process)."""
    import json
    import subprocess
    import sys

    with StubAPI() as stub:
        for i in range(5000):
            stub.pod(f"app-{i:04d}", namespace=f"ns{i % 50}", labels={"app": f"app{i % 300}", "tier": "web"},
                     ip=f"10.{i // 60000}.{i // 250 % 240}.{i % 250 + 1}")
        raw = sum(len(json.dumps(o)) for o in stub.objects.values())
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(stub.kubeconfig(tmp_path))],
                              capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, peak = map(int, proc.stdout.split())
    print(f"list_pods of {count} pods ({raw / 2**20:.1f} MiB of JSON): peak {peak / 2**20:.1f} MiB")
    assert count == 5000
    # One 500-item page at a time, then PodInfo values. Keeping every raw page (the code before
    # this test) peaked at 89 MiB here; the bound is far below deploy/job.yaml's 256 Mi limit.
    assert peak < 40 * 2**20

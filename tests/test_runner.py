"""The runner against an in-memory cluster whose probe Jobs really run the agent locally."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from fakecluster import FakeCluster

from probe.errors import Interrupted
from probe.model import Namespace, Verdict
from probe.pods import PodInfo
from probe.probepod import PodSettings
from probe.result import to_json
from probe.runner import Runner, RunOptions, cleanup_runs, finish_cleanups
from probe.spec import parse_spec

FAST = RunOptions(warmup=0.0, pods=PodSettings(startup_timeout=2.0))


def spec_for(port: int, closed: int, sources=("api", "web"), expect_db="allow"):
    rows = "\n".join(f"  {s}: {{db: {expect_db}, closed: deny}}" for s in sources)
    srcs = "\n".join(f"  - {{name: {s}, selector: {{app: {s}}}}}" for s in sources)
    return parse_spec(textwrap.dedent("""\
        version: 1
        defaults: {timeout: 1s}
        sources:
        """) + srcs + textwrap.dedent(f"""
        targets:
          - {{name: db, tcp: "127.0.0.1:{port}"}}
          - {{name: closed, tcp: "127.0.0.1:{closed}"}}
        expect:
        """) + rows + "\n")


def dns_and_tcp_spec(tcp_name: str, port: int, expect_dns: str, expect_tcp: str):
    """api -> the cluster's API Service name (a DNS target) and one TCP target on loopback."""
    return parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources: [{{name: api, selector: {{app: api}}}}]
        targets:
          - {{name: dns, dns: kubernetes.default}}
          - {{name: {tcp_name}, tcp: "127.0.0.1:{port}"}}
        expect: {{api: {{dns: {expect_dns}, {tcp_name}: {expect_tcp}}}}}
        """))


def pods(app, n=1, ns="default", **kw):
    return [PodInfo(name=f"{app}-{i}", namespace=Namespace(ns), labels={"app": app, "pod-template-hash": "h"},
                    ip=f"10.0.0.{i + 1}", **kw) for i in range(n)]


def test_run_observes_diffs_and_cleans_up(listener, closed_port):
    cluster = FakeCluster(pods=pods("api", 3) + pods("web"))
    result = Runner(cluster, spec_for(listener[1], closed_port), FAST).run()
    assert result.exit_code == 0, result.cells
    assert result.cell("api", "db").observed is Verdict.ALLOWED
    assert result.cell("web", "closed").observed is Verdict.REFUSED
    assert len(cluster.jobs) == 2  # one probe pod per identity, not per pod
    assert cluster.deleted == [("default", result.run_id)]


def test_mismatch_exits_1_and_says_why(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    result = Runner(cluster, spec_for(listener[1], closed_port, expect_db="deny"), FAST).run()
    assert result.exit_code == 1
    assert "should be denied" in result.cell("api", "db").reason


def test_probe_pods_are_o_identities_not_o_pods(listener, closed_port):
    cluster = FakeCluster(pods=pods("api", 60) + pods("web", 60))
    result = Runner(cluster, spec_for(listener[1], closed_port), FAST).run()
    assert len(cluster.jobs) == 2 and result.meta["probe_pods"] == 2
    assert cluster.api_calls <= 14  # with a delete of each probe pod and its Job as it finishes


def test_source_without_pods_is_a_problem_and_exit_3(listener, closed_port):
    cluster = FakeCluster(pods=pods("api"))
    result = Runner(cluster, spec_for(listener[1], closed_port), FAST).run()
    assert result.exit_code == 3
    assert any("source web: no running pod matches app=web" in p for p in result.problems)
    assert result.cell("web", "db").is_error
    assert result.cell("api", "db").match is True  # partial results are still reported


def test_probe_pods_of_earlier_runs_never_count_as_sources(listener, closed_port):
    leftover = PodInfo(name="probe", namespace=Namespace("default"),
                       labels={"app": "web", "netprobe.io/run": "old"}, ip="10.0.9.9")
    cluster = FakeCluster(pods=[*pods("api"), leftover])
    result = Runner(cluster, spec_for(listener[1], closed_port), FAST).run()
    assert any("source web" in p for p in result.problems)


@pytest.mark.parametrize("fault, words", [
    ("image", "cannot be pulled (ErrImagePull: pull access denied"),
    ("crash", "the agent crashed (exit code 1, Error): SyntaxError: invalid syntax"),
    ("garbage", "unreadable agent output"),
    ("truncated", "unreadable agent output: agent output is not JSON"),
    ("evicted", "Evicted The node was low on resource: memory."),
    ("deleted", "the probe pod was deleted (evicted?) before it finished"),
    ("unschedulable", "unschedulable: 0/1 nodes are available"),
    ("reject", "could not be created: create job: forbidden (HTTP 403)"),
    ("silent", "FailedCreate: pods"),
], ids=["image-pull", "agent-crash", "garbage-output", "truncated-output", "evicted", "deleted", "unschedulable",
        "rbac-rejected", "admission"])
def test_each_probe_failure_names_the_source_and_the_cause(listener, closed_port, fault, words):
    cluster = FakeCluster(pods=pods("api") + pods("web"), faults={0: fault})
    result = Runner(cluster, spec_for(listener[1], closed_port), FAST).run()
    assert result.exit_code == 3
    bad = result.cell("api", "db")
    assert bad.observed is Verdict.ERROR and bad.match is None
    assert "probe pod for api" in bad.detail and words in bad.detail, bad.detail
    assert result.cell("web", "db").match is True  # the other identity still reports
    assert cluster.deleted  # and cleanup ran


def test_interrupt_cleans_up_then_raises(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"), faults={5: "interrupt"})
    with pytest.raises(Interrupted) as info:
        Runner(cluster, spec_for(listener[1], closed_port), FAST).run()
    assert info.value.exit_code == 130
    assert len(cluster.deleted) == 1


def test_keep_leaves_probe_jobs(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    Runner(cluster, spec_for(listener[1], closed_port), RunOptions(warmup=0, keep=True)).run()
    assert cluster.deleted == []


def test_attempts_never_reprobe_a_connection_on_an_expected_deny_cell(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    spec = spec_for(listener[1], closed_port, expect_db="deny")
    opts = RunOptions(warmup=0.0, attempts=3, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec, opts).run()
    db = result.cell("api", "db")
    assert db.match is False and db.attempts == 1 and db.history == (Verdict.ALLOWED,)  # a leak is final
    assert result.cell("api", "closed").attempts == 1  # matched the first time
    assert len(cluster.jobs) == 2 and result.exit_code == 1


@pytest.fixture
def toggle() -> Iterator[Callable[[int, Callable[[int], bool]], Callable[[int], None]]]:
    """on_create hooks: a real listener on a port while open_for(job index) says so."""
    sockets: list[socket.socket] = []

    def make(port: int, open_for: Callable[[int], bool]) -> Callable[[int], None]:
        state: dict[str, socket.socket] = {}

        def hook(index: int) -> None:
            want = open_for(index)
            if want and "s" not in state:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(16)
                state["s"] = sock
                sockets.append(sock)
            elif not want and "s" in state:
                state.pop("s").close()
        return hook

    yield make
    for sock in sockets:
        sock.close()


def test_attempts_reprobe_an_expected_allow_cell_that_did_not_connect(toggle, closed_port):
    # db's listener comes up only for the second round's probe pods (a slow start).
    cluster = FakeCluster(pods=pods("api"), on_create=toggle(closed_port, lambda i: i >= 1))
    spec = parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources: [{{name: api, selector: {{app: api}}}}]
        targets:
          - {{name: db, tcp: "127.0.0.1:{closed_port}"}}
        expect: {{api: {{db: allow}}}}
        """))
    result = Runner(cluster, spec, RunOptions(warmup=0.0, attempts=3, pods=PodSettings(startup_timeout=2.0))).run()
    db = result.cell("api", "db")
    assert db.match is True and db.history == (Verdict.REFUSED, Verdict.ALLOWED) and db.attempts == 2
    assert result.exit_code == 0


def _one_target_spec(port: int, expect: str) -> object:
    return parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources: [{{name: api, selector: {{app: api}}}}]
        targets:
          - {{name: db, tcp: "127.0.0.1:{port}"}}
        expect: {{api: {{db: {expect}}}}}
        """))


def test_settle_keeps_a_round_one_leak_a_mismatch_even_once_settled(toggle, closed_port):
    # Open in round 1 only: rounds 2 and 3 agree (refused), so the run settles — but the
    # connection of round 1 proved the path open where the spec says deny.
    cluster = FakeCluster(pods=pods("api"), on_create=toggle(closed_port, lambda i: i == 0))
    opts = RunOptions(warmup=0.0, settle=30.0, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, _one_target_spec(closed_port, "deny"), opts).run()
    db = result.cell("api", "db")
    assert db.history == (Verdict.ALLOWED, Verdict.REFUSED, Verdict.REFUSED)
    assert db.match is False and db.observed is Verdict.ALLOWED
    assert "connected in round 1 of 3" in db.reason and result.exit_code == 1


def test_settle_that_never_settles_reports_unstable_cells_not_a_chosen_round(toggle, closed_port):
    cluster = FakeCluster(pods=pods("api"), on_create=toggle(closed_port, lambda i: i % 2 == 1))
    # A window that is always over after two rounds: with 0.1 s, a fast machine fitted a third round in.
    opts = RunOptions(warmup=0.0, settle=0.001, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, _one_target_spec(closed_port, "allow"), opts).run()
    db = result.cell("api", "db")
    assert db.history == (Verdict.REFUSED, Verdict.ALLOWED)  # the last round connected, as expected...
    assert db.unstable and db.match is False  # ...but the answer was still changing
    assert "unstable" in db.reason and "refused → allowed" in db.reason
    assert result.exit_code == 1 and not result.problems
    assert any("did not settle" in w for w in result.warnings)


def test_a_source_with_two_identities_of_which_one_connects_is_partial(toggle, closed_port):
    api = [PodInfo(name="api-0", namespace=Namespace("default"), labels={"app": "api"}, ip="10.0.0.1"),
           PodInfo(name="api-canary", namespace=Namespace("default"), labels={"app": "api", "track": "canary"},
                   ip="10.0.0.2")]
    # The first identity's probe finds db closed, the second (the canary) finds it open.
    for expect in ("deny", "allow"):
        hook = toggle(closed_port, lambda i: i == 1)
        cluster = FakeCluster(pods=api, on_create=hook)
        result = Runner(cluster, _one_target_spec(closed_port, expect), FAST).run()
        hook(-1)  # close the listener again
        db = result.cell("api", "db")
        assert db.observed is Verdict.PARTIAL and db.match is False and result.exit_code == 1
        assert "connected from 1 of 2 identities: default/app=api,track=canary" in db.reason
        assert "refused: default/app=api" in db.reason
        assert {(s.identity, s.verdict) for s in db.subresults} == {
            ("default/app=api", Verdict.REFUSED), ("default/app=api,track=canary", Verdict.ALLOWED)}


def test_a_target_with_two_pods_of_which_one_answers_is_partial(listener):
    # Two db pods on the same port: 127.0.0.1 listens, 127.0.0.2 does not.
    dbs = [PodInfo(name="db-a", namespace=Namespace("default"), labels={"app": "db"}, ip="127.0.0.1"),
           PodInfo(name="db-b", namespace=Namespace("default"), labels={"app": "db"}, ip="127.0.0.2")]
    spec = parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources: [{{name: api, selector: {{app: api}}}}]
        targets:
          - {{name: db-pods, tcp: {{selector: {{app: db}}, port: {listener[1]}}}}}
        expect: {{api: {{db-pods: deny}}}}
        """))
    result = Runner(FakeCluster(pods=pods("api") + dbs), spec, FAST).run()
    cell = result.cell("api", "db-pods")
    assert cell.observed is Verdict.PARTIAL and cell.match is False
    assert "reached 1 of 2 pods: db-a; refused: db-b" in cell.reason
    assert [(s.pod, s.ip, s.verdict) for s in cell.subresults] == [
        ("default/db-a", "127.0.0.1", Verdict.ALLOWED), ("default/db-b", "127.0.0.2", Verdict.REFUSED)]


def _service(port: int, addresses: list[str]) -> tuple[dict, dict]:
    svc = {"metadata": {"name": "db", "namespace": "default"},
           "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": port, "protocol": "TCP"}], "selector": {"app": "db"}}}
    ep = {"metadata": {"name": "db", "namespace": "default"},
          "subsets": [{"addresses": [{"ip": a} for a in addresses], "ports": [{"port": port}]}] if addresses else []}
    return svc, ep


def test_a_service_without_ready_endpoints_is_not_probed_never_a_deny_match(closed_port):
    svc, ep = _service(closed_port, [])
    cluster = FakeCluster(pods=pods("api"), services=[svc], endpoints=[ep])
    result = Runner(cluster, _one_target_spec(closed_port, "deny"), FAST).run()
    db = result.cell("api", "db")
    assert db.observed is Verdict.NO_ENDPOINTS and db.match is None and db.proof is None
    assert "Service default/db has no ready endpoint for port" in db.reason
    assert result.exit_code == 3


def test_a_service_with_endpoints_proves_the_deny_and_says_how(closed_port):
    svc, ep = _service(closed_port, ["127.0.0.2"])  # a loopback backend: never an address off this machine
    cluster = FakeCluster(pods=pods("api"), services=[svc], endpoints=[ep])
    result = Runner(cluster, _one_target_spec(closed_port, "deny"), FAST).run()
    db = result.cell("api", "db")
    assert db.observed is Verdict.REFUSED and db.match is True and str(db.proof) == "rejected"
    assert result.exit_code == 0


def test_endpoints_forbidden_makes_service_denies_unproven_with_the_rbac_fix(closed_port):
    svc, ep = _service(closed_port, ["127.0.0.2"])  # a loopback backend: never an address off this machine
    cluster = FakeCluster(pods=pods("api"), services=[svc], endpoints=[ep], forbidden={"endpoints"})
    result = Runner(cluster, _one_target_spec(closed_port, "deny"), FAST).run()
    assert result.cell("api", "db").match is None and result.exit_code == 3
    assert any("list endpoints" in w and "deploy/rbac.yaml" in w for w in result.warnings)


def test_settle_stops_when_two_rounds_agree(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    opts = RunOptions(warmup=0.0, settle=30.0, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec_for(listener[1], closed_port), opts).run()
    assert len(cluster.jobs) == 4  # two rounds of two identities
    assert result.settle_s is not None and result.settle_s < 1.0
    assert result.cell("api", "db").attempts == 2


def test_cleanup_removes_only_netprobe_runs(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    result = Runner(cluster, spec_for(listener[1], closed_port), RunOptions(warmup=0, keep=True)).run()
    assert cleanup_runs(cluster, older_than=3600) == []
    assert cleanup_runs(cluster) == [("default", result.run_id)]


def test_progress_reports_pending_running_done(listener, closed_port):
    seen: list[str] = []
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    Runner(cluster, spec_for(listener[1], closed_port), FAST, progress=seen.append).run()
    assert seen[-1] == "probe pods: 2/2 done, 0 running, 0 pending"
    assert all(s.startswith("probe pods: ") for s in seen)


def test_via_ephemeral_needs_1_25(listener, closed_port):
    from probe.errors import InputError

    cluster = FakeCluster(pods=pods("api") + pods("web"))
    with pytest.raises(InputError, match=r"needs Kubernetes >= 1\.25.*this cluster is 1\.20"):
        Runner(cluster, spec_for(listener[1], closed_port), RunOptions(warmup=0, via="ephemeral")).run()
    assert cluster.jobs == []


def test_via_ephemeral_probes_inside_the_real_pods_and_says_it_stays(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"), version=(1, 29))
    result = Runner(cluster, spec_for(listener[1], closed_port), RunOptions(warmup=0, via="ephemeral")).run()
    assert result.exit_code == 0, result.cells
    assert {k[1] for k in cluster.ephemeral} == {"api-0", "web-0"}  # one real pod per identity
    assert cluster.jobs == [] and cluster.deleted == []
    assert any("cannot remove ephemeral containers" in w for w in result.warnings)


def test_via_ephemeral_does_not_ask_a_running_pod_to_show_its_network_is_up(closed_port):
    # The container joins a pod whose policy was programmed long ago: its denies stand even where
    # nothing answered its gate (here no nameserver at all), and the run does not warn otherwise.
    spec = dns_and_tcp_spec("closed", closed_port, "deny", "deny")
    cluster = FakeCluster(pods=pods("api"), version=(1, 29))
    result = Runner(cluster, spec, RunOptions(warmup=0.5, via="ephemeral")).run()
    assert result.exit_code == 0, [c.detail for c in result.cells]
    (gate,) = result.meta["gates"]
    assert gate["opened"] == "bound-reached" and gate["network_seen"] is False  # nothing answered it
    assert result.cell("api", "closed").observed is Verdict.REFUSED
    assert not any("not even its DNS" in w for w in result.warnings)


def test_results_too_big_for_the_termination_message_come_from_the_log(listener):
    import textwrap

    from probe.spec import parse_spec

    targets = "\n".join(f'  - {{name: t{i}, tcp: "127.0.0.1:{listener[1]}"}}' for i in range(50))  # < backlog
    spec = parse_spec(textwrap.dedent("""\
        version: 1
        sources: [{name: api, selector: {app: api}}]
        targets:
        """) + targets + '\nexpect: {api: {"*": allow}}\n')
    cluster = FakeCluster(pods=pods("api"))
    result = Runner(cluster, spec, FAST).run()
    assert cluster.states[0].termination_message == ""  # > 4 KiB: the agent did not write it
    assert result.exit_code == 0 and len(result.cells) == 50


def test_each_probe_pods_gate_is_chosen_from_the_expectations_and_reported(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    logged: list[str] = []
    opts = RunOptions(warmup=5.0, pods=PodSettings(startup_timeout=2.0))
    started = time.monotonic()
    result = Runner(cluster, spec_for(listener[1], closed_port), opts, log=logged.append).run()
    assert result.exit_code == 0, result.cells
    # db is expected to connect and closed not to: the gate opens on its first round, far
    # inside its 5 s bound
    assert time.monotonic() - started < 4.5
    gates = sorted(result.meta["gates"], key=lambda g: g["probe_pod"])  # in the order results came
    assert [(g["sources"], g["opened"], g["connect"], g["block"]) for g in gates] == [
        (["api"], "condition-met", ["t0"], ["t1"]), (["web"], "condition-met", ["t0"], ["t1"])]
    assert all(g["waited_ms"] < 2000 for g in gates)
    assert any("probe pod 0 (api): gate waited" in line and "condition-met" in line for line in logged)
    assert '"gates"' in to_json(result)


def test_a_gate_held_by_a_leak_it_polls_says_so_and_the_leak_is_reported(listener):
    # "closed" is expected deny but open: every gate round sees it connect, the gate waits its whole
    # bound, says which condition held it and how often -- and the real check reports the leak.
    cluster = FakeCluster(pods=pods("api"))
    logged: list[str] = []
    opts = RunOptions(warmup=1.0, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec_for(listener[1], listener[1], sources=("api",)), opts, log=logged.append).run()
    assert result.exit_code == 1
    (gate,) = result.meta["gates"]
    assert gate["opened"] == "bound-reached" and gate["unmet"] == ["block"] and gate["waited_ms"] >= 1000
    assert gate["missed"]["block"] >= 2 and gate["missed"]["connect"] == 0, gate
    assert any("unmet: block" in line and f"{gate['missed']['block']} saw an expected deny connect" in line
               for line in logged), logged
    (leak,) = [c for c in result.cells if c.target == "closed"]
    assert leak.observed.value == "allowed" and leak.match is False


def test_a_connection_only_the_node_may_answer_proves_no_deny(listener, closed_port):
    # The source pod's node is 127.0.0.1, so its expected allow (127.0.0.1) is one the node itself
    # may answer -- some enforcers pass it through a fail-closed start. Its nameserver (loopback,
    # nothing listening) never replies: nothing showed the pod network up, so the deny proves nothing.
    cluster = FakeCluster(pods=pods("api", host_ips=("127.0.0.1",)))
    opts = RunOptions(warmup=0.6, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec_for(listener[1], closed_port, sources=("api",)), opts).run()
    (gate,) = result.meta["gates"]
    assert gate["connect"] == ["gate:network"] and gate["network_seen"] is False, gate
    assert result.cell("api", "db").observed is Verdict.ALLOWED
    closed = result.cell("api", "closed")
    assert closed.match is None and "not probed" in closed.reason, closed
    assert result.exit_code == 3


def test_fixed_warmup_mode_waits_the_whole_warmup(listener, closed_port):
    cluster = FakeCluster(pods=pods("api"))
    opts = RunOptions(warmup=1.0, warmup_mode="fixed", pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec_for(listener[1], closed_port, sources=("api",)), opts).run()
    assert [(g["opened"], g["waited_ms"] >= 1000) for g in result.meta["gates"]] == [("fixed", True)]


class SlowDelete(FakeCluster):
    """Deletion blocks until the test lets it go: shows who waits for it."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.release = threading.Event()

    def delete_run(self, namespace, run_id):
        assert self.release.wait(10)
        super().delete_run(namespace, run_id)


def test_background_cleanup_returns_the_result_first_and_finish_waits_for_the_deletion(
        listener, closed_port):
    cluster = SlowDelete(pods=pods("api"))
    opts = RunOptions(warmup=0.0, background_cleanup=True, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec_for(listener[1], closed_port, sources=("api",)), opts).run()
    assert result.exit_code == 0 and cluster.deleted == []  # the result is there; deletion in flight
    threading.Timer(0.3, cluster.release.set).start()
    finish_cleanups()
    assert cluster.deleted == [("default", result.run_id)]


def test_background_cleanup_still_deletes_before_an_interrupt_propagates(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"), faults={5: "interrupt"})
    opts = RunOptions(warmup=0.0, background_cleanup=True, pods=PodSettings(startup_timeout=2.0))
    with pytest.raises(Interrupted):
        Runner(cluster, spec_for(listener[1], closed_port), opts).run()
    assert len(cluster.deleted) == 1


def test_endpoints_that_vanish_while_probing_make_the_deny_unproven(closed_port):
    svc, ep = _service(closed_port, ["127.0.0.2"])  # a loopback backend: never an address off this machine
    cluster = FakeCluster(pods=pods("api"), services=[svc], endpoints=[ep])
    cluster.on_create = lambda index: cluster.endpoints.clear()  # scaled to zero mid-run
    result = Runner(cluster, _one_target_spec(closed_port, "deny"), FAST).run()
    db = result.cell("api", "db")
    assert db.match is None and db.observed is Verdict.NO_ENDPOINTS and result.exit_code == 3


def test_every_ready_backend_of_a_service_is_probed_and_one_open_backend_is_a_leak(listener):
    # ClusterIP 127.0.0.3:80 (nothing there: refused) in front of db-a (127.0.0.1, listening)
    # and db-b (127.0.0.2, closed). Through the ClusterIP, kube-proxy would pick one at random.
    port = listener[1]
    svc = {"metadata": {"name": "db", "namespace": "default"},
           "spec": {"clusterIP": "127.0.0.3", "ports": [{"port": 80, "targetPort": port}], "selector": {"app": "db"}}}
    ep = {"metadata": {"name": "db", "namespace": "default"},
          "subsets": [{"addresses": [{"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "name": "db-a"}},
                                     {"ip": "127.0.0.2", "targetRef": {"kind": "Pod", "name": "db-b"}}],
                       "ports": [{"port": port}]}]}
    cluster = FakeCluster(pods=pods("api"), services=[svc], endpoints=[ep])
    result = Runner(cluster, parse_spec(textwrap.dedent("""\
        version: 1
        defaults: {timeout: 1s}
        sources: [{name: api, selector: {app: api}}]
        targets:
          - {name: db, tcp: "127.0.0.3:80"}
        expect: {api: {db: deny}}
        """)), FAST).run()
    db = result.cell("api", "db")
    assert db.observed is Verdict.PARTIAL and db.match is False and result.exit_code == 1
    assert [(s.pod, s.ip, s.verdict) for s in db.subresults] == [
        ("", "", Verdict.REFUSED), ("default/db-a", "127.0.0.1", Verdict.ALLOWED),
        ("default/db-b", "127.0.0.2", Verdict.REFUSED)]
    assert "reached 1 of 3" in db.reason and "db-a" in db.reason


def test_a_reprobe_for_one_source_never_replaces_another_sources_cell(closed_port):
    # The canary identity stands for both sources; only canary → db (expected allow) is
    # re-probed. all → db keeps its first round, with both of its identities.
    api = [PodInfo(name="api-0", namespace=Namespace("default"), labels={"app": "api"}, ip="10.0.0.1"),
           PodInfo(name="api-c", namespace=Namespace("default"), labels={"app": "api", "track": "canary"},
                   ip="10.0.0.2")]
    spec = parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources:
          - {{name: all, selector: {{app: api}}}}
          - {{name: canary, selector: {{track: canary}}}}
        targets:
          - {{name: db, tcp: "127.0.0.1:{closed_port}"}}
        expect: {{all: {{db: deny}}, canary: {{db: allow}}}}
        """))
    result = Runner(FakeCluster(pods=api), spec, RunOptions(warmup=0.0, attempts=2,
                                                           pods=PodSettings(startup_timeout=2.0))).run()
    everyone = result.cell("all", "db")
    assert everyone.attempts == 1 and len(everyone.subresults) == 2 and everyone.match is True
    assert result.cell("canary", "db").attempts == 2


def test_services_forbidden_make_service_like_targets_unproven(closed_port):
    cluster = FakeCluster(pods=pods("api"), forbidden={"services"})
    spec = parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources: [{{name: api, selector: {{app: api}}}}]
        targets:
          - {{name: db, tcp: "127.0.0.1:{closed_port}"}}
          - {{name: ext, tcp: "127.0.0.1:{closed_port}", external: true}}
        expect: {{api: {{db: deny, ext: deny}}}}
        """))
    result = Runner(cluster, spec, FAST).run()
    assert result.cell("api", "db").match is None  # an IP not marked external may be a ClusterIP
    assert result.cell("api", "ext").match is True  # an external IP is never a Service
    assert any("list services" in w and "deploy/rbac.yaml" in w for w in result.warnings)


def test_sampled_pod_targets_say_so_and_strict_does_not_count_them(closed_port):
    dbs = [PodInfo(name=f"db-{i}", namespace=Namespace("default"), labels={"app": "db"}, ip=f"127.0.0.{i + 1}")
           for i in range(3)]
    spec = parse_spec(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 1s}}
        sources: [{{name: api, selector: {{app: api}}}}]
        targets:
          - {{name: db-pods, tcp: {{selector: {{app: db}}, port: {closed_port}}}}}
        expect: {{api: {{db-pods: deny}}}}
        """))
    loose = Runner(FakeCluster(pods=pods("api") + dbs), spec, RunOptions(
        warmup=0.0, max_target_pods=2, pods=PodSettings(startup_timeout=2.0))).run()
    cell = loose.cell("api", "db-pods")
    assert cell.match is True and "probed 2 of 3 pods" in cell.detail
    assert any("probed 2 of 3 pods" in w for w in loose.warnings)
    strict = Runner(FakeCluster(pods=pods("api") + dbs), spec, RunOptions(
        warmup=0.0, max_target_pods=2, strict=True, pods=PodSettings(startup_timeout=2.0))).run()
    assert strict.cell("api", "db-pods").match is None  # refused, and sampled: nothing proven


def test_settle_treats_blocked_then_refused_as_the_same_evidence(toggle, closed_port):
    # refused (nothing listens), then the same; evidence = "no connection" both times: settled.
    cluster = FakeCluster(pods=pods("api"))
    opts = RunOptions(warmup=0.0, settle=30.0, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, _one_target_spec(closed_port, "deny"), opts).run()
    assert result.cell("api", "db").attempts == 2 and result.settle_s is not None


def test_a_probe_pod_whose_network_never_came_up_proves_no_deny(listener, closed_port):
    # api's probe pod saw every check dropped, and its gate never saw db (expected to connect)
    # connect: on Calico that is a pod whose policy is not programmed yet. Its "blocked" on the
    # expected deny proves nothing -- not probed, never a match.
    spec = spec_for(listener[1], closed_port, sources=("api",))
    result = Runner(FakeCluster(pods=pods("api"), faults={0: "no-network"}), spec, FAST).run()
    closed = result.cell("api", "closed")
    assert closed.observed is Verdict.ERROR and "nothing showed this probe pod's network up" in closed.detail
    assert result.cell("api", "db").observed is Verdict.ERROR
    assert result.exit_code == 3
    # --attempts probes the deny again too, in a new pod (here one whose network works)
    result = Runner(FakeCluster(pods=pods("api"), faults={0: "no-network"}), spec,
                    replace(FAST, attempts=2)).run()
    assert result.exit_code == 0, [c.detail for c in result.cells]
    assert result.cell("api", "closed").observed is Verdict.REFUSED
    assert result.cell("api", "closed").history == (Verdict.ERROR, Verdict.REFUSED)


def test_a_probe_pod_whose_allows_never_connected_while_its_dns_answered_fails_its_allows_only(
        listener, closed_port):
    # api's gate never saw db (expected allow) connect, and nothing of its own checks answered,
    # but its nameserver did: its network was up, so db's "blocked" is a real mismatch. Its deny
    # on closed stays unproven: beside allows that never connected, the targets' side of the
    # policy may still have been on its way.
    spec = spec_for(listener[1], closed_port, sources=("api",))
    result = Runner(FakeCluster(pods=pods("api"), faults={0: "no-network-dns-answered"}), spec,
                    replace(FAST, warmup=2.0)).run()
    db = result.cell("api", "db")
    assert db.observed is Verdict.BLOCKED and db.match is False
    closed = result.cell("api", "closed")
    assert closed.observed is Verdict.ERROR and closed.match is None
    assert "the targets' side of its policy may not have been programmed" in closed.detail
    assert result.exit_code == 1  # a mismatch outranks "not probed"


def test_a_reprobe_whose_network_never_came_up_does_not_hide_a_proven_mismatch(closed_port):
    # Round 1: db (expected allow) refused, beside a deny that was refused too -- a proven
    # mismatch. The re-probe's pod never showed its network: "not probed" there must not turn
    # the run's exit code from "mismatch" into "could not probe".
    spec = spec_for(closed_port, closed_port, sources=("api",))
    result = Runner(FakeCluster(pods=pods("api"), faults={1: "no-network"}), spec, replace(FAST, attempts=2)).run()
    db = result.cell("api", "db")
    assert db.history == (Verdict.REFUSED, Verdict.ERROR) and db.attempts == 2
    assert db.observed is Verdict.REFUSED and db.match is False
    assert "decided by round 1 of 2; the later ones could not probe it" in db.reason
    assert "connected in round" not in db.reason
    assert result.exit_code == 1


def test_under_settle_the_last_round_decides_even_when_it_could_not_probe(closed_port):
    # --settle probes everything every round and reports the settled state: round 1's refused
    # denies are history once rounds 2 and 3 (agreeing: settled) could not probe. Not a match.
    spec = spec_for(closed_port, closed_port, sources=("api",), expect_db="deny")
    cluster = FakeCluster(pods=pods("api"), faults={1: "no-network", 2: "no-network"})
    result = Runner(cluster, spec, replace(FAST, settle=60.0)).run()
    closed = result.cell("api", "closed")
    assert closed.history[0] is Verdict.REFUSED and closed.history[-1] is Verdict.ERROR
    assert closed.match is None and result.exit_code == 3


def test_denies_of_a_probe_pod_expected_to_reach_nothing_are_not_probed_until_its_network_answers(
        listener, closed_port):
    # Every cell of api is a deny, so no check can show its network up: its gate polls the
    # cluster DNS instead. Here that never answered and every deny was "blocked" -- on Calico,
    # a pod not yet programmed. Not probed, never a match (it used to be a match with a warning).
    spec = spec_for(listener[1], closed_port, sources=("api",), expect_db="deny")
    cluster = FakeCluster(pods=pods("api"), faults={0: "no-network-no-candidate"})
    result = Runner(cluster, spec, replace(FAST, warmup=2.0)).run()
    plan = json.loads(cluster.jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"][3])
    assert plan["gate"]["connect"] == [] and plan["gate"]["network"] == "kubernetes.default"
    closed = result.cell("api", "closed")
    assert closed.observed is Verdict.ERROR and "did not answer when its gate last looked" in closed.detail
    assert closed.match is not True and result.exit_code == 3
    assert not any("--warmup wait alone" in w for w in result.warnings)


def test_a_source_expected_to_reach_nothing_not_even_its_dns_is_warned_about_up_front(listener):
    # Its gate would have to see the nameserver answer while the spec says it must not resolve:
    # it cannot. The run says so before any verdict, and how to rest its denies on a wait instead.
    spec = dns_and_tcp_spec("db", listener[1], "deny", "deny")
    result = Runner(FakeCluster(pods=pods("api"), faults={0: "no-network-no-candidate"}), spec,
                    replace(FAST, warmup=2.0)).run()
    assert any("not even its DNS" in w and "--warmup-mode fixed" in w for w in result.warnings), result.warnings
    assert result.exit_code == 3
    # with a check it should connect to, the gate can see its network: no warning
    allowed = dns_and_tcp_spec("db", listener[1], "deny", "allow")
    result = Runner(FakeCluster(pods=pods("api"), faults={0: "no-network"}), allowed, replace(FAST, warmup=2.0)).run()
    assert not any("not even its DNS" in w for w in result.warnings)


BOUND = {"mode": "gate", "opened": "bound-reached", "unmet": ["connect"], "network_seen": False,
         "connect": ["db"]}
KINDS = {"dns": "dns", "db": "tcp", "web": "tcp", "ext": "tcp"}


@pytest.mark.parametrize(("gate", "verdicts", "level"), [
    # the real checks saw what the gate waited for (db connected), only later than --warmup
    (BOUND, {"dns": "allowed", "db": "allowed", "web": "blocked"}, None),
    # only a DNS answer, from a real check: the pod's own side only, as the gate's look would show --
    # the expected allow (db) that never connected stands, the deny on web proves nothing
    (BOUND, {"dns": "allowed", "db": "blocked", "web": "blocked"}, "denies"),
    (BOUND, {"dns": "nxdomain", "db": "blocked", "web": "blocked"}, "denies"),
    ({**BOUND, "network_seen": True}, {"dns": "dns-timeout", "db": "blocked", "web": "blocked"}, "denies"),
    # the only polled check is the DNS, answering late: the pod's own side only
    ({**BOUND, "connect": ["dns"]}, {"dns": "allowed", "web": "blocked"}, "denies"),
    # a connection elsewhere (an external address) shows the network, not db's side of the policy
    (BOUND, {"ext": "allowed", "db": "blocked", "web": "blocked"}, "denies"),
    # RSTs only: a fail-closed enforcer that rejects (kube-router) answers for the target
    (BOUND, {"dns": "dns-timeout", "db": "refused", "web": "refused"}, "all"),
    # all-deny pod: it waited out the bound after its nameserver replied, or it never did
    ({"opened": "no-candidate", "missing": ["connect"], "network_seen": True}, {"web": "blocked"}, None),
    ({"opened": "no-candidate", "missing": ["connect"], "network_seen": False}, {"web": "refused"}, "all"),
    # ... or it replied once (a fail-open start) but not to the last look: nothing at the end
    ({**BOUND, "connect": ["gate:network"], "network_seen": True}, {"web": "blocked"}, "all"),
    # the gate's condition was met: its checks were seen as expected in one round
    ({"opened": "condition-met", "network_seen": True}, {"db": "blocked", "web": "blocked"}, None),
])
def test_which_failures_of_a_probe_pod_prove_nothing(gate, verdicts, level):
    from probe.observe import network_unshown

    results = {cid: {"id": cid, "verdict": v} for cid, v in verdicts.items()}
    assert network_unshown(gate, results, KINDS) == level

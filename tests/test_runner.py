"""The runner against an in-memory cluster whose probe Jobs really run the agent locally."""

from __future__ import annotations

import textwrap
import threading
import time

import pytest
from fakecluster import FakeCluster

from probe.errors import Interrupted
from probe.model import Namespace, Verdict
from probe.pods import PodInfo
from probe.probepod import PodSettings
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
    assert cluster.api_calls <= 10


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


def test_attempts_reprobe_only_mismatching_cells_in_new_pods(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    spec = spec_for(listener[1], closed_port, expect_db="deny")
    opts = RunOptions(warmup=0.0, attempts=3, pods=PodSettings(startup_timeout=2.0))
    result = Runner(cluster, spec, opts).run()
    db = result.cell("api", "db")
    assert db.attempts == 3 and db.history == (Verdict.ALLOWED,) * 3
    assert result.cell("api", "closed").attempts == 1  # matched the first time
    assert len(cluster.jobs) == 6
    second_round = cluster.jobs[2]["spec"]["template"]["spec"]["containers"][0]["command"][3]
    assert "closed" not in second_round and str(closed_port) not in second_round


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
    assert '"gates"' in result.to_json()


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

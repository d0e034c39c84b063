"""Orchestrate a run: discover, plan, launch probe pods, collect, diff, clean up.

Talks to the cluster only through the `Cluster` protocol (cluster.py), so the whole flow is
tested with an in-memory fake; the lab proves the real implementation. Cleanup runs on every
exit path: success, failure, KeyboardInterrupt (SIGINT) and SIGTERM (turned into one).
"""

from __future__ import annotations

import datetime
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from . import diff
from .agent_protocol import GATE_NETWORK_CHECK, parse_agent_elapsed, parse_agent_gate, parse_agent_output
from .cluster import Cluster, ProbePodState
from .destinations import Destinations
from .errors import InputError, Interrupted, ProbeError
from .model import Cell, Expectation, RunResult, Target, TargetKind
from .observe import (
    Observation,
    conflicting,
    evidence,
    failed,
    merge_observations,
    network_unshown,
    observe,
    without_network,
)
from .plan import ProbePlan, TargetPods, make_plans
from .pods import RUN_LABEL, PodInfo, sample_pods
from .probepod import (
    PodSettings,
    agent_bootstrap,
    ephemeral_container,
    ephemeral_container_name,
    job_name,
    probe_job,
)
from .spec import Spec

Progress = Callable[[str], None]
_IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_CONTAINER_FAILURES = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                       "CrashLoopBackOff")


CREATE_CONCURRENCY = 32  # probe Jobs created at once (the client's pool keeps cluster.POOL_SIZE connections)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """Everything `netprobe run` can be told (the CLI flags, the Python API's keywords)."""

    timeout: float | None = None  # probe timeout; default: the spec's defaults.timeout
    attempts: int | None = None  # re-probe mismatching cells up to this many rounds in total
    settle: float | None = None  # re-probe until two rounds agree, for at most this long
    per_pod: bool = False
    max_target_pods: int | None = None
    max_parallel: int = 50
    keep: bool = False
    via: str = "job"  # or "ephemeral"
    pods: PodSettings = field(default_factory=PodSettings)
    overall_timeout: float = 600.0
    strict: bool = False  # a deny resting on DNS alone (port never tested) counts as not probed
    warmup: float = 2.0  # bound of the readiness gate (the CNI programs a new pod's policy late)
    warmup_mode: str = "gate"  # or "fixed": always wait the whole warmup
    # Delete the probe pods in a background thread once the result is known, so that it can
    # be printed at once; finish_cleanups() waits for it (the CLI calls it after printing).
    # On an exception or Ctrl-C the cleanup always runs before run() returns.
    background_cleanup: bool = False
    run_id: str = ""


@dataclass
class _Round:
    """Bookkeeping of one probe round."""

    plans: list[ProbePlan]
    launched: set[int] = field(default_factory=set)
    launched_at: dict[int, float] = field(default_factory=dict)  # monotonic time of each launch
    states: dict[int, ProbePodState] = field(default_factory=dict)
    results: dict[int, dict[str, Observation]] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)

    def finished(self) -> bool:
        return all(p.index in self.results or p.index in self.failures for p in self.plans)


def new_run_id() -> str:
    """A short random run id, valid as a label value and in object names."""
    return secrets.token_hex(4)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so `finally:` cleanup runs (main thread only)."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_masked() -> Iterator[None]:
    """Let cleanup finish even when Ctrl-C is pressed again."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Runner:
    """One `netprobe run`."""

    def __init__(self, cluster: Cluster, spec: Spec, options: RunOptions, *,
                 expect: Mapping[tuple[str, str], Expectation] | None = None,
                 expected_by: Mapping[tuple[str, str], str] | None = None,
                 warnings: Sequence[str] = (),
                 progress: Progress | None = None, log: Progress | None = None) -> None:
        self.cluster = cluster
        self.spec = spec
        self.options = options
        self.expect = dict(expect if expect is not None else spec.expect)
        self.expected_by = dict(expected_by or {})
        self.warnings = list(warnings)
        self.run_id = options.run_id or new_run_id()
        self.progress = progress or (lambda _msg: None)
        self.log = log or (lambda _msg: None)
        self.timeout = options.timeout or spec.defaults.timeout
        self.attempts = options.attempts or spec.defaults.attempts
        self._namespaces: set[str] = set()
        self._deadline = 0.0
        self._probe_pod_count = 0  # probe pods launched, all rounds
        self._identities = 0  # network identities probed in the first round
        self._targets = {t.name: t for t in spec.targets}
        self.destinations = Destinations(cluster, spec.targets, max_pods=options.max_target_pods)
        self._unstable: set[tuple[str, str]] = set()
        self._gates: list[dict[str, Any]] = []  # each probe pod's readiness gate (agent report)
        self._created_at: dict[int, float] = {}  # probe pod index -> when its Job was created (-v)
        self._reaper = _Reaper(cluster, enabled=not options.keep and options.via == "job")
        # Made here, in the caller's thread, before Jobs are built by a thread pool: making it
        # runs ast, which CPython 3.11 cannot run in two threads at once (probepod.agent_program).
        agent_bootstrap()

    # -- discovery

    def discover(self) -> tuple[dict[str, list[PodInfo]], dict[str, TargetPods], list[str]]:
        """Pods of each source and of each pod-selector target; problems for empty ones."""
        problems: list[str] = []
        pods_by_source: dict[str, list[PodInfo]] = {}
        cache: dict[tuple[str, str], list[PodInfo]] = {}

        def pods(ns: str, selector: str) -> list[PodInfo]:
            return cache[(ns, selector)]

        # Every LIST at once: discovery costs one round trip, not one per selector.
        wanted: set[tuple[str, str]] = {(s.namespace, s.selector.to_label_selector()) for s in self.spec.sources}
        wanted |= {(t.namespace or "default", t.selector.to_label_selector()) for t in self.spec.targets
                   if t.kind is TargetKind.PODS and t.selector is not None}
        with ThreadPoolExecutor(max_workers=min(8, len(wanted) or 1)) as pool:
            found_by_key = {key: pool.submit(self.cluster.list_pods, *key) for key in sorted(wanted)}
            for key, future in found_by_key.items():
                cache[key] = [p for p in future.result() if p.usable]

        for source in self.spec.sources:
            found = [p for p in pods(source.namespace, source.selector.to_label_selector())
                     if source.selector.matches(p.labels)]
            pods_by_source[source.name] = found
            if not found:
                problems.append(f"source {source.name}: no running pod matches {source.selector} "
                                f"in namespace {source.namespace}")
        target_pods: dict[str, TargetPods] = {}
        for target in self.spec.targets:
            if target.kind is not TargetKind.PODS or target.selector is None:
                continue
            ns = target.namespace or "default"
            found = [p for p in pods(ns, target.selector.to_label_selector())
                     if target.selector.matches(p.labels)]
            picked = sample_pods(found, self.options.max_target_pods, seed=target.name)
            target_pods[target.name] = TargetPods(target=target.name, pods=tuple(picked), total=len(found))
            if not found:
                problems.append(f"target {target.name}: no running pod matches {target.selector} "
                                f"in namespace {ns}")
        return pods_by_source, target_pods, problems

    # -- one round of probe pods

    def _fail_plan(self, rnd: _Round, plan: ProbePlan, why: str) -> None:
        if plan.index not in rnd.results and plan.index not in rnd.failures:
            who = ", ".join(plan.sources)
            rnd.failures[plan.index] = f"probe pod for {who} ({plan.identity.describe()}): {why}"

    def _launch(self, rnd: _Round, plan: ProbePlan) -> None:
        rnd.launched.add(plan.index)
        rnd.launched_at[plan.index] = time.monotonic()
        ns = plan.identity.namespace
        self._namespaces.add(ns)
        # --keep: no TTL either, or the TTL controller (on by default since 1.21) removes kept Jobs
        pods = replace(self.options.pods, ttl_seconds=None) if self.options.keep else self.options.pods
        try:
            if self.options.via == "ephemeral":
                container = ephemeral_container(plan, self.run_id, pods)
                self.cluster.add_ephemeral_container(ns, plan.example_pod.name, container)
            else:
                self.cluster.create_job(probe_job(plan, self.run_id, pods))
            self._created_at[plan.index] = time.monotonic()
        except ProbeError as exc:
            self._fail_plan(rnd, plan, f"could not be created: {exc}")

    def _collect(self, rnd: _Round, plan: ProbePlan, state: ProbePodState) -> None:
        """Turn a probe pod's state into results, a failure, or nothing yet."""
        if plan.index in rnd.results or plan.index in rnd.failures:
            return
        if state.log_line:
            # A line of the running agent's log: its result if the line is a whole one (the agent
            # prints it before exiting, a second or so before the kubelet reports the exit).
            try:
                self._take_result(rnd, plan, state.log_line)
            except ValueError:
                return  # some other line; the pod's end still comes through the watch
            self._note_gate(plan, parse_agent_gate(state.log_line), parse_agent_elapsed(state.log_line),
                            source="its log")
            return
        if state.waiting_reason in _IMAGE_FAILURES:
            self._fail_plan(rnd, plan, f"image {self.options.pods.image!r} cannot be pulled "
                            f"({state.waiting_reason}: {state.waiting_message})")
        elif state.waiting_reason in _CONTAINER_FAILURES:
            self._fail_plan(rnd, plan, f"container cannot start ({state.waiting_reason}: "
                            f"{state.waiting_message})")
        elif (state.deleted or state.deleting) and state.exit_code != 0:
            self._fail_plan(rnd, plan, "the probe pod was deleted (evicted?) before it finished")
        elif state.exit_code is not None:
            output = state.termination_message
            if state.exit_code == 0:
                if not output.strip():
                    try:
                        output = self.cluster.pod_log(state.namespace, state.name, self._container_name(plan))
                    except ProbeError as exc:  # e.g. 404: the pod is gone; one plan fails, not the run
                        self._fail_plan(rnd, plan, f"its result could not be read from its log: {exc}")
                        return
                try:
                    self._take_result(rnd, plan, output)
                except ValueError as exc:
                    # The termination message may be cut; the log carries the whole document.
                    try:
                        output = self.cluster.pod_log(state.namespace, state.name, self._container_name(plan))
                        self._take_result(rnd, plan, output)
                    except (ValueError, ProbeError):
                        self._fail_plan(rnd, plan, f"unreadable agent output: {exc}")
                if plan.index in rnd.results:
                    self._note_gate(plan, parse_agent_gate(output), parse_agent_elapsed(output),
                                    source="its termination message")
            else:
                tail = (output.strip().splitlines() or [""])[-1][:300]
                self._fail_plan(rnd, plan, f"the agent crashed (exit code {state.exit_code}, "
                                f"{state.terminated_reason or 'Error'}): {tail}")
        elif state.phase == "Failed":
            why = state.reason or "Failed"
            if why == "DeadlineExceeded":
                why = "deadline exceeded (activeDeadlineSeconds) before the agent finished"
            self._fail_plan(rnd, plan, f"{why} {state.message}".strip())

    def _take_result(self, rnd: _Round, plan: ProbePlan, output: str) -> None:
        """The agent's whole result document -> the round's observations (ValueError if it is not one)."""
        parsed = parse_agent_output(output)
        observations = observe(plan, parsed)
        # Not for --via ephemeral: its container joins a running pod, programmed long ago.
        unshown = None if self.options.via == "ephemeral" else network_unshown(
            parse_agent_gate(output), parsed, {str(c["id"]): str(c["kind"]) for c in plan.checks},
            plan.node_answered)
        if unshown is not None:
            # The pod may never have had a network (or only its own side of it): a deny it saw
            # proves nothing (not probed; --attempts probes it again in a new pod). Where its
            # nameserver answered, its expected allows' failures are real mismatches.
            keep = () if unshown == "all" else {
                target for target in observations if self._agreed(plan, target) is Expectation.ALLOW}
            observations = without_network(observations, unshown, keep)
        rnd.results[plan.index] = observations

    def _warn_unprovable(self, plans: Sequence[ProbePlan]) -> None:
        """Say up front where the gate cannot see a pod's network: nothing expected to connect, and
        a name expected not to resolve (so the nameserver the gate would ask is denied too)."""
        for plan in plans:
            if plan.warmup_mode != "gate" or not plan.warmup or plan.gate_connect or self.options.via == "ephemeral":
                continue
            if any(c["kind"] == "dns" and self._agreed(plan, plan.refs[c["id"]].target) is Expectation.DENY
                   for c in plan.checks):
                warning = (f"{', '.join(plan.sources)}: the spec expects it to reach nothing in the pod "
                           "network, not even its DNS, so nothing from inside its probe pod can show that "
                           "its network is up: its denies will be not probed unless --warmup-mode fixed "
                           "rests them on a fixed --warmup wait")
                if warning not in self.warnings:
                    self.warnings.append(warning)

    def _agreed(self, plan: ProbePlan, target: str) -> Expectation | None:
        """What every source a probe pod stands for expects of `target` (None: they differ)."""
        wanted = {self.expect.get((source, target)) for source in plan.sources}
        return wanted.pop() if len(wanted) == 1 else None

    def _note_gate(self, plan: ProbePlan, gate: Mapping[str, Any] | None, agent_ms: int | None,
                   source: str) -> None:
        """Keep a probe pod's gate report for the run's JSON (meta.gates); say where its time went (-v)."""
        if plan.index in self._created_at:
            # Job creation -> result seen = pod start-up + the agent's run + reporting it.
            seen = time.monotonic() - self._created_at[plan.index]
            ran = f"{agent_ms / 1000:.2f}s" if agent_ms is not None else "?"
            self.log(f"probe pod {plan.index}: result read from {source} {seen:.2f}s after its Job was "
                     f"created (agent ran {ran}; start-up and reporting {seen - (agent_ms or 0) / 1000:.2f}s)")
        if gate is None:
            return
        entry = {"probe_pod": plan.index, "identity": plan.identity.describe(),
                 "sources": list(plan.sources), **gate}
        self._gates.append(entry)
        why = gate["opened"]
        if why == "bound-reached":
            why += f" (unmet: {', '.join(gate.get('unmet') or [])})"
        elif why == "no-candidate":
            wants = {"connect": "allow", "block": "deny"}
            why += f" (no check the spec expects to {' or '.join(wants.get(m, m) for m in gate.get('missing') or [])})"
        if gate.get("connect") == [GATE_NETWORK_CHECK]:
            why += " (nothing is expected to connect: it polled its nameserver for its network)"
        if gate.get("network_seen") is False:
            why += "; its nameserver never answered"
        missed = gate.get("missed")
        if isinstance(missed, dict) and (missed.get("connect") or missed.get("block")):
            failed = ("its nameserver silent" if gate.get("connect") == [GATE_NETWORK_CHECK]
                      else "an expected allow fail (a fail-closed start, or a real block)")
            why += (f"; rounds that did not open it: {missed.get('connect', 0)} saw {failed}, "
                    f"{missed.get('block', 0)} saw an expected deny connect (a fail-open start, or a real leak)")
        self.log(f"probe pod {plan.index} ({', '.join(plan.sources)}): gate waited "
                 f"{gate['waited_ms'] / 1000:.2f}s, {why}")

    def _container_name(self, plan: ProbePlan) -> str | None:
        return ephemeral_container_name(self.run_id, plan.index) if self.options.via == "ephemeral" else None

    def _report_progress(self, rnd: _Round) -> None:
        done = len(rnd.results) + len(rnd.failures)
        running = sum(1 for i, s in rnd.states.items() if s.phase == "Running"
                      and i not in rnd.results and i not in rnd.failures)
        pending = len(rnd.plans) - done - running
        self.progress(f"probe pods: {done}/{len(rnd.plans)} done, {running} running, {pending} pending")

    def probe_round(self, plans: Sequence[ProbePlan]) -> _Round:
        """Launch every plan's probe pod (at most max_parallel at once) and collect results.

        Each probe pod gets its own start-up budget from the moment it is launched, so later
        waves (more identities than --max-parallel) are not cut short by the first one's.
        """
        rnd = _Round(plans=list(plans))
        if not plans:
            return rnd
        by_index = {p.index: p for p in plans}
        waiting = list(plans)

        def is_open(index: int) -> bool:
            return index not in rnd.results and index not in rnd.failures

        def expires(index: int) -> float:
            return rnd.launched_at[index] + self.options.pods.startup_timeout + by_index[index].budget_s

        def top_up() -> None:
            while True:
                free = self.options.max_parallel - (len(rnd.launched) - (len(rnd.results) + len(rnd.failures)))
                if time.monotonic() >= self._deadline:
                    free = 0
                batch = [waiting.pop(0) for _ in range(max(0, min(free, len(waiting))))]
                if not batch:
                    return
                # The Jobs are created concurrently: N creates cost about one round trip, and
                # the last probe pod does not start N round trips after the first (with 8 at a
                # time, 50 Jobs took 1.4 s on the lab; the API server's priority and fairness,
                # not the client, is what paces a burst).
                with ThreadPoolExecutor(max_workers=min(CREATE_CONCURRENCY, len(batch))) as pool:
                    list(pool.map(lambda plan: self._launch(rnd, plan), batch))

        created = time.monotonic()
        top_up()
        self.log(f"created {len(rnd.launched)} probe Job(s) in {time.monotonic() - created:.2f}s")
        namespaces = {p.identity.namespace for p in plans}
        watch_ns = next(iter(namespaces)) if len(namespaces) == 1 else None
        while True:
            top_up()
            running = [i for i in rnd.launched if is_open(i)]
            if not running:
                break
            # Watch until the first open probe pod runs out of time, then time it out and go on.
            until = min(self._deadline, min(expires(i) for i in running))
            if self.options.via == "ephemeral":
                states: Iterator[ProbePodState] = self._ephemeral_states(rnd, by_index, until)
            else:
                states = self.cluster.watch_probe_pods(watch_ns, self.run_id, rnd.finished, until)
            try:
                for state in states:
                    if state.plan_index not in by_index:
                        continue
                    if not state.log_line:  # a log line carries the state seen when following began
                        rnd.states[state.plan_index] = state
                    was_open = is_open(state.plan_index)
                    self._collect(rnd, by_index[state.plan_index], state)
                    if was_open and not is_open(state.plan_index) and state.name:
                        self._reaper.add(state.namespace, job_name(self.run_id, state.plan_index), state.name)
                    top_up()
                    self._report_progress(rnd)
                    if rnd.finished():
                        break
            finally:
                close = getattr(states, "close", None)
                if close is not None:  # release the watch and its log streams now, on every exit
                    close()
            now = time.monotonic()
            for index in [i for i in rnd.launched if is_open(i) and (expires(i) <= now + 0.05 or
                                                                      now >= self._deadline)]:
                self._time_out(rnd, by_index[index])
            if now >= self._deadline:
                break
        for plan in plans:  # whatever was never launched before the overall deadline passed
            if plan.index not in rnd.launched:
                self._fail_plan(rnd, plan, "not launched before the deadline (--max-parallel too low?)")
        return rnd

    def _time_out(self, rnd: _Round, plan: ProbePlan) -> None:
        """Fail a launched probe pod that ran out of time, saying what it was waiting for."""
        last = rnd.states.get(plan.index)
        if last is None:
            events = []
            if self.options.via != "ephemeral":
                events = self.cluster.job_events(plan.identity.namespace, job_name(self.run_id, plan.index))
            why = "; ".join(events) or "no probe pod appeared (rejected by admission, or quota?)"
        elif last.unschedulable:
            why = f"unschedulable: {last.unschedulable}"
        elif last.waiting_reason:
            why = f"still {last.waiting_reason}: {last.waiting_message}"
        else:
            why = f"still {last.phase}"
        self._fail_plan(rnd, plan, f"timed out after {self.options.pods.startup_timeout + plan.budget_s:.0f}s; {why}")

    def _ephemeral_states(self, rnd: _Round, by_index: Mapping[int, ProbePlan],
                          deadline: float) -> Iterator[ProbePodState]:
        """Poll the real source pods for the injected ephemeral containers' states."""
        while not rnd.finished() and time.monotonic() < deadline:
            # only launched plans: one not injected yet has no container to read
            for index in sorted(rnd.launched):
                plan = by_index[index]
                if index in rnd.results or index in rnd.failures:
                    continue
                found = self.cluster.ephemeral_state(
                    plan.identity.namespace, plan.example_pod.name, self._container_name(plan) or "")
                if found is not None:
                    yield replace(found, plan_index=index)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    # -- the whole run

    def run(self) -> RunResult:
        """Discover, probe (with re-probes), diff and clean up."""
        started = time.monotonic()
        started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self._deadline = started + self.options.overall_timeout
        if self.options.via == "ephemeral":
            major, minor = self.cluster.server_version()
            if (major, minor) < (1, 25):
                raise InputError(f"--via ephemeral needs Kubernetes >= 1.25 (the stable "
                                 f"pods/ephemeralcontainers API); this cluster is {major}.{minor}")
        missing = [(s.name, t.name) for s in self.spec.sources for t in self.spec.targets
                   if (s.name, t.name) not in self.expect]
        if missing:
            raise InputError(f"no expectation for {len(missing)} cell(s), e.g. "
                             f"{missing[0][0]} → {missing[0][1]}")
        history: dict[tuple[str, str], list[Observation]] = {}
        problems: list[str] = []
        if self.options.via == "ephemeral":
            self.warnings.append(f"--via ephemeral: the containers netprobe-{self.run_id}-<n> stay in each "
                                 "probed source pod's spec (Kubernetes cannot remove ephemeral containers)")
        settle_s: float | None = None
        try:
            with _sigterm_as_interrupt():
                discovery_started = time.monotonic()
                pods_by_source, target_pods, problems = self.discover()
                self.destinations.read({p.namespace for ps in pods_by_source.values() for p in ps}, target_pods)
                self.warnings += self.destinations.warnings
                self.log(f"discovery: {time.monotonic() - discovery_started:.2f}s")
                self.log(f"run {self.run_id}: {sum(map(len, pods_by_source.values()))} source pod(s), "
                         f"{len(self.spec.targets)} target(s)")
                only: dict[str, set[str]] | None = None
                rounds = 0
                previous: dict[tuple[str, str], frozenset[tuple[str, str, str]]] | None = None
                settle_deadline = started + (self.options.settle or 0)
                while True:
                    rounds += 1
                    round_started = time.monotonic()
                    current = self._round(pods_by_source, target_pods, only, history)
                    self.log(f"round {rounds}: {len(current)} cell(s) probed in "
                             f"{time.monotonic() - round_started:.1f}s")
                    if self.options.settle:
                        # Rounds agree when every sub-check saw the same: connected, failed or unknown.
                        seen = {k: evidence(v[-1]) for k, v in history.items()}
                        if seen == previous:
                            break
                        settle_s = round_started - started  # the last round that changed something
                        previous = seen
                        if rounds >= 2 and time.monotonic() >= settle_deadline:
                            # Do not choose a round: the cells whose evidence conflicts are unstable.
                            self._unstable = {k for k, v in history.items()
                                              if len(v) >= 2 and conflicting(v[-2], v[-1])}
                            self.warnings.append(f"--settle: the cluster did not settle within "
                                                 f"{self.options.settle:g}s: {len(self._unstable)} cell(s) "
                                                 "still changing (listed as unstable)")
                            settle_s = None
                            break
                        only = None
                        continue
                    if rounds >= self.attempts:
                        break
                    only = self._needing_reprobe(history)
                    if not only:
                        break
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: run {self.run_id} stopped; its probe pods were removed"
                              if not self.options.keep else
                              f"interrupted: run {self.run_id} stopped (--keep: probe pods left)") from None
        finally:
            if self.options.background_cleanup and sys.exc_info()[0] is None:
                self._cleanup_in_background()
            else:
                self.cleanup()
        cells = self._cells(history)
        return RunResult(
            sources=tuple(s.name for s in self.spec.sources),
            targets=tuple(t.name for t in self.spec.targets),
            cells=tuple(cells), run_id=self.run_id, started=started_at,
            duration_s=time.monotonic() - started, problems=tuple(problems), warnings=tuple(self.warnings),
            settle_s=settle_s,
            meta={"api_calls": self.cluster.api_calls, "probe_pods": self._probe_pod_count,
                  "identities": self._identities, "gates": self._gates},
        )

    def _round(self, pods_by_source: Mapping[str, list[PodInfo]], target_pods: Mapping[str, TargetPods],
               only: Mapping[str, set[str]] | None,
               history: dict[tuple[str, str], list[Observation]]) -> dict[tuple[str, str], Observation]:
        probe_targets = [t for t in self.spec.targets
                         if t.kind is not TargetKind.PODS or target_pods[t.name].pods]
        plans = make_plans(self.spec.sources, pods_by_source, probe_targets, target_pods,
                           timeout=self.timeout, timeouts=self.spec.timeouts, per_pod=self.options.per_pod,
                           only=only, warmup=self.options.warmup, first_index=self._probe_pod_count,
                           warmup_mode=self.options.warmup_mode, expect=self.expect,
                           backends=self.destinations.backends)
        self._probe_pod_count += len(plans)
        if only is None:
            self._identities = max(self._identities, len(plans))
            self._warn_unprovable(plans)
        rnd = self.probe_round(plans)
        self.destinations.refresh(target_pods)
        by_name = {t.name: t for t in self.spec.targets}
        per_cell: dict[tuple[str, str], list[Observation]] = {}
        for plan in plans:
            who = plan.identity.describe() + (f" ({plan.example_pod.key})" if self.options.per_pod else "")
            results = rnd.results.get(plan.index, {})
            for target in dict.fromkeys(ref.target for ref in plan.refs.values()):
                if plan.index in rnd.failures:
                    obs = failed(who, rnd.failures[plan.index])
                else:
                    obs = results.get(target) or failed(who, "no result")
                    obs = replace(obs, subresults=self.destinations.unproven(
                        obs.subresults, by_name[target], plan.identity.namespace))
                for source in plan.sources:
                    # A re-probe round counts only for the cells it was run for: a plan that
                    # stands for several sources may probe a target for one of them only.
                    if only is None or target in only.get(source, set()):
                        per_cell.setdefault((source, target), []).append(obs)
        current = {}
        for key, observations in per_cell.items():
            merged = merge_observations(observations)
            history.setdefault(key, []).append(merged)
            current[key] = merged
        return current

    def _needing_reprobe(self, history: Mapping[tuple[str, str], list[Observation]]) -> dict[str, set[str]]:
        """--attempts: expected-allow cells that did not connect, and cells not probed."""
        out: dict[str, set[str]] = {}
        for (src, tgt), observations in history.items():
            if diff.needs_reprobe(self.expect[(src, tgt)], [o.subresults for o in observations],
                                  target=self._targets[tgt], strict=self.options.strict):
                out.setdefault(src, set()).add(tgt)
        return out

    def _cells(self, history: Mapping[tuple[str, str], list[Observation]]) -> list[Cell]:
        cells = []
        for source in self.spec.sources:
            for target in self.spec.targets:
                key = (source.name, target.name)
                expected = self.expect[key]
                observations = history.get(key) or [failed("", self._why_not_probed(source.name, target))]
                rounds = [o.subresults for o in observations]
                deciding = diff.deciding_round(expected, rounds, reprobes=not self.options.settle)
                j = diff.judge(target, expected, rounds[deciding], strict=self.options.strict)
                verdicts = tuple(o.verdict for o in observations)
                match, reason = j.match, j.reason
                if deciding < len(rounds) - 1 and any(s.connected for s in rounds[deciding]):
                    reason += (f" [connected in round {deciding + 1} of {len(rounds)}; a connection is "
                               "proof, later rounds cannot undo it]")
                elif deciding < len(rounds) - 1:
                    reason += (f" [decided by round {deciding + 1} of {len(rounds)}; the later ones could "
                               "not probe it]")
                sampled = self.destinations.sampled.get(target.name)
                if sampled:
                    note = (f"probed {sampled[0]} of {sampled[1]} pods (--max-target-pods): a deny holds "
                            "for those only")
                    j = replace(j, detail=f"{j.detail} [{note}]")
                    if self.options.strict and j.match is True and expected is Expectation.DENY:
                        match, reason = None, f"not probed (--strict): {note}"
                unstable = key in self._unstable
                if unstable:
                    match = False
                    reason = (f"unstable: the verdict was still changing between rounds "
                              f"({' → '.join(map(str, verdicts))})" + (f"; {reason}" if reason else ""))
                cells.append(Cell(
                    source=source.name, target=target.name, expected=expected,
                    observed=j.observed, match=match, detail=j.detail, reason=reason,
                    attempts=len(observations), history=verdicts,
                    elapsed_ms=observations[deciding].elapsed_ms, subresults=j.subresults,
                    proof=j.proof, unstable=unstable,
                    expected_by=self.expected_by.get(key, "spec"),
                ))
        return cells

    def _why_not_probed(self, source: str, target: Target) -> str:
        if target.kind is TargetKind.PODS:
            return f"target {target.name} selects no running pod in {target.namespace}"
        return f"source {source} has no running pod to stand in for"

    def _cleanup_in_background(self) -> None:
        # Not a daemon: even if the caller never calls finish_cleanups(), the interpreter
        # waits for it before exiting.
        thread = threading.Thread(target=self.cleanup, name=f"netprobe-cleanup-{self.run_id}")
        with _pending_lock:
            _pending_cleanups.append(thread)
        thread.start()

    def cleanup(self) -> None:
        """Delete this run's Jobs and pods in every namespace it used (unless --keep)."""
        # Whatever the reaper has not deleted yet, the sweep below does: it is told to stop, not
        # waited for (a delete of its may be retrying for a minute; the sweep needs nothing of it).
        early = self._reaper.stop()
        if self.options.keep or self.options.via == "ephemeral":
            return
        started = time.monotonic()
        with _signals_masked():  # a no-op in a background thread: the CLI masks them while it waits
            errors = []
            for ns in sorted(self._namespaces):
                try:
                    self.cluster.delete_run(ns, self.run_id)
                except ProbeError as exc:
                    errors.append(str(exc))
            if errors:
                self.log("cleanup incomplete (the Jobs' TTL will remove them; or run "
                         f"`netprobe cleanup`): {'; '.join(errors)}")
        self.log(f"cleanup: {len(self._namespaces)} namespace(s) in {time.monotonic() - started:.2f}s "
                 f"({early} probe pod(s) already deleted as their results came in)")


class _Reaper:
    """Deletes each probe pod and its Job as soon as its result is in, while the others still run.

    The run's final cleanup (a label-selected delete per namespace, which costs the API server
    one delete per object still there) then finds only the last few: with 50 probe pods it took
    0.9 s at exit, the time a CI step waits after the result is printed. Best effort: a failed
    delete is left to that sweep, which never depends on this.
    """

    def __init__(self, cluster: Cluster, *, enabled: bool) -> None:
        self._cluster = cluster
        self._enabled = enabled
        self._queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.deleted = 0

    def add(self, namespace: str, job: str, pod: str) -> None:
        if not self._enabled or self._stopping.is_set():
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="netprobe-reaper", daemon=True)
            self._thread.start()
        self._queue.put((namespace, job, pod))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return
            try:
                self._cluster.delete_probe(*item)
                self.deleted += 1
            except Exception:  # best effort: the final sweep deletes it
                pass

    def stop(self) -> int:
        """Take no more work (the rest is left to the sweep): how many were deleted so far."""
        self._stopping.set()
        self._queue.put(None)
        return self.deleted


_pending_cleanups: list[threading.Thread] = []
_pending_lock = threading.Lock()


def finish_cleanups() -> None:
    """Wait for the cleanups runs started in the background (RunOptions.background_cleanup)."""
    with _signals_masked():  # Ctrl-C must not cut the deletion short
        while True:
            with _pending_lock:
                if not _pending_cleanups:
                    return
                thread = _pending_cleanups.pop(0)
            thread.join()


def cleanup_runs(cluster: Cluster, *, namespace: str | None = None, older_than: float = 0.0,
                 run_id: str | None = None) -> list[tuple[str, str]]:
    """Delete leftovers of earlier runs: [(namespace, run id)] removed. Only netprobe's objects."""
    now = time.time()
    targets = sorted({(j.namespace, j.run_id) for j in cluster.list_runs(namespace)
                      if j.run_id and (run_id is None or j.run_id == run_id)
                      and now - j.created >= older_than})
    for ns, rid in targets:
        cluster.delete_run(ns, rid)
    return targets


__all__ = ["RUN_LABEL", "RunOptions", "Runner", "cleanup_runs", "finish_cleanups", "new_run_id"]

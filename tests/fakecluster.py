"""An in-memory Cluster for runner tests. Probe Jobs really run: the fake executes the
command of the Job's container (the inline agent and its plan) as a local process, so the
agent meets real sockets on loopback. Failure modes are injected per Job."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.cluster import JobInfo, ProbePodState
from probe.errors import ClusterError, PermissionDenied
from probe.pods import RUN_LABEL, PodInfo
from probe.probepod import PLAN_ANNOTATION

# The agent's DNS in a "pod" of this fake: loopback only (the gate looks up kubernetes.default
# whenever it runs), so that no test sends a query to the resolver of the machine it runs on.
_RESOLV_CONF = str(Path(__file__).parent / "data" / "loopback-resolv.conf")


def _local_dns(command: list[str]) -> list[str]:
    """The probe container's command with its plan (argv[3:], in pieces) reading the fake's resolv.conf."""
    plan = json.loads("".join(command[3:]))
    plan.setdefault("resolv_conf", _RESOLV_CONF)
    return [*command[:3], json.dumps(plan)]


@dataclass
class FakeCluster:
    pods: list[PodInfo]
    # job index -> "image" | "crash" | "garbage" | "truncated" | "unschedulable" | "reject" | "silent"
    #              | "evicted" | "deleted" | "interrupt"
    faults: dict[int, str] = field(default_factory=dict)
    api_calls: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    deleted_probes: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, job, pod)
    states: list[ProbePodState] = field(default_factory=list)
    version: tuple[int, int] = (1, 20)
    ephemeral: dict[tuple[str, str, str], ProbePodState] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)  # list calls that answer 403 ("endpoints", ...)
    on_create: Callable[[int], None] | None = None  # called with the plan index before a Job "runs"
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # (group, version, plural) -> objects; a missing key is an API the cluster does not serve
    custom_objects: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def list_pods(self, namespace: str | None, label_selector: str = "") -> list[PodInfo]:
        self.api_calls += 1
        return [p for p in self.pods if namespace in (None, p.namespace)]

    def list_namespaces(self) -> list[dict[str, Any]]:
        self.api_calls += 1
        return []

    def list_network_policies(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.api_calls += 1
        return []

    def list_custom_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]] | None:
        if (group, version, plural) not in self.custom_objects:
            return None
        self.api_calls += 1
        return self.custom_objects[(group, version, plural)]

    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.api_calls += 1
        if "services" in self.forbidden:
            raise PermissionDenied("list services: forbidden (HTTP 403): services is forbidden")
        return [s for s in self.services if namespace in (None, s["metadata"]["namespace"])]

    def list_endpoints(self, namespace: str | None = None) -> list[dict[str, Any]]:
        self.api_calls += 1
        if "endpoints" in self.forbidden:
            raise PermissionDenied("list endpoints: forbidden (HTTP 403): endpoints is forbidden")
        return [e for e in self.endpoints if namespace in (None, e["metadata"]["namespace"])]

    def create_job(self, manifest: Mapping[str, Any]) -> None:
        # The runner creates a round's Jobs from several threads; this fake runs each Job's
        # agent inside create_job, one at a time, so on_create hooks see a defined order.
        with self._lock:
            self._create_job(manifest)

    def _create_job(self, manifest: Mapping[str, Any]) -> None:
        self.api_calls += 1
        index = int(manifest["metadata"]["annotations"][PLAN_ANNOTATION])
        if self.faults.get(index) == "reject":
            raise PermissionDenied("create job: forbidden (HTTP 403): jobs.batch is forbidden")
        key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if any((j["metadata"]["namespace"], j["metadata"]["name"]) == key for j in self.jobs):
            raise ClusterError(f"create job {key[0]}/{key[1]}: HTTP 409: already exists", status=409)
        self.jobs.append(dict(manifest))
        if self.on_create is not None:
            self.on_create(index)
        name = manifest["metadata"]["name"]
        ns = manifest["metadata"]["namespace"]
        fault = self.faults.get(index)
        base = {"name": f"{name}-pod", "namespace": ns, "plan_index": index}
        if fault == "silent":
            return
        if fault == "image":
            state = ProbePodState(**base, waiting_reason="ErrImagePull",
                                  waiting_message="pull access denied for nosuch/image")
        elif fault == "unschedulable":
            state = ProbePodState(**base, unschedulable="0/1 nodes are available: 1 Insufficient cpu.")
        elif fault == "crash":
            state = ProbePodState(**base, phase="Failed", exit_code=1, terminated_reason="Error",
                                  termination_message="Traceback...\nSyntaxError: invalid syntax")
        elif fault == "evicted":
            state = ProbePodState(**base, phase="Failed", reason="Evicted",
                                  message="The node was low on resource: memory.")
        elif fault == "deleted":
            state = ProbePodState(**base, deleted=True)
        elif fault == "truncated":
            state = ProbePodState(**base, phase="Succeeded", exit_code=0,
                                  termination_message='{"version": 1, "results": [{"id": "t0", "verd')
        elif fault in ("no-network", "no-network-no-candidate", "no-network-dns-answered"):
            # what an agent reports from a pod whose checks were all dropped and whose gate never
            # saw what should connect connect -- checks the spec expects to connect, or, where there
            # are none, its nameserver -- ("no-network-dns-answered": though its nameserver replied)
            plan = json.loads(manifest["spec"]["template"]["spec"]["containers"][0]["command"][3])
            gate = {"mode": "gate", "opened": "bound-reached", "unmet": ["connect"], "waited_ms": 2000,
                    "network": (plan.get("gate") or {}).get("network"),
                    "network_seen": fault == "no-network-dns-answered"}
            if fault == "no-network-no-candidate":
                gate["connect"] = ["gate:network"]
            doc = {"version": 1, "elapsed_ms": 3000, "gate": gate, "results": [
                {"id": c["id"], "verdict": "blocked", "detail": "no answer within 1s", "history": ["blocked"],
                 "attempts": 1} for c in plan["checks"]]}
            state = ProbePodState(**base, phase="Succeeded", exit_code=0, termination_message=json.dumps(doc))
        elif fault == "garbage":
            state = ProbePodState(**base, phase="Succeeded", exit_code=0,
                                  termination_message='{"version": 7}')
        else:
            command = _local_dns(manifest["spec"]["template"]["spec"]["containers"][0]["command"])
            proc = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                  env={"NETPROBE_TERMINATION_LOG": "/nonexistent/log"})
            state = ProbePodState(**base, phase="Succeeded" if proc.returncode == 0 else "Failed",
                                  exit_code=proc.returncode, terminated_reason="Completed",
                                  termination_message=proc.stdout if len(proc.stdout) < 4096 else "")
            self._logs = getattr(self, "_logs", {})
            self._logs[state.name] = proc.stdout
        self.states.append(state)

    def watch_probe_pods(self, namespace: str | None, run_id: str, until: Callable[[], bool],
                         deadline: float) -> Iterator[ProbePodState]:
        self.api_calls += 1
        seen = 0
        while not until() and time.monotonic() < deadline:
            if any(v == "interrupt" for v in self.faults.values()):
                raise KeyboardInterrupt
            if seen < len(self.states):
                seen += 1
                yield self.states[seen - 1]
            else:
                time.sleep(0.01)

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        self.api_calls += 1
        return getattr(self, "_logs", {}).get(name, "")

    def job_events(self, namespace: str, job: str) -> list[str]:
        self.api_calls += 1
        return [f"FailedCreate: pods \"{job}-x\" is forbidden: violates PodSecurity \"restricted\""]

    def delete_run(self, namespace: str, run_id: str) -> None:
        self.api_calls += 1
        self.deleted.append((namespace, run_id))

    def delete_probe(self, namespace: str, job: str, pod: str) -> None:
        self.api_calls += 2
        self.deleted_probes.append((namespace, job, pod))

    def list_runs(self, namespace: str | None = None) -> list[JobInfo]:
        self.api_calls += 1
        return [JobInfo(name=j["metadata"]["name"], namespace=j["metadata"]["namespace"],
                        run_id=j["metadata"]["labels"][RUN_LABEL], created=time.time() - 100)
                for j in self.jobs if namespace in (None, j["metadata"]["namespace"])]

    def add_ephemeral_container(self, namespace: str, pod: str, container: Mapping[str, Any]) -> None:
        self.api_calls += 1
        proc = subprocess.run(_local_dns(list(container["command"])), capture_output=True, text=True, timeout=60,
                              env={"NETPROBE_TERMINATION_LOG": "/nonexistent/log"})
        self.ephemeral[(namespace, pod, container["name"])] = ProbePodState(
            name=pod, namespace=namespace, plan_index=None, phase="Running", exit_code=proc.returncode,
            termination_message=proc.stdout)

    def ephemeral_state(self, namespace: str, pod: str, container: str) -> ProbePodState | None:
        self.api_calls += 1
        return self.ephemeral.get((namespace, pod, container))

    def server_version(self) -> tuple[int, int]:
        self.api_calls += 1
        return self.version

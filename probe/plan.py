"""Sources × targets → one agent plan per network identity; agent results → observed cells.

Pure: the pods come in as PodInfo values (from cluster.py or a test), nothing here talks to
the cluster. The probe-pod manifest is built here too, so that the DESIGN contract (identity,
never Ready, restricted security context, Job ownership) is checked by unit tests.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Namespace, Source, Target, TargetKind, Verdict, worst

RUN_LABEL = "netprobe.io/run"
PLAN_ANNOTATION = "netprobe.io/plan"
MANAGED_BY = {"app.kubernetes.io/managed-by": "netprobe"}
DEFAULT_IMAGE = "python:3.12-alpine"
PROBE_UID = 65534  # "nobody": the official python images run as root, runAsNonRoot needs a uid

# Labels controllers stamp on their own pods: copying them would make a probe pod look like
# (and be counted as) a member of the source's ReplicaSet/StatefulSet/Job.
_CONTROLLER_LABELS = frozenset({
    "pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name",
    "job-name", "controller-uid", "pod-template-generation", "apps.kubernetes.io/pod-index",
})
_CONTROLLER_PREFIXES = ("batch.kubernetes.io/",)


def identity_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A pod's labels minus those stamped by controllers and minus netprobe's own."""
    return {k: v for k, v in labels.items()
            if k not in _CONTROLLER_LABELS and not k.startswith(_CONTROLLER_PREFIXES)
            and not k.startswith("netprobe.io/")}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerPort:
    """A named or numbered port a container declares."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodInfo:
    """What netprobe needs to know about a pod."""

    name: str
    namespace: Namespace
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""
    phase: str = "Running"
    service_account: str = ""
    node: str = ""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    deleting: bool = False

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

    @property
    def is_probe(self) -> bool:
        """A netprobe probe pod (it copies labels, so it can match a source's selector)."""
        return RUN_LABEL in self.labels

    @property
    def usable(self) -> bool:
        """Running, with an IP, not being deleted, and not one of our own probe pods."""
        return self.phase == "Running" and bool(self.ip) and not self.deleting and not self.is_probe


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _items(value: Any, where: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError(f"{where}: expected a list of mappings")
    return value


def pod_info(obj: Mapping[str, Any]) -> PodInfo:
    """A PodInfo from a Pod's JSON; ValueError naming the field when its shape is wrong."""
    meta = _mapping(obj.get("metadata"), "metadata")
    spec = _mapping(obj.get("spec"), "spec")
    status = _mapping(obj.get("status"), "status")
    labels = _mapping(meta.get("labels"), "metadata.labels")
    ports = []
    for i, c in enumerate(_items(spec.get("containers"), "spec.containers")):
        for j, p in enumerate(_items(c.get("ports"), f"spec.containers[{i}].ports")):
            number = p.get("containerPort")
            if isinstance(number, bool) or not isinstance(number, int):
                raise ValueError(f"spec.containers[{i}].ports[{j}].containerPort: expected a number")
            ports.append(ContainerPort(name=str(p.get("name") or ""), port=number,
                                       protocol=str(p.get("protocol") or "TCP")))
    return PodInfo(
        name=str(meta.get("name", "")), namespace=Namespace(str(meta.get("namespace") or "default")),
        labels={str(k): str(v) for k, v in labels.items()}, ip=str(status.get("podIP") or ""),
        phase=str(status.get("phase") or "Pending"),
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or ""),
        node=str(spec.get("nodeName") or ""), tolerations=tuple(_items(spec.get("tolerations"), "spec.tolerations")),
        ports=tuple(ports), deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """What a NetworkPolicy can see of a pod: namespace, labels, service account."""

    namespace: Namespace
    labels: tuple[tuple[str, str], ...]
    service_account: str = ""

    @classmethod
    def of(cls, pod: PodInfo) -> Identity:
        """The identity a probe pod must carry to stand in for `pod`."""
        return cls(namespace=pod.namespace,
                   labels=tuple(sorted(identity_labels(pod.labels).items())),
                   service_account=pod.service_account)

    def describe(self) -> str:
        """`default/app=api` (+ service account when not default)."""
        labels = ",".join(f"{k}={v}" for k, v in self.labels) or "<no labels>"
        sa = f" sa={self.service_account}" if self.service_account not in ("", "default") else ""
        return f"{self.namespace}/{labels}{sa}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRef:
    """Which cell a check of a plan feeds."""

    target: str
    pod: str = ""  # ns/name of the target pod, for pod-selector targets


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbePlan:
    """One probe pod: an identity, the sources it stands for, and the agent's checks."""

    index: int
    identity: Identity
    sources: tuple[str, ...]
    example_pod: PodInfo  # a real pod of this identity (node for --same-node, --via ephemeral)
    checks: tuple[Mapping[str, Any], ...]
    refs: Mapping[str, CheckRef]
    timeout: float
    attempts: int = 1
    warmup: float = 0.0

    def agent_plan(self) -> dict[str, Any]:
        """The JSON document the agent receives."""
        doc: dict[str, Any] = {"version": 1, "timeout": self.timeout, "attempts": self.attempts,
                               "checks": [dict(c) for c in self.checks]}
        if self.warmup:
            doc["warmup"] = self.warmup
        return doc

    @property
    def budget_s(self) -> float:
        """The longest the agent may run: DNS then connect, per attempt, plus slack."""
        longest = max((float(c.get("timeout", self.timeout)) for c in self.checks),
                      default=self.timeout)
        return self.warmup + self.attempts * (2 * longest + 1) + 5


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetPods:
    """A pod-selector target's resolved pods (possibly sampled)."""

    target: str
    pods: tuple[PodInfo, ...]
    total: int  # before sampling


def group_identities(
    sources: Sequence[Source], pods_by_source: Mapping[str, Sequence[PodInfo]], *, per_pod: bool = False
) -> list[tuple[Identity, PodInfo, list[str]]]:
    """[(identity, an example pod, source names)], one per distinct identity (or pod)."""
    groups: dict[Any, tuple[Identity, PodInfo, list[str]]] = {}
    for source in sources:
        for pod in pods_by_source.get(source.name, ()):
            ident = Identity.of(pod)
            key = (ident, pod.key) if per_pod else ident
            if key not in groups:
                groups[key] = (ident, pod, [])
            if source.name not in groups[key][2]:
                groups[key][2].append(source.name)
    return list(groups.values())


def sample_pods(pods: Sequence[PodInfo], limit: int | None, seed: str = "") -> list[PodInfo]:
    """Up to `limit` pods, spread over nodes first (deterministic for a given seed)."""
    ordered = sorted(pods, key=lambda p: p.key)
    if limit is None or len(ordered) <= limit:
        return ordered
    rng = random.Random(seed)
    by_node: dict[str, list[PodInfo]] = {}
    for pod in ordered:
        by_node.setdefault(pod.node, []).append(pod)
    for group in by_node.values():
        rng.shuffle(group)
    picked: list[PodInfo] = []
    while len(picked) < limit:
        for node in sorted(by_node):
            if by_node[node] and len(picked) < limit:
                picked.append(by_node[node].pop())
    return sorted(picked, key=lambda p: p.key)


def build_checks(
    targets: Sequence[Target], target_pods: Mapping[str, TargetPods],
    timeouts: Mapping[str, float], default_timeout: float
) -> tuple[list[dict[str, Any]], dict[str, CheckRef]]:
    """The agent checks for every target (one per pod for pod-selector targets)."""
    checks: list[dict[str, Any]] = []
    refs: dict[str, CheckRef] = {}
    for ti, target in enumerate(targets):
        extra: dict[str, Any] = {}
        if target.name in timeouts and timeouts[target.name] != default_timeout:
            extra["timeout"] = timeouts[target.name]
        if target.kind is TargetKind.PODS:
            for pi, pod in enumerate(target_pods[target.name].pods):
                cid = f"t{ti}p{pi}"
                checks.append({"id": cid, "kind": "tcp", "host": pod.ip, "port": target.port, **extra})
                refs[cid] = CheckRef(target=target.name, pod=pod.key)
            continue
        cid = f"t{ti}"
        if target.kind is TargetKind.DNS:
            checks.append({"id": cid, "kind": "dns", "name": target.host, **extra})
        elif target.kind is TargetKind.HTTP:
            checks.append({"id": cid, "kind": "http", "url": target.host, **extra})
        else:
            checks.append({"id": cid, "kind": "tcp", "host": target.host, "port": target.port, **extra})
        refs[cid] = CheckRef(target=target.name)
    return checks, refs


def make_plans(
    sources: Sequence[Source], pods_by_source: Mapping[str, Sequence[PodInfo]],
    targets: Sequence[Target], target_pods: Mapping[str, TargetPods], *,
    timeout: float, timeouts: Mapping[str, float] | None = None, attempts: int = 1,
    per_pod: bool = False, only: Mapping[str, set[str]] | None = None, warmup: float = 0.0,
    first_index: int = 0,
) -> list[ProbePlan]:
    """One plan per identity. `only` restricts a source to some targets (re-probes).

    Indices start at `first_index`: they name the probe Jobs, so later rounds of a run must
    continue the numbering.
    """
    checks, refs = build_checks(targets, target_pods, timeouts or {}, timeout)
    plans: list[ProbePlan] = []
    for ident, pod, names in group_identities(sources, pods_by_source, per_pod=per_pod):
        mine = checks
        if only is not None:
            wanted = set().union(*(only.get(n, set()) for n in names))
            if not wanted:
                continue
            mine = [c for c in checks if refs[c["id"]].target in wanted]
        plans.append(ProbePlan(index=first_index + len(plans), identity=ident, sources=tuple(names),
                               example_pod=pod, checks=tuple(mine),
                               refs={c["id"]: refs[c["id"]] for c in mine},
                               timeout=timeout, attempts=attempts, warmup=warmup))
    return plans


AGENT_PATH = Path(__file__).with_name("agent.py")


def agent_source() -> str:
    """The agent's source, which travels inline in the probe pod's command."""
    return AGENT_PATH.read_text(encoding="utf-8")


ARG_CHUNK = 64 * 1024  # Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN)


def split_argument(text: str, size: int = ARG_CHUNK) -> list[str]:
    """Split a long argument into pieces the kernel accepts; the agent joins them again."""
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


_NAME_SAFE = re.compile(r"[^a-z0-9-]")


def job_name(run_id: str, index: int) -> str:
    """`netprobe-<run>-<index>`: a valid DNS-1123 name."""
    return _NAME_SAFE.sub("-", f"netprobe-{run_id}-{index}".lower())[:63]


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSettings:
    """How probe pods are built (CLI flags)."""

    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    same_node: bool = False
    ttl_seconds: int = 60
    startup_timeout: float = 120.0
    cpu_request: str = "10m"
    memory_request: str = "32Mi"
    memory_limit: str = "128Mi"


def probe_job(plan: ProbePlan, run_id: str, settings: PodSettings) -> dict[str, Any]:
    """The Job that owns the probe pod (DESIGN: "The probe pod contract")."""
    ident = plan.identity
    labels = {**dict(ident.labels), RUN_LABEL: run_id}
    security = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": PROBE_UID,
        "runAsGroup": PROBE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
        "privileged": False,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": PROBE_UID, "runAsGroup": PROBE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": "agent",
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            # The plan travels as data in argv; no shell ever sees it.
            "command": ["python3", "-c", agent_source(), *split_argument(
                json.dumps(plan.agent_plan(), separators=(",", ":")))],
            "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "resources": {
                "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                "limits": {"memory": settings.memory_limit},
            },
            "securityContext": security,
            # Never Ready: a readiness probe that never gets to run keeps the pod out of
            # every Service's ready endpoints, even one whose selector its labels match.
            "readinessProbe": {"exec": {"command": ["false"]}, "initialDelaySeconds": 86400,
                               "periodSeconds": 3600},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
    }
    if ident.service_account:
        pod_spec["serviceAccountName"] = ident.service_account
    if settings.same_node and plan.example_pod.node:
        pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [plan.example_pod.node]}]}]}}}
        if plan.example_pod.tolerations:
            pod_spec["tolerations"] = [dict(t) for t in plan.example_pod.tolerations]
    deadline = int(settings.startup_timeout + plan.budget_s)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run_id, plan.index),
            "namespace": ident.namespace,
            "labels": {RUN_LABEL: run_id, **MANAGED_BY},
            "annotations": {PLAN_ANNOTATION: str(plan.index),
                            "netprobe.io/sources": ",".join(plan.sources)},
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {PLAN_ANNOTATION: str(plan.index)}},
                "spec": pod_spec,
            },
        },
    }


def ephemeral_container(plan: ProbePlan, run_id: str, settings: PodSettings) -> dict[str, Any]:
    """The ephemeral container `--via ephemeral` injects into the real source pod."""
    job = probe_job(plan, run_id, settings)
    container = dict(job["spec"]["template"]["spec"]["containers"][0])
    container["name"] = f"netprobe-{run_id}"[:63]
    for unsupported in ("resources", "readinessProbe"):  # not allowed on ephemeral containers
        container.pop(unsupported, None)
    return container


# ------------------------------------------------------------------------------ collect


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One source × target after a probe round."""

    verdict: Verdict
    detail: str
    elapsed_ms: int | None = None
    attempts: int = 1
    history: tuple[Verdict, ...] = ()
    pods: tuple[tuple[str, Verdict], ...] = ()


def parse_agent_output(text: str) -> dict[str, dict[str, Any]]:
    """{check id: result} from the agent's JSON; ValueError saying what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text.strip()[:120] or "<empty>"
        raise ValueError(f"agent output is not JSON ({exc.msg}): {snippet}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("results"), list):
        raise ValueError("agent output has the wrong shape or version (expected version 1 with results)")
    out = {}
    for r in doc["results"]:
        if not isinstance(r, dict) or "id" not in r or "verdict" not in r:
            raise ValueError("agent result without id/verdict")
        Verdict(r["verdict"])  # ValueError on an unknown verdict
        out[str(r["id"])] = r
    return out


def observe(plan: ProbePlan, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Observation]:
    """{target name: Observation} for one plan's agent results."""
    by_target: dict[str, list[tuple[CheckRef, Mapping[str, Any] | None]]] = {}
    for cid, ref in plan.refs.items():
        by_target.setdefault(ref.target, []).append((ref, results.get(cid)))
    out = {}
    for target, entries in by_target.items():
        verdicts, details, pods = [], [], []
        elapsed, attempts = 0, 1
        history: tuple[Verdict, ...] = ()
        for ref, r in entries:
            if r is None:
                v, d = Verdict.ERROR, "the agent returned no result for this check"
            else:
                v, d = Verdict(r["verdict"]), str(r.get("detail", ""))
                elapsed = max(elapsed, int(r.get("elapsed_ms") or 0))
                attempts = max(attempts, int(r.get("attempts") or 1))
                if len(entries) == 1:
                    history = tuple(Verdict(h) for h in r.get("history", [v]))
            verdicts.append(v)
            if ref.pod:
                pods.append((ref.pod, v))
                details.append(f"{ref.pod}: {v}" + (f" ({d})" if v is not Verdict.ALLOWED else ""))
            else:
                details.append(d)
        out[target] = Observation(verdict=worst(verdicts), detail="; ".join(details),
                                  elapsed_ms=elapsed, attempts=attempts, history=history,
                                  pods=tuple(pods))
    return out


def merge_observations(observations: Iterable[tuple[str, Observation]]) -> Observation:
    """Several identities of one source → one cell: the worst verdict, every detail."""
    items = list(observations)
    if len(items) == 1:
        return items[0][1]
    verdicts = [o.verdict for _, o in items]
    return Observation(
        verdict=worst(verdicts),
        detail="; ".join(f"[{who}] {o.detail}" for who, o in items),
        elapsed_ms=max((o.elapsed_ms or 0) for _, o in items),
        attempts=max(o.attempts for _, o in items),
        pods=tuple(p for _, o in items for p in o.pods),
    )

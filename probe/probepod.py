"""The probe pod's manifest: the Job that owns it, or the ephemeral container of `--via ephemeral`.

Built here, pure, so that the DESIGN contract (identity, never Ready, restricted security
context, Job ownership) is checked by unit tests before a cluster ever sees it.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agent_protocol import encode_plan
from .plan import ProbePlan
from .pods import RUN_LABEL

PLAN_ANNOTATION = "netprobe.io/plan"
MANAGED_BY = {"app.kubernetes.io/managed-by": "netprobe"}
DEFAULT_IMAGE = "python:3.12-alpine"
PROBE_UID = 65534  # "nobody": the official python images run as root, runAsNonRoot needs a uid

AGENT_PATH = Path(__file__).with_name("agent.py")
AGENT_ANNOTATION = "netprobe.io/agent-sha256"


def agent_source() -> str:
    """probe/agent.py as written: what `agent_program` is made from."""
    return AGENT_PATH.read_text(encoding="utf-8")


def agent_program() -> str:
    """The agent exactly as the probe pod runs it: probe/agent.py without docstrings and comments.

    Same code, same behaviour (tests run this text, on python 3.8 syntax); only what a reader
    needs and the interpreter does not is gone.
    """
    # Made once, under a lock: Jobs are built in several threads at once, and ast.parse in two
    # threads at the same time fails on CPython 3.11 ("AST constructor recursion depth mismatch").
    with _PROGRAM_LOCK:
        return _agent_program()


_PROGRAM_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _agent_program() -> str:
    return minified(agent_source())


def minified(source: str) -> str:
    """Python source without docstrings, comments and annotations (ast round trip): the same
    program, as long as it says `from __future__ import annotations` (annotations never run)."""
    import ast

    tree = ast.parse(source)
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body)
    for node in ast.walk(tree):
        if lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None:
                    arg.annotation = None
        if lazy:  # `x: T = v` -> `x = v`; a bare `x: T` declares nothing at run time
            for field in ("body", "orelse", "finalbody"):
                stmts = getattr(node, field, None)
                if isinstance(stmts, list) and stmts:
                    stmts[:] = [ast.copy_location(ast.Assign(targets=[n.target], value=n.value), n)
                                if isinstance(n, ast.AnnAssign) and n.value is not None else n
                                for n in stmts if not (isinstance(n, ast.AnnAssign) and n.value is None)]
                    if not stmts and field == "finalbody":
                        stmts.append(ast.Pass())
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            del body[0]
        if not body and not isinstance(node, ast.Module):
            body.append(ast.Pass())
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


@functools.lru_cache(maxsize=1)
def agent_bootstrap() -> str:
    """The `python3 -c` argument that runs `agent_program`, sent zlib-compressed in base64.

    Every watcher of pods (kubelet, the CNI's agent, controllers, monitoring) receives the whole
    pod on every status change, and N probe pods start together: the 58 KB of readable source
    in each pod would make the pods four times as large as these 14 KB do. zlib and binascii are C
    modules of every CPython, so unpacking costs the pod nothing measurable. The annotation
    AGENT_ANNOTATION names the program's SHA-256; `python3 -m probe.probepod` prints it.
    """
    return bootstrap(agent_program())


def bootstrap(program: str) -> str:
    """A `python3 -c` argument that runs `program`, carried zlib-compressed in base64."""
    import base64
    import zlib

    packed = base64.b64encode(zlib.compress(program.encode("utf-8"), 9)).decode("ascii")
    return f"import zlib,binascii;exec(zlib.decompress(binascii.a2b_base64('{packed}')))"


@functools.lru_cache(maxsize=1)
def agent_digest() -> str:
    """SHA-256 of `agent_program`, hex: which agent a probe pod runs."""
    import hashlib

    return hashlib.sha256(agent_program().encode("utf-8")).hexdigest()


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
    # ttlSecondsAfterFinished: removes a finished Job even when netprobe is killed before its
    # cleanup. None: no TTL (--keep). Raised to MIN_TTL_S: the log of a result too large for
    # the termination message is read after the pod finished.
    ttl_seconds: int | None = 60
    startup_timeout: float = 120.0
    cpu_request: str = "10m"
    memory_request: str = "32Mi"
    memory_limit: str = "128Mi"


MIN_TTL_S = 30


def ephemeral_container_name(run_id: str, index: int) -> str:
    """`netprobe-<run>-<plan index>`: new for every plan of every round, since a pod's
    ephemeral containers can never be removed and their names must stay unique."""
    return job_name(run_id, index)


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
            "command": ["python3", "-c", agent_bootstrap(), *split_argument(
                encode_plan(plan))],
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
    ttl = {} if settings.ttl_seconds is None else {
        "ttlSecondsAfterFinished": max(settings.ttl_seconds, MIN_TTL_S)}
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
            **ttl,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {PLAN_ANNOTATION: str(plan.index), AGENT_ANNOTATION: agent_digest()}},
                "spec": pod_spec,
            },
        },
    }


def ephemeral_container(plan: ProbePlan, run_id: str, settings: PodSettings) -> dict[str, Any]:
    """The ephemeral container `--via ephemeral` injects into the real source pod."""
    job = probe_job(plan, run_id, settings)
    container = dict(job["spec"]["template"]["spec"]["containers"][0])
    container["name"] = ephemeral_container_name(run_id, plan.index)
    for unsupported in ("resources", "readinessProbe"):  # not allowed on ephemeral containers
        container.pop(unsupported, None)
    return container



if __name__ == "__main__":  # `python3 -m probe.probepod`: the program a probe pod runs, and its digest
    import sys

    sys.stdout.write(agent_program())
    sys.stderr.write(f"# {AGENT_ANNOTATION}: {agent_digest()}\n")

"""A small Kubernetes API server over real HTTP, for driving the real `kubernetes` client.

Speaks the part of the REST API netprobe uses: version discovery; list (with `limit` and
`continue` pages) and watch (chunked JSON lines with ADDED/MODIFIED/DELETED/BOOKMARK/ERROR
events) of pods, jobs, events, services, endpoints, namespaces and networkpolicies; create, get, delete
and deletecollection by label; pod logs; the `pods/{name}/ephemeralcontainers` subresource
of Kubernetes >= 1.25 with its validation (unique names, no removal, forbidden fields).

A job controller and a kubelet stand in for the real ones: a created Job gets a pod, and the
pod's container (netprobe's inline agent) runs as a local process, so results are real.

Faults are scripted per request (`StubAPI.fault`): an HTTP status with headers (429 with
Retry-After, 5xx, 404), a response lost after the server committed the request, a slow
response, an ERROR 410 event in the middle of a watch stream.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

TERMINATION_LIMIT = 4096  # the kubelet's cap on a termination message

# (API prefix, resource) for every collection the stub serves
_GROUPS = {"api/v1": {"pods", "events", "services", "endpoints", "namespaces"},
           "apis/batch/v1": {"jobs"},
           "apis/networking.k8s.io/v1": {"networkpolicies"}}
_KINDS = {"pods": "Pod", "events": "Event", "services": "Service", "endpoints": "Endpoints", "namespaces": "Namespace",
          "jobs": "Job", "networkpolicies": "NetworkPolicy"}
_API_VERSIONS = {"jobs": "batch/v1", "networkpolicies": "networking.k8s.io/v1"}
# Fields the API server refuses on an ephemeral container (validation.go, validateEphemeralContainers)
_EPHEMERAL_FORBIDDEN = ("ports", "resources", "lifecycle", "livenessProbe", "readinessProbe",
                        "startupProbe", "resizePolicy", "restartPolicy")


@dataclass
class Fault:
    """One scripted misbehaviour, applied to the next `times` requests that match."""

    method: str
    path: str  # a regular expression searched in the request path
    action: str  # "status" | "lost" | "slow" | "watch-error-410"
    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = "injected fault"
    delay: float = 0.0  # "slow": seconds before the response
    after_events: int = 0  # "watch-error-410": events sent before the ERROR event
    times: int = 1
    query: str = ""  # a regular expression searched in the raw query string
    hits: int = 0


@dataclass
class Request:
    """One request as the stub saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_watch(self) -> bool:
        return parse_bool(self.query.get("watch"))


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.headers = dict(headers or {})


def parse_bool(text: str | None) -> bool:
    """Go's strconv.ParseBool, as the API server reads boolean query parameters (older clients send "True")."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def status_doc(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def match_labels(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, Mapping) else {}
    return value if isinstance(value, str) else ""


def match_fields(selector: str, obj: Mapping[str, Any]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if _field(obj, key) != value:
            return False
    return True


class StubAPI:
    """The server state, its faults, and the HTTP server (a context manager)."""

    def __init__(self, *, version: tuple[int, int] = (1, 31), page_limit_cap: int = 0,
                 job_controller: bool = True, kubelet: str = "run", kubelet_delay: float = 0.0,
                 kubelet_report_delay: float = 0.0, ttl_controller: bool = True) -> None:
        self.version = version
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (resource, ns, name) -> obj
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, type, resource, obj)
        self.rv = 100
        self.compacted = 0  # a watch from a resourceVersion below this one gets 410 Gone
        self.logs: dict[tuple[str, str, str], str] = {}  # (ns, pod, container) -> log, written as it runs
        self.running: set[tuple[str, str, str]] = set()  # containers whose log may still grow
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.job_controller = job_controller
        self.kubelet = kubelet  # "run": run containers locally | "hold": leave pods Pending
        self.kubelet_delay = kubelet_delay  # seconds before a pod's container starts
        # seconds between a container's exit and its terminated status (a real kubelet sees the
        # exit at its next pod relist, every second)
        self.kubelet_report_delay = kubelet_report_delay
        self.ttl_controller = ttl_controller
        self.page_limit_cap = page_limit_cap
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._names = itertools.count()
        self._continues: dict[str, tuple[list[dict[str, Any]], int, str]] = {}
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> StubAPI:
        stub = self

        class Handler(_Handler):
            api = stub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for t in self._threads:
            t.join(timeout=10)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, directory: Path) -> Path:
        """A kubeconfig file pointing at this server (plain HTTP, a dummy bearer token)."""
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            "users": [{"name": "stub", "user": {"token": "stub-token"}}]}))
        return path

    def fault(self, method: str, path: str, action: str, **kwargs: Any) -> Fault:
        """Script a fault for the next matching request(s)."""
        f = Fault(method=method, path=path, action=action, **kwargs)
        with self._cond:
            self.faults.append(f)
        return f

    def requests_to(self, method: str, path_re: str, *, watch: bool | None = None) -> list[Request]:
        """The requests seen so far whose method and path match."""
        with self._cond:
            return [r for r in self.requests if r.method == method and re.search(path_re, r.path)
                    and (watch is None or r.is_watch == watch)]

    # ------------------------------------------------------------------ the store

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, kind: str, resource: str, obj: dict[str, Any]) -> None:
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self.events.append((rv, kind, resource, copy.deepcopy(obj)))
        self._cond.notify_all()

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (from a test or a controller); emits ADDED/MODIFIED."""
        with self._cond:
            return self._put(resource, obj)

    def _put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "") if resource != "namespaces" else ""
        key = (resource, ns, meta["name"])
        existed = key in self.objects
        if not existed:
            meta.setdefault("uid", f"uid-{next(self._names)}")
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        obj.setdefault("kind", _KINDS[resource])
        obj.setdefault("apiVersion", _API_VERSIONS.get(resource, "v1"))
        self.objects[key] = obj
        self._record("MODIFIED" if existed else "ADDED", resource, obj)
        return obj

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            obj = self.objects.get((resource, ns, name))
            return copy.deepcopy(obj) if obj else None

    def update(self, resource: str, ns: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change a stored object in place (a status update); emits MODIFIED."""
        with self._cond:
            obj = self.objects.get((resource, ns, name))
            if obj is None:
                return
            change(obj)
            self._record("MODIFIED", resource, obj)

    def delete(self, resource: str, ns: str, name: str) -> bool:
        with self._cond:
            return self._delete(resource, ns, name)

    def _delete(self, resource: str, ns: str, name: str) -> bool:
        obj = self.objects.pop((resource, ns, name), None)
        if obj is None:
            return False
        self._record("DELETED", resource, obj)
        if resource == "jobs":  # background propagation: the garbage collector takes the pods
            uid = obj["metadata"]["uid"]
            for key, pod in list(self.objects.items()):
                if key[0] == "pods" and any(o.get("uid") == uid for o in
                                            pod["metadata"].get("ownerReferences") or []):
                    self._delete(*key)
        return True

    def bookmark(self) -> None:
        """Send a BOOKMARK to every watch that asked for them."""
        with self._cond:
            rv = self._next_rv()
            self.events.append((rv, "BOOKMARK", "*", {"metadata": {"resourceVersion": str(rv)}}))
            self._cond.notify_all()

    def expire(self) -> None:
        """Compact history: every resourceVersion before the current one is too old to watch from."""
        with self._cond:
            self.compacted = self.rv

    def pod(self, name: str, namespace: str = "default", labels: Mapping[str, str] | None = None,
            ip: str = "10.0.0.1", **spec: Any) -> dict[str, Any]:
        """Add a running pod, padded the way a real one is (managedFields, a full status)."""
        return self.put("pods", realistic_pod(name, namespace, labels or {}, ip, **spec))

    # ------------------------------------------------------------------ controllers

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _job_created(self, job: dict[str, Any]) -> None:
        if not self.job_controller:
            return
        meta = job["metadata"]
        template = copy.deepcopy(job["spec"]["template"])
        pod = {"metadata": {**template.get("metadata", {}), "name": f"{meta['name']}-{next(self._names):05d}",
                            "namespace": meta["namespace"],
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True}]},
               "spec": template["spec"],
               "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}
        pod["metadata"].setdefault("labels", {})["job-name"] = meta["name"]
        pod = self._put("pods", pod)
        if self.kubelet == "run":
            self._spawn(self._run_pod, meta["namespace"], pod["metadata"]["name"], meta["name"])

    def _execute(self, container: Mapping[str, Any], key: tuple[str, str, str]) -> tuple[int, str, str]:
        """Run a container's command locally, its output logged under `key` line by line as it comes
        (stdout and stderr together, as the kubelet serves a log): (exit code, log, termination message)."""
        with tempfile.TemporaryDirectory() as tmp:
            term = os.path.join(tmp, "termination-log")
            with self._cond:
                self.logs[key] = ""
                self.running.add(key)
            try:
                with subprocess.Popen(list(container["command"]) + list(container.get("args") or []),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={"NETPROBE_TERMINATION_LOG": term,
                                           "PATH": os.environ.get("PATH", "")}) as proc:
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        with self._cond:
                            self.logs[key] += line
                            self._cond.notify_all()
                    proc.wait(timeout=120)
            finally:
                with self._cond:
                    self.running.discard(key)
                    self._cond.notify_all()
            message = Path(term).read_text()[:TERMINATION_LIMIT] if os.path.exists(term) else ""
        with self._cond:
            log = self.logs[key]
        if not message and proc.returncode != 0 and \
                container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join(log.splitlines()[-80:])[-2048:]
        return proc.returncode, log, message

    def _run_pod(self, ns: str, name: str, job: str) -> None:
        if self._stopping.wait(self.kubelet_delay):
            return
        pod = self.get("pods", ns, name)
        if pod is None:
            return
        container = pod["spec"]["containers"][0]

        def running(obj: dict[str, Any]) -> None:
            obj["status"].update(phase="Running", podIP="10.244.0.99", containerStatuses=[
                {"name": container["name"], "ready": False, "state": {"running": {"startedAt": "now"}}}])

        self.update("pods", ns, name, running)
        code, _, message = self._execute(container, (ns, name, container["name"]))
        if self._stopping.wait(self.kubelet_report_delay):
            return

        def terminated(obj: dict[str, Any]) -> None:
            obj["status"].update(phase="Succeeded" if code == 0 else "Failed", containerStatuses=[
                {"name": container["name"], "ready": False, "state": {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}}}])

        self.update("pods", ns, name, terminated)
        job_obj = self.get("jobs", ns, job)
        if job_obj is None:
            return
        self.update("jobs", ns, job, lambda j: j.setdefault("status", {}).update(
            succeeded=int(code == 0), failed=int(code != 0)))
        ttl = job_obj["spec"].get("ttlSecondsAfterFinished")
        # the TTL controller, for short TTLs only (a test does not wait a minute)
        if self.ttl_controller and ttl is not None and ttl <= 5 and not self._stopping.wait(ttl):
            self.delete("jobs", ns, job)

    def _run_ephemeral(self, ns: str, pod: str, container: dict[str, Any]) -> None:
        if self._stopping.wait(self.kubelet_delay):
            return
        code, _, message = self._execute(container, (ns, pod, container["name"]))

        def terminated(obj: dict[str, Any]) -> None:
            statuses = obj.setdefault("status", {}).setdefault("ephemeralContainerStatuses", [])
            statuses.append({"name": container["name"], "ready": False, "state": {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}}})

        self.update("pods", ns, pod, terminated)

    # ------------------------------------------------------------------ request handling

    def take_fault(self, method: str, path: str, query: str) -> Fault | None:
        with self._cond:
            for f in self.faults:
                if f.hits < f.times and f.method == method and re.search(f.path, path) \
                        and re.search(f.query, query):
                    f.hits += 1
                    return f
        return None

    def route(self, method: str, path: str) -> tuple[str, str, str, str]:
        """(resource, namespace, name, subresource) of a request path."""
        for prefix, resources in _GROUPS.items():
            if not path.startswith(f"/{prefix}/"):
                continue
            parts = path[len(prefix) + 2:].split("/")
            ns = ""
            if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] in resources:
                ns, parts = parts[1], parts[2:]
            if parts[0] in resources:
                return parts[0], ns, parts[1] if len(parts) > 1 else "", "/".join(parts[2:])
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({method} {path})")

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> dict[str, Any] | str | LogFollow:
        if path.rstrip("/") == "/version":
            major, minor = self.version
            return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0"}
        resource, ns, name, sub = self.route(method, path)
        with self._cond:
            if method == "GET" and not name:
                return self._list(resource, ns, query)
            if method == "GET" and sub == "log" and parse_bool(query.get("follow")):
                return self._follow(ns, name, query)
            if method == "GET" and sub == "log":
                return self._log(ns, name, query)
            if method == "GET" and not sub:
                obj = self.objects.get((resource, ns, name))
                if obj is None:
                    raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
                return copy.deepcopy(obj)
            if method == "POST" and not name:
                return self._create(resource, ns, body)
            if method == "DELETE" and name:
                if not self._delete(resource, ns, name):
                    raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
                return status_doc(200, "", "deleted") | {"status": "Success"}
            if method == "DELETE":
                selector = query.get("labelSelector", "")
                for key, obj in list(self.objects.items()):
                    if key[0] == resource and (not ns or key[1] == ns) and \
                            match_labels(selector, obj["metadata"].get("labels") or {}):
                        self._delete(*key)
                return {"kind": f"{_KINDS[resource]}List", "apiVersion": "v1", "metadata": {}, "items": []}
            if method == "PATCH" and resource == "pods" and sub == "ephemeralcontainers":
                return self._patch_ephemeral(ns, name, body)
        raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not supported by the stub")

    def _list(self, resource: str, ns: str, query: dict[str, str]) -> dict[str, Any]:
        token = query.get("continue", "")
        if token:
            if token not in self._continues:
                raise ApiError(410, "Expired", "The provided continue parameter is too old")
            items, offset, rv = self._continues.pop(token)
        else:
            labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
            items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                     if r == resource and (not ns or n == ns)
                     and match_labels(labels, o["metadata"].get("labels") or {}) and match_fields(fields, o)]
            offset, rv = 0, str(self.rv)
        limit = int(query.get("limit") or 0) or len(items) or 1
        if self.page_limit_cap:
            limit = min(limit, self.page_limit_cap)
        page = items[offset:offset + limit]
        meta: dict[str, Any] = {"resourceVersion": rv}
        if offset + limit < len(items):
            next_token = f"c{next(self._names)}"
            self._continues[next_token] = (items, offset + limit, rv)
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(items) - offset - limit
        return {"kind": f"{_KINDS[resource]}List", "apiVersion": _API_VERSIONS.get(resource, "v1"),
                "metadata": meta, "items": page}

    def _follow(self, ns: str, name: str, query: dict[str, str]) -> LogFollow:
        """A followed log (follow=true): what is there, then each line as it is written, until the
        container exits; the same errors as a plain read before it started."""
        self._log(ns, name, query)
        pod = self.objects[("pods", ns, name)]
        return LogFollow((ns, name, query.get("container") or pod["spec"]["containers"][0]["name"]))

    def follow_lines(self, key: tuple[str, str, str]) -> Iterator[str]:
        sent = 0
        while not self._stopping.is_set():
            with self._cond:
                log, done = self.logs.get(key, ""), key not in self.running
                if len(log) == sent and not done:
                    self._cond.wait(0.2)
                    continue
            if len(log) > sent:
                yield log[sent:]
                sent = len(log)
            elif done:
                return

    def _log(self, ns: str, name: str, query: dict[str, str]) -> str:
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        container = query.get("container") or pod["spec"]["containers"][0]["name"]
        log = self.logs.get((ns, name, container))
        if log is None:
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start')
        tail = query.get("tailLines")
        if tail:
            log = "".join(log.splitlines(keepends=True)[-int(tail):])
        return log

    def _create(self, resource: str, ns: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        name = body["metadata"]["name"]
        if body["metadata"].get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the request")
        if (resource, ns, name) in self.objects:
            raise ApiError(409, "AlreadyExists", f'{resource}.batch "{name}" already exists')
        body["metadata"]["namespace"] = ns
        obj = self._put(resource, body)
        if resource == "jobs":
            self._job_created(obj)
        return copy.deepcopy(obj)

    def _patch_ephemeral(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if self.version < (1, 25):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        existing = pod["spec"].get("ephemeralContainers") or []
        patched = {c["name"]: c for c in copy.deepcopy(existing)}
        for c in (body.get("spec") or {}).get("ephemeralContainers") or []:  # strategic merge on name
            patched[c["name"]] = {**patched.get(c["name"], {}), **c}
        new = list(patched.values())
        errors = []
        for i, c in enumerate(existing):
            if patched.get(c["name"]) != c:
                errors.append(f"spec.ephemeralContainers[{i}]: Forbidden: existing ephemeral containers "
                              f'"{c["name"]}" may not be changed')
        taken = {c["name"] for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])}
        for i, c in enumerate(new[len(existing):], start=len(existing)):
            if c["name"] in taken:
                errors.append(f'spec.ephemeralContainers[{i}].name: Duplicate value: "{c["name"]}"')
            for f in _EPHEMERAL_FORBIDDEN:
                if f in c:
                    errors.append(f"spec.ephemeralContainers[{i}].{f}: Forbidden: cannot be set for an "
                                  "Ephemeral Container")
        if errors:
            raise ApiError(422, "Invalid", f'Pod "{name}" is invalid: ' + ", ".join(errors))
        if new == existing:
            return copy.deepcopy(pod)
        pod["spec"]["ephemeralContainers"] = new
        self._record("MODIFIED", "pods", pod)
        for c in new[len(existing):]:
            self._spawn(self._run_ephemeral, ns, name, copy.deepcopy(c))
        return copy.deepcopy(pod)

    def watch_events(self, resource: str, ns: str, query: dict[str, str],
                     fault: Fault | None) -> Iterator[dict[str, Any]]:
        """The events of a watch request, as they happen, until timeoutSeconds."""
        timeout = float(query.get("timeoutSeconds") or 1800)
        end = time.monotonic() + timeout
        labels = query.get("labelSelector", "")
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))
        with self._cond:
            since = int(query.get("resourceVersion") or self.rv)
            expired = since < self.compacted
        if expired:
            yield {"type": "ERROR", "object": status_doc(410, "Expired", f"too old resource version: "
                                                                      f"{since} ({self.compacted})")}
            return
        sent = 0
        while not self._stopping.is_set():
            with self._cond:
                pending = [e for e in self.events if e[0] > since]
                if not pending:
                    left = end - time.monotonic()
                    if left <= 0:
                        return
                    self._cond.wait(min(left, 0.2))
                    continue
            for rv, kind, res, obj in pending:
                since = rv
                if kind == "BOOKMARK":
                    if bookmarks:
                        yield {"type": "BOOKMARK", "object": {"kind": _KINDS[resource], "apiVersion": "v1",
                                                              "metadata": obj["metadata"]}}
                    continue
                meta = obj["metadata"]
                if res != resource or (ns and meta.get("namespace") != ns) or \
                        not match_labels(labels, meta.get("labels") or {}):
                    continue
                if fault is not None and fault.action == "watch-error-410" and sent >= fault.after_events:
                    self.expire()
                    yield {"type": "ERROR", "object": status_doc(410, "Expired", "too old resource version")}
                    return
                sent += 1
                yield {"type": kind, "object": obj}


@dataclass(frozen=True)
class LogFollow:
    """A followed log: the handler streams it (see StubAPI.follow_lines)."""

    key: tuple[str, str, str]


class _Handler(BaseHTTPRequestHandler):
    api: StubAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, payload: dict[str, Any] | str, headers: Mapping[str, str] | None = None) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        api = self.api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        request = Request(method=self.command, path=url.path, query=query, body=body,
                          headers={k.lower(): v for k, v in self.headers.items()})
        with api._cond:
            api.requests.append(request)
        fault = api.take_fault(self.command, url.path, url.query)
        if fault is not None and fault.action == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.action == "status":
            self._send(fault.status, status_doc(fault.status, "Injected", fault.message), fault.headers)
            return
        try:
            if request.is_watch and self.command == "GET":
                resource, ns, _, _ = api.route(self.command, url.path)
                self._stream(api.watch_events(resource, ns, query, fault))
                return
            result = api.handle(self.command, url.path, query, body)
            if isinstance(result, LogFollow):
                self._stream_text(api.follow_lines(result.key))
                return
        except ApiError as exc:
            self._send(exc.status, status_doc(exc.status, exc.reason, exc.message), exc.headers)
            return
        if fault is not None and fault.action == "lost":  # committed, but the answer never arrives
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(201 if self.command == "POST" else 200, result)

    def _stream_text(self, pieces: Iterator[str]) -> None:
        self._chunked("text/plain", (piece.encode() for piece in pieces))

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        self._chunked("application/json", (json.dumps(event).encode() + b"\n" for event in events))

    def _chunked(self, content_type: str, chunks: Iterator[bytes]) -> None:
        """A streamed 200 response, one HTTP chunk per item, flushed as each comes."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for data in chunks:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve


def realistic_pod(name: str, namespace: str, labels: Mapping[str, str], ip: str, **spec: Any) -> dict[str, Any]:
    """A Running pod with what a real API server returns around the few fields netprobe reads."""
    containers = spec.pop("containers", None) or [{
        "name": "app", "image": "registry.example/app:1.2.3", "ports": [{"name": "http", "containerPort": 8080,
                                                                         "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{i}", "value": "x" * 40} for i in range(10)],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                          "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"}]
    managed = [{"manager": m, "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {f"f:{k}": {} for k in labels}},
                                                       "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                                                           ".": {}, "f:image": {}, "f:env": {}}}},
                                                       "f:status": {"f:conditions": {}, "f:podIP": {}}}}
               for m in ("kube-controller-manager", "kubelet")]
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "managedFields": managed,
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-rs",
                                          "uid": "0000", "controller": True}]},
        "spec": {"containers": containers, "serviceAccountName": spec.pop("serviceAccountName", "default"),
                 "nodeName": spec.pop("nodeName", "node-1"), "restartPolicy": "Always",
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}],
                 "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}], **spec},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.1",
                   "qosClass": "Burstable", "startTime": "2026-01-01T00:00:00Z",
                   "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "image": "app:1.2.3",
                                          "imageID": "sha256:" + "0" * 64, "containerID": "containerd://" + "1" * 64,
                                          "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]},
    }

"""The only module that talks to the Kubernetes API (and the only importer of `kubernetes`).

Everything the rest of netprobe needs from a cluster is the `Cluster` protocol below;
`KubeCluster` implements it with the official client's ApiClient (kubeconfig, auth, TLS,
proxies, token refresh) and a small request layer of our own (`API_PATHS`, `_request`) instead
of the generated API classes: responses are read as plain JSON, so the client's models never get
between us and an API server of another version, and the seconds of importing them are not spent.

Errors are translated in one place (`_translate`): 429/5xx/dropped connections become
TransientError (retried with tenacity, honouring Retry-After), 401/403 PermissionDenied,
anything else ClusterError. No kubernetes or urllib3 exception leaves this module.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_attempt, stop_after_delay

from .errors import ClusterError, InputError, PermissionDenied, TransientError
from .pods import RUN_LABEL, PodInfo, pod_info
from .probepod import PLAN_ANNOTATION

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbePodState:
    """A probe pod as the watch last saw it."""

    name: str
    namespace: str
    plan_index: int | None
    phase: str = "Pending"
    reason: str = ""  # pod-level reason (DeadlineExceeded, Evicted, ...)
    message: str = ""
    waiting_reason: str = ""
    waiting_message: str = ""
    exit_code: int | None = None  # set once the agent container terminated
    terminated_reason: str = ""
    termination_message: str = ""
    unschedulable: str = ""
    deleted: bool = False
    deleting: bool = False  # deletionTimestamp set: evicted, preempted or deleted by someone
    # A line the agent wrote to its log while it ran, which may be its whole result: read from
    # the log stream before the kubelet reports the container finished (see watch_probe_pods).
    log_line: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """A netprobe Job found in the cluster."""

    name: str
    namespace: str
    run_id: str
    created: float  # epoch seconds
    active: int = 0


class Cluster(Protocol):
    """What netprobe needs from a Kubernetes cluster."""

    api_calls: int

    def list_pods(self, namespace: str | None, label_selector: str = "") -> list[PodInfo]: ...

    def list_namespaces(self) -> list[dict[str, Any]]: ...

    def list_network_policies(self, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def list_endpoints(self, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def create_job(self, manifest: Mapping[str, Any]) -> None: ...

    def watch_probe_pods(self, namespace: str | None, run_id: str,
                         until: Callable[[], bool], deadline: float) -> Iterator[ProbePodState]: ...

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str: ...

    def job_events(self, namespace: str, job: str) -> list[str]: ...

    def delete_run(self, namespace: str, run_id: str) -> None: ...

    def delete_probe(self, namespace: str, job: str, pod: str) -> None: ...

    def list_runs(self, namespace: str | None = None) -> list[JobInfo]: ...

    def add_ephemeral_container(self, namespace: str, pod: str, container: Mapping[str, Any]) -> None: ...

    def server_version(self) -> tuple[int, int]: ...

    def ephemeral_state(self, namespace: str, pod: str, container: str) -> ProbePodState | None: ...

    def list_custom_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]] | None: ...


# ---------------------------------------------------------------------- pure conversions


def probe_pod_state(obj: Mapping[str, Any], deleted: bool = False) -> ProbePodState:
    """A ProbePodState from a probe Pod's JSON."""
    meta, status = obj.get("metadata", {}), obj.get("status", {}) or {}
    annotations = meta.get("annotations") or {}
    try:
        index: int | None = int(annotations.get(PLAN_ANNOTATION, ""))
    except ValueError:
        index = None
    waiting: dict[str, Any] = {}
    terminated: dict[str, Any] = {}
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or waiting
        terminated = state.get("terminated") or terminated
    unschedulable = ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            unschedulable = cond.get("message") or cond.get("reason") or "unschedulable"
    return ProbePodState(
        name=meta.get("name", ""), namespace=meta.get("namespace", ""), plan_index=index,
        phase=status.get("phase", "Pending"), reason=status.get("reason") or "",
        message=status.get("message") or "",
        waiting_reason=waiting.get("reason", ""), waiting_message=waiting.get("message", ""),
        exit_code=terminated.get("exitCode") if terminated else None,
        terminated_reason=terminated.get("reason", "") if terminated else "",
        termination_message=terminated.get("message", "") if terminated else "",
        unschedulable=unschedulable, deleted=deleted, deleting=bool(meta.get("deletionTimestamp")),
    )


def _parse_time(text: str) -> float:
    import datetime

    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return 0.0


# ------------------------------------------------------------------------- retry policy


def _wait(state: RetryCallState) -> float:
    """Retry-After when the server gave one, else exponential backoff (0.5 s .. 8 s)."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return min(max(exc.retry_after, 0.0), 30.0)
    return float(min(8.0, 0.5 * 2 ** (state.attempt_number - 1)))


RETRY_ATTEMPTS = 6
RETRY_BUDGET_S = 60.0  # NETPROBE_API_RETRY_BUDGET overrides it (seconds)


def _retry_budget() -> float:
    import os

    try:
        return float(os.environ.get("NETPROBE_API_RETRY_BUDGET", RETRY_BUDGET_S))
    except ValueError:
        return RETRY_BUDGET_S


def _retrying(fn: Callable[[], T]) -> T:
    wrapped = retry(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(_retry_budget()),
        wait=_wait,
        reraise=True,
    )(fn)
    return wrapped()


# ------------------------------------------------------------------- the request layer
#
# Requests go through the client's ApiClient (its auth, TLS, proxies, token refresh and exec
# plugins) but not through its generated API classes: with the pydantic-era client (37)
# importing CoreV1Api alone takes over a second, and netprobe reads every response as JSON anyway.

# Every API path netprobe requests ({...}: path parameters, quoted by the ApiClient).
API_PATHS: dict[str, str] = {
    "pods": "/api/v1/pods",
    "pods in namespace": "/api/v1/namespaces/{namespace}/pods",  # also DELETE: a collection by label
    "pod": "/api/v1/namespaces/{namespace}/pods/{name}",
    "pod log": "/api/v1/namespaces/{namespace}/pods/{name}/log",
    "pod ephemeralcontainers": "/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers",  # PATCH
    "events in namespace": "/api/v1/namespaces/{namespace}/events",
    "namespaces": "/api/v1/namespaces",
    "services": "/api/v1/services",
    "services in namespace": "/api/v1/namespaces/{namespace}/services",
    "endpoints": "/api/v1/endpoints",
    "endpoints in namespace": "/api/v1/namespaces/{namespace}/endpoints",
    "jobs": "/apis/batch/v1/jobs",
    "jobs in namespace": "/apis/batch/v1/namespaces/{namespace}/jobs",  # POST; DELETE by label
    "job": "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
    "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies",
    "networkpolicies in namespace": "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
    "version": "/version/",
    "api group version": "/apis/{group}/{version}",  # discovery: the resources it serves
    "custom objects": "/apis/{group}/{version}/{plural}",  # cluster-wide LIST
}

# What the generated methods send. A PATCH with an object body goes out as a strategic merge
# patch with every client we support (their REST layer turns the default JSON Patch type into
# it when the body is not a list of operations); saying so here keeps it that way.
_CONTENT_TYPES = {"PATCH": "application/strategic-merge-patch+json"}
_AUTH_SETTINGS = ["BearerToken"]


def _collection(resource: str, namespace: str | None) -> tuple[str, dict[str, str]]:
    """The path (and its parameters) of a collection, in one namespace or across all."""
    if namespace:
        return API_PATHS[f"{resource} in namespace"], {"namespace": namespace}
    return API_PATHS[resource], {}


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Query parameters as the API server reads them; None and "" mean: not sent."""
    pairs = []
    for key, value in (params or {}).items():
        if value is None or value == "":
            continue
        pairs.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return pairs


def _request(api_client: Any, method: str, path: str, path_params: Mapping[str, str] | None = None, *,
             query: Mapping[str, Any] | None = None, body: Any = None,
             timeout: tuple[float, float]) -> Any:
    """One request through the ApiClient; the raw urllib3 response, unread (a watch streams it).

    What the generated methods do with `_preload_content=False`: a non-2xx answer raises the
    client's ApiException (status, body, headers such as Retry-After); timeouts are (connect, read).
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = _CONTENT_TYPES.get(method, "application/json")
    pairs = _query(query)
    if hasattr(api_client, "param_serialize"):  # the pydantic-era generator (37)
        from kubernetes.client.exceptions import ApiException

        request = api_client.param_serialize(method, path, path_params=dict(path_params or {}),
                                             query_params=pairs, header_params=headers, body=body,
                                             auth_settings=_AUTH_SETTINGS)
        answer = api_client.call_api(*request, _request_timeout=timeout)
        if not 200 <= answer.status <= 299:  # as ApiClient._call_with_legacy_options raises it
            answer.read()
            raise ApiException.from_response(http_resp=answer, body=None, data=None)
        return answer.response
    # older clients (28 and 36 tested): call_api builds the URL; its REST layer raises on non-2xx.
    # No response type: nothing is deserialized (and 36 renamed the argument response_types_map).
    return api_client.call_api(path, method, path_params=dict(path_params or {}), query_params=pairs,
                               header_params=headers, body=body, auth_settings=_AUTH_SETTINGS,
                               _return_http_data_only=True, _preload_content=False, _request_timeout=timeout)


# ------------------------------------------------------------------------ the real thing


class KubeCluster:
    """The Cluster protocol over the official kubernetes client."""

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None,
                 request_timeout: float = 30.0) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.api_calls = 0
        self._timeout = request_timeout
        # (connect, read): older clients (28 among them) silently ignore a float timeout
        self._timeouts = (request_timeout, request_timeout)
        try:
            cfg = client.Configuration()
            if kubeconfig is None and context is None and _in_cluster():
                config.load_incluster_config(client_configuration=cfg)
                self.context_name = "in-cluster"  # which cluster answered: reports show it (meta.context)
            else:
                config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=cfg)
                self.context_name = context or config.list_kube_config_contexts(config_file=kubeconfig)[1]["name"]
            # A watch and a log stream per running probe pod are open at once; a smaller pool
            # would drop (and log a warning for) every connection beyond it.
            cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, POOL_SIZE)
            api_client = client.ApiClient(configuration=cfg)
        except (ConfigException, OSError, TypeError, ValueError) as exc:
            where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
            raise InputError(f"cannot load Kubernetes credentials from {where}"
                             f"{' (context ' + context + ')' if context else ''}: {exc}") from None
        except Exception as exc:  # yaml errors and others from a malformed kubeconfig
            raise InputError(f"cannot load Kubernetes credentials from "
                             f"{kubeconfig or '$KUBECONFIG'}: {exc}") from None
        self._discovered: dict[str, set[str]] = {}  # group/version -> served resources (policy CRDs)
        self._client = api_client
        self._count_lock = threading.Lock()  # log streams are opened from threads of their own
        self._logs_forbidden = False  # pods/log denied once: not asked again for every pod

    def close(self) -> None:
        """Close the client's pooled connections."""
        with contextlib.suppress(Exception):
            self._client.rest_client.pool_manager.clear()
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    def _call(self, what: str, method: str, path: str, params: Mapping[str, str] | None = None, *,
              query: Mapping[str, Any] | None = None, body: Any = None,
              read: Callable[[bytes], Any] = lambda data: json.loads(data) if data else {}) -> Any:
        """One API request, retried when transient; returns the body as `read` parses it (JSON)."""

        def once() -> Any:
            self._count_call()
            try:
                resp = _request(self._client, method, path, params, query=query, body=body,
                                timeout=self._timeouts)
                return read(resp.data)
            except Exception as exc:
                raise _translate(exc, what) from exc

        return _retrying(once)

    def _count_call(self) -> None:
        with self._count_lock:
            self.api_calls += 1

    def _pages(self, what: str, resource: str, namespace: str | None,
               **query: Any) -> Iterator[dict[str, Any]]:
        """A LIST, one parsed page (at most PAGE_SIZE items) at a time, following `continue`."""
        path, params = _collection(resource, namespace)
        token = None
        while True:
            doc = self._call(what, "GET", path, params, query={**query, "limit": PAGE_SIZE, "continue": token})
            token = (doc.get("metadata") or {}).get("continue")
            yield doc
            if not token:
                return

    def _list(self, what: str, resource: str, namespace: str | None, **query: Any) -> list[dict[str, Any]]:
        """Every item of a LIST, without the bulky fields netprobe never reads."""
        return [_slim(obj) for doc in self._pages(what, resource, namespace, **query)
                for obj in doc.get("items", [])]

    # -- reads

    def list_pods(self, namespace: str | None, label_selector: str = "") -> list[PodInfo]:
        """Pods matching a label selector, in one namespace or all."""
        where = f"namespace {namespace}" if namespace else "all namespaces"
        # Each page is turned into PodInfo values and dropped: a raw pod is ~50x larger.
        return [pod_info(p) for doc in self._pages(f"list pods in {where}", "pods", namespace,
                                                   labelSelector=label_selector)
                for p in doc.get("items", [])]

    def list_namespaces(self) -> list[dict[str, Any]]:
        """Every Namespace object."""
        return self._list("list namespaces", "namespaces", None)

    def list_network_policies(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """NetworkPolicies, in one namespace or all."""
        return self._list("list networkpolicies", "networkpolicies", namespace)

    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Services, in one namespace or all."""
        return self._list("list services", "services", namespace)

    def list_endpoints(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Endpoints (v1: served by every release we support), in one namespace or all."""
        return self._list("list endpoints", "endpoints", namespace)

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the API server."""
        doc = self._call("get server version", "GET", API_PATHS["version"])
        # Providers decorate the numbers ("27+", "30-eks"): the leading digits are the version.
        return _leading_int(doc.get("major"), 1), _leading_int(doc.get("minor"), 0)

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """A pod's log (the agent's stdout)."""
        text: str = self._call(f"read log of pod {namespace}/{name}", "GET", API_PATHS["pod log"],
                               {"namespace": namespace, "name": name},
                               query={"container": container, "tailLines": 200},
                               read=lambda data: bytes(data or b"").decode("utf-8", "replace"))
        return text

    def job_events(self, namespace: str, job: str) -> list[str]:
        """Warning messages recorded for a Job (e.g. FailedCreate from admission)."""
        doc = self._call(f"list events of job {namespace}/{job}", "GET", API_PATHS["events in namespace"],
                         {"namespace": namespace}, query={"fieldSelector": f"involvedObject.name={job}"})
        return [f"{e.get('reason', '')}: {e.get('message', '')}" for e in doc.get("items", [])
                if e.get("type") == "Warning"]

    def list_runs(self, namespace: str | None = None) -> list[JobInfo]:
        """netprobe Jobs (any run) in one namespace or all."""
        pages = self._pages("list netprobe jobs", "jobs", namespace, labelSelector=RUN_LABEL)
        return [JobInfo(name=j["metadata"]["name"], namespace=j["metadata"]["namespace"],
                        run_id=(j["metadata"].get("labels") or {}).get(RUN_LABEL, ""),
                        created=_parse_time(j["metadata"].get("creationTimestamp", "")),
                        active=int((j.get("status") or {}).get("active") or 0))
                for doc in pages for j in doc.get("items", [])]

    # -- writes

    def create_job(self, manifest: Mapping[str, Any]) -> None:
        """Create a probe Job; one that already exists with this run's label counts as created.

        A POST whose response was lost after the server committed it is retried and answered
        409 AlreadyExists: that Job is ours, and its pod runs, so the plan must not fail.
        """
        meta = manifest["metadata"]
        ns, name = meta["namespace"], meta["name"]
        what = f"create job {ns}/{name}"
        try:
            self._call(what, "POST", API_PATHS["jobs in namespace"], {"namespace": ns}, body=dict(manifest))
        except ClusterError as exc:
            if exc.status != 409:
                raise
            existing = self._call(f"get job {ns}/{name}", "GET", API_PATHS["job"], {"namespace": ns, "name": name})
            labels = (existing.get("metadata") or {}).get("labels") or {}
            if not meta.get("labels", {}).get(RUN_LABEL) or \
                    labels.get(RUN_LABEL) != meta["labels"][RUN_LABEL]:
                raise ClusterError(f"{what}: HTTP 409: a Job of that name already exists and is not "
                                   f"this run's (label {RUN_LABEL}={labels.get(RUN_LABEL, '')!r})",
                                   status=409) from exc

    def delete_run(self, namespace: str, run_id: str) -> None:
        """Delete a run's Jobs and their pods in one namespace."""
        selector = f"{RUN_LABEL}={run_id}"
        self._call(f"delete jobs of run {run_id} in {namespace}", "DELETE", API_PATHS["jobs in namespace"],
                   {"namespace": namespace}, query={"labelSelector": selector, "propagationPolicy": "Background"})
        # The Job's garbage collection removes its pods; deleting them directly as well
        # means nothing lingers even when the garbage collector is slow or absent.
        self._call(f"delete probe pods of run {run_id} in {namespace}", "DELETE", API_PATHS["pods in namespace"],
                   {"namespace": namespace}, query={"labelSelector": selector, "gracePeriodSeconds": 0})

    def delete_probe(self, namespace: str, job: str, pod: str) -> None:
        """Delete one probe Job and its pod (done with, while the run goes on); gone already is fine.

        The Job first, as delete_run does: a running pod of a Job that still exists would be
        replaced by the Job controller."""
        for what, path, params, query in (
                (f"delete job {namespace}/{job}", API_PATHS["job"], {"namespace": namespace, "name": job},
                 {"propagationPolicy": "Background"}),
                (f"delete pod {namespace}/{pod}", API_PATHS["pod"], {"namespace": namespace, "name": pod},
                 {"gracePeriodSeconds": 0})):
            try:
                self._call(what, "DELETE", path, params, query=query)
            except ClusterError as exc:
                if exc.status != 404:
                    raise

    def add_ephemeral_container(self, namespace: str, pod: str, container: Mapping[str, Any]) -> None:
        """Inject an ephemeral container (Kubernetes >= 1.25's pods/ephemeralcontainers)."""
        where = {"namespace": namespace, "name": pod}
        current = self._call(f"get pod {namespace}/{pod}", "GET", API_PATHS["pod"], where)
        existing = list((current.get("spec") or {}).get("ephemeralContainers") or [])
        # A strategic merge patch (what the generated client sends for an object body): the list
        # merges on name; it carries the existing ones too, which can never be removed anyway.
        body = {"spec": {"ephemeralContainers": [*existing, dict(container)]}}
        self._call(f"add ephemeral container to {namespace}/{pod}", "PATCH",
                   API_PATHS["pod ephemeralcontainers"], where, body=body)

    def ephemeral_state(self, namespace: str, pod: str, container: str) -> ProbePodState | None:
        """The state of an injected ephemeral container, as a ProbePodState (None: not yet)."""
        obj = self._call(f"get pod {namespace}/{pod}", "GET", API_PATHS["pod"],
                         {"namespace": namespace, "name": pod})
        statuses = (obj.get("status") or {}).get("ephemeralContainerStatuses") or []
        mine = [s for s in statuses if s.get("name") == container]
        if not mine:
            return None
        only = {**obj, "status": {**obj.get("status", {}), "containerStatuses": mine,
                                   "phase": "Running"}}
        return probe_pod_state(only)

    # -- watch

    def watch_probe_pods(self, namespace: str | None, run_id: str,
                         until: Callable[[], bool], deadline: float) -> Iterator[ProbePodState]:
        """Yield probe pod states until `until()` or the deadline: the watch's, and the log's.

        The agent prints its result before it exits, but the kubelet reports the exit only at its
        next pod relist (every second on a default kubelet); then the status is written and
        watched. So each probe pod's log is followed from the moment the watch shows it running
        (one request per probe pod: O(identities)), and every line read is yielded as the pod's
        state with `log_line` set; the caller takes a line that is a whole result. The termination
        message stays the fallback: a log that cannot be read (pods/log forbidden, a proxy that
        buffers) costs that second, nothing else.

        The watch and the log streams are read in threads of their own and merged here; leaving
        the generator shuts their connections down.
        """
        merged: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()
        streams = _Streams()
        followed: set[tuple[str, str]] = set()

        def pump() -> None:
            try:
                for state in self._watch_states(namespace, run_id, stop.is_set, deadline, streams):
                    merged.put(("state", state))
                merged.put(("end", None))
            except BaseException as exc:  # raised in the caller's thread
                merged.put(("error", exc))

        threading.Thread(target=pump, name=f"netprobe-watch-{run_id}", daemon=True).start()
        try:
            while not until():
                try:
                    kind, item = merged.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    return
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                state: ProbePodState = item
                key = (state.namespace, state.name)
                if (state.phase == "Running" and state.exit_code is None and not state.deleting
                        and not state.deleted and key not in followed and not self._logs_forbidden):
                    followed.add(key)
                    threading.Thread(target=self._follow_log, args=(state, stop, deadline, streams, merged),
                                     name=f"netprobe-log-{state.name}", daemon=True).start()
                yield state
                if time.monotonic() >= deadline:
                    return
        finally:
            stop.set()
            streams.abort_all()

    def _follow_log(self, state: ProbePodState, stop: threading.Event, deadline: float,
                    streams: _Streams, merged: queue.Queue[tuple[str, Any]]) -> None:
        """Read a running probe pod's log as it is written; queue each line as the pod's state."""
        self._count_call()
        try:
            # The pod's only container. Read timeout: the log may stay silent for the whole run.
            resp = _request(self._client, "GET", API_PATHS["pod log"],
                            {"namespace": state.namespace, "name": state.name}, query={"follow": True},
                            timeout=(self._timeout, max(1.0, deadline - time.monotonic()) + 10))
        except Exception as exc:
            if isinstance(_translate(exc, "follow log"), PermissionDenied):
                self._logs_forbidden = True
            return  # not started yet, gone, forbidden: its end still comes through the watch
        streams.add(resp)
        try:
            for line in _lines(resp):
                if stop.is_set():
                    return
                merged.put(("state", replace(state, log_line=line.decode("utf-8", "replace"))))
        except Exception:
            return  # the stream broke, or was shut down as the watch ended
        finally:
            streams.discard(resp)
            with contextlib.suppress(Exception):
                resp.close()
                resp.release_conn()

    def _watch_states(self, namespace: str | None, run_id: str, until: Callable[[], bool],
                      deadline: float, streams: _Streams) -> Iterator[ProbePodState]:
        """Probe pod states (LIST, then watch) until `until()` or the deadline; re-lists once after 410 Gone.

        The watch stream is read here, line by line, rather than through the client's
        `watch.Watch`: its handling of ERROR events differs across client releases (from 34 on,
        `deserialize=False` raises KeyError('raw_object') on them), and an expired
        resourceVersion must lead to one re-list, never to retries with the expired version.
        """
        selector = f"{RUN_LABEL}={run_id}"
        what = f"watch probe pods of run {run_id}"
        path, params = _collection("pods", namespace)
        resource_version = ""
        while not until() and time.monotonic() < deadline:
            if not resource_version:  # (re)list: the starting point, or after 410 Gone
                version = ""
                for doc in self._pages(f"list probe pods of run {run_id}", "pods", namespace,
                                       labelSelector=selector):
                    version = version or (doc.get("metadata") or {}).get("resourceVersion", "")
                    for obj in doc.get("items", []):
                        yield probe_pod_state(obj)
                if not version:
                    raise ClusterError(f"{what}: the pod list carries no resourceVersion to watch from")
                resource_version = version
                continue
            window = max(1, min(int(deadline - time.monotonic()), 60))
            self._count_call()
            try:
                resp = _request(self._client, "GET", path, params, query={
                    "labelSelector": selector, "watch": True, "resourceVersion": resource_version,
                    "allowWatchBookmarks": True, "timeoutSeconds": window},
                    timeout=(self._timeout, window + 10))
            except Exception as exc:
                err = _translate(exc, what)
                if err.status == 410:
                    resource_version = ""
                    continue
                if not isinstance(err, TransientError):
                    raise err from exc
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            streams.add(resp)
            try:
                for event in _watch_events(resp, what):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        err = _status_error(obj, what)
                        if err.status == 410:  # the version expired: re-list, then watch from there
                            resource_version = ""
                            break
                        if not isinstance(err, TransientError):
                            raise err
                        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                        break
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    if kind not in ("ADDED", "MODIFIED", "DELETED"):  # BOOKMARK: only the version moves
                        continue
                    yield probe_pod_state(obj, deleted=kind == "DELETED")
                    if until() or time.monotonic() >= deadline:
                        return
            except ClusterError as exc:
                if not isinstance(exc, TransientError):
                    raise
            except Exception as exc:  # the stream broke or went quiet: watch again from where it was
                broken = _translate(exc, what)
                if not isinstance(broken, TransientError):
                    raise broken from exc
            finally:
                streams.discard(resp)
                resp.close()
                with contextlib.suppress(Exception):
                    resp.release_conn()

    # -- policy CRDs (Calico, network-policy-api; issue 14)

    def _served(self, group: str, version: str) -> set[str]:
        """The resources an API group/version serves, from discovery ({} when it is not served).

        Discovery is readable by every authenticated user, so an absent CRD is found absent even
        where RBAC would forbid listing it (the authorizer answers 403 before routing would 404)."""
        cache = self._discovered
        key = f"{group}/{version}"
        if key not in cache:
            try:
                doc = self._call(f"discover {key}", "GET", API_PATHS["api group version"],
                                 {"group": group, "version": version})
                cache[key] = {str(r.get("name")) for r in doc.get("resources") or ()}
            except ClusterError as exc:
                if exc.status not in (404, 403):  # 403: discovery itself forbidden; the LIST will tell
                    raise
                cache[key] = set() if exc.status == 404 else {"*"}
        return cache[key]

    def list_custom_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]] | None:
        """Every object of a custom resource, in all namespaces; None when the API does not serve it."""
        served = self._served(group, version)
        if plural not in served and "*" not in served:
            return None  # no such CRD / API group: normal on a cluster without it
        items: list[dict[str, Any]] = []
        token = None
        while True:
            try:
                doc = self._call(f"list {plural}.{group}/{version}", "GET", API_PATHS["custom objects"],
                                 {"group": group, "version": version, "plural": plural},
                                 query={"limit": 500, "continue": token})
            except PermissionDenied as exc:
                raise PermissionDenied(
                    f"{exc}; to read these policies add to netprobe's ClusterRole: "
                    f"{{apiGroups: [{group}], resources: [{plural}], verbs: [list]}}", status=exc.status) from None
            except ClusterError as exc:
                if exc.status == 404:  # no such CRD / API group: normal on a cluster without it
                    return None
                raise
            items += doc.get("items", [])
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items


def _lines(resp: Any) -> Iterator[bytes]:
    """The non-empty lines of a streamed response, each as soon as its newline arrives."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        *lines, buffer = buffer.split(b"\n")
        yield from (line for line in lines if line.strip())


class _Streams:
    """The responses being read in other threads, to shut down when the watch ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._closed = False

    def add(self, resp: Any) -> None:
        with self._lock:
            self._open.add(resp)
            closed = self._closed
        if closed:  # opened after the end: shut down at once
            _shutdown(resp)

    def discard(self, resp: Any) -> None:
        with self._lock:
            self._open.discard(resp)

    def abort_all(self) -> None:
        with self._lock:
            self._closed = True
            responses = list(self._open)
        for resp in responses:
            _shutdown(resp)


def _shutdown(resp: Any) -> None:
    """Wake a thread blocked reading `resp`: shut its socket down (closing alone does not wake a recv)."""
    with contextlib.suppress(Exception):
        if hasattr(resp, "shutdown"):  # urllib3 >= 2.3
            resp.shutdown()
            return
        sock = getattr(getattr(resp, "_connection", None), "sock", None)  # older urllib3
        if sock is not None:
            import socket

            sock.shutdown(socket.SHUT_RDWR)


def _watch_events(resp: Any, what: str) -> Iterator[dict[str, Any]]:
    """The JSON events of a watch response (one per line), as they arrive."""
    for line in _lines(resp):
        try:
            event = json.loads(line)
        except ValueError:
            raise TransientError(f"{what}: malformed watch event {line[:100]!r}") from None
        if not isinstance(event, dict):
            raise TransientError(f"{what}: malformed watch event {line[:100]!r}")
        yield event


def _status_error(status: Mapping[str, Any], what: str) -> ClusterError:
    """The error a Status object (an ERROR watch event) stands for."""
    code = _leading_int(status.get("code"), 0)
    message = f"{what}: HTTP {code}: {status.get('message') or status.get('reason') or status}"
    if code in (429, 500, 502, 503, 504):
        return TransientError(message, status=code)
    if code in (401, 403):
        return PermissionDenied(message, status=code)
    return ClusterError(message, status=code or None)


POOL_SIZE = 128  # connections kept per API server: a watch and a log stream per running probe pod
PAGE_SIZE = 500  # items per LIST page: bounds the memory one response needs

# Written by every controller and kubectl, read by no part of netprobe, often most of an object.
_BULKY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without managedFields and last-applied-configuration (never read, often most of it)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for key in _BULKY_ANNOTATIONS:
                annotations.pop(key, None)
    return obj


def _leading_int(value: Any, default: int) -> int:
    digits = re.match(r"\d+", str(value or ""))
    return int(digits.group()) if digits else default


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG") \
        and not os.path.exists(os.path.expanduser("~/.kube/config"))


def _translate(exc: BaseException, what: str) -> ClusterError:
    """Map a client/transport exception onto netprobe's error tree."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = _api_message(exc)
        if status in (429, 500, 502, 503, 504) or status == 0:
            retry_after = None
            headers = exc.headers or {}
            if headers.get("Retry-After"):
                try:
                    retry_after = float(headers["Retry-After"])
                except ValueError:
                    retry_after = None
            return TransientError(f"{what}: HTTP {status}: {message}", status=status,
                                  retry_after=retry_after)
        if status in (401, 403):
            return PermissionDenied(f"{what}: forbidden (HTTP {status}): {message} — see deploy/rbac.yaml "
                                    "for the permissions netprobe needs", status=status)
        return ClusterError(f"{what}: HTTP {status}: {message}", status=status)
    # urllib3 / socket level: connection refused, reset, timeouts, protocol errors
    name = type(exc).__name__
    return TransientError(f"{what}: cannot reach the API server ({name}: {exc})")


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = json.loads(body)
            return str(doc.get("message") or body)
        except (ValueError, TypeError, AttributeError):
            return str(body)[:300]
    return str(getattr(exc, "reason", "") or exc)

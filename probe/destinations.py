"""What stands behind each target, read before and after every probe round.

A failed connection proves a deny only if something was there to answer it: a Service with
no ready endpoint is rejected by kube-proxy whatever the policy says, and a pod that went
away (or stopped being ready) during a round times out for reasons of its own. So the
Services, their Endpoints and the pods of pod-selector targets are read before probing (to
plan a direct check of every Service backend) and again after each round, and any failure
against a destination that was not there at some read is reported `no-endpoints` — not
probed, never a deny match.

Talks to the cluster only through the `Cluster` protocol; the judgement itself is pure.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .cluster import Cluster
from .errors import PermissionDenied
from .model import SubResult, Target, TargetKind, Verdict
from .plan import TargetPods
from .services import Backend, backends, endpointless, may_be_service, service_namespaces, target_service

# What a destination that cannot answer turns a connection attempt into, whatever the policy.
_CONNECT_FAILURES = frozenset({Verdict.BLOCKED, Verdict.REFUSED, Verdict.UNREACHABLE})


class Destinations:
    """The Services, Endpoints and target pods behind a run's targets."""

    def __init__(self, cluster: Cluster, targets: Sequence[Target], *, max_pods: int | None = None) -> None:
        self.cluster = cluster
        self.targets = list(targets)
        self.max_pods = max_pods
        self.warnings: list[str] = []
        self._namespaces: list[str] = []
        self._services: list[dict[str, Any]] = []
        self._services_unknown = ""  # why Services could not be read
        self._endpoint_reads: list[list[dict[str, Any]]] = []
        self._endpoints_unknown = ""  # why Endpoints could not be read
        self._present: dict[str, set[tuple[str, str]]] = {}  # target -> (pod, ip) at the last read
        self.backends: dict[tuple[str, str], list[Backend]] = {}  # (target, source namespace) -> backends
        self.sampled: dict[str, tuple[int, int]] = {}  # target -> (probed, total) under --max-target-pods

    # -- reading

    def read(self, source_namespaces: Iterable[str], target_pods: Mapping[str, TargetPods]) -> None:
        """Before the first round: Services and Endpoints, and the backends to probe directly."""
        self._namespaces = sorted(set(source_namespaces))
        scope = service_namespaces(self.targets, self._namespaces)
        try:
            for ns in [None] if scope is None else sorted(scope):
                self._services += self.cluster.list_services(ns)
        except PermissionDenied as exc:
            self._services_unknown = (f"cannot tell which Service the target lands on ({exc}); grant "
                                      "`list services` (deploy/rbac.yaml)")
            self.warnings.append(f"targets that may be Services: {self._services_unknown} — their failed "
                                 "connections are reported as not probed")
        self._read_endpoints()
        latest = self._endpoint_reads[-1] if self._endpoint_reads else []
        for target in self.targets:
            for ns in self._namespaces:
                found = backends(target, ns, self._services, latest)
                if found:
                    self.backends[(target.name, ns)] = self._sample(target.name, found)
        for name, tp in target_pods.items():
            if tp.total > len(tp.pods):
                self.sampled[name] = (len(tp.pods), tp.total)
        for name, (probed, total) in sorted(self.sampled.items()):
            self.warnings.append(f"target {name}: probed {probed} of {total} pods (--max-target-pods): its "
                                 "denies hold for those only (--strict counts them as not probed)")
        self._note_present(target_pods)

    def refresh(self, target_pods: Mapping[str, TargetPods]) -> None:
        """After a round: Endpoints and the pods of pod-selector targets, as they are now."""
        self._read_endpoints()
        current: dict[str, TargetPods] = {}
        for target in self.targets:
            if target.kind is not TargetKind.PODS or target.selector is None or target.name not in target_pods:
                continue
            ns = target.namespace or "default"
            pods = tuple(p for p in self.cluster.list_pods(ns, target.selector.to_label_selector())
                         if p.usable and target.selector.matches(p.labels))
            current[target.name] = TargetPods(target=target.name, pods=pods, total=len(pods))
        self._note_present(current)

    def _relevant_namespaces(self) -> list[str]:
        found = {str((svc.get("metadata") or {}).get("namespace")) for target in self.targets
                 for ns in self._namespaces
                 for svc in [target_service(target, ns, self._services)] if svc is not None}
        return sorted(found)

    def _read_endpoints(self) -> None:
        if self._endpoints_unknown:
            return
        namespaces = self._relevant_namespaces()
        if not namespaces:
            return
        try:
            self._endpoint_reads.append([e for ns in namespaces for e in self.cluster.list_endpoints(ns)])
        except PermissionDenied as exc:
            self._endpoints_unknown = (f"cannot tell whether the Service has ready endpoints ({exc}); "
                                       "grant `list endpoints` (deploy/rbac.yaml)")
            self.warnings.append(f"Service targets: {self._endpoints_unknown} — their failed connections "
                                 "are reported as not probed")

    def _note_present(self, target_pods: Mapping[str, TargetPods]) -> None:
        latest = self._endpoint_reads[-1] if self._endpoint_reads else []
        for target in self.targets:
            if target.name in target_pods:
                now = {(p.key, p.ip) for p in target_pods[target.name].pods}
            else:
                now = {(b.pod, b.ip) for ns in self._namespaces
                       for b in backends(target, ns, self._services, latest)}
            # A destination counts as present only if it was there at every read so far.
            before = self._present.get(target.name)
            self._present[target.name] = now if before is None else before & now

    def _sample(self, target: str, found: list[Backend]) -> list[Backend]:
        if self.max_pods is None or len(found) <= self.max_pods:
            return found
        picked = sorted(random.Random(target).sample(found, self.max_pods), key=lambda b: (b.pod, b.ip))
        self.sampled[target] = (len(picked), len(found))
        return picked

    # -- judging

    def why_unproven(self, target: Target, namespace: str, sub: SubResult) -> str:
        """Why this failed sub-check proves nothing about the policy ('' when it may prove a deny)."""
        if sub.verdict not in _CONNECT_FAILURES:
            return ""
        if sub.pod:  # a pod of a pod-selector target, or a Service backend probed directly
            if (sub.pod, sub.ip) not in self._present.get(target.name, set()):
                return f"{sub.pod} ({sub.ip}) was gone or not ready at a later read: its failure proves nothing"
            return ""
        if self._services_unknown and may_be_service(target, namespace):
            return self._services_unknown
        if self._endpoints_unknown and target_service(target, namespace, self._services) is not None:
            return self._endpoints_unknown
        for endpoints in self._endpoint_reads:
            why = endpointless(target, namespace, self._services, endpoints)
            if why:
                return why
        return ""

    def unproven(self, subs: Sequence[SubResult], target: Target, namespace: str) -> tuple[SubResult, ...]:
        """The sub-checks with every failure that proves nothing marked `no-endpoints`."""
        out = []
        for s in subs:
            why = self.why_unproven(target, namespace, s)
            out.append(replace(s, verdict=Verdict.NO_ENDPOINTS, detail=f"{why}; the probe saw {s.verdict}: {s.detail}")
                       if why else s)
        return tuple(out)

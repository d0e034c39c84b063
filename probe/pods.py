"""Pods as netprobe sees them, and the network identity a probe pod borrows from one.

Pure: PodInfo values come from cluster.py (or a manifest, or a test); nothing here does I/O.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import Namespace, Source

RUN_LABEL = "netprobe.io/run"

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
    host_ips: tuple[str, ...] = ()  # status.hostIP(s): its node's addresses (a hostNetwork pod's own)
    phase: str = "Running"
    service_account: str = ""
    node: str = ""
    tolerations: tuple[Mapping[str, Any], ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    deleting: bool = False
    owner_kind: str = ""  # the controlling ownerReference (ReplicaSet, StatefulSet, ...); "" = none
    owner_name: str = ""

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
    owner = next((o for o in _items(meta.get("ownerReferences"), "metadata.ownerReferences")
                  if o.get("controller")), None)
    return PodInfo(
        owner_kind=str(owner.get("kind") or "") if owner else "",
        owner_name=str(owner.get("name") or "") if owner else "",
        name=str(meta.get("name", "")), namespace=Namespace(str(meta.get("namespace") or "default")),
        labels={str(k): str(v) for k, v in labels.items()}, ip=str(status.get("podIP") or ""),
        host_ips=tuple(dict.fromkeys(str(a) for a in (
            status.get("hostIP"), *(h.get("ip") for h in _items(status.get("hostIPs"), "status.hostIPs"))) if a)),
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


"""Read Kubernetes manifests from files and directories for offline policy analysis.

Multi-document YAML, `List` and typed lists (`PodList`, `NetworkPolicyList`, ..., whose items
carry no `kind`) are understood; the same object given twice with identical content is read
once. Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) become one pod
each, from their pod template. A Pod's `status.podIP`, when present, is its IP for ipBlock
matching.

Objects are identified by API group + kind + namespace + name: a Calico `NetworkPolicy`
(projectcalico.org/v3) and a Kubernetes one with the same name are two objects. Calico's
NetworkPolicy / GlobalNetworkPolicy / Tier and the network-policy-api kinds are parsed into the
tier model; kinds of theirs that are not modelled (HostEndpoint, network sets, staged policies)
and unmodelled fields give located warnings (`Manifests.warnings`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ManifestError
from .pods import PodInfo, pod_info
from .policy import Policy, namespaces_from, parse_policy
from .policy.adminpolicy import GROUP as ADMIN_GROUP
from .policy.adminpolicy import KINDS as ADMIN_KINDS
from .policy.adminpolicy import parse_admin_policy
from .policy.calico import POLICY_KINDS as CALICO_POLICY_KINDS
from .policy.calico import UNMODELLED_KINDS as CALICO_UNMODELLED
from .policy.calico import is_calico, parse_calico_policy, parse_tier
from .policy.rules import Tier, TieredPolicy

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController")
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Manifests:
    """What the analysis needs from a set of manifests."""

    pods: list[PodInfo] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    policies: list[Policy | TieredPolicy] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    tiers: list[Tier] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """(file, named explicitly): files found in a directory may hold other YAML (skipped)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted((p, False) for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.exists():
            yield path, True
        else:
            raise ManifestError(f"{path}: no such file or directory")


def _documents(path: Path, strict: bool = True) -> Iterator[tuple[Mapping[str, Any], str]]:
    json_error: json.JSONDecodeError | None = None
    try:
        text = path.read_text(encoding="utf-8")
        docs = None
        if path.suffix == ".json":  # `kubectl get -o json`: ~30x faster as JSON than as YAML
            try:
                docs = [json.loads(text)]
            except json.JSONDecodeError as exc:
                json_error = exc  # perhaps YAML in a .json file: the YAML parser decides
        if docs is None:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~5x faster
            docs = list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        if json_error is not None:
            raise ManifestError(f"{path}:{json_error.lineno}: not valid JSON: {json_error.msg}") from None
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read: {exc}") from None
    for i, doc in enumerate(docs):
        where = f"{path} (document {i + 1})"
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            if not strict:
                continue  # a directory may hold other YAML (an expect.yaml, kustomization.yaml)
            raise ManifestError(f"{where}: expected a Kubernetes object with apiVersion and kind")
        if str(doc["kind"]).endswith("List"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(f"{where}: items must be a list")
            # A typed list (PodList, NetworkPolicyList, ... as `kubectl get -o yaml` and the API
            # return them) leaves `kind` off its items: the list's kind implies it.
            implied = str(doc["kind"])[:-len("List")]
            for j, item in enumerate(items):
                if isinstance(item, dict) and "kind" not in item and implied:
                    item = {"kind": implied, **item}
                    if "apiVersion" not in item:  # a typed list's apiVersion is its items' one
                        item = {"apiVersion": doc["apiVersion"], **item}
                if not isinstance(item, dict) or "kind" not in item:
                    raise ManifestError(f"{where}: items[{j}] is not a Kubernetes object")
                yield item, f"{where} items[{j}]"
        else:
            yield doc, where


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _template_pod(obj: Mapping[str, Any], where: str) -> PodInfo:
    meta = _dict(obj.get("metadata"))
    spec = _dict(obj.get("spec"))
    if obj["kind"] == "CronJob":
        spec = _dict(_dict(spec.get("jobTemplate")).get("spec"))
    template = spec.get("template")
    if not isinstance(template, dict):
        raise ManifestError(f"{where}: {obj['kind']} {meta.get('name')} has no spec.template")
    tmeta = _dict(template.get("metadata"))
    owner = [{"kind": obj["kind"], "name": meta.get("name", ""), "controller": True}]
    return pod_info({"metadata": {"name": meta.get("name", ""), "namespace": meta.get("namespace") or "default",
                                  "labels": tmeta.get("labels") or {}, "ownerReferences": owner},
                     "spec": template.get("spec") or {}, "status": {"phase": "Running"}})


def _read_tiered(obj: Mapping[str, Any], where: str, calico: bool, default_namespace: str, out: Manifests) -> None:
    """A Calico or network-policy-api object → out.policies / out.tiers / out.warnings."""
    kind = str(obj["kind"])
    try:
        if calico and kind in CALICO_POLICY_KINDS:
            policy, warnings = parse_calico_policy(obj, default_namespace)
        elif calico and kind == "Tier":
            out.tiers.append(parse_tier(obj))
            return
        elif not calico and kind in ADMIN_KINDS:
            policy, warnings = parse_admin_policy(obj)
        else:
            why = CALICO_UNMODELLED.get(kind, "this kind is not modelled") if calico else "this kind is not modelled"
            out.warnings.append(f"{where}: {obj['apiVersion']} {kind} {obj['metadata']['name']}: {why}")
            return
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from None
    out.policies.append(policy)
    out.warnings += [f"{where}: {w}" for w in warnings]


def tiered_from_objects(objs: Iterable[Mapping[str, Any]], where: str = "cluster"
                        ) -> tuple[list[TieredPolicy], list[Tier], list[str]]:
    """Calico / network-policy-api objects (as a cluster lists them) → (policies, tiers, warnings)."""
    out = Manifests()
    for obj in objs:
        _read_tiered(obj, where, is_calico(str(obj.get("apiVersion"))), "default", out)
    return [p for p in out.policies if isinstance(p, TieredPolicy)], out.tiers, out.warnings


def load_manifests(paths: Iterable[str | Path], default_namespace: str = "default") -> Manifests:
    """Read every manifest under `paths`; ManifestError (exit 2) naming the file when malformed."""
    out = Manifests()
    namespace_objs = []
    seen: dict[tuple[str, str, str, str], tuple[str, Mapping[str, Any]]] = {}
    for path, strict in _files(paths):
        for obj, where in _documents(path, strict):
            kind = obj["kind"]
            meta = obj.get("metadata")
            if not isinstance(meta, dict) or not meta.get("name"):
                raise ManifestError(f"{where}: {kind} without metadata.name")
            if meta.get("labels") is not None and not isinstance(meta.get("labels"), dict):
                raise ManifestError(f"{where}: {kind} {meta['name']}: metadata.labels must be a mapping")
            api_version = str(obj.get("apiVersion", ""))
            group = api_version.rpartition("/")[0]
            calico, admin = is_calico(api_version), group == ADMIN_GROUP
            cluster_scoped = (calico and kind != "NetworkPolicy") or admin
            ident = (group, str(kind), "" if cluster_scoped else str(meta.get("namespace") or default_namespace),
                     str(meta["name"]))
            if ident in seen and kind != "Namespace":
                first_where, first = seen[ident]
                if first == obj:
                    continue  # the same object twice (a file and a directory holding it): read once
                shown = f"{ident[2]}/{ident[3]}" if ident[2] else ident[3]
                label = f"{api_version} {kind}" if calico or admin else kind
                raise ManifestError(f"{where}: {label} {shown} is defined twice, differently "
                                    f"(also in {first_where}); pass one set of manifests")
            seen[ident] = (where, obj)
            if calico or admin:
                _read_tiered(obj, where, calico, default_namespace, out)
            elif kind == "Namespace":
                namespace_objs.append(obj)
            elif kind == "NetworkPolicy" and group not in ("networking.k8s.io", "extensions"):
                out.warnings.append(f"{where}: {obj['apiVersion']} NetworkPolicy {meta['name']}: an API group "
                                    "netprobe does not know; not evaluated")
            elif kind == "NetworkPolicy":
                try:
                    out.policies.append(parse_policy(obj, default_namespace))
                except ManifestError as exc:
                    raise ManifestError(f"{where}: {exc}") from None
            elif kind == "Pod":
                status = _dict(obj.get("status"))
                try:
                    pod = pod_info({**obj, "metadata": {**meta, "namespace": meta.get("namespace")
                                                        or default_namespace},
                                    "status": {"phase": "Running", **status}})
                except ValueError as exc:
                    raise ManifestError(f"{where}: Pod {meta['name']}: {exc}") from None
                out.pods.append(pod)
            elif kind in (*WORKLOADS, "CronJob"):
                if not meta.get("namespace"):
                    obj = {**obj, "metadata": {**meta, "namespace": default_namespace}}
                try:
                    out.pods.append(_template_pod(obj, where))
                except ValueError as exc:
                    raise ManifestError(f"{where}: {kind} {meta['name']}: {exc}") from None
            elif kind == "Service":
                spec = obj.get("spec")
                ports = spec.get("ports") if isinstance(spec, dict) else None
                if not isinstance(spec, dict) or not isinstance(spec.get("selector") or {}, dict) \
                        or not isinstance(ports or [], list) or not all(isinstance(p, dict) for p in ports or []):
                    raise ManifestError(f"{where}: Service {meta['name']}: expected spec with a selector "
                                        "mapping and a list of ports")
                out.services.append({**obj, "metadata": {**meta, "namespace": meta.get("namespace")
                                                         or default_namespace}})
    out.namespaces = namespaces_from(namespace_objs)
    return out

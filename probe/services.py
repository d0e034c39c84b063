"""Which Service a target lands on, and whether that Service has a ready endpoint for it.

A connection to a Service without ready endpoints is rejected by kube-proxy (or dropped, on
some dataplanes) whatever the policy says, so its failure proves nothing about the policy:
the runner reports such a cell as not probed (`no-endpoints`), never as a proven deny.
Pure: Services and Endpoints come in as the API's JSON.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model import Target, TargetKind

_URL = re.compile(r"^https?://(\[[^\]]+\]|[^/:]+)(?::(\d+))?")


def service_for(name: str, source_ns: str, services: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Service a name resolves to from a pod in `source_ns` (`db`, `db.ns`, `db.ns.svc...`)."""
    parts = name.rstrip(".").split(".")
    if len(parts) == 1:
        svc, ns = parts[0], source_ns
    elif len(parts) == 2 or (len(parts) >= 3 and parts[2] == "svc"):
        svc, ns = parts[0], parts[1]
    else:
        return None
    for s in services:
        meta = s.get("metadata") or {}
        if meta.get("name") == svc and meta.get("namespace") == ns:
            return s
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_and_port(target: Target) -> tuple[str, int] | None:
    """(host, port) a TCP or HTTP target connects to; None for other kinds."""
    if target.kind is TargetKind.TCP:
        return target.host.strip("[]"), target.port
    if target.kind is TargetKind.HTTP:
        m = _URL.match(target.host)
        if not m:
            return None
        default = 443 if target.host.startswith("https") else 80
        return m.group(1).strip("[]"), int(m.group(2) or default)
    return None


def service_namespaces(targets: Sequence[Target], source_namespaces: Iterable[str]) -> set[str] | None:
    """Namespaces whose Services the targets may name; None when every namespace is needed.

    An IP that is not marked external may be a ClusterIP of any namespace.
    """
    wanted: set[str] = set()
    for target in targets:
        hp = host_and_port(target)
        if hp is None or target.external:
            continue
        host = hp[0]
        if _is_ip(host):
            return None
        parts = host.rstrip(".").split(".")
        if len(parts) == 1:
            wanted.update(source_namespaces)
        elif len(parts) == 2 or parts[2] == "svc":
            wanted.add(parts[1])
    return wanted


def _target_service(host: str, source_ns: str, services: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if _is_ip(host):
        return next((s for s in services if (s.get("spec") or {}).get("clusterIP") == host), None)
    return service_for(host, source_ns, services)


def endpointless(target: Target, source_ns: str, services: Sequence[Mapping[str, Any]],
                 endpoints: Sequence[Mapping[str, Any]]) -> str:
    """Why `target` from `source_ns` lands on a Service that cannot answer; '' when it can."""
    hp = host_and_port(target)
    if hp is None or target.external:
        return ""
    host, port = hp
    svc = _target_service(host, source_ns, services)
    if svc is None:
        return ""
    spec = svc.get("spec") or {}
    meta = svc.get("metadata") or {}
    name = f"{meta.get('namespace')}/{meta.get('name')}"
    if spec.get("type") == "ExternalName" or spec.get("clusterIP") in ("None", None, ""):
        return ""  # no kube-proxy rule: DNS answers with the endpoints themselves (or a CNAME)
    sport = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if sport is None:
        return f"Service {name} has no port {port}"
    ep = next((e for e in endpoints if (e.get("metadata") or {}).get("name") == meta.get("name")
               and (e.get("metadata") or {}).get("namespace") == meta.get("namespace")), None)
    wanted = sport.get("name") or ""
    ready = 0
    for subset in (ep or {}).get("subsets") or []:
        names = {(p.get("name") or "") for p in subset.get("ports") or []}
        if wanted in names:
            ready += len(subset.get("addresses") or [])
    if ready == 0:
        return f"Service {name} has no ready endpoint for port {port}"
    return ""

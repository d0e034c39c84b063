"""Which Service a target lands on, its ready backends, and whether it can answer at all.

A connection to a Service without ready endpoints is rejected by kube-proxy (or dropped, on
some dataplanes) whatever the policy says, so its failure proves nothing about the policy:
the runner reports such a cell as not probed (`no-endpoints`), never as a proven deny. And a
connection through a ClusterIP reaches *one* backend, picked at random: so every ready
backend is also probed directly (NetworkPolicy is evaluated on the backend pod after DNAT,
so a direct connection meets the same rules), and a deny holds only when it holds for each.
Pure: Services and Endpoints come in as the API's JSON.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Target, TargetKind

_URL = re.compile(r"^https?://(\[[^\]]+\]|[^/:]+)(?::(\d+))?")


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One ready endpoint of a Service port: the pod behind it, its IP and its target port."""

    pod: str  # ns/name from the endpoint's targetRef (ns/<ip> when it has none)
    ip: str
    port: int
    has_pod: bool = True  # False: an endpoint without a Pod targetRef (a node, an outside address)


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


def is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 literal."""
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


def _service_namespace(target: Target, source_ns: str) -> str | None:
    """The namespace whose Services `target` may name from `source_ns`; '*' for any; None for none.

    `external` (explicit, or the default of HTTP targets) only narrows the guess for names of
    two labels (`example.com` is rarely Service `example` of namespace `com`); a short name or
    a `.svc.` name is a Service wherever it is written.
    """
    hp = host_and_port(target)
    if hp is None:
        return None
    host = hp[0]
    if is_ip(host):
        return None if target.external else "*"
    parts = host.rstrip(".").split(".")
    if len(parts) == 1:
        return source_ns
    if len(parts) >= 3 and parts[2] == "svc":
        return parts[1]
    if len(parts) == 2 and not target.external:
        return parts[1]
    return None


def service_namespaces(targets: Sequence[Target], source_namespaces: Iterable[str]) -> set[str] | None:
    """Namespaces whose Services the targets may name; None when every namespace is needed."""
    wanted: set[str] = set()
    sources = list(source_namespaces)
    for target in targets:
        for ns in sources:
            where = _service_namespace(target, ns)
            if where == "*":
                return None
            if where:
                wanted.add(where)
    return wanted


def may_be_service(target: Target, source_ns: str) -> bool:
    """Whether `target` from `source_ns` could land on a Service (when Services cannot be read)."""
    return _service_namespace(target, source_ns) is not None


def target_service(target: Target, source_ns: str,
                   services: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Service `target` lands on from a pod in `source_ns`, if any."""
    if _service_namespace(target, source_ns) is None:
        return None
    hp = host_and_port(target)
    assert hp is not None
    host = hp[0]
    if is_ip(host):
        return next((s for s in services if host in _cluster_ips(s)), None)
    return service_for(host, source_ns, services)


def _cluster_ips(svc: Mapping[str, Any]) -> set[str]:
    spec = svc.get("spec") or {}
    return {str(ip) for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])]
            if ip and ip != "None"}


def _name(svc: Mapping[str, Any]) -> str:
    meta = svc.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _tcp_port(svc: Mapping[str, Any], port: int) -> Mapping[str, Any] | None:
    return next((p for p in (svc.get("spec") or {}).get("ports") or []
                 if p.get("port") == port and (p.get("protocol") or "TCP") == "TCP"), None)


def _endpoints_of(svc: Mapping[str, Any], endpoints: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    meta = svc.get("metadata") or {}
    return next((e for e in endpoints if (e.get("metadata") or {}).get("name") == meta.get("name")
                 and (e.get("metadata") or {}).get("namespace") == meta.get("namespace")), {})


def ready_backends(svc: Mapping[str, Any], port: int, endpoints: Sequence[Mapping[str, Any]]) -> list[Backend]:
    """The ready endpoints behind the Service's TCP `port`, sorted by pod."""
    sport = _tcp_port(svc, port)
    if sport is None:
        return []
    wanted = sport.get("name") or ""
    ns = str((svc.get("metadata") or {}).get("namespace"))
    out = set()
    for subset in _endpoints_of(svc, endpoints).get("subsets") or []:
        number = next((p.get("port") for p in subset.get("ports") or []
                       if (p.get("name") or "") == wanted and (p.get("protocol") or "TCP") == "TCP"), None)
        if not isinstance(number, int):
            continue
        for address in subset.get("addresses") or []:
            ref = address.get("targetRef") or {}
            ip = str(address.get("ip") or "")
            has_pod = ref.get("kind") == "Pod" and bool(ref.get("name"))
            pod = f"{ref.get('namespace') or ns}/{ref['name']}" if has_pod else f"{ns}/{ip}"
            if ip:
                out.add(Backend(pod=pod, ip=ip, port=number, has_pod=has_pod))
    return sorted(out, key=lambda b: (b.pod, b.ip))


def backends(target: Target, source_ns: str, services: Sequence[Mapping[str, Any]],
             endpoints: Sequence[Mapping[str, Any]]) -> list[Backend]:
    """The ready backends `target` reaches through a Service from `source_ns` ([] when none)."""
    svc = target_service(target, source_ns, services)
    hp = host_and_port(target)
    if svc is None or hp is None or (svc.get("spec") or {}).get("type") == "ExternalName":
        return []
    return ready_backends(svc, hp[1], endpoints)


def endpointless(target: Target, source_ns: str, services: Sequence[Mapping[str, Any]],
                 endpoints: Sequence[Mapping[str, Any]]) -> str:
    """Why `target` from `source_ns` lands on a Service that cannot answer; '' when it can."""
    svc = target_service(target, source_ns, services)
    hp = host_and_port(target)
    if svc is None or hp is None:
        return ""
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return ""  # a CNAME: the connection goes wherever the name points
    if _tcp_port(svc, hp[1]) is None:
        return f"Service {_name(svc)} has no TCP port {hp[1]}"
    if not ready_backends(svc, hp[1], endpoints):
        return f"Service {_name(svc)} has no ready endpoint for port {hp[1]}"
    return ""

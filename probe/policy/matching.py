"""Matching shared by every policy kind: label selectors, peers and ports.

* A peer's `podSelector` selects pods of the policy's own namespace; `namespaceSelector`, pods of
  matching namespaces; both in one peer, their AND; `ipBlock`, addresses in cidr minus `except`
  (also applied to pod IPs, as Calico does; configurable).
* Ports: a numeric port with optional `endPort`; a named port is resolved against the
  destination pod's container ports (for egress rules too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ManifestError
from ..model import Requirement, Selector
from ..pods import PodInfo
from .rules import Endpoint, IPBlock, Peer, PortRule

NS_NAME_LABEL = "kubernetes.io/metadata.name"


def selector_from(raw: Any, where: str) -> Selector:
    """A LabelSelector's JSON → Selector; ManifestError naming `where` when malformed."""
    if raw is None:
        return Selector()
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a label selector, got {type(raw).__name__}")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        # `podSelector: {app: db}` (matchLabels forgotten): a server that drops unknown fields would
        # store {} and select every pod; strict validation rejects it. Never guess: say so.
        raise ManifestError(f"{where}: expected matchLabels and/or matchExpressions, got "
                            f"{', '.join(sorted(map(str, unknown)))} (labels go under matchLabels)")
    labels = raw.get("matchLabels") or {}
    exprs = raw.get("matchExpressions") or []
    if not isinstance(labels, dict) or not isinstance(exprs, list):
        raise ManifestError(f"{where}: matchLabels must be a mapping and matchExpressions a list")
    reqs = []
    for i, e in enumerate(exprs):
        if not isinstance(e, dict) or e.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ManifestError(f"{where}.matchExpressions[{i}]: expected key, operator "
                                "(In, NotIn, Exists, DoesNotExist) and values")
        reqs.append(Requirement(key=str(e.get("key", "")), operator=e["operator"],
                                values=tuple(str(v) for v in e.get("values") or ())))
    return Selector(match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                    match_expressions=tuple(reqs))


def peer_matches(peer: Peer, policy_ns: str, remote: Endpoint,
                 namespace_labels: Callable[[str], Mapping[str, str]], *, ipblock_matches_pods: bool) -> bool:
    """Whether a rule's peer selects the remote endpoint."""
    if peer.ip_block is not None:
        if remote.pod is not None and not ipblock_matches_pods:
            return False
        return block_matches(peer.ip_block, remote.address)
    if remote.pod is None:
        return False  # selectors only ever select pods
    pod = remote.pod
    if peer.namespace_selector is not None:
        if not peer.namespace_selector.matches(namespace_labels(pod.namespace)):
            return False
    elif pod.namespace != policy_ns:
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(pod.labels)


def block_matches(block: IPBlock, address: str) -> bool:
    """Whether an ipBlock holds an address; an unknown one ("") is only in a block of everything."""
    if not address:
        return block.cidr.prefixlen == 0 and not block.excepts
    return block.contains(address)


def port_matches(rule_port: PortRule, port: int, protocol: str, dst: PodInfo | None) -> bool:
    """Whether a rule's port entry admits port/protocol to `dst` (named ports resolved there)."""
    if rule_port.protocol != protocol:
        return False
    if rule_port.port is None:
        return True
    if isinstance(rule_port.port, str):
        if dst is None:
            return False
        return any(cp.name == rule_port.port and cp.protocol == protocol and cp.port == port
                   for cp in dst.ports)
    if rule_port.end_port is not None:
        return rule_port.port <= port <= rule_port.end_port
    return rule_port.port == port

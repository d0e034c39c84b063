"""Sources × targets → one agent plan per network identity.

Pure: the pods come in as PodInfo values (from cluster.py or a test). The manifest that
carries a plan into the cluster is probepod.py; the results coming back are observe.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Source, Target, TargetKind
from .pods import Identity, PodInfo, group_identities


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


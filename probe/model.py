"""Plain values shared by every layer: selectors, sources, targets, verdicts, cells.

Nothing here performs I/O. Values are frozen dataclasses so that a plan or a result can be
hashed, compared and passed between threads without surprises.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NewType

Namespace = NewType("Namespace", str)
RunId = NewType("RunId", str)


class Verdict(str, enum.Enum):
    """What a probe observed for one source → target cell (or one sub-check of it)."""

    ALLOWED = "allowed"  # connected / resolved
    BLOCKED = "blocked"  # no answer within the timeout: the usual sign of a policy drop
    REFUSED = "refused"  # RST: packets arrived and nothing listened (or a rejecting CNI)
    DNS_TIMEOUT = "dns-timeout"  # no DNS answer: egress to the cluster DNS is probably blocked
    NXDOMAIN = "nxdomain"  # DNS answered that the name does not exist: wrong name, not policy
    UNREACHABLE = "unreachable"  # ICMP unreachable / no route
    ERROR = "error"  # the probe itself failed; nothing is known about the network
    # Cell-level verdicts: never printed by the agent, decided by the diff.
    PARTIAL = "partial"  # some sub-checks connected and some did not: always a mismatch
    NO_ENDPOINTS = "no-endpoints"  # a Service with no ready endpoint refused it: proves nothing

    def __str__(self) -> str:
        return self.value


AGENT_VERDICTS = frozenset(v for v in Verdict if v not in (Verdict.PARTIAL, Verdict.NO_ENDPOINTS))

# Worst first: among sub-checks that all failed to connect, the cell shows the worst verdict —
# the one with the weakest proof of a deny (DNS only, then RST/ICMP, then a drop).
VERDICT_SEVERITY: tuple[Verdict, ...] = (
    Verdict.ERROR,
    Verdict.NO_ENDPOINTS,
    Verdict.PARTIAL,
    Verdict.NXDOMAIN,
    Verdict.DNS_TIMEOUT,
    Verdict.UNREACHABLE,
    Verdict.REFUSED,
    Verdict.BLOCKED,
    Verdict.ALLOWED,
)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of several verdicts (ALLOWED only when all are ALLOWED)."""
    items = list(verdicts)
    if not items:
        raise ValueError("worst() of no verdicts")
    return min(items, key=VERDICT_SEVERITY.index)


class Proof(str, enum.Enum):
    """How a matching deny was established (README "Verdicts")."""

    DROPPED = "dropped"  # the connection timed out: packets were dropped, as a policy does
    REJECTED = "rejected"  # RST or ICMP: no connection was made (a rejecting CNI, or nothing listens)
    NOT_RESOLVABLE = "not-resolvable"  # DNS failed, so the port itself was never tested

    def __str__(self) -> str:
        return self.value


# Weakest first: a cell made of several sub-checks is only as proven as its weakest one.
PROOF_STRENGTH: tuple[Proof, ...] = (Proof.NOT_RESOLVABLE, Proof.REJECTED, Proof.DROPPED)


class Expectation(str, enum.Enum):
    """What the user (or the NetworkPolicies) say a cell should be."""

    ALLOW = "allow"
    DENY = "deny"

    def __str__(self) -> str:
        return self.value


SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Apply this requirement the way Kubernetes' label selector does."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise ValueError(f"unknown selector operator {self.operator!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """A Kubernetes label selector: matchLabels AND every matchExpressions entry."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """An empty selector selects everything."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when the labels satisfy every term of the selector."""
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def to_label_selector(self) -> str:
        """The selector as the API's labelSelector query string."""
        terms = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.match_expressions:
            if r.operator == "In":
                terms.append(f"{r.key} in ({','.join(r.values)})")
            elif r.operator == "NotIn":
                terms.append(f"{r.key} notin ({','.join(r.values)})")
            elif r.operator == "Exists":
                terms.append(r.key)
            else:
                terms.append(f"!{r.key}")
        return ",".join(terms)

    def to_dict(self) -> dict[str, object]:
        """The selector in Kubernetes' JSON form."""
        out: dict[str, object] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
                for r in self.match_expressions
            ]
        return out

    def __str__(self) -> str:
        return self.to_label_selector() or "<all pods>"

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Selector:
        """A selector of matchLabels only."""
        return cls(match_labels=tuple(sorted(labels.items())))


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """A workload whose network identity probe pods borrow."""

    name: str
    namespace: Namespace
    selector: Selector


class TargetKind(str, enum.Enum):
    """How a target is probed."""

    DNS = "dns"  # resolve a name
    TCP = "tcp"  # connect to host:port (a Service name, any name, or an IP)
    PODS = "pods"  # connect to the IP of every pod a selector matches
    HTTP = "http"  # GET a URL (external reachability with a status code)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A column of the matrix."""

    name: str
    kind: TargetKind
    host: str = ""  # DNS name, TCP host, or HTTP URL
    port: int = 0
    namespace: Namespace | None = None  # PODS only
    selector: Selector | None = None  # PODS only
    external: bool = False

    def describe(self) -> str:
        """A short human description: `db.default.svc.cluster.local:5432`."""
        if self.kind is TargetKind.DNS:
            return f"DNS {self.host}"
        if self.kind is TargetKind.PODS:
            return f"pods {self.selector} in {self.namespace}:{self.port}"
        if self.kind is TargetKind.HTTP:
            return self.host
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubResult:
    """One sub-check of a cell: one network identity of the source probing one destination.

    A cell stands for every identity of its source (one probe pod each) and, for a
    pod-selector target, every selected pod; it matches only when every sub-result does.
    """

    identity: str = ""  # the probe pod's identity (`ns/app=api sa=x`), or a source pod with --per-pod
    pod: str = ""  # ns/name of the target pod, for pod-selector targets
    ip: str = ""  # the address probed (target pod IP), when known
    verdict: Verdict
    detail: str = ""
    proof: Proof | None = None  # set on a sub-result that proves a deny

    @property
    def connected(self) -> bool:
        """A connection was made (or the name resolved): proof that the path is open."""
        return self.verdict is Verdict.ALLOWED


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """One source × target result after the diff."""

    source: str
    target: str
    expected: Expectation
    observed: Verdict
    match: bool | None  # None: not probed (nothing proven either way)
    detail: str = ""
    reason: str = ""  # why it mismatched or was not probed, in words; empty when it matches
    attempts: int = 1  # probe rounds this cell took part in
    history: tuple[Verdict, ...] = ()  # the cell's verdict per round, oldest first
    elapsed_ms: int | None = None
    subresults: tuple[SubResult, ...] = ()  # every identity × destination of the deciding round
    proof: Proof | None = None  # how a matching deny was established (the weakest sub-result's)
    unstable: bool = False  # --settle: the verdict was still changing between rounds
    expected_by: str = ""  # where the expectation came from: "spec" or a policy explanation

    @property
    def is_error(self) -> bool:
        """The cell was not probed (the probe failed, or what it saw proves nothing)."""
        return self.match is None

    @property
    def pods(self) -> tuple[tuple[str, Verdict], ...]:
        """(target pod, verdict) per sub-check of a pod-selector target (JSON version 1's `pods`)."""
        return tuple((s.pod, s.verdict) for s in self.subresults if s.pod)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """Everything a report needs: the cells, in source-then-target order.

    Its wire format (the versioned JSON document) is `probe/result.py`; the text renderers are
    `probe/report.py`. This type knows neither, so every layer can import it.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    cells: tuple[Cell, ...]
    run_id: str = ""
    started: str = ""  # ISO 8601
    duration_s: float = 0.0
    problems: tuple[str, ...] = ()  # run-level failures (a source matched no pod, ...)
    warnings: tuple[str, ...] = ()
    settle_s: float | None = None  # how long the cluster took to settle (--settle)
    meta: Mapping[str, object] = field(default_factory=dict)
    drift: tuple[tuple[str, str, Verdict, Verdict], ...] = ()  # (source, target, before, now) vs a baseline

    @property
    def mismatches(self) -> tuple[Cell, ...]:
        """Cells whose observation contradicts the expectation (unstable cells included)."""
        return tuple(c for c in self.cells if c.match is False)

    @property
    def errors(self) -> tuple[Cell, ...]:
        """Cells that were not probed."""
        return tuple(c for c in self.cells if c.match is None)

    @property
    def unstable(self) -> tuple[Cell, ...]:
        """Cells whose verdict still changed between the last rounds of --settle."""
        return tuple(c for c in self.cells if c.unstable)

    @property
    def ok(self) -> bool:
        """Every cell was probed and matched, nothing drifted, and the run had no problems."""
        return not self.problems and not self.drift and all(c.match is True for c in self.cells)

    @property
    def exit_code(self) -> int:
        """1 on any mismatch or drift; else 3 when something was not probed; else 0.

        A proven mismatch outranks "could not probe": one scaled-to-zero source must never
        turn a real leak into an infrastructure flake that CI retries.
        """
        if self.mismatches or self.drift:
            return 1
        if self.problems or self.errors:
            return 3
        return 0

    def cell(self, source: str, target: str) -> Cell:
        """The cell for one source and target."""
        for c in self.cells:
            if c.source == source and c.target == target:
                return c
        raise KeyError((source, target))

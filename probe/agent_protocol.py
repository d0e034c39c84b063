"""The agent protocol: the JSON plan a probe pod receives, and the JSON document it prints.

`probe/agent.py` is the other end; it is stdlib-only and travels alone into the pod, so it
cannot import this module — both sides check the version field instead.
"""

from __future__ import annotations

import json
from typing import Any

from .model import AGENT_VERDICTS
from .plan import ProbePlan

PROTOCOL_VERSION = 1
_AGENT_VERDICTS = frozenset(str(v) for v in AGENT_VERDICTS)


def plan_document(plan: ProbePlan) -> dict[str, Any]:
    """The JSON document the agent receives."""
    doc: dict[str, Any] = {"version": PROTOCOL_VERSION, "timeout": plan.timeout, "attempts": plan.attempts,
                           "checks": [dict(c) for c in plan.checks]}
    if plan.warmup and plan.warmup_mode == "fixed":
        doc["warmup"] = plan.warmup
    elif plan.warmup:
        # The readiness gate (agent.run_gate): start as soon as the policy is observably in force.
        doc["gate"] = {"bound": plan.warmup, "connect": list(plan.gate_connect),
                       "block": list(plan.gate_block)}
        # A failure seen while a fail-closed CNI still drops every packet of the new pod proves
        # nothing, so the gate also looks at the pod's network: the cluster DNS answering. Where
        # nothing is expected to connect, that is what the gate waits for; otherwise it is looked
        # at beside the expected connections until it answers (the report's network_seen).
        doc["gate"]["network"] = GATE_NETWORK_NAME
    return doc


# The name the gate looks up to see the pod's network: the API server's Service exists in every
# cluster, and any answer to it (even NXDOMAIN, on a cluster domain the search path misses)
# shows the pod's packets flow.
GATE_NETWORK_NAME = "kubernetes.default"
# The id of that look in the gate's report (the agent's NETWORK_CHECK), e.g. `connect` of an
# all-deny probe pod: ["gate:network"].
GATE_NETWORK_CHECK = "gate:network"


GATE_OPENED = ("condition-met", "bound-reached", "no-candidate", "fixed")


def parse_agent_gate(text: str) -> dict[str, Any] | None:
    """The agent's report of its readiness gate (how long it waited and why it opened), if any.

    Tolerant: the gate is information about timing, never a verdict, so an output without a
    readable gate report gives None rather than an error.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    gate = doc.get("gate") if isinstance(doc, dict) else None
    if not isinstance(gate, dict) or gate.get("opened") not in GATE_OPENED \
            or not isinstance(gate.get("waited_ms"), int):
        return None
    return gate


def encode_plan(plan: ProbePlan) -> str:
    """The plan as the compact JSON text the agent reads from argv."""
    return json.dumps(plan_document(plan), separators=(",", ":"))


def parse_agent_output(text: str) -> dict[str, dict[str, Any]]:
    """{check id: result} from the agent's JSON; ValueError saying what is wrong."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        snippet = text.strip()[:120] or "<empty>"
        raise ValueError(f"agent output is not JSON ({exc.msg}): {snippet}") from None
    if not isinstance(doc, dict) or doc.get("version") != PROTOCOL_VERSION or not isinstance(doc.get("results"), list):
        raise ValueError("agent output has the wrong shape or version (expected version 1 with results)")
    out = {}
    for r in doc["results"]:
        if not isinstance(r, dict) or "id" not in r or "verdict" not in r:
            raise ValueError("agent result without id/verdict")
        for v in [r["verdict"], *(r.get("history") or [])]:
            if v not in _AGENT_VERDICTS:  # `partial` and `no-endpoints` are the diff's, never the agent's
                raise ValueError(f"agent result {r['id']!r}: unknown verdict {v!r}")
        out[str(r["id"])] = r
    return out



def parse_agent_elapsed(text: str) -> int | None:
    """The agent's own run time in ms (gate and checks), for `-v`; None when unreadable."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    elapsed = doc.get("elapsed_ms") if isinstance(doc, dict) else None
    return elapsed if isinstance(elapsed, int) else None

"""Run the real agent as a subprocess, the way a probe pod runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

AGENT = Path(__file__).resolve().parent.parent / "probe" / "agent.py"


def run_agent(plan: dict[str, Any] | str, *, netns: str | None = None,
              timeout: float = 60) -> tuple[int, dict[str, Any] | None, str]:
    """(exit code, parsed stdout or None, stderr)."""
    text = plan if isinstance(plan, str) else json.dumps(plan)
    cmd = [sys.executable, str(AGENT), text]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={"NETPROBE_TERMINATION_LOG": "/nonexistent/termination-log"})
    doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, doc, proc.stderr


def verdicts(doc: dict[str, Any]) -> dict[str, str]:
    """{check id: verdict}."""
    return {r["id"]: r["verdict"] for r in doc["results"]}


def result(doc: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(r for r in doc["results"] if r["id"] == cid)

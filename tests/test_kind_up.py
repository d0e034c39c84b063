"""e2e/kind-up.sh's enforcement check, with kind and kubectl replaced by scripts that play a
cluster: a deny must be proven by a probe that ran, after a connection that must succeed did."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "e2e" / "kind-up.sh"

KUBECTL = r"""#!/usr/bin/env bash
# $MODE: calico (enforces once deny-all exists) | broken (probe pods never run) | nocni (nothing connects)
args="$*"
case "$args" in
  *"apply"*) input=$(cat); case "$input" in *deny-all*) touch "$STATE/deny";; esac ;;
  *"create namespace"*) echo "apiVersion: v1"; echo "kind: Namespace" ;;
  *"get pod server -o jsonpath"*) echo 10.244.1.5 ;;
  *"get pod server"*) exit 1 ;;
  *" run probe-"*)
    echo "$args" >> "$STATE/probes"
    case "$MODE" in
      broken) echo 'Error: ImagePullBackOff' >&2; exit 1 ;;
      nocni) echo "RESULT blocked"; exit 1 ;;
      calico) if [ -e "$STATE/deny" ]; then echo "RESULT blocked"; else echo "RESULT connected"; fi
              echo "DNS ok" ;;
    esac ;;
esac
exit 0
"""


def run_kind_up(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"kubectl": KUBECTL, "kind": "#!/bin/sh\necho netprobe\n", "sleep": "#!/bin/sh\n"}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MODE": mode, "STATE": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
    log = (tmp_path / "probes").read_text() if (tmp_path / "probes").exists() else ""
    probes = [line for line in log.splitlines() if " run probe-" in line]
    return proc, probes


def test_enforcement_is_proven_after_a_positive_control(tmp_path):
    proc, probes = run_kind_up(tmp_path, "calico")
    assert proc.returncode == 0, proc.stderr
    assert "Calico enforces NetworkPolicy" in proc.stderr
    assert len(probes) == 2  # one connection before deny-all, one after


@pytest.mark.parametrize("mode, says", [
    ("broken", "positive control failed"),  # probe pods that never run prove nothing
    ("nocni", "positive control failed"),  # nothing connects even without a policy
])
def test_a_failing_probe_is_never_taken_for_enforcement(tmp_path, mode, says):
    proc, _ = run_kind_up(tmp_path, mode)
    assert proc.returncode == 1, proc.stderr
    assert says in proc.stderr and "Calico enforces" not in proc.stderr


def test_the_node_image_is_pinned_by_digest_and_coredns_awaited():
    text = SCRIPT.read_text()
    assert "kindest/node:v1." in text and "@sha256:" in text and '--image "$NODE_IMAGE"' in text
    assert "deployment/coredns" in text

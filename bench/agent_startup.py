"""Agent start-up cost: CPU and wall of one tiny plan, run the way a probe pod runs it.

A probe pod runs `python3 -c BOOTSTRAP PLAN` (the agent minified and compressed) from an
image whose standard library has no .pyc files and whose root is read-only, so every module
the agent imports is compiled from
source in every pod. Each run here gets a fresh, empty PYTHONPYCACHEPREFIX, so nothing is
cached between runs either. The plan: one TCP check to a loopback listener, one to a closed
port (both answer at once), so the figures are start-up and imports, not waiting.

    python3 bench/agent_startup.py [--agent probe/agent.py] [--runs 5] [--no-site] [--https]

`--no-site` runs python3 -S: this machine's site-packages .pth files cost more than the
agent itself; a probe image has none of them. `--https` adds an https check (to the closed
port: refused at once), for which the agent imports ssl.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AGENT = ROOT / "probe" / "agent.py"

from probe.probepod import bootstrap, minified  # noqa: E402


def one_run(source: str, plan: str, no_site: bool) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one agent process with an empty bytecode cache."""
    cache = tempfile.mkdtemp(prefix="agent-startup-")
    env = {"PYTHONPYCACHEPREFIX": cache, "NETPROBE_TERMINATION_LOG": "/nonexistent", "PATH": os.environ["PATH"]}
    cmd = [sys.executable, *(["-S"] if no_site else []), "-c", source, plan]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        subprocess.run(cmd, capture_output=True, check=True, env=env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", type=Path, default=AGENT)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-site", action="store_true")
    parser.add_argument("--https", action="store_true")
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    checks = [{"id": "open", "kind": "tcp", "host": "127.0.0.1", "port": listener.getsockname()[1]},
              {"id": "closed", "kind": "tcp", "host": "127.0.0.1", "port": closed.getsockname()[1]}]
    if args.https:
        checks.append({"id": "tls", "kind": "http", "url": f"https://127.0.0.1:{closed.getsockname()[1]}/"})
    plan = json.dumps({"version": 1, "timeout": 1, "checks": checks})
    # as a probe pod runs it: minified, compressed, unpacked by the one-line bootstrap
    source = bootstrap(minified(args.agent.read_text(encoding="utf-8")))
    print(f"agent: {args.agent}  runs: {args.runs}  site: {'off (-S)' if args.no_site else 'on'}"
          f"  plan: 2 tcp checks{' + 1 https' if args.https else ''}")
    # The same interpreter running nothing: what any probe pod pays before the agent's first line.
    for label, code in (("python3 -c pass", "pass"), ("agent", source)):
        runs = [one_run(code, plan, args.no_site) for _ in range(args.runs)]
        cpus, walls = [r[0] for r in runs], [r[1] for r in runs]
        print(f"{label:16} CPU (user+sys) median {statistics.median(cpus):.3f}s"
              f" [{min(cpus):.3f}-{max(cpus):.3f}]  wall median {statistics.median(walls):.3f}s"
              f" [{min(walls):.3f}-{max(walls):.3f}]")
    listener.close()
    closed.close()


if __name__ == "__main__":
    main()

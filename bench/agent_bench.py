"""Agent benchmark: one plan of N TCP checks, half to a listener, half silently dropped.

Prints wall time, the ratio wall/timeout (target <= 1.5 on 2 cores) and the agent's peak RSS.
The drop is real: a listener whose accept queue is full makes the kernel drop new SYNs,
so those connects time out exactly like a NetworkPolicy drop (no root needed).

    python3 bench/agent_bench.py [--checks 500] [--timeout 1.0] [--agent PATH]

(`--agent` runs another copy, e.g. `git show main:probe/agent.py > /tmp/agent_old.py`, to compare.)
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probe.probepod import split_argument

AGENT = Path(__file__).resolve().parent.parent / "probe" / "agent.py"


def blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listener that never accepts, its queue filled: further SYNs are dropped."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(server.getsockname())
        fillers.append(c)
    time.sleep(0.2)
    return server, fillers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--agent", type=Path, default=AGENT)
    args = parser.parse_args()
    open_sock = socket.socket()
    open_sock.bind(("127.0.0.1", 0))
    open_sock.listen(4096)
    hole, fillers = blackhole()
    half = args.checks // 2
    checks = [{"id": f"o{i}", "kind": "tcp", "host": "127.0.0.1", "port": open_sock.getsockname()[1]}
              for i in range(half)]
    checks += [{"id": f"b{i}", "kind": "tcp", "host": "127.0.0.1", "port": hole.getsockname()[1]}
               for i in range(args.checks - half)]
    plan = json.dumps({"version": 1, "timeout": args.timeout, "checks": checks})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(args.agent), *split_argument(plan)], capture_output=True, text=True,
                          env={"NETPROBE_TERMINATION_LOG": "/nonexistent"}, check=True)
    wall = time.monotonic() - started
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    verdicts: dict[str, int] = {}
    for r in json.loads(proc.stdout)["results"]:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    print(f"checks: {args.checks} ({half} to a listener, {args.checks - half} dropped), timeout {args.timeout:g}s")
    print(f"verdicts: {verdicts}")
    print(f"wall: {wall:.2f}s  ratio wall/timeout: {wall / args.timeout:.2f}  (target <= 1.5)")
    print(f"agent peak RSS: {rss_mib:.1f} MiB")
    for s in (open_sock, hole, *fillers):
        s.close()


if __name__ == "__main__":
    main()

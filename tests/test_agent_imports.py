"""What the agent imports: every module is compiled again in every probe pod (no .pyc in the image).

The agent runs here as a probe pod runs it, `python3 -c BOOTSTRAP PLAN` (the compressed program), under `-X importtime`,
which names every module imported, and with `-S` so this machine's site-packages cannot add
modules of their own. asyncio (with concurrent.futures, ssl, ...) cost each pod ~0.3 s of CPU.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from dnsfixture import Zone, dns_server

from probe.probepod import agent_bootstrap

HEAVY = {"asyncio", "concurrent.futures", "threading", "typing", "ipaddress", "random"}
# what the C modules under them spare a pod that has no TLS to do (~55 ms of compiling in all)
PURE_PYTHON = {"socket", "selectors", "json", "re", "enum", "functools", "collections", "struct",
               "encodings.idna", "stringprep"}


def imports_of_a_run(plan: dict[str, Any]) -> tuple[set[str], dict[str, Any]]:
    """(modules the agent imported, its result document)."""
    proc = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", agent_bootstrap(), json.dumps(plan)],
        capture_output=True, text=True, timeout=60, env={"NETPROBE_TERMINATION_LOG": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "_socket" in modules and "select" in modules  # the trace is real: it names what was imported
    return modules, json.loads(proc.stdout)


def test_dns_and_tcp_plan_imports_neither_asyncio_nor_ssl(tmp_path: Path, loopback_ip: str) -> None:
    zone = Zone(records={"db.default.svc.cluster.local": ["127.0.0.1"]})
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"search default.svc.cluster.local\nnameserver {loopback_ip}\noptions ndots:5\n")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        with dns_server(loopback_ip, zone):
            modules, doc = imports_of_a_run({"version": 1, "timeout": 2, "resolv_conf": str(conf), "checks": [
                {"id": "dns", "kind": "dns", "name": "db"},
                {"id": "tcp", "kind": "tcp", "host": "db", "port": server.getsockname()[1]},
                {"id": "http", "kind": "http", "url": f"http://127.0.0.1:{server.getsockname()[1]}/"}],
                "gate": {"bound": 2, "connect": ["dns"], "block": []}})
    finally:
        server.close()
    assert [r["verdict"] for r in doc["results"]] == ["allowed", "allowed", "allowed"]
    assert "ssl" not in modules and "_ssl" not in modules
    assert not modules & HEAVY, modules & HEAVY
    assert not modules & PURE_PYTHON, modules & PURE_PYTHON


def test_a_plan_with_an_https_check_imports_ssl(closed_port: int) -> None:
    modules, doc = imports_of_a_run({"version": 1, "timeout": 1, "checks": [
        {"id": "h", "kind": "http", "url": f"https://127.0.0.1:{closed_port}/"}]})
    # ssl is loaded for the plan, before any check: even one that never reaches a handshake
    assert doc["results"][0]["verdict"] == "refused"
    assert "ssl" in modules
    assert not modules & HEAVY, modules & HEAVY

"""Run benchmark on a real cluster ($KUBECONFIG, e.g. the lab): API calls and wall time.

1. Identity dedup: P source pods in K identities → K probe pods, API calls per run.
2. Scaling: wall time with 1, 5, 20 identities against the bound
   "probe pod start-up + warm-up + one probe timeout" (target <= 1.5x).

    python3 bench/run_bench.py [--pods 90 --identities 10] [--scaling 1,5,20] [--image lab.local/python:3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL", "kubectl")


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, check=True).stdout


def deploy(ns: str, identities: int, replicas: int, image: str) -> None:
    docs = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"id{i}"},
             "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": f"id{i}"}},
                      "template": {"metadata": {"labels": {"app": f"id{i}", "bench": "yes"}},
                                   "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                                       "name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                                       "command": ["sleep", "infinity"],
                                       "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]}}}}
            for i in range(identities)]
    kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all(docs))
    for i in range(identities):
        kubectl("-n", ns, "rollout", "status", f"deploy/id{i}", "--timeout=300s")


def clear(ns: str) -> None:
    kubectl("delete", "deploy,job", "--all", "-n", ns, "--wait=false")
    deadline = time.monotonic() + 120
    while kubectl("get", "pods", "-n", ns, "-o", "name").strip() and time.monotonic() < deadline:
        time.sleep(1)


def startup_s(ns: str, image: str) -> float:
    """Creation → completion of a Job that only starts python3: the probe pod's fixed cost."""
    name = f"startup-{secrets.token_hex(2)}"
    started = time.monotonic()
    kubectl("-n", ns, "create", "job", name, f"--image={image}", "--", "python3", "-c", "pass")
    kubectl("-n", ns, "wait", "--for=condition=complete", f"job/{name}", "--timeout=120s")
    elapsed = time.monotonic() - started
    kubectl("-n", ns, "delete", "job", name, "--wait=false")
    return elapsed


def run(ns: str, image: str, timeout: float, warmup: float) -> tuple[float, dict]:
    spec = {"version": 1, "defaults": {"timeout": f"{timeout}s"},
            "sources": [{"name": "all", "selector": {"bench": "yes"}}],
            "targets": [{"name": "dns", "dns": "kubernetes.default"},
                        {"name": "blackhole", "tcp": "203.0.113.13:80"}],
            "expect": {"all": {"dns": "allow", "blackhole": "deny"}}}
    path = Path(f"/tmp/netprobe-bench-{ns}.yaml")
    path.write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "probe", "run", "-f", str(path), "-n", ns, "--image", image,
                           "-o", "json", "--warmup", f"{warmup}s"], capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"netprobe failed ({proc.returncode}): {proc.stderr}{proc.stdout[-500:]}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=90)
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--scaling", default="1,5,20")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--image", default=os.environ.get("NETPROBE_LAB_PYTHON_IMAGE", "python:3.12-alpine"))
    args = parser.parse_args()
    ns = f"np-bench-{secrets.token_hex(2)}"
    kubectl("create", "namespace", ns)
    try:
        deploy(ns, args.identities, args.pods // args.identities, args.image)
        wall, doc = run(ns, args.image, args.timeout, args.warmup)
        print(f"dedup: {args.pods} source pods in {args.identities} identities -> {doc['meta']['probe_pods']} "
              f"probe pods, {doc['meta']['api_calls']} API calls, {wall:.1f}s wall")
        clear(ns)
        print(f"{'identities':>10} {'wall':>7} {'startup':>8} {'bound':>7} {'ratio':>6} {'API calls':>9}")
        for k in (int(x) for x in args.scaling.split(",")):
            deploy(ns, k, 1, args.image)
            startup = startup_s(ns, args.image)
            wall, doc = run(ns, args.image, args.timeout, args.warmup)
            bound = startup + args.warmup + args.timeout
            print(f"{k:>10} {wall:>6.1f}s {startup:>7.1f}s {bound:>6.1f}s {wall / bound:>6.2f} "
                  f"{doc['meta']['api_calls']:>9}")
            clear(ns)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()

"""Run benchmark on a real cluster ($KUBECONFIG, e.g. the lab): wall time against the physical limit.

The limit of a run is "start the probe pods, wait one probe timeout". The bench measures the
first half itself: B(N) = the wall time of N bare Jobs with the same image running
`python3 -c pass`, created together (one thread per Job), from the first create to the last
pod seen Succeeded by a watch; and B_net(N), the same Jobs running a loop that exits once the
pod can reach the cluster DNS (on a CNI that programs new pods late, the earliest moment any
probe means anything; ratio_net = wall / (B_net(N) + timeout)). Side by side it measures
netprobe's wall time (the real CLI as a subprocess, process start to exit) for N identities with one DNS check (expected
allow) and one TCP check to a black hole (expected deny: it takes the whole timeout), and
prints wall / (B(N) + timeout). Target: <= 1.2.

    python3 bench/run_bench.py [--scaling 1,5,20,50] [--timeout 2] [--repeat 2] [--warmup 10s]
                               [--image lab.local/python:3] [--show-log]
    python3 bench/run_bench.py --dedup --pods 90 --identities 10   # identity dedup: API calls

B(N) and netprobe alternate `--repeat` times per N; the table shows medians. The bench uses
the kubernetes client directly (it is not part of the netprobe package).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("KUBECTL", "kubectl")
BLACKHOLE = os.environ.get("NETPROBE_LAB_BLACKHOLE_IP", "203.0.113.13")


def kubectl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


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
    wait_no_pods(ns)


def wait_no_pods(ns: str, selector: str = "") -> None:
    deadline = time.monotonic() + 180
    args = ["get", "pods", "-n", ns, "-o", "name"] + (["-l", selector] if selector else [])
    while kubectl(*args).strip() and time.monotonic() < deadline:
        time.sleep(1)


# B_net(N)'s pods: exit once the pod's network is up, i.e. once a TCP connection to the cluster
# DNS (the first nameserver of resolv.conf) succeeds, trying every 50 ms. On a CNI that programs a
# new pod late (the lab's enforcer learns a pod from its status.podIP), this is the earliest any
# probe of that pod can mean anything.
WAIT_FOR_NETWORK = """
import socket, time
ns = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
while True:
    try:
        socket.create_connection((ns, 53), 0.05).close()
        break
    except OSError:
        time.sleep(0.05)
"""


class Bare:
    """B(N): N bare Jobs running `python3 -c pass` (B_net(N): WAIT_FOR_NETWORK), created together,
    timed to the last Succeeded."""

    def __init__(self, image: str) -> None:
        from kubernetes import client, config

        config.load_kube_config()
        self.core, self.batch, self.image = client.CoreV1Api(), client.BatchV1Api(), image

    def job(self, name: str, label: str, network: bool) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 30, "template": {
                    "metadata": {"labels": {"bare": label}},
                    "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "c", "image": self.image,
                                             "imagePullPolicy": "IfNotPresent",
                                             "command": ["python3", "-c", WAIT_FOR_NETWORK if network
                                                         else "pass"]}]}}}}

    def measure(self, ns: str, n: int, network: bool = False) -> float:
        from kubernetes import watch

        label = secrets.token_hex(3)
        jobs = [self.job(f"bare-{label}-{i}", label, network) for i in range(n)]
        # Watch first, so no completion is missed; then create every Job at once.
        rv = self.core.list_namespaced_pod(ns, label_selector=f"bare={label}").metadata.resource_version
        started = time.monotonic()
        threads = [threading.Thread(target=self.batch.create_namespaced_job, args=(ns, j)) for j in jobs]
        for t in threads:
            t.start()
        done: set[str] = set()
        w = watch.Watch()
        for event in w.stream(self.core.list_namespaced_pod, ns, label_selector=f"bare={label}",
                              resource_version=rv, timeout_seconds=300):
            pod = event["object"]
            if pod.status.phase == "Succeeded":
                done.add(pod.metadata.labels["job-name"])
            if len(done) == n:
                w.stop()
        elapsed = time.monotonic() - started
        for t in threads:
            t.join()
        self.batch.delete_collection_namespaced_job(ns, label_selector=f"bare={label}",
                                                    propagation_policy="Background")
        self.core.delete_collection_namespaced_pod(ns, label_selector=f"bare={label}")
        wait_no_pods(ns, f"bare={label}")
        return elapsed


def netprobe(ns: str, image: str, timeout: float, *extra: str) -> tuple[float, dict[str, Any], str]:
    spec = {"version": 1, "defaults": {"timeout": f"{timeout}s"},
            "sources": [{"name": "all", "selector": {"bench": "yes"}}],
            "targets": [{"name": "dns", "dns": "kubernetes.default"},
                        {"name": "blackhole", "tcp": f"{BLACKHOLE}:80"}],
            "expect": {"all": {"dns": "allow", "blackhole": "deny"}}}
    path = Path(f"/tmp/netprobe-bench-{ns}.yaml")
    path.write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "probe", "run", "-f", str(path), "-n", ns, "--image", image,
                           "-o", "json", "-v", *extra], capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        saved = Path(f"/tmp/netprobe-bench-{ns}-failed.json")
        saved.write_text(proc.stdout)
        raise SystemExit(f"netprobe failed ({proc.returncode}): {proc.stderr}(the result: {saved})")
    wait_no_pods(ns, "netprobe.io/run")
    return wall, json.loads(proc.stdout), proc.stderr


def scaling(ns: str, args: argparse.Namespace) -> None:
    bare = Bare(args.image)
    print(f"{'N':>3} {'B(N)':>6} {'B_net(N)':>8} {'netprobe':>9} {'ratio':>6} {'ratio_net':>9} "
          f"{'gate wait max':>13} {'API calls':>9}", flush=True)
    for n in (int(x) for x in args.scaling.split(",")):
        deploy(ns, n, 1, args.image)
        bs, bnets, walls, gates, calls = [], [], [], [], 0
        for _ in range(args.repeat):
            bs.append(bare.measure(ns, n))
            bnets.append(bare.measure(ns, n, network=True))
            wall, doc, log = netprobe(ns, args.image, args.timeout, "--warmup", args.warmup)
            walls.append(wall)
            gates += [g["waited_ms"] / 1000 for g in doc["meta"].get("gates", [])]
            calls = doc["meta"]["api_calls"]
            if args.show_log:
                print(log, file=sys.stderr)
        b, bnet, wall = statistics.median(bs), statistics.median(bnets), statistics.median(walls)
        print(f"{n:>3} {b:>5.1f}s {bnet:>7.1f}s {wall:>8.1f}s {wall / (b + args.timeout):>6.2f} "
              f"{wall / (bnet + args.timeout):>9.2f} {max(gates, default=0):>12.2f}s {calls:>9}   "
              f"(B: {', '.join(f'{x:.1f}' for x in bs)}; B_net: {', '.join(f'{x:.1f}' for x in bnets)}; "
              f"netprobe: {', '.join(f'{x:.1f}' for x in walls)})", flush=True)
        clear(ns)


def dedup(ns: str, args: argparse.Namespace) -> None:
    deploy(ns, args.identities, args.pods // args.identities, args.image)
    wall, doc, _ = netprobe(ns, args.image, args.timeout)
    print(f"dedup: {args.pods} source pods in {args.identities} identities -> {doc['meta']['probe_pods']} "
          f"probe pods, {doc['meta']['api_calls']} API calls, {wall:.1f}s wall", flush=True)
    clear(ns)


def main() -> None:
    # An installed netprobe has its bytecode (pip compiles it); a checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would compile every module in every run (~0.1 s of the CLI's start).
    import compileall

    compileall.compile_dir(str(ROOT / "probe"), quiet=1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--scaling", default="1,5,20,50", help="identity counts N (empty: skip)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=2.0)
    # The gate's bound: it opens as soon as the pod's network answers, so a generous bound costs
    # nothing -- but with 50 pods starting on the lab's one node, the enforcer programs some of
    # them more than 2 s (netprobe's default) after their agent started (see B_net(N)).
    parser.add_argument("--warmup", default="10s", help="netprobe's --warmup (default %(default)s)")
    parser.add_argument("--dedup", action="store_true", help="also the identity-dedup run")
    parser.add_argument("--pods", type=int, default=90)
    parser.add_argument("--identities", type=int, default=10)
    parser.add_argument("--show-log", action="store_true", help="print each run's -v log on stderr")
    parser.add_argument("--image", default=os.environ.get("NETPROBE_LAB_PYTHON_IMAGE", "python:3.12-alpine"))
    args = parser.parse_args()
    ns = f"np-bench-{secrets.token_hex(2)}"
    kubectl("create", "namespace", ns)
    try:
        if args.dedup:
            dedup(ns, args)
        if args.scaling:
            scaling(ns, args)
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()

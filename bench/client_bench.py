"""What the kubernetes client costs a run before its first probe: a fresh process against the stub API.

Each repeat is one new `python3` process (the interpreter, imports, kubeconfig, then the first
requests of a run: a pod LIST, a Job create, a Job LIST) against tests/stubapi.py over real HTTP,
so the API server costs next to nothing and what is left is netprobe and its client.

    python3 bench/client_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from stubapi import StubAPI  # noqa: E402

CHILD = r"""
import sys, time
t0 = time.perf_counter()
from probe.cluster import KubeCluster
t1 = time.perf_counter()
kube = KubeCluster(kubeconfig=sys.argv[1])
t2 = time.perf_counter()
kube.list_pods("default", "app=api")
t3 = time.perf_counter()
kube.create_job({"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": "bench-" + sys.argv[2], "namespace": "default",
                              "labels": {"netprobe.io/run": "bench"}},
                 "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}})
kube.list_runs("default")
t4 = time.perf_counter()
import kubernetes
print(kubernetes.__version__, t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    walls = []
    with StubAPI(kubelet="hold", job_controller=False) as stub, tempfile.TemporaryDirectory() as tmp:
        stub.pod("api-0", labels={"app": "api"})
        kubeconfig = str(stub.kubeconfig(Path(tmp)))
        print("| kubernetes | import probe.cluster | KubeCluster() | first pod LIST | Job create + LIST "
              "| process wall |")
        print("|---|---|---|---|---|---|")
        for i in range(args.repeat):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, kubeconfig, str(i)], capture_output=True,
                                 text=True, check=True, cwd=ROOT).stdout.split()
            walls.append(time.perf_counter() - start)
            version, *seconds = out
            print(f"| {version} | " + " | ".join(f"{float(s):.3f} s" for s in seconds) + f" | {walls[-1]:.3f} s |")
    print(f"\nmedian process wall: {statistics.median(walls):.3f} s")


if __name__ == "__main__":
    main()

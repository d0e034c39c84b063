"""Policy analysis benchmark, measured through the CLI as a user runs it: `netprobe expect -f DIR -o json`.

A realistic generator writes what `kubectl get -A -o json` returns for a cluster of Deployments
and StatefulSets with replicas (a PodList whose pods carry ownerReferences, pod-template-hash
labels and node-range IPs), plus Namespaces and NetworkPolicies of the usual shapes: default
deny, DNS allow, app-to-app on a port (named or numbered), namespace selectors, ipBlock egress.
Each size runs `python3 -m probe expect` in a fresh process; wall time, peak RSS (of that process)
and output size are printed as a markdown table. np-guard's network-config-analyzer (`nca`) runs
on the same files when its path is given (it is not a netprobe dependency:
`python3 -m venv /tmp/nca && /tmp/nca/bin/pip install network-config-analyzer`).

    python3 bench/policy_bench.py                       # the targets: 1k pods x 300, 10k pods x 3,000
    python3 bench/policy_bench.py --growth 1000,2000,5000,10000
    python3 bench/policy_bench.py --sizes 200 --nca /tmp/nca/bin/nca
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TIERS = ("web", "api", "db")
PORTS = {"web": ("http", 8080), "api": ("http", 8000), "db": ("postgres", 5432)}


def shape(pods: int) -> tuple[int, int, int]:
    """(namespaces, workloads, policies): 1k pods → 50/50/300, 10k → 200/500/3,000 (issue 13's sizes)."""
    return max(1, round(50 * (pods / 1000) ** 0.6)), max(1, pods // 20), max(1, pods * 3 // 10)


def generate(out: Path, pods: int, namespaces: int, workloads: int, policies: int, seed: int = 7,
             fmt: str = "json") -> None:
    """Write pods.json (a PodList), namespaces and policies (.json typed lists, or .yaml) into `out`."""
    rng = random.Random(seed)
    nss = [f"team{i}" for i in range(namespaces)]
    ns_docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": n, "labels": {"team": f"t{i % 20}", "env": "prod" if i % 3 else "dev"}}} for i, n in enumerate(nss)]
    ns_docs += [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring",
                                                                       "labels": {"team": "platform"}}}]
    apps: list[tuple[str, str, str]] = []  # (namespace, name, tier)
    for w in range(workloads):
        apps.append((nss[w % namespaces], f"{TIERS[w % 3]}{w}", TIERS[w % 3]))
    replicas = [1] * workloads
    for _ in range(pods - workloads - 3):
        replicas[rng.randrange(workloads)] += 1
    items: list[dict[str, Any]] = []

    def pod(ns: str, name: str, labels: dict[str, str], owner: tuple[str, str], ports: list[dict[str, Any]]) -> None:
        n = len(items)
        node = n // 100  # ~100 pods a node, each node its own /24 of the pod network
        items.append({"metadata": {"name": name, "namespace": ns, "labels": labels, "uid": f"uid-{n}",
                                   "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                                        "controller": True, "uid": f"o-{owner[1]}"}]},
                      "spec": {"nodeName": f"node{node}", "serviceAccountName": "default",
                               "containers": [{"name": "main", "image": "registry.local/app:1", "ports": ports}]},
                      "status": {"phase": "Running", "podIP": f"10.{node // 250}.{node % 250}.{n % 100 + 2}",
                                 "hostIP": f"192.168.0.{node % 250}"}})

    for r in range(3):
        pod("kube-system", f"coredns-5d78c9869d-{r}", {"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"},
            ("ReplicaSet", "coredns-5d78c9869d"), [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}])
    for (ns, name, tier), count in zip(apps, replicas, strict=True):
        port_name, number = PORTS[tier]
        ports = [{"name": port_name, "containerPort": number}, {"name": "metrics", "containerPort": 9090}]
        if tier == "db":
            for r in range(count):
                pod(ns, f"{name}-{r}", {"app": name, "tier": tier, "controller-revision-hash": f"{name}-6c9f",
                                        "statefulset.kubernetes.io/pod-name": f"{name}-{r}"},
                    ("StatefulSet", name), ports)
        else:
            stamp = f"{zlib.crc32(name.encode()):010d}"
            for r in range(count):
                pod(ns, f"{name}-{stamp}-{r:05d}", {"app": name, "tier": tier, "pod-template-hash": stamp},
                    ("ReplicaSet", f"{name}-{stamp}"), ports)
    by_ns: dict[str, list[tuple[str, str]]] = {}
    for ns, name, tier in apps:
        by_ns.setdefault(ns, []).append((name, tier))

    dns_rule = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    pol_docs: list[dict[str, Any]] = []

    def policy(ns: str, name: str, spec: dict[str, Any]) -> None:
        pol_docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": name, "namespace": ns}, "spec": spec})

    open_ns = set(nss[::5])  # one namespace in five has no policy of its own (a dev namespace)
    for ns in nss:  # the two every other namespace has
        if ns not in open_ns:
            policy(ns, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
            policy(ns, "allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule]})
    locked = [n for n in nss if n not in open_ns] or nss
    while len(pol_docs) < policies:
        i = len(pol_docs)
        ns = rng.choice(locked)
        name, tier = rng.choice(by_ns.get(ns) or [("none", "web")])
        peer_ns = rng.choice(locked)
        peer, peer_tier = rng.choice(by_ns.get(peer_ns) or [("none", "web")])
        me, them = {"matchLabels": {"app": name}}, {"matchLabels": {"app": peer}}
        kind = rng.randrange(5)
        if kind <= 1:  # a path between two apps, allowed on both of its ends: egress of the client...
            port_name, number = PORTS[peer_tier]
            policy(ns, f"{name}-to-{peer}-{i}", {"podSelector": me, "policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer_ns}},
                        "podSelector": them}], "ports": [{"port": number}]}]})
            # ...and ingress of the server, by the port's name (half the time) or number
            policy(peer_ns, f"{peer}-from-{name}-{i}", {"podSelector": them, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                          "podSelector": me}], "ports": [{"port": port_name if kind else number}]}]})
        elif kind == 2:  # a team's namespaces may call an api, on its port range
            policy(ns, f"{name}-from-team-{i}", {"podSelector": me, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"team": f"t{rng.randrange(20)}"}}}],
                "ports": [{"port": 8000, "endPort": 8100}]}]})
        elif kind == 3:  # scraped by monitoring, by port name
            policy(ns, f"metrics-{tier}-{i}", {"podSelector": {"matchLabels": {"tier": tier}}, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"team": "platform"}}}],
                "ports": [{"port": "metrics"}]}]})
        else:  # egress to the internet (not the cluster, not the metadata server) or a corporate range
            block = rng.choice([{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]},
                                {"cidr": "172.16.0.0/12"}])
            policy(ns, f"{name}-egress-{i}", {"podSelector": me, "policyTypes": ["Egress"], "egress": [{
                "to": [{"ipBlock": block}], "ports": [{"port": 443}]}]})
    (out / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                                               "items": items}))
    if fmt == "yaml":
        (out / "namespaces.yaml").write_text(yaml.safe_dump_all(ns_docs, sort_keys=False))
        (out / "policies.yaml").write_text(yaml.safe_dump_all(pol_docs, sort_keys=False))
    else:  # as `kubectl get namespaces,networkpolicies -A -o json` prints them: typed lists, items without kind
        for name, kind, docs in (("namespaces", "NamespaceList", ns_docs), ("policies", "NetworkPolicyList", pol_docs)):
            (out / f"{name}.json").write_text(json.dumps({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": [
                {k: v for k, v in d.items() if k not in ("kind", "apiVersion")} for d in docs]}))


def measure(argv: list[str], out: Path, timeout: float) -> tuple[float, float, int, int]:
    """(wall s, peak RSS MiB, output bytes, exit code) of one fresh process."""
    started = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
        except KeyboardInterrupt:
            proc.kill()
            raise
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1) and proc.stderr is not None:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    if wall > timeout:
        print(f"warning: {' '.join(argv[:4])} took {wall:.0f}s", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, out.stat().st_size, proc.returncode


def nca_inputs(d: Path, into: Path) -> tuple[Path, Path]:
    """(policies, namespaces) as nca reads them: nca ignores typed lists' items (no `kind`), so YAML with kinds."""
    if (d / "policies.yaml").exists():
        return d / "policies.yaml", d / "namespaces.yaml"
    into.mkdir(exist_ok=True)  # beside the cluster's files, so it goes with the temporary directory
    out = []
    for name, kind, api in (("policies", "NetworkPolicy", "networking.k8s.io/v1"), ("namespaces", "Namespace", "v1")):
        items = json.loads((d / f"{name}.json").read_text())["items"]
        path = into / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([{"apiVersion": api, "kind": kind, **i} for i in items], sort_keys=False))
        out.append(path)
    return out[0], out[1]


def run_nca(nca: str, d: Path, timeout: float) -> str:
    """nca's connectivity on the same cluster, or why it did not finish."""
    policies, namespaces = nca_inputs(d, d / "nca")
    argv = [nca, "--connectivity", str(policies), "--pod_list", str(d / "pods.json"),
            "--ns_list", str(namespaces), "--output_format", "txt"]
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                return f"did not finish within {timeout:.0f} s"
            time.sleep(0.2)
    except FileNotFoundError:
        return f"{nca}: not found"
    code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    note = "ok" if code in (0, 1) else f"exit {code}"
    return f"{wall:.1f} s, {usage.ru_maxrss / 1024:.0f} MiB ({note})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="pod counts, comma-separated")
    parser.add_argument("--growth", default="", help="pod counts for the growth table (overrides --sizes)")
    parser.add_argument("--table", action="store_true", help="also time the default table output")
    parser.add_argument("--format", choices=("json", "yaml"), default="json",
                        help="namespaces and policies as kubectl's -o json typed lists (default) or YAML")
    parser.add_argument("--nca", default="", help="path to the nca executable (optional)")
    parser.add_argument("--nca-timeout", type=float, default=900)
    parser.add_argument("--nca-max-pods", type=int, default=1000, help="skip nca above this many pods")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.growth or args.sizes).split(",") if s]
    targets = {1000: 1.0, 10000: 10.0}
    print("| pods / namespaces / workloads / policies | `expect -o json` wall | peak RSS | JSON | classes | "
          "connections | target" + (" | table wall" if args.table else "") + (" | nca" if args.nca else "") + " |")
    print("|---|---|---|---|---|---|---|" + ("---|" if args.table else "") + ("---|" if args.nca else ""))
    for pods in sizes:
        namespaces, workloads, policies = shape(pods)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            generate(d, pods, namespaces, workloads, policies, fmt=args.format)
            out = d / "out.json"
            base = [sys.executable, "-m", "probe", "expect", "-f", str(d)]
            wall, rss, size, code = measure([*base, "-o", "json"], out, 600)
            summary = json.loads(out.read_text())["summary"] if code == 0 else {}
            target = targets.get(pods)
            verdict = "" if target is None else (f"< {target:g} s, < 1 GiB: " +
                                                 ("met" if wall < target and rss < 1024 else "MISSED"))
            row = (f"| {pods:,} / {namespaces} / {workloads} / {policies:,} | {wall:.2f} s | {rss:.0f} MiB | "
                   f"{size / 2**20:.1f} MiB | {summary.get('classes', '?')} | {summary.get('connections', '?'):,} | "
                   f"{verdict} |")
            if args.table:
                t_wall, _, t_size, _ = measure(base, d / "out.txt", 600)
                row += f" {t_wall:.2f} s ({t_size / 1024:.0f} KiB) |"
            if args.nca:
                row += " " + (run_nca(args.nca, d, args.nca_timeout) if pods <= args.nca_max_pods
                              else "not run (above --nca-max-pods)") + " |"
            print(row, flush=True)


if __name__ == "__main__":
    main()

"""Policy engine benchmark: N pods in M namespaces with P policies → the full pod-to-pod matrix on
one port. Prints time and peak memory, and runs np-guard's network-config-analyzer (`nca`) on the
same manifests when it is installed (pass its path with --nca; it is not a netprobe dependency:
`python3 -m venv /tmp/nca && /tmp/nca/bin/pip install network-config-analyzer`).

    python3 bench/calico_bench.py [--pods 1000 --namespaces 50 --policies 300] [--calico 0.33]
                                  [--nca /tmp/nca/bin/nca]

--calico F makes that fraction of the policies Calico ones (projectcalico.org/v3 NetworkPolicy and
GlobalNetworkPolicy with Allow/Deny/Pass rules, in the default tier and in a `platform` tier), which
puts the whole matrix through the tier model; nca only ever sees the Kubernetes ones. The CLI line
times `netprobe expect -f ... -o json` end to end in a fresh process.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probe.analysis import world_from_manifests

APPS = [f"app{i}" for i in range(10)]


def calico_policy(rng: random.Random, i: int, nss: list[str]) -> dict[str, object]:
    """One Calico policy: NetworkPolicy or GlobalNetworkPolicy, ordered rules with actions."""
    def side() -> dict[str, object]:
        return rng.choice([{"selector": f"app == '{rng.choice(APPS)}'"},
                           {"namespaceSelector": f"team == 't{rng.randrange(5)}'"},
                           {"selector": f"tier in {{'web', 'db'}} && app != '{rng.choice(APPS)}'"},
                           {"nets": ["10.0.0.0/8"], "notNets": [f"10.{rng.randrange(4)}.0.0/16"]}])

    def rule() -> dict[str, object]:
        r: dict[str, object] = {"action": rng.choice(["Allow", "Allow", "Deny", "Pass"])}
        ports = rng.choice([[8080], ["http"], ["8000:8100"], None])
        if ports:
            r["protocol"] = "TCP"
        return {**r, "source": side(), "destination": {"ports": ports} if ports else {}}

    def egress_rule() -> dict[str, object]:
        r = rule()
        dst = dict(side())
        if isinstance(r["destination"], dict) and "ports" in r["destination"]:
            dst["ports"] = r["destination"]["ports"]
        return {"action": r["action"], **({"protocol": "TCP"} if "protocol" in r else {}), "destination": dst}

    types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
    spec: dict[str, object] = {"order": rng.choice([10, 100, 500, 2000]), "types": types,
                               "selector": f"app == '{rng.choice(APPS)}'"}
    if rng.random() < 0.3:
        spec["tier"] = "platform"
    if "Ingress" in types:
        spec["ingress"] = [rule() for _ in range(rng.randint(1, 3))]
    if "Egress" in types:
        spec["egress"] = [egress_rule() for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.5:
        return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                "metadata": {"name": f"cnp{i}", "namespace": rng.choice(nss)}, "spec": spec}
    spec["namespaceSelector"] = f"env == '{rng.choice(['prod', 'dev'])}'"
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"gnp{i}"}, "spec": spec}


def generate(out: Path, pods: int, namespaces: int, policies: int, seed: int = 7, calico: float = 0.0) -> None:
    """Write ns.yaml, pods.yaml and policies.yaml (deterministic for a seed)."""
    rng = random.Random(seed)
    nss = [f"ns{i}" for i in range(namespaces)]
    ns_docs = [{"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": n, "labels": {"team": f"t{i % 5}", "env": rng.choice(["prod", "dev"])}}}
               for i, n in enumerate(nss)]
    pod_docs = []
    for i in range(pods):
        ns = nss[i % namespaces]
        pod_docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"pod{i}", "namespace": ns,
                                      "labels": {"app": rng.choice(APPS), "tier": rng.choice(["web", "db", "job"])}},
                         "spec": {"containers": [{"name": "c", "image": "x",
                                                  "ports": [{"name": "http", "containerPort": 8080}]}]},
                         "status": {"podIP": f"10.{i // 250}.{i % 250}.{1 + i % 7}"}})
    pol_docs: list[dict[str, object]] = []
    n_calico = round(policies * calico)
    if n_calico:
        pol_docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "platform"},
                         "spec": {"order": 100, "defaultAction": "Pass"}})
        pol_docs += [calico_policy(rng, i, nss) for i in range(n_calico)]
    for i in range(policies - n_calico):
        ns = rng.choice(nss)
        peers = [rng.choice([
            {"podSelector": {"matchLabels": {"app": rng.choice(APPS)}}},
            {"namespaceSelector": {"matchLabels": {"team": f"t{rng.randrange(5)}"}}},
            {"namespaceSelector": {"matchLabels": {"env": "prod"}},
             "podSelector": {"matchLabels": {"tier": rng.choice(["web", "db"])}}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.{rng.randrange(4)}.0.0/16"]}},
        ]) for _ in range(rng.randint(1, 3))]
        ports = rng.choice([[{"protocol": "TCP", "port": 8080}], [{"port": "http"}], [],
                            [{"port": 8000, "endPort": 8100}]])
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        spec: dict[str, object] = {"podSelector": {"matchLabels": {"app": rng.choice(APPS)}}, "policyTypes": types}
        if "Ingress" in types:
            spec["ingress"] = [{"from": peers, "ports": ports}]
        if "Egress" in types:
            spec["egress"] = [{"to": peers, "ports": ports}]
        pol_docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": f"np{i}", "namespace": ns}, "spec": spec})
    for name, docs in (("ns.yaml", ns_docs), ("pods.yaml", pod_docs), ("policies.yaml", pol_docs)):
        (out / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))


def run_netprobe(d: Path) -> tuple[float, float, float, int]:
    """(load s, compute s, peak traced MiB of a second, traced run, allowed cells)."""
    files = [str(d / "ns.yaml"), str(d / "pods.yaml"), str(d / "policies.yaml")]
    started = time.perf_counter()
    world = world_from_manifests(files)
    loaded = time.perf_counter()
    rows = world.engine().matrix(8080, "TCP")
    done = time.perf_counter()
    tracemalloc.start()  # memory measured in a separate run: tracing slows Python down ~3x
    world_from_manifests(files).engine().matrix(8080, "TCP")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return loaded - started, done - loaded, peak / 2**20, sum(bin(r).count("1") for r in rows)


def run_cli(d: Path) -> float:
    """Wall seconds of `netprobe expect -f <manifests> --port 8080 -o json` in a fresh process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "probe", "expect", "-f", str(d / "ns.yaml"), "-f", str(d / "pods.yaml"),
                    "-f", str(d / "policies.yaml"), "--port", "8080", "-o", "json"], check=True,
                   stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    return time.perf_counter() - started


def run_nca(nca: str, d: Path, timeout: float) -> str:
    started = time.perf_counter()
    try:
        proc = subprocess.run([nca, "--connectivity", str(d / "policies.yaml"), "--pod_list", str(d / "pods.yaml"),
                               "--ns_list", str(d / "ns.yaml"), "--output_format", "txt"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"did not finish within {timeout:.0f}s"
    elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    status = "ok" if proc.returncode in (0, 1) else f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
    return f"{elapsed:.2f}s, peak RSS {rss:.0f} MiB ({status}; all ports, connectivity graph)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--policies", type=int, default=300)
    parser.add_argument("--calico", type=float, default=1 / 3, help="fraction of Calico policies (0: none)")
    parser.add_argument("--nca", default="", help="path to the nca executable (optional)")
    parser.add_argument("--nca-timeout", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        generate(d, args.pods, args.namespaces, args.policies, calico=args.calico)
        load, compute, peak, allowed = run_netprobe(d)
        cli = run_cli(d)
        cells = args.pods * args.pods
        n_calico = round(args.policies * args.calico)
        print(f"{args.pods} pods, {args.namespaces} namespaces, {args.policies} policies "
              f"({n_calico} Calico), port 8080/TCP")
        print(f"netprobe: full matrix ({cells:,} cells, {allowed:,} allowed) in {load + compute:.2f}s "
              f"(load {load:.2f}s + compute {compute:.2f}s), peak traced memory {peak:.0f} MiB  (target < 5 s)")
        print(f"netprobe expect (CLI, fresh process, JSON out): {cli:.2f}s  (target < 5 s)")
        if args.nca:
            print(f"nca:      {run_nca(args.nca, d, args.nca_timeout)}")


if __name__ == "__main__":
    main()

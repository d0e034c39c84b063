"""`netprobe expect` per workload: the table, connlist and diff as a reviewer reads them (golden files),
the version 2 JSON as a pipeline reads it, and the flags' errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from probe.analysis import world_from_manifests
from probe.expect_report import render_workload_table
from probe.workloads import diff_views, workload_of, workload_view

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SHOP = ROOT / "examples" / "shop"
SHOP_PR = [SHOP / "namespaces.yaml", SHOP / "workloads.yaml", ROOT / "examples" / "shop-pr" / "policies.yaml"]


def netprobe(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def golden(name: str, text: str) -> None:
    """Compare with tests/golden/NAME; NETPROBE_UPDATE_GOLDEN=1 rewrites it (review the git diff)."""
    path = GOLDEN / name
    if os.environ.get("NETPROBE_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def files(*paths: Path) -> list[str]:
    return [arg for p in paths for arg in ("-f", str(p))]


def test_connlist_golden():
    proc = netprobe("expect", *files(SHOP), "-o", "connlist")
    assert proc.returncode == 0, proc.stderr
    golden("shop.connlist", proc.stdout)
    # the lines a reviewer looks for: both ends of each path, and what stays closed
    assert "shop/api[Deployment] => shop/db[StatefulSet] : TCP 5432\n" in proc.stdout
    assert "monitoring/prometheus[Deployment] => shop/api[Deployment] : TCP 9090\n" in proc.stdout
    assert "shop/api[Deployment] => 203.0.113.0/24 : TCP 443\n" in proc.stdout
    assert "shop/frontend[Deployment] => shop/db" not in proc.stdout


def test_table_golden():
    proc = netprobe("expect", *files(SHOP))
    assert proc.returncode == 0, proc.stderr
    golden("shop.table", proc.stdout)


def test_diff_golden_lists_what_a_pull_request_opens_and_closes():
    proc = netprobe("expect", *files(*SHOP_PR), "--diff", SHOP)
    assert proc.returncode == 1, proc.stderr  # something changed
    golden("shop-pr.diff", proc.stdout)
    assert "+ shop/frontend[Deployment] => shop/db[StatefulSet] : TCP 5432\n" in proc.stdout
    assert "- shop/report[CronJob] => shop/db[StatefulSet] : TCP 5432\n" in proc.stdout
    as_json = json.loads(netprobe("expect", *files(*SHOP_PR), "--diff", SHOP, "-o", "json").stdout)
    assert {"from": "shop/api[Deployment]", "to": "external", "ports": ["TCP 443"]} in as_json["added"]
    assert as_json["removed"] == [{"from": "shop/report[CronJob]", "to": "shop/db[StatefulSet]",
                                   "ports": ["TCP 5432"]}]


def test_diff_of_identical_manifests_is_empty_and_exits_0():
    proc = netprobe("expect", *files(SHOP), "--diff", SHOP)
    assert proc.returncode == 0 and proc.stdout == "no change in allowed connectivity\n"


def test_a_reworded_ip_block_is_no_change_but_a_wider_one_is(tmp_path):
    before = world_from_manifests([str(SHOP)])
    text = (SHOP / "policies.yaml").read_text()
    for label, replacement, expected in [
        ("split", "  - to: [{ipBlock: {cidr: 203.0.113.0/25}}, {ipBlock: {cidr: 203.0.113.128/25}}]", []),
        ("wider", "  - to: [{ipBlock: {cidr: 203.0.112.0/23, except: [203.0.112.0/25]}}]",
         [("+", "203.0.112.0/23 except 203.0.112.0/25")]),
    ]:
        d = tmp_path / label
        d.mkdir()
        (d / "policies.yaml").write_text(text.replace("  - to: [{ipBlock: {cidr: 203.0.113.0/24}}]", replacement))
        after = world_from_manifests([str(SHOP / "namespaces.yaml"), str(SHOP / "workloads.yaml"), str(d)])
        changes = diff_views(workload_view(before), workload_view(after))
        assert [(c.sign, c.destination) for c in changes] == expected, label


SCHEMA = json.loads((ROOT / "probe" / "expect.schema.json").read_text())


def test_json_is_per_workload_version_2_one_item_a_line():
    proc = netprobe("expect", *files(SHOP), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA)
    with_spec = json.loads(netprobe("expect", *files(ROOT / "examples" / "tutorial" / "workloads.yaml",
                                                     ROOT / "examples" / "tutorial" / "policies.yaml"),
                                    "--spec", ROOT / "examples" / "tutorial" / "expect.yaml", "-o", "json").stdout)
    jsonschema.validate(with_spec, SCHEMA)
    assert with_spec["expect"]["api"]["db"] == "allow"
    assert doc["summary"] == {"pods": 6, "workloads": 6, "classes": 6, "namespaces": 3, "connections": 14}
    api = next(w for w in doc["workloads"] if w["id"] == "shop/api[Deployment]")
    assert api["dns"] == ["TCP 53", "UDP 53"] and api["external"] == []
    assert api["ip_blocks"] == [{"to": "203.0.113.0/24", "ports": ["TCP 443"]}]
    assert {"from": "shop/frontend[Deployment]", "to": "shop/api[Deployment]", "ports": ["TCP 8000"]} \
        in doc["connections"]
    # streamable: after the header line, every workload and connection is one line of its own
    lines = proc.stdout.splitlines()
    assert sum(line.startswith('{"id":') for line in lines) == 6
    assert sum(line.startswith('{"from":') for line in lines) == 14


def test_requested_ports_restrict_the_answer():
    doc = json.loads(netprobe("expect", *files(SHOP), "-o", "json", "--port", "5432").stdout)
    assert doc["ports"] == ["TCP 5432"]
    assert {(c["from"], c["to"]) for c in doc["connections"] if not c["from"].startswith(("kube-system",
                                                                                          "monitoring"))} == {
        ("shop/api[Deployment]", "shop/db[StatefulSet]"), ("shop/report[CronJob]", "shop/db[StatefulSet]")}


@pytest.mark.parametrize("args, message", [
    (["--pods", "-o", "connlist"], "--pods prints the pod matrix"),
    (["--protocol", "UDP"], "give the --port(s) the protocol applies to"),
    (["-o", "yaml"], "expected table, json, connlist or html"),
], ids=["pods-connlist", "protocol-without-port", "bad-output"])
def test_bad_flag_combinations_exit_2(args, message):
    proc = netprobe("expect", *files(SHOP), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_replicas_of_a_deployment_are_one_workload_and_a_canary_is_split_out(tmp_path):
    canary = {"track": "canary"}
    pods = [{"metadata": {"name": f"web-7f9c-{i}", "namespace": "shop",
                          "labels": {"app": "web", "pod-template-hash": "7f9c", **(canary if i == 3 else {})},
                          "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7f9c", "controller": True}]},
             "spec": {"containers": []}, "status": {"phase": "Running", "podIP": f"10.0.0.{i + 1}"}}
            for i in range(4)]
    pods.append({"metadata": {"name": "debug", "namespace": "shop", "labels": {"app": "debug"}},
                 "spec": {"containers": []}, "status": {"phase": "Running", "podIP": "10.0.0.9"}})
    pods.append({"metadata": {"name": "old-job-x", "namespace": "shop", "labels": {"app": "web"},
                              "ownerReferences": [{"kind": "Job", "name": "old-job", "controller": True}]},
                 "spec": {"containers": []}, "status": {"phase": "Succeeded"}})
    (tmp_path / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": pods}))
    (tmp_path / "np.yaml").write_text("""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: canary-isolated, namespace: shop}
spec: {podSelector: {matchLabels: {track: canary}}, policyTypes: [Ingress]}
""")
    view = workload_view(world_from_manifests([str(tmp_path)]))
    assert [(w.id, w.pods) for w in view.workloads] == [
        ("shop/debug[Pod]", ("debug",)),
        ("shop/web[Deployment]#1", ("web-7f9c-0", "web-7f9c-1", "web-7f9c-2")),
        ("shop/web[Deployment]#2", ("web-7f9c-3",)),
    ]  # the Succeeded Job pod has no network: it is no one's peer
    assert view.warnings == ("shop/web[Deployment]: its pods differ as policies see them (labels, named ports "
                             "or IPs inside an ipBlock), so it is shown as 2 rows shop/web[Deployment]#1..#2",)
    reachable = {(view.workloads[i].id, view.workloads[j].id) for i, j, _ in view.connections}
    assert ("shop/debug[Pod]", "shop/web[Deployment]#1") in reachable
    assert ("shop/debug[Pod]", "shop/web[Deployment]#2") not in reachable


def test_workload_names_follow_the_controlling_owner():
    from probe.model import Namespace
    from probe.pods import PodInfo

    def pod(kind: str, owner: str, **labels: str) -> PodInfo:
        return PodInfo(name="p", namespace=Namespace("ns"), labels=labels, owner_kind=kind, owner_name=owner)

    assert workload_of(pod("ReplicaSet", "api-5d8f", **{"pod-template-hash": "5d8f"})) == ("Deployment", "api")
    assert workload_of(pod("ReplicaSet", "bare-rs")) == ("ReplicaSet", "bare-rs")
    assert workload_of(pod("StatefulSet", "db")) == ("StatefulSet", "db")
    assert workload_of(pod("", "")) == ("Pod", "p")


def test_large_clusters_get_a_namespace_summary_of_bounded_width(tmp_path):
    docs = []
    for n in range(8):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"team{n}"}})
        for w in range(3):
            docs.append({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": f"svc{w}", "namespace": f"team{n}"},
                         "spec": {"template": {"metadata": {"labels": {"app": f"svc{w}"}},
                                               "spec": {"containers": []}}}})
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "same-ns-only", "namespace": f"team{n}"},
                     "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}})
    (tmp_path / "all.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    text = render_workload_table(workload_view(world_from_manifests([str(tmp_path)])))
    assert max(map(len, text.splitlines())) <= 120
    assert "Allowed cross-namespace connections (0):" in text
    row = next(line for line in text.splitlines() if line.startswith("team3 "))
    assert row.split()[:4] == ["team3", "3", "3", "9/9"]


def test_readme_transcripts_are_the_real_output():
    readme = (ROOT / "README.md").read_text()
    for name in ("shop.table", "shop.connlist", "shop-pr.diff"):
        assert (GOLDEN / name).read_text() in readme, f"README's transcript of {name} is out of date"


def test_a_reader_that_stops_early_ends_the_stream_quietly(tmp_path):
    # 300 bare pods and no policy: 90,000 allowed pairs, far more than a pipe holds
    pods = [{"metadata": {"name": f"p{i}", "namespace": "open"}, "spec": {"containers": []}} for i in range(300)]
    (tmp_path / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": pods}))
    with subprocess.Popen([sys.executable, "-m", "probe", "expect", "-f", str(tmp_path), "-o", "json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(9) == b'{"version'
        proc.stdout.close()  # as `| head -c 9` does
        assert proc.wait(timeout=60) == 141
        assert b"Traceback" not in proc.stderr.read()

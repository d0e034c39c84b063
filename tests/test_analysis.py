"""Offline analysis: manifests → expected matrix, the spec's expect section, explain, lint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from probe.analysis import endpoint_for, expect_spec, lint, world_from_manifests
from probe.errors import ManifestError
from probe.manifests import load_manifests
from probe.model import Expectation
from probe.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
TUT = ROOT / "examples" / "tutorial"
WORKLOADS, POLICIES, NODNS = TUT / "workloads.yaml", TUT / "policies.yaml", TUT / "no-dns" / "policies.yaml"


def netprobe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_policies_reproduce_the_hand_written_tutorial_expectations():
    world = world_from_manifests([str(WORKLOADS), str(POLICIES)])
    spec = load_spec(TUT / "expect.yaml")
    computed, reasons, warnings = expect_spec(spec, world.engine(), world.pods, world.services)
    assert computed == dict(spec.expect)
    assert warnings == []
    assert "allowed by default/api-egress-only-db egress rule 1" in reasons[("api", "db")]
    assert "ingress-isolated by default/db-ingress-from-api" in reasons[("frontend", "db")]


def test_without_the_dns_rule_api_loses_every_name_but_not_db_by_ip():
    world = world_from_manifests([str(WORKLOADS), str(NODNS)])
    spec = load_spec(TUT / "expect.yaml")
    computed, reasons, _ = expect_spec(spec, world.engine(), world.pods, world.services)
    assert computed[("api", "dns")] is Expectation.DENY
    assert computed[("api", "db")] is Expectation.DENY and reasons[("api", "db")].startswith("DNS denied")
    assert computed[("api", "db-pods")] is Expectation.ALLOW


def test_expect_pods_json_keeps_the_pod_to_pod_contract():
    proc = netprobe("expect", "-f", str(WORKLOADS), "-f", str(POLICIES), "--port", "5432", "--port", "53",
                    "--protocol", "TCP", "--protocol", "UDP", "-o", "json", "--pods")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    first = doc["pod_to_pod"][0]
    assert (first["port"], first["protocol"]) == (5432, "TCP")
    assert first["matrix"]["default/api"]["default/db"] == "allow"
    assert first["matrix"]["default/frontend"]["default/db"] == "deny"
    assert doc["pod_to_pod"][1]["protocol"] == "UDP"
    assert doc["dns"] == {"default/db": "allow", "default/api": "allow", "default/frontend": "allow"}
    assert doc["external"][0]["matrix"]["default/api"] == "deny"


def test_expect_fills_in_a_spec():
    for view in ((), ("--pods",)):
        proc = netprobe("expect", "-f", str(WORKLOADS), "-f", str(NODNS), "--spec", str(TUT / "expect.yaml"), *view)
        assert proc.returncode == 0, proc.stderr
        assert "api: {dns: deny, db: deny, db-pods: allow, api: deny, internet: deny}" in proc.stdout


def test_explain_names_the_deciding_rules():
    proc = netprobe("explain", "default/api", "default/db", "--port", "5432", "-f", str(WORKLOADS),
                    "-f", str(POLICIES))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "default/api → default/db 5432/TCP: ALLOWED",
        "  egress  of default/api: allowed — allowed by default/api-egress-only-db egress rule 1 "
        "(isolated by default/api-egress-only-db, default/api-allow-frontend)",
        "  ingress of default/db: allowed — allowed by default/db-ingress-from-api ingress rule 0 "
        "(isolated by default/db-ingress-from-api)",
    ]
    denied = netprobe("explain", "default/frontend", "default/db", "--port", "5432", "-f", str(WORKLOADS),
                      "-f", str(POLICIES))
    assert "DENIED — default/db is ingress-isolated by default/db-ingress-from-api and no ingress rule " \
           "allows default/frontend on 5432/TCP" in denied.stdout


def test_explain_unknown_pod_exits_2():
    proc = netprobe("explain", "default/nope", "default/db", "--port", "1", "-f", str(WORKLOADS))
    assert proc.returncode == 2 and "no pod 'default/nope'" in proc.stderr


def test_lint_finds_the_forgotten_dns_rule():
    proc = netprobe("lint", "-f", str(WORKLOADS), "-f", str(NODNS))
    assert proc.returncode == 1
    assert "NP001 Pod default/api: egress-isolated" in proc.stdout
    assert netprobe("lint", "-f", str(WORKLOADS), "-f", str(POLICIES)).returncode == 0


def test_lint_codes(tmp_path):
    (tmp_path / "m.yaml").write_text("""\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: mon, namespace: monitoring, labels: {app: prometheus}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ghost, namespace: shop}
spec: {podSelector: {matchLabels: {app: nothing}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-prometheus, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: prometheus}}}]
    ports: [{port: metrics}]
  - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]
""")
    world = world_from_manifests([str(tmp_path)])
    found = {(f.code, f.object) for f in lint(world.engine(), world.pods)}
    assert found == {
        ("NP002", "NetworkPolicy shop/ghost"),
        ("NP003", "NetworkPolicy shop/from-prometheus ingress[0]"),
        ("NP005", "NetworkPolicy shop/from-prometheus ingress[0]"),
        ("NP004", "NetworkPolicy shop/from-prometheus ingress[1]"),
    }


def test_manifests_expand_workloads_lists_and_pod_ips(tmp_path):
    (tmp_path / "list.yaml").write_text("""\
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: pg, namespace: data}
  spec: {template: {metadata: {labels: {app: pg}}, spec: {containers: [{name: c, image: x}]}}}
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: backup}
  spec: {jobTemplate: {spec: {template: {metadata: {labels: {app: backup}}, spec: {containers: []}}}}}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: data}
  spec: {containers: []}
  status: {podIP: 10.9.9.9}
""")
    m = load_manifests([tmp_path])
    assert {(p.key, p.ip) for p in m.pods} == {("data/pg", ""), ("default/backup", ""), ("data/p", "10.9.9.9")}


@pytest.mark.parametrize("content, message", [
    ("kind: [", "not valid YAML"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {}\n", "Pod without metadata.name"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", "has no spec.template"),
    ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {podSelector: {}, "
     "policyTypes: [Up]}\n", "policyTypes must list"),
    ("just a string\n", "expected a Kubernetes object"),
    ('{"kind": "PodList",\n "items": [}', r"bad.json:2: not valid JSON: Expecting value"),
], ids=["yaml", "no-name", "no-template", "bad-policy", "not-an-object", "json"])
def test_bad_manifests_exit_2_naming_the_file(tmp_path, content, message):
    path = tmp_path / ("bad.json" if content.startswith('{"') else "bad.yaml")
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        load_manifests([path])
    proc = netprobe("expect", "-f", str(path))
    assert proc.returncode == 2 and str(path) in proc.stderr and "Traceback" not in proc.stderr


def test_ipblock_on_pod_ips_is_configurable(tmp_path):
    (tmp_path / "m.yaml").write_text("""\
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: a}}
spec: {containers: []}
status: {podIP: 10.0.0.5}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: b}}
spec: {containers: []}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-cidr}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}]}]
""")
    calico = netprobe("explain", "default/a", "default/b", "--port", "80", "-f", str(tmp_path))
    assert "ALLOWED" in calico.stdout.splitlines()[0]
    strict = netprobe("explain", "default/a", "default/b", "--port", "80", "-f", str(tmp_path), "--no-ipblock-pods")
    assert "DENIED" in strict.stdout.splitlines()[0]


def test_lint_dns_over_udp_only(tmp_path):
    text = POLICIES.read_text().replace("    - {protocol: TCP, port: 53}\n", "")
    (tmp_path / "p.yaml").write_text(text)
    world = world_from_manifests([str(WORKLOADS), str(tmp_path / "p.yaml")])
    assert [(f.code, f.object) for f in lint(world.engine(), world.pods)] == [("NP006", "Pod default/api")]


def test_typed_lists_as_the_api_returns_them_imply_their_items_kind(tmp_path):
    # `kubectl get pods,networkpolicies -o yaml` per kind: items carry no kind of their own
    (tmp_path / "pods.json").write_text(json.dumps({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
        "items": [{"metadata": {"name": "db-0", "namespace": "data", "labels": {"app": "db"}},
                   "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"podIP": "10.1.0.7"}},
                  {"metadata": {"name": "api-1", "namespace": "web", "labels": {"app": "api"}},
                   "spec": {"containers": []}}]}))
    (tmp_path / "rest.yaml").write_text("""\
apiVersion: v1
kind: NamespaceList
items:
- metadata: {name: data, labels: {tier: data}}
- metadata: {name: web}
---
apiVersion: apps/v1
kind: DeploymentList
items:
- metadata: {name: web, namespace: web}
  spec: {template: {metadata: {labels: {app: web}}, spec: {containers: []}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
items:
- metadata: {name: db-from-api, namespace: data}
  spec:
    podSelector: {matchLabels: {app: db}}
    ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}]}]
""")
    m = load_manifests([tmp_path])
    assert {(p.key, p.ip) for p in m.pods} == {("data/db-0", "10.1.0.7"), ("web/api-1", ""), ("web/web", "")}
    assert m.namespaces == {"data": {"tier": "data"}, "web": {}}
    assert [p.key for p in m.policies] == ["data/db-from-api"]
    world = world_from_manifests([str(tmp_path)])
    engine = world.engine()
    assert engine.decide(endpoint_for(world, "web/api-1"), endpoint_for(world, "data/db-0"), 5432).allowed
    assert not engine.decide(endpoint_for(world, "web/web"), endpoint_for(world, "data/db-0"), 5432).allowed


def test_a_plain_list_item_without_kind_is_still_an_error(tmp_path):
    path = tmp_path / "l.yaml"
    path.write_text("apiVersion: v1\nkind: List\nitems:\n- metadata: {name: x}\n")
    with pytest.raises(ManifestError, match=r"items\[0\] is not a Kubernetes object"):
        load_manifests([path])


POLICY_DOC = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def test_the_same_object_twice_with_identical_content_is_read_once(tmp_path):
    (tmp_path / "a.yaml").write_text(POLICY_DOC)
    (tmp_path / "b.yaml").write_text(POLICY_DOC)
    m = load_manifests([tmp_path, tmp_path / "a.yaml"])
    assert [p.key for p in m.policies] == ["shop/deny"]


def test_conflicting_definitions_of_one_object_are_a_located_error(tmp_path):
    (tmp_path / "a.yaml").write_text(POLICY_DOC)
    (tmp_path / "b.yaml").write_text(POLICY_DOC.replace("[Ingress]", "[Ingress, Egress]"))
    with pytest.raises(ManifestError, match=r"b.yaml \(document 1\): NetworkPolicy shop/deny is defined twice, "
                                            r"differently \(also in .*a.yaml \(document 1\)\)"):
        load_manifests([tmp_path])
    proc = netprobe("expect", "-f", str(tmp_path))
    assert proc.returncode == 2 and "defined twice" in proc.stderr and "Traceback" not in proc.stderr

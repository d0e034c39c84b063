"""`netprobe expect` on what the real API server returns: typed lists, ownerReferences, replicas."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IMAGE, KUBECTL, _namespace, kubectl, netprobe

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - {name: api, image: IMAGE, command: [python3, -c, "import time; time.sleep(3600)"],
         ports: [{name: http, containerPort: 8000}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: db, image: IMAGE, command: [python3, -c, "import time; time.sleep(3600)"],
         ports: [{name: postgres, containerPort: 5432}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: postgres}]}]
"""


@pytest.fixture(scope="module")
def replicated() -> Iterator[str]:
    """A fresh namespace with a 2-replica Deployment and a 2-replica StatefulSet, running."""
    for ns in _namespace("np-e2e-wl"):
        subprocess.run([KUBECTL, "apply", "-n", ns, "-f", "-"], input=MANIFEST.replace("IMAGE", IMAGE),
                       check=True, capture_output=True, text=True, timeout=60)
        kubectl("rollout", "status", "-n", ns, "deployment/api", "--timeout=180s", timeout=200)
        kubectl("rollout", "status", "-n", ns, "statefulset/db", "--timeout=180s", timeout=200)
        yield ns


def test_expect_on_an_api_dump_names_workloads_and_collapses_replicas(replicated: str, tmp_path: Path) -> None:
    ns = replicated
    # what the API returns: typed lists (PodList, NetworkPolicyList) whose items carry no kind
    for name, path in (("pods", f"/api/v1/namespaces/{ns}/pods"),
                       ("policies", f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
                       ("namespace", f"/api/v1/namespaces/{ns}")):
        (tmp_path / f"{name}.json").write_text(kubectl("get", "--raw", path).stdout)
    assert '"kind":"PodList"' in (tmp_path / "pods.json").read_text().replace(" ", "")
    proc = netprobe("expect", "-f", str(tmp_path), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    pods = {w["id"]: len(w["pods"]) for w in doc["workloads"]}
    assert pods == {f"{ns}/api[Deployment]": 2, f"{ns}/db[StatefulSet]": 2}  # a ReplicaSet names its Deployment
    assert doc["summary"]["classes"] == 2
    conns = {(c["from"], c["to"]): c["ports"] for c in doc["connections"]}
    assert conns == {(f"{ns}/api[Deployment]", f"{ns}/db[StatefulSet]"): ["TCP 5432"]}
    connlist = netprobe("expect", "-f", str(tmp_path), "-o", "connlist").stdout
    assert f"{ns}/api[Deployment] => {ns}/db[StatefulSet] : TCP 5432\n" in connlist
    assert f"=> {ns}/api[Deployment]" not in connlist  # default deny: nothing reaches the api

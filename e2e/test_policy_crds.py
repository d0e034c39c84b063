"""Calico and network-policy-api policies read from their CRDs on the live cluster.

The lab serves CRDs (apiextensions v1) but its enforcer only enforces networking.k8s.io
NetworkPolicies, so these tests compare netprobe's *predictions* (explain, run --from-policies'
expected column), not the probes: on the lab a Calico Deny is predicted and not enforced, and
netprobe must report that as a mismatch, never as a match.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import IMAGE, ROOT, kubectl, netprobe

CRDS = ROOT / "e2e" / "fixtures" / "policy-crds.yaml"
SPEC = ROOT / "examples" / "tutorial" / "expect.yaml"


@pytest.fixture(scope="module")
def policy_crds() -> Iterator[None]:
    """Install the policy CRDs that are absent; remove exactly those afterwards."""
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(CRDS.read_text())]
    existing = set(kubectl("get", "crd", "-o", "name").stdout.split())
    mine = [n for n in names if f"customresourcedefinition.apiextensions.k8s.io/{n}" not in existing]
    kubectl("apply", "-f", str(CRDS))
    try:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
        yield
    finally:
        if mine:
            kubectl("delete", "crd", *mine, "--wait=false", check=False)


def _pod(ns: str, app: str) -> str:
    return kubectl("get", "pods", "-n", ns, "-l", f"app={app}", "-o", "jsonpath={.items[0].metadata.name}").stdout


@pytest.fixture
def calico_policies(policy_crds: None, tutorial: str, tmp_path: Path) -> Iterator[str]:
    """A Tier (defaultAction Pass) with a GlobalNetworkPolicy denying api → db in the tutorial's
    namespace, and an AdminNetworkPolicy allowing the namespace's pods into db. Cluster-scoped:
    named after the namespace, selecting only it, deleted afterwards."""
    tier = f"e2e-{tutorial}"
    objs = [
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "Tier", "metadata": {"name": tier},
         "spec": {"order": 100, "defaultAction": "Pass"}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
         "metadata": {"name": f"{tier}.deny-api-to-db"},
         "spec": {"tier": tier, "order": 10, "types": ["Ingress"],
                  "selector": f"projectcalico.org/namespace == '{tutorial}' && app == 'db'",
                  "ingress": [{"action": "Deny", "source": {"selector": "app == 'api'"}}]}},
        {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
         "metadata": {"name": f"e2e-{tutorial}"},
         "spec": {"priority": 5,
                  "subject": {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": tutorial}},
                                       "podSelector": {"matchLabels": {"app": "db"}}}},
                  "ingress": [{"name": "same-namespace", "action": "Allow",
                               "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": tutorial}}}],
                               "ports": [{"portNumber": {"protocol": "TCP", "port": 5432}}]}]}},
    ]
    path = tmp_path / "calico.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    kubectl("apply", "-f", str(path))
    try:
        yield tier
    finally:
        kubectl("delete", "-f", str(path), "--wait=false", check=False)


def test_explain_reads_calico_tiers_and_admin_policies_from_crds(calico_policies: str, tutorial: str) -> None:
    tier = calico_policies
    api, db, frontend = _pod(tutorial, "api"), _pod(tutorial, "db"), _pod(tutorial, "frontend")
    proc = netprobe("explain", f"{tutorial}/{api}", f"{tutorial}/{db}", "--port", "5432")
    assert proc.returncode == 0, proc.stderr
    assert "DENIED" in proc.stdout
    assert (f"denied by GlobalNetworkPolicy {tier}.deny-api-to-db (tier {tier}, order 10), ingress rule 0 Deny"
            in proc.stdout), proc.stdout
    proc = netprobe("explain", f"{tutorial}/{frontend}", f"{tutorial}/{db}", "--port", "5432")
    assert proc.returncode == 0, proc.stderr
    # the Tier passes what it does not match; kube-admin's AdminNetworkPolicy then allows, overriding
    # the Kubernetes NetworkPolicy that admits only api
    assert (f"allowed by AdminNetworkPolicy e2e-{tutorial} (tier kube-admin, priority 5), ingress rule 0 "
            "(same-namespace) Allow" in proc.stdout), proc.stdout
    assert f"tier {tier} matched nothing (defaultAction Pass)" in proc.stdout


def test_from_policies_predicts_the_calico_deny_and_reports_the_unenforced_cell(
        calico_policies: str, tutorial: str, tmp_path: Path) -> None:
    text = SPEC.read_text()
    spec = tmp_path / "targets.yaml"
    spec.write_text(text[:text.index("expect:")])
    proc = netprobe("run", "-f", str(spec), "--from-policies", "-n", tutorial, "--image", IMAGE, "-o", "json")
    doc = json.loads(proc.stdout)
    cells = {(c["source"], c["target"]): c for c in doc["cells"]}
    api_db, frontend_db = cells[("api", "db-pods")], cells[("frontend", "db-pods")]
    assert api_db["expected"] == "deny" and f"GlobalNetworkPolicy {calico_policies}.deny-api-to-db" \
        in api_db["expected_by"]
    assert frontend_db["expected"] == "allow" and "AdminNetworkPolicy" in frontend_db["expected_by"]
    # The lab's enforcer ignores these kinds: api still connects, frontend is still blocked.
    # Both are mismatches, and the run fails — a prediction never turns into a silent match.
    assert api_db["observed"] == "allowed" and frontend_db["observed"] == "blocked"
    assert proc.returncode == 1, proc.stdout + proc.stderr

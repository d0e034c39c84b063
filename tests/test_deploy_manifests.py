"""deploy/: the in-cluster Job and the Helm hook run as a ServiceAccount that deploy/rbac.yaml
really creates in their namespace, mount a ConfigMap of their namespace, and are valid objects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RELEASE = {"Name": "shop-release", "Namespace": "shop"}


def render_helm(text: str) -> str:
    """The few template expressions deploy/helm-hook.yaml uses, rendered as Helm would."""
    def expr(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        if m := re.fullmatch(r"\.Release\.(\w+)", body):
            return RELEASE[m.group(1)]
        if m := re.fullmatch(r'printf "([^"]*)" \.Release\.(\w+) \.Release\.(\w+) \| trunc (\d+) \| trimSuffix "-"',
                             body):
            return (m.group(1) % (RELEASE[m.group(2)], RELEASE[m.group(3)]))[:int(m.group(4))].rstrip("-")
        if m := re.fullmatch(r'\.Files\.Get "[^"]+" \| indent (\d+)', body):
            return " " * int(m.group(1)) + "version: 1"
        raise AssertionError(f"the test's renderer does not know {{{{ {body} }}}}")

    return re.sub(r"\{\{(.*?)\}\}", expr, text)


def docs(name: str) -> list[dict]:
    text = (DEPLOY / name).read_text()
    if name == "helm-hook.yaml":
        text = render_helm(text)
    return [d for d in yaml.safe_load_all(text) if d]


RBAC = docs("rbac.yaml")
SERVICE_ACCOUNTS = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in RBAC if d["kind"] == "ServiceAccount"}


@pytest.mark.parametrize("manifest", ["job.yaml", "helm-hook.yaml"])
def test_the_job_runs_as_a_service_account_rbac_yaml_creates_in_its_namespace(manifest):
    objects = docs(manifest)
    [job] = [d for d in objects if d["kind"] == "Job"]
    ns = job["metadata"].get("namespace", RELEASE["Namespace"])  # a hook without one lands in the release's
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    assert (ns, sa) in SERVICE_ACCOUNTS, f"{manifest}: ServiceAccount {ns}/{sa} is not in deploy/rbac.yaml"
    for cm in (d for d in objects if d["kind"] == "ConfigMap"):
        assert cm["metadata"].get("namespace", RELEASE["Namespace"]) == ns
        volumes = job["spec"]["template"]["spec"]["volumes"]
        assert cm["metadata"]["name"] in [v.get("configMap", {}).get("name") for v in volumes]


def test_the_hook_checks_the_release_namespace():
    [job] = [d for d in docs("helm-hook.yaml") if d["kind"] == "Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespace") + 1] == RELEASE["Namespace"]


def test_rbac_allows_every_request_the_cluster_layer_makes():
    rules = {(res, verb) for d in RBAC if d["kind"] == "ClusterRole" for r in d["rules"]
             for res in r["resources"] for verb in r["verbs"]}
    needed = {("pods", "list"), ("pods", "watch"), ("pods", "get"), ("pods", "deletecollection"),
              ("pods/log", "get"), ("pods/ephemeralcontainers", "patch"), ("jobs", "create"),
              ("jobs", "get"),  # the 409 after a lost create: is that Job this run's?
              ("jobs", "list"), ("jobs", "deletecollection"), ("events", "list")}
    assert needed <= rules, needed - rules


@pytest.mark.parametrize("manifest", ["job.yaml", "helm-hook.yaml", "rbac.yaml"])
def test_deploy_objects_are_valid(manifest):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in docs(manifest):
        kubernetes_validate.validate(obj, "1.27", strict=True)
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)

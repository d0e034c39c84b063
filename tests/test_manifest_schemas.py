"""The objects netprobe sends to the API server, validated against the OpenAPI schemas of every
Kubernetes release from 1.27 to the newest one `kubernetes-validate` ships (strict: an unknown
or misspelt field is an error), so API drift shows up without a newer cluster."""

from __future__ import annotations

import pytest
from packaging.version import Version

from probe.model import Namespace, Selector, Source, Target, TargetKind
from probe.plan import make_plans
from probe.pods import PodInfo
from probe.probepod import PodSettings, ephemeral_container, probe_job

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install '.[test]'")

OLDEST = Version("1.27")
NEWEST_KNOWN = Version("1.37")  # the newest release this suite was written against
VERSIONS = [v for v in kubernetes_validate.utils.all_versions() if Version(v) >= OLDEST]


def test_schemas_cover_1_27_to_the_newest_release():
    assert Version(VERSIONS[0]) == OLDEST
    assert Version(VERSIONS[-1]) >= NEWEST_KNOWN, VERSIONS


def _plan(sa: str = "api-sa"):
    source = PodInfo(name="api-7d9f-x", namespace=Namespace("shop"), ip="10.0.0.1", service_account=sa,
                     labels={"app": "api", "pod-template-hash": "7d9f"}, node="node-1",
                     tolerations=({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"},))
    src = Source(name="api", namespace=Namespace("shop"), selector=Selector.from_labels({"app": "api"}))
    db = Target(name="db", kind=TargetKind.TCP, host="db", port=5432)
    return make_plans([src], {"api": [source]}, [db], {}, timeout=1.0)[0]


SETTINGS = {
    "defaults": PodSettings(),
    "same-node": PodSettings(same_node=True, image="lab.local/python:3", image_pull_policy="Never"),
    "keep": PodSettings(ttl_seconds=None),
}


def _validate(obj: dict, version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"Kubernetes {version}: {obj['kind']} invalid at {path}: {exc.message}")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_probe_job_is_valid(version, settings):
    _validate(probe_job(_plan(), "r1", settings), version)


@pytest.mark.parametrize("version", VERSIONS)
def test_ephemeral_container_is_valid_in_a_pod(version):
    plan = _plan()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-7d9f-x", "namespace": "shop"},
           "spec": {"containers": [{"name": "app", "image": "app:1"}],
                    "ephemeralContainers": [ephemeral_container(plan, "r1", PodSettings())]}}
    _validate(pod, version)


def test_a_misspelt_field_is_caught():
    job = probe_job(_plan(), "r1", PodSettings())
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, VERSIONS[-1], strict=True)

"""The Python API, baselines, the pytest plugin, the JSON Schema and the kubectl plugin entry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from fakecluster import FakeCluster
from test_runner import pods, spec_for

import probe
from probe import spec as spec_module
from probe.errors import InputError
from probe.model import Verdict
from probe.report import render, render_json
from probe.result import from_dict, to_json

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "probe" / "schema.json").read_text())


def test_public_api_is_small_and_pinned():
    assert sorted(probe.__all__) == ["Cell", "Expectation", "NetprobeError", "Proof", "RunResult", "Spec",
                                     "SubResult", "Verdict", "__version__", "from_dict", "load_result",
                                     "load_spec", "parse_spec", "render", "run", "to_dict", "to_json"]


def test_public_names_are_imported_on_first_use():
    script = textwrap.dedent("""
        import sys
        import probe
        assert "probe.api" not in sys.modules and "probe.report" not in sys.modules, sorted(sys.modules)
        assert callable(probe.runner.finish_cleanups)  # a submodule, not imported: README, "Python API"
        from probe import Spec, run
        import probe.api, probe.report, probe.result, probe.spec
        assert run is probe.api.run and probe.render is probe.report.render and Spec is probe.spec.Spec
        assert probe.to_json is probe.result.to_json and probe.NetprobeError.__module__ == "probe.errors"
        assert all(getattr(probe, name) is not None for name in probe.__all__)
        assert set(probe.__all__) <= set(dir(probe))
        try:
            probe.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("probe.no_such_name")
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout == "ok\n", proc.stderr


def test_run_returns_a_result_with_ok_mismatches_cells_and_json(listener, closed_port):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    result = probe.run(spec_for(listener[1], closed_port, expect_db="deny"), cluster=cluster, warmup=0,
                       startup_timeout=5)
    assert not result.ok and len(result.mismatches) == 2 and len(result.cells) == 4
    assert json.loads(to_json(result))["cells"][0]["source"] == "api"
    assert "Mismatches (2):" in render(result, "table")


def test_unknown_option_is_input_error():
    with pytest.raises(InputError, match=r"unknown option\(s\) colour; expected some of: attempts"):
        probe.run("x.yaml", colour=True)


def test_baseline_reports_drift_and_can_be_the_expectation(listener, closed_port, tmp_path):
    cluster = FakeCluster(pods=pods("api") + pods("web"))
    first = probe.run(spec_for(listener[1], closed_port), cluster=cluster, warmup=0)
    assert first.ok
    # pretend the saved run had seen api -> db blocked
    doc = json.loads(render_json(first))
    doc["cells"][0]["observed"] = "blocked"
    saved = tmp_path / "baseline.json"
    saved.write_text(json.dumps(doc))
    again = probe.run(spec_for(listener[1], closed_port), cluster=cluster, warmup=0, baseline=saved)
    assert again.drift == (("api", "db", Verdict.BLOCKED, Verdict.ALLOWED),)
    assert again.exit_code == 1 and "Drift since the baseline (1):" in render(again, "table")
    assert from_dict(json.loads(to_json(again))).drift == again.drift
    # a spec without `expect` takes the baseline's observations as expectations
    no_expect = spec_for(listener[1], closed_port)
    no_expect = type(no_expect)(sources=no_expect.sources, targets=no_expect.targets, defaults=no_expect.defaults)
    third = probe.run(no_expect, cluster=cluster, warmup=0, baseline=saved)
    db = third.cell("api", "db")
    assert db.expected.value == "deny" and db.match is False and db.expected_by.startswith("baseline")


def test_pytest_plugin_fixture_passes_and_fails_readably(pytester, listener, closed_port):
    pytester.syspathinsert(str(Path(__file__).parent))
    pytester.makepyfile(textwrap.dedent(f"""
        from fakecluster import FakeCluster
        from test_runner import pods, spec_for

        def test_matches(netprobe):
            netprobe.assert_matrix(spec_for({listener[1]}, {closed_port}),
                                   cluster=FakeCluster(pods=pods("api") + pods("web")), warmup=0)

        def test_wrong(netprobe):
            netprobe.assert_matrix(spec_for({listener[1]}, {closed_port}, expect_db="deny"),
                                   cluster=FakeCluster(pods=pods("api") + pods("web")), warmup=0)
    """))
    result = pytester.runpytest("-p", "no:benchmark", "--netprobe-namespace", "default")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*does not match the cluster (exit 1)*", "*Mismatches (2):*",
                                 "*api → db: db:*connected*but should be denied*"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("expect.yaml")), ids=str)
def test_examples_validate_against_the_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize("doc", [
    {"version": 1, "sources": [{"name": "a", "selector": {}}], "targets": [{"name": "t", "tcp": "h:1"}], "x": 1},
    {"version": 1, "sources": [{"name": "a"}], "targets": [{"name": "t", "tcp": "h:1"}]},
    {"version": 1, "sources": [{"name": "a", "selector": {}}], "targets": [{"name": "t", "dns": "a", "tcp": "h:1"}]},
    {"version": 1, "sources": [{"name": "a", "selector": {}}], "targets": [{"name": "t", "tcp": {"port": 0,
                                                                                              "selector": {}}}]},
], ids=["unknown-key", "no-selector", "two-kinds", "port-0"])
def test_schema_rejects_what_the_loader_rejects(doc):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
    with pytest.raises(probe.NetprobeError):
        probe.parse_spec(yaml.safe_dump(doc))


def test_schema_keys_are_in_sync_with_the_loader():
    props = SCHEMA["properties"]
    assert set(props) == set(spec_module._TOP_KEYS)
    assert set(props["sources"]["items"]["properties"]) == set(spec_module._SOURCE_KEYS)
    assert set(props["targets"]["items"]["properties"]) == set(spec_module._TARGET_KEYS)
    assert set(props["targets"]["items"]["properties"]["tcp"]["oneOf"][1]["properties"]) == \
        set(spec_module._POD_TARGET_KEYS)


def test_schema_command_and_kubectl_plugin_entry():
    out = subprocess.run([sys.executable, "-m", "probe", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == SCHEMA
    exe = Path(sys.executable).with_name("kubectl-netprobe")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage: kubectl netprobe" in proc.stdout


def test_ci_recipes_are_valid_yaml_with_the_expected_steps():
    gh = yaml.safe_load((ROOT / ".github" / "workflows" / "e2e.yml").read_text())
    steps = [s.get("run", "") + s.get("uses", "") for s in gh["jobs"]["e2e-kind-calico"]["steps"]]
    assert any("e2e/kind-up.sh" in s for s in steps) and any("pytest e2e" in s for s in steps)
    assert all("@" in s.get("uses", "@") for job in gh["jobs"].values() for s in job["steps"])  # pinned
    gl = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())
    assert "netprobe run" in " ".join(gl["netprobe"]["script"])
    assert gl["netprobe"]["artifacts"]["reports"]["junit"] == "netprobe-junit.xml"
    for path in (ROOT / "deploy").glob("*.yaml"):
        text = path.read_text()
        if "{{" not in text:  # the Helm template is not plain YAML
            assert list(yaml.safe_load_all(text)), path


def test_run_closes_the_client_it_made_and_leaves_a_caller_s_open(monkeypatch, listener, closed_port):
    import probe.cluster

    made: list[FakeCluster] = []

    class Made(FakeCluster):
        closed = False

        def __init__(self, **_kubeconfig_and_context: object) -> None:
            super().__init__(pods=pods("api") + pods("web"))
            made.append(self)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(probe.cluster, "KubeCluster", Made)
    spec = spec_for(listener[1], closed_port)
    assert probe.run(spec, warmup=0, startup_timeout=2.0).ok
    assert len(made) == 1 and made[0].closed  # its pooled connections do not outlive the call
    mine = Made()
    assert probe.run(spec, cluster=mine, warmup=0, startup_timeout=2.0).ok
    assert not mine.closed  # the caller's to close
    # cleanup going on in the background still needs the client: runner.finish_cleanups first
    assert probe.run(spec, warmup=0, startup_timeout=2.0, background_cleanup=True).ok
    assert not made[-1].closed
    probe.runner.finish_cleanups()

"""The kubernetes client range: declared with both ends in pyproject.toml, stated in the README,
and both ends run by CI (.ci/run reads the range from pyproject.toml)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def client_requirement() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [req] = [d for d in deps if re.match(r"kubernetes\b", d)]
    return req


def test_the_client_range_is_bounded_on_both_ends():
    assert re.fullmatch(r"kubernetes>=[0-9.]+,<[0-9]+", client_requirement())


def test_the_readme_states_the_declared_client_range_and_the_side_effects():
    readme = (ROOT / "README.md").read_text()
    assert f"`{client_requirement()}`" in readme
    assert "## Supported versions" in readme
    for side_effect in ("PodDisruptionBudget", "publishNotReadyAddresses", "--via ephemeral"):
        assert side_effect in readme.split("### Side effects")[1].split("\n## ")[0]


def test_ci_runs_the_oldest_client_from_the_declared_range():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "kube_req" in ci and 'for version in "$low" 36.0' in ci and 'kubernetes==$version.*' in ci
    assert "tests/test_stub_api.py" in ci

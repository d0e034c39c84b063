"""pytest plugin (entry point `pytest11`): the `netprobe` fixture for e2e suites.

    def test_network_policies(netprobe):
        netprobe.assert_matrix("expect.yaml", namespace="shop")

On a mismatch the test fails with the mismatch table, not a traceback. Options:
--netprobe-kubeconfig, --netprobe-context, --netprobe-namespace, --netprobe-image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .model import RunResult
    from .spec import Spec


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the --netprobe-* options."""
    group = parser.getgroup("netprobe", "netprobe connectivity checks")
    group.addoption("--netprobe-kubeconfig", default=None, help="kubeconfig for the netprobe fixture")
    group.addoption("--netprobe-context", default=None, help="kubeconfig context for the netprobe fixture")
    group.addoption("--netprobe-namespace", default=None, help="default namespace of specs' sources")
    group.addoption("--netprobe-image", default=None, help="probe image (any image with python3)")


class Netprobe:
    """What the `netprobe` fixture gives a test: run a spec, or assert that it matches."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None,
                 image: str | None) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self.namespace, self.image = namespace or "default", image

    def run(self, spec: Spec | str | Path, **options: Any) -> RunResult:
        """probe.run() with the fixture's cluster settings; options as for probe.run()."""
        from .api import run

        if self.image and "image" not in options:
            options["image"] = self.image
        options.setdefault("namespace", self.namespace)
        return run(spec, kubeconfig=self.kubeconfig, context=self.context, **options)

    def assert_matrix(self, spec: Spec | str | Path, **options: Any) -> RunResult:
        """Run and fail the test with the mismatch table unless every cell matches."""
        from .errors import NetprobeError
        from .report import render_table

        try:
            result = self.run(spec, **options)
        except NetprobeError as exc:
            pytest.fail(f"netprobe could not run {spec}: {exc}", pytrace=False)
        if not result.ok:
            pytest.fail(f"netprobe: {spec} does not match the cluster (exit {result.exit_code})\n\n"
                        + render_table(result), pytrace=False)
        return result


@pytest.fixture
def netprobe(request: pytest.FixtureRequest) -> Netprobe:
    """A Netprobe bound to --netprobe-kubeconfig/--netprobe-context (default: $KUBECONFIG)."""
    opt = request.config.getoption
    return Netprobe(opt("--netprobe-kubeconfig"), opt("--netprobe-context"),
                    opt("--netprobe-namespace"), opt("--netprobe-image"))

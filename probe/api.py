"""The Python API: `probe.run(spec_or_path, ...)` does what `netprobe run` does and returns a RunResult.

    import probe
    result = probe.run("expect.yaml", namespace="shop", image="python:3.12-alpine", attempts=2)
    assert result.ok, probe.render(result, "table")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError
from .model import RunResult
from .probepod import PodSettings
from .runner import Runner, RunOptions
from .spec import Spec, load_spec, require_expectations

_RUN_FIELDS = {f.name for f in dataclasses.fields(RunOptions)} - {"pods"}
_POD_FIELDS = {f.name for f in dataclasses.fields(PodSettings)}
OPTIONS = tuple(sorted(_RUN_FIELDS | _POD_FIELDS))


def make_options(**options: Any) -> RunOptions:
    """RunOptions from flat keywords (`image=`, `attempts=`, `warmup=` ...); InputError on unknown ones."""
    unknown = sorted(set(options) - _RUN_FIELDS - _POD_FIELDS)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; expected some of: {', '.join(OPTIONS)}")
    pods = PodSettings(**{k: v for k, v in options.items() if k in _POD_FIELDS})
    return RunOptions(pods=pods, **{k: v for k, v in options.items() if k in _RUN_FIELDS})


def run(
    spec: Spec | str | Path,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str = "default",
    from_policies: bool = False,
    ipblock_pods: bool = True,
    baseline: str | Path | None = None,
    cluster: Any = None,
    progress: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    run_options: RunOptions | None = None,
    **options: Any,
) -> RunResult:
    """Probe the cluster and diff against the spec; the same options as `netprobe run`.

    `options` are RunOptions/PodSettings fields: timeout, attempts, settle, per_pod,
    max_target_pods, max_parallel, keep, via, overall_timeout, warmup, warmup_mode, image,
    image_pull_policy, same_node, ttl_seconds, startup_timeout, ...
    Raises NetprobeError subclasses (InputError: bad input, ProbeError: could not probe).
    """
    from .baseline import load_baseline

    if run_options is None:
        run_options = make_options(**options)
    elif options:
        raise InputError("pass either run_options or keyword options, not both")
    loaded = spec if isinstance(spec, Spec) else load_spec(spec, namespace)
    base = load_baseline(baseline) if baseline is not None else None
    if not from_policies and base is None:
        require_expectations(loaded)
    owned = cluster is None
    if cluster is None:
        import time

        from .cluster import KubeCluster

        connecting = time.monotonic()
        cluster = KubeCluster(kubeconfig=kubeconfig, context=context)
        if log is not None:
            log(f"kubeconfig and API client: {time.monotonic() - connecting:.2f}s")
    try:
        return _run(cluster, loaded, run_options, base, from_policies=from_policies, ipblock_pods=ipblock_pods,
                    progress=progress, log=log)
    finally:
        # The client this call made is closed with it -- unless cleanup goes on in the background
        # with it (the CLI's choice: it waits for runner.finish_cleanups before it exits).
        if owned and not run_options.background_cleanup:
            cluster.close()


def _run(cluster: Any, loaded: Spec, run_options: RunOptions, base: Any, *, from_policies: bool,
         ipblock_pods: bool, progress: Any, log: Any) -> RunResult:
    from .baseline import expectations_from_baseline

    expect: dict[tuple[str, str], Any] | None = None
    expected_by: dict[tuple[str, str], str] | None = None
    warnings: list[str] = []
    if from_policies:
        from .analysis import compare, expect_spec, world_from_cluster  # the policy engine: ~15 ms to import

        world = dataclasses.replace(world_from_cluster(cluster), ipblock_matches_pods=ipblock_pods)
        computed, reasons, warnings = expect_spec(loaded, world.engine(), world.pods, world.services)
        warnings = [*world.all_warnings(), *warnings]
        if loaded.has_expectations:
            warnings += compare(loaded.expect, computed, reasons)
        else:
            expect, expected_by = computed, {k: f"policies: {r}" for k, r in reasons.items()}
    if expect is None and not loaded.has_expectations and base is not None:
        expect, expected_by = expectations_from_baseline(loaded, base)
    runner = Runner(cluster, loaded, run_options, expect=expect, expected_by=expected_by, warnings=warnings,
                    progress=progress, log=log)
    result = runner.run()
    # Where and with what it ran, for the reports (the HTML report's header shows both).
    context_name = getattr(cluster, "context_name", "")  # KubeCluster has it; a test's fake may not
    result = dataclasses.replace(result, meta={**result.meta, "netprobe_version": __version__,
                                              **({"context": context_name} if context_name else {})})
    if base is not None:
        from .baseline import with_drift

        result = with_drift(result, base)
    return result

"""The `netprobe` command: parse, call the library, render, exit. Nothing else.

Exit codes (README "Exit codes"): 0 every cell matches, 1 a mismatch, 2 bad input,
3 could not probe (some cell or source could not be probed, or the cluster failed),
130 interrupted (after cleanup).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from . import __version__
from .errors import EXIT_CANNOT_PROBE, InputError, NetprobeError
from .model import RunResult
from .probepod import DEFAULT_IMAGE, PodSettings
from .report import FORMATS, render, use_colour
from .result import load_result
from .runner import RunOptions, finish_cleanups
from .spec import load_spec, parse_duration

if TYPE_CHECKING:
    from .analysis import World

# probe.analysis (the policy engine, ~15 ms to import) is imported by the commands that use it:
# `netprobe run` needs it only with --from-policies (probe/api.py), and should not pay for it before
# its first API request (tests/test_cli.py::test_run_imports_nothing_it_does_not_need_before_its_first_api_request).

app = typer.Typer(
    name="netprobe",
    help="Check on a live Kubernetes cluster that every workload reaches exactly what it should, "
         "and nothing else.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")


def _fail(message: str, code: int) -> None:
    typer.echo(f"netprobe: error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], T]) -> T:
    """Run library code; any NetprobeError becomes its message and exit code, never a traceback."""
    try:
        return fn()
    except NetprobeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for --debug users
        if os.environ.get("NETPROBE_DEBUG"):
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {exc} (set NETPROBE_DEBUG=1 for a traceback)",
              EXIT_CANNOT_PROBE)
    raise AssertionError("unreachable")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netprobe {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """netprobe: observed connectivity vs. expected, on a live cluster."""


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="The expectation spec (expect.yaml).")]) -> None:
    """Validate an expectation spec without touching a cluster.

    Examples:
      netprobe validate examples/tutorial/expect.yaml
    """
    loaded = guarded(lambda: load_spec(spec))
    cells = len(loaded.sources) * len(loaded.targets)
    note = "" if loaded.has_expectations else " (no `expect` section: use it with --from-policies)"
    typer.echo(f"{spec}: OK — {len(loaded.sources)} source(s), {len(loaded.targets)} target(s), "
               f"{cells} cell(s){note}")


@app.command()
def report(
    result: Annotated[Path, typer.Argument(help="A result saved with `netprobe run -o json`.")],
    fmt: Annotated[str, typer.Option("--format", "-o", callback=_check_format,
                                     help="table | json | junit | markdown | html")] = "table",
) -> None:
    """Re-render a saved JSON result; exits with the result's own exit code.

    Examples:
      netprobe report run.json --format junit > junit.xml
      netprobe report run.json --format html > report.html
    """
    loaded = guarded(lambda: load_result(result))
    sys.stdout.write(render(loaded, fmt, colour=use_colour(sys.stdout)))
    raise typer.Exit(loaded.exit_code)


def _parse_reports(values: list[str]) -> list[tuple[str, Path]]:
    out = []
    for value in values:
        fmt, sep, path = value.partition("=")
        if not sep or not path or fmt not in FORMATS:
            raise typer.BadParameter(f"expected FORMAT=PATH with FORMAT one of {', '.join(FORMATS)}, "
                                     f"got {value!r}", param_hint="--report")
        out.append((fmt, Path(path)))
    return out


def _duration(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(f"expected {exc}, got {value!r}", param_hint=flag) from None


def emit(result: RunResult, output: str, reports: list[tuple[str, Path]]) -> None:
    """Print the result in `output` format and write every --report file."""
    sys.stdout.write(render(result, output, colour=use_colour(sys.stdout)))
    for fmt, path in reports:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(result, fmt), encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--report {fmt}={path}: cannot write: {exc}") from None


KubeconfigOpt = Annotated[str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG",
                                                   help="Path to a kubeconfig (default $KUBECONFIG, "
                                                        "~/.kube/config, or in-cluster).")]
ContextOpt = Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")]
IpblockOpt = Annotated[bool, typer.Option(
    "--ipblock-pods/--no-ipblock-pods",
    help="Apply ipBlock rules to pod IPs too, as Calico does (the API leaves it to the CNI).")]


@app.command()
def run(
    spec: Annotated[Path, typer.Option("--file", "-f", help="The expectation spec (expect.yaml).")],
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: Annotated[str, typer.Option(
        "--namespace", "-n", help="Namespace of sources/targets that name none.")] = "default",
    output: Annotated[str, typer.Option("--output", "-o", callback=_check_format,
                                        help="table | json | junit | markdown | html")] = "table",
    report_to: Annotated[list[str] | None, typer.Option(
        "--report", help="Also write FORMAT=PATH (repeatable), e.g. junit=out/junit.xml.")] = None,
    probe_timeout: Annotated[str | None, typer.Option(
        "--probe-timeout", help="Per-check timeout (default: the spec's defaults.timeout).")] = None,
    attempts: Annotated[int | None, typer.Option(
        "--attempts", min=1, help="Re-probe expected-allow cells that did not connect (and cells not "
                                  "probed), in new pods, up to N rounds in all. A connection seen on an "
                                  "expected-deny cell is never re-probed away.")] = None,
    settle: Annotated[str | None, typer.Option(
        "--settle", help="Re-probe everything until two rounds agree, for at most this long (e.g. 60s); "
                         "cells still changing are reported unstable (exit 1).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="A deny proven only by a failed DNS lookup (port never tested) counts as "
                         "not probed.")] = False,
    per_pod: Annotated[bool, typer.Option(
        "--per-pod", help="One probe pod per source pod, not per network identity.")] = False,
    max_target_pods: Annotated[int | None, typer.Option(
        "--max-target-pods", min=1, help="Probe at most N pods of each pod-selector target.")] = None,
    max_parallel: Annotated[int, typer.Option(
        "--max-parallel", min=1, help="At most N probe pods at once.")] = 50,
    image: Annotated[str, typer.Option("--image", envvar="NETPROBE_IMAGE",
                                       help="Probe image: any image with python3.")] = DEFAULT_IMAGE,
    pull_policy: Annotated[str, typer.Option("--image-pull-policy",
                                             help="IfNotPresent | Always | Never")] = "IfNotPresent",
    same_node: Annotated[bool, typer.Option(
        "--same-node", help="Schedule each probe pod on its source pod's node.")] = False,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Keep probe Jobs/pods for debugging (no cleanup, no TTL; see `netprobe cleanup`).")] = False,
    via: Annotated[str, typer.Option(
        "--via", help="job (default) | ephemeral: inject into the real source pod (>= 1.25; "
                      "cannot be removed afterwards).")] = "job",
    startup_timeout: Annotated[str, typer.Option(
        "--startup-timeout", help="How long a probe pod may take to start.")] = "120s",
    timeout: Annotated[str, typer.Option("--timeout", help="Overall deadline of the run.")] = "10m",
    warmup: Annotated[str, typer.Option(
        "--warmup", help="Longest wait in a new probe pod for its policy to be in force before "
                         "probing (the readiness gate's bound; 0 to disable).")] = "2s",
    warmup_mode: Annotated[str, typer.Option(
        "--warmup-mode", help="gate (default): start as soon as the policy is observably in force, "
                              "at most --warmup | fixed: always wait the whole --warmup.")] = "gate",
    ttl: Annotated[int, typer.Option("--ttl", min=0,
                                     help="Seconds a finished probe Job lingers if not deleted "
                                          "(at least 30; ignored with --keep).")] = 60,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress on stderr (default: on a TTY, table output).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log steps and API call counts.")] = False,
    ipblock_pods: IpblockOpt = True,
    save_baseline: Annotated[Path | None, typer.Option(
        "--save-baseline", help="Save this run's result as a baseline for later --baseline runs.")] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="Report every cell whose verdict changed since this saved run (drift, exit 1). "
                           "A spec without `expect` then uses the baseline as its expectation.")] = None,
    from_policies: Annotated[bool, typer.Option(
        "--from-policies", help="Compute expectations from the cluster's NetworkPolicies (instead of "
                                "the spec's `expect`, or compared with it as warnings).")] = False,
) -> None:
    """Probe the cluster and diff what is reachable against the spec.

    Examples:
      netprobe run -f expect.yaml
      netprobe run -f expect.yaml -o json --report junit=out/junit.xml --attempts 2
      netprobe run -f expect.yaml --report html=out/netprobe.html
      netprobe run -f sources-and-targets.yaml --from-policies -n prod
    """
    reports = _parse_reports(report_to or [])
    if via not in ("job", "ephemeral"):
        raise typer.BadParameter(f"expected job or ephemeral, got {via!r}", param_hint="--via")
    if warmup_mode not in ("gate", "fixed"):
        raise typer.BadParameter(f"expected gate or fixed, got {warmup_mode!r}", param_hint="--warmup-mode")
    if pull_policy not in ("IfNotPresent", "Always", "Never"):
        raise typer.BadParameter(f"expected IfNotPresent, Always or Never, got {pull_policy!r}",
                                 param_hint="--image-pull-policy")
    options = RunOptions(
        timeout=_duration(probe_timeout, "--probe-timeout"), attempts=attempts,
        settle=_duration(settle, "--settle"), per_pod=per_pod, max_target_pods=max_target_pods,
        max_parallel=max_parallel, keep=keep, via=via, strict=strict,
        overall_timeout=_duration(timeout, "--timeout") or 600.0,
        warmup=0.0 if warmup.strip() in ("0", "0s") else (_duration(warmup, "--warmup") or 0.0),
        warmup_mode=warmup_mode, background_cleanup=True,
        pods=PodSettings(image=image, image_pull_policy=pull_policy, same_node=same_node,
                         ttl_seconds=ttl,
                         startup_timeout=_duration(startup_timeout, "--startup-timeout") or 120.0),
    )
    show_progress = progress if progress is not None else (output == "table" and sys.stderr.isatty())
    result = guarded(lambda: _run(spec, namespace, kubeconfig, context, options, show_progress, verbose,
                                  from_policies, ipblock_pods, baseline))
    if save_baseline is not None:
        reports.append(("json", save_baseline))
    guarded(lambda: emit(result, output, reports))
    sys.stdout.flush()  # the result is out; now wait for the probe pods' deletion
    finish_cleanups()
    if verbose:
        typer.echo(f"netprobe: run {result.run_id}: {result.meta.get('identities')} identities, "
                   f"{result.meta.get('probe_pods')} probe pod(s), {result.meta.get('api_calls')} "
                   f"API call(s), {result.duration_s:.1f}s", err=True)
    raise typer.Exit(result.exit_code)


def _run(spec_path: Path, namespace: str, kubeconfig: str | None, context: str | None,
         options: RunOptions, show_progress: bool, verbose: bool, from_policies: bool,
         ipblock_pods: bool = True, baseline: Path | None = None) -> RunResult:
    from . import api

    last = [""]
    started = time.monotonic()

    def progress(message: str) -> None:
        # Only for runs longer than a second; one line rewritten in place on a terminal.
        if message != last[0] and time.monotonic() - started >= 1.0:
            last[0] = message
            sys.stderr.write(f"\r\033[K{message}" if sys.stderr.isatty() else f"{message}\n")
            sys.stderr.flush()

    def log(message: str) -> None:
        if verbose:
            typer.echo(f"netprobe: {message}", err=True)

    try:
        return api.run(spec_path, kubeconfig=kubeconfig, context=context, namespace=namespace,
                       from_policies=from_policies, ipblock_pods=ipblock_pods, baseline=baseline,
                       progress=progress if show_progress else None, log=log, run_options=options)
    finally:
        if show_progress and sys.stderr.isatty() and last[0]:
            sys.stderr.write("\r\033[K")


@app.command()
def cleanup(
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n",
                                                  help="Only this namespace (default: all).")] = None,
    older_than: Annotated[str | None, typer.Option(
        "--older-than", help="Only runs started at least this long ago (leave concurrent runs alone).")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
) -> None:
    """Delete probe Jobs and pods left by earlier runs (only objects labelled netprobe.io/run).

    Examples:
      netprobe cleanup
      netprobe cleanup -n prod --older-than 10m
    """
    from .cluster import KubeCluster
    from .runner import cleanup_runs

    age = _duration(older_than, "--older-than") or 0.0
    removed = guarded(lambda: cleanup_runs(KubeCluster(kubeconfig=kubeconfig, context=context),
                                           namespace=namespace, older_than=age, run_id=run_id))
    for ns, rid in removed:
        typer.echo(f"removed run {rid} in namespace {ns}")
    typer.echo(f"{len(removed)} run(s) removed")


FilesOpt = Annotated[list[Path] | None, typer.Option(
    "--file", "-f", help="Manifests (files or directories; repeatable). Default: the live cluster.")]


def _world(files: list[Path] | None, namespace: str, kubeconfig: str | None, context: str | None,
           ipblock_pods: bool = True) -> World:
    from .analysis import world_from_cluster, world_from_manifests
    from .cluster import KubeCluster

    if files:
        world = world_from_manifests([str(f) for f in files], namespace)
    else:
        world = world_from_cluster(KubeCluster(kubeconfig=kubeconfig, context=context))
    return replace(world, ipblock_matches_pods=ipblock_pods)


def _ports(ports: list[int], protocols: list[str]) -> list[tuple[int, str]]:
    protocols = [p.upper() for p in protocols] or ["TCP"]
    for proto in protocols:
        if proto not in ("TCP", "UDP", "SCTP"):
            raise typer.BadParameter(f"expected TCP, UDP or SCTP, got {proto!r}", param_hint="--protocol")
    if len(protocols) not in (1, len(ports)):
        raise typer.BadParameter("give one --protocol for all ports, or one per --port", param_hint="--protocol")
    for port in ports:
        if not 1 <= port <= 65535:
            raise typer.BadParameter(f"expected a port between 1 and 65535, got {port}", param_hint="--port")
    return [(p, protocols[0] if len(protocols) == 1 else protocols[i]) for i, p in enumerate(ports)]


@app.command()
def expect(
    files: Annotated[list[Path], typer.Option("--file", "-f", help="Manifests: files or directories (repeatable).")],
    port: Annotated[list[int] | None, typer.Option(
        "--port", help="Only these ports (repeatable). Default: every port (with --pods: 80).")] = None,
    protocol: Annotated[list[str] | None, typer.Option("--protocol", help="TCP (default), UDP or SCTP.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table | json | connlist | html (one "
                                                                "self-contained page: the matrix, each cell's "
                                                                "rules)")] = "table",
    pods: Annotated[bool, typer.Option("--pods", help="The pod x pod matrix (version 1 JSON) instead of "
                                                      "workloads.")] = False,
    diff: Annotated[list[Path] | None, typer.Option(
        "--diff", help="Base manifests (repeatable): list what -f adds (+) and removes (-); exit 1 when "
                       "anything changes.")] = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", help="Also print this spec's `expect` section, computed from the policies.")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n",
                                           help="Namespace of objects that name none.")] = "default",
    ipblock_pods: IpblockOpt = True,
) -> None:
    """Compute the expected connectivity from NetworkPolicy manifests, per workload, offline (no cluster).

    Examples:
      netprobe expect -f examples/shop/
      netprobe expect -f k8s/ -o connlist
      netprobe expect -f k8s/ -o html > expect.html    # the workload matrix, each cell's rules
      netprobe expect -f pr/k8s/ --diff main/k8s/     # what does this PR open?
      netprobe expect -f examples/shop/ --pods --port 5432 -o json
      netprobe expect -f k8s/ --pods --spec expect.yaml -o html > expect.html
    """
    from .analysis import expect_document, spec_section
    from .expect_report import render_connlist, render_diff, render_expect, render_workload_table, workload_json
    from .policy.portset import merge
    from .workloads import diff_views, workload_view

    if output not in ("table", "json", "connlist", "html"):
        raise typer.BadParameter(f"expected table, json, connlist or html, got {output!r}", param_hint="--output")
    if output == "html" and diff:
        raise typer.BadParameter("--diff prints +/- connection lines (table, connlist) or json", param_hint="--output")
    if pods and (output == "connlist" or diff):
        raise typer.BadParameter("--pods prints the pod matrix as table or json; connlist and --diff are "
                                 "per workload", param_hint="--pods")
    if diff and spec is not None:
        raise typer.BadParameter("--diff compares connectivity; run --spec without it", param_hint="--spec")
    if protocol and not port:
        raise typer.BadParameter("give the --port(s) the protocol applies to (without --port every port of "
                                 "every protocol is evaluated)", param_hint="--protocol")
    world = guarded(lambda: _world(files, namespace, None, None, ipblock_pods))
    loaded = guarded(lambda: load_spec(spec, namespace)) if spec is not None else None
    if pods:
        doc = guarded(lambda: expect_document(world, _ports(port or [80], protocol or []), loaded))
        if output == "html":
            from .report_html import render_expect_html

            _write([render_expect_html(doc)])
            return
        typer.echo(json.dumps(doc, indent=2) if output == "json" else render_expect(doc), nl=output == "json")
        return
    space = merge((proto, p, p) for p, proto in _ports(port, protocol or [])) if port else None
    view = guarded(lambda: workload_view(world, space))
    if diff:
        base = guarded(lambda: workload_view(_world(diff, namespace, None, None, ipblock_pods), space))
        changes = diff_views(base, view)
        _write([render_diff(changes, output)])
        raise typer.Exit(1 if changes else 0)
    section = guarded(lambda: spec_section(world, loaded)) if loaded is not None else None
    if output in ("table", "connlist") and section is None:
        for w in world.all_warnings():  # what was read but not modelled: the answer may not hold
            typer.echo(f"warning: {w}", err=True)
    if output == "json":
        _write(workload_json(view, section))
    elif output == "html":
        from .report_html import render_workload_html
        from .workloads import WorkloadExplainer

        warnings = world.all_warnings() if section is None else []  # a spec section carries them already
        _write([render_workload_html(view, WorkloadExplainer(world, view), section, warnings)])
    elif output == "connlist":
        _write([render_connlist(view)])
    else:
        _write([render_workload_table(view, section)])


def _write(chunks: Iterable[str]) -> None:
    """Stream output; a reader that stops early (`| head`) ends us as SIGPIPE would (141), quietly."""
    try:
        batch: list[str] = []
        size = 0
        for chunk in chunks:  # one write per ~64 KiB: a large document comes in 500,000 lines
            batch.append(chunk)
            size += len(chunk)
            if size >= 65536:
                sys.stdout.write("".join(batch))
                batch, size = [], 0
        sys.stdout.write("".join(batch))
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise typer.Exit(141) from None


@app.command()
def explain(
    src: Annotated[str, typer.Argument(help="Source pod as namespace/name.")],
    dst: Annotated[str, typer.Argument(help="Destination pod as namespace/name, or an IP address.")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Destination port.")],
    protocol: Annotated[str, typer.Option("--protocol", help="TCP, UDP or SCTP.")] = "TCP",
    files: FilesOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    ipblock_pods: IpblockOpt = True,
) -> None:
    """Explain which policies isolate each side of a connection and which rule allows it.

    Examples:
      netprobe explain shop/api-7d9 shop/db-0 --port 5432
      netprobe explain default/api default/db --port 5432 -f examples/tutorial/
    """
    from .analysis import endpoint_for, explain_text

    proto = _ports([port], [protocol])[0][1]
    world = guarded(lambda: _world(files, "default", kubeconfig, context, ipblock_pods))
    a, b = guarded(lambda: (endpoint_for(world, src), endpoint_for(world, dst)))
    decision = world.engine().decide(a, b, port, proto)
    typer.echo(explain_text(decision, a.describe(), b.describe(), port, proto), nl=False)
    for w in world.all_warnings():  # what was read but not modelled: the answer may not hold
        typer.echo(f"warning: {w}", err=True)


@app.command()
def lint(
    files: FilesOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table | json")] = "table",
    ipblock_pods: IpblockOpt = True,
) -> None:
    """Find common NetworkPolicy mistakes (exit 1 when there are findings).

    Examples:
      netprobe lint -f examples/tutorial/no-dns/ -f examples/tutorial/workloads.yaml
      netprobe lint            # the live cluster
    """
    from .analysis import Finding
    from .analysis import lint as run_lint

    world = guarded(lambda: _world(files, "default", kubeconfig, context, ipblock_pods))
    findings = run_lint(world.engine(), world.pods)
    findings += [Finding(code="NP100", object=w.split(": ", 1)[0], message=w.split(": ", 1)[-1],
                         fix="netprobe's predictions ignore this; check it by hand or by probing")
                 for w in world.all_warnings()]
    if output == "json":
        typer.echo(json.dumps([{"code": f.code, "object": f.object, "message": f.message, "fix": f.fix}
                               for f in findings], indent=2))
    else:
        for f in findings:
            typer.echo(f"{f.code} {f.object}: {f.message}\n      fix: {f.fix}")
        typer.echo(f"{len(findings)} finding(s)")
    raise typer.Exit(1 if findings else 0)


@app.command()
def schema() -> None:
    """Print the JSON Schema of expect.yaml (for editors: yaml-language-server, IDEs).

    Examples:
      netprobe schema > expect.schema.json
      # in expect.yaml:  # yaml-language-server: $schema=./expect.schema.json
    """
    typer.echo((Path(__file__).with_name("schema.json")).read_text(encoding="utf-8"), nl=False)


def main() -> None:
    """Console-script entry point."""
    _exit_now(app)


def _exit_now(command: Callable[[], object]) -> None:
    """Run the app, then leave without the interpreter's teardown.

    Tearing down the thousands of modules the kubernetes client imports takes 0.3-0.7 s,
    after everything is printed and every probe pod deleted. By the time the app returns,
    output is flushed here and report files are closed, and no thread is left running.
    """
    code: int
    try:
        command()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    finish_cleanups()  # a run whose printing failed still deletes its probe pods
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def kubectl_main() -> None:
    """`kubectl netprobe ...`: kubectl finds `kubectl-netprobe` on PATH and runs it."""
    _exit_now(lambda: app(prog_name="kubectl netprobe"))

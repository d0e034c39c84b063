"""The CLI as users meet it: real subprocesses, exit codes, messages, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_diff_report import result_with_every_verdict

from probe import __version__
from probe.cli import app
from probe.report import render
from tests.htmlhelp import Page

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial" / "expect.yaml"


def netprobe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)


def test_version():
    proc = netprobe("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"netprobe {__version__}"


def test_validate_tutorial_spec_exits_0():
    proc = netprobe("validate", str(TUTORIAL))
    assert proc.returncode == 0
    assert "OK — 2 source(s), 5 target(s), 10 cell(s)" in proc.stdout


def test_validate_bad_spec_exits_2_with_every_problem(tmp_path):
    bad = tmp_path / "expect.yaml"
    bad.write_text("version: 1\nsources: [{name: a, selector: {app: a}}]\n"
                   "targets: [{name: t, tcp: 'x:99999'}]\nexpect: {a: {t: perhaps}}\n")
    proc = netprobe("validate", str(bad))
    assert proc.returncode == 2
    assert f"netprobe: error: {bad}:3: targets[0].tcp: expected a port between 1 and 65535" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_report_rerenders_a_saved_result_with_its_exit_code(tmp_path):
    saved = tmp_path / "run.json"
    saved.write_text(render(result_with_every_verdict(), "json"))
    for fmt, marker in (("table", "Mismatches (3):"), ("junit", "<testsuites>"),
                        ("markdown", "### Mismatches"), ("json", '"version": 2')):
        proc = netprobe("report", str(saved), "--format", fmt)
        assert proc.returncode == 1 and marker in proc.stdout, (fmt, proc.stderr)  # mismatch outranks error


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ('{"version": 9, "cells": []}', "version: expected one of 1, 2, got 9"),
    ('{"version": 1, "cells": [{"source": "a"}]}', "cells[0]: invalid cell"),
], ids=["not-json", "wrong-version", "bad-cell"])
def test_report_of_a_bad_file_exits_2(tmp_path, content, message):
    saved = tmp_path / "run.json"
    saved.write_text(content)
    proc = netprobe("report", str(saved))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_format_is_a_usage_error():
    proc = netprobe("report", "x.json", "--format", "yaml")
    assert proc.returncode == 2 and "expected one of table, json, junit, markdown" in proc.stderr


def unreachable_kubeconfig(tmp_path, scheme: str):
    """A kubeconfig whose API server (127.0.0.1:1) refuses every connection."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"{scheme}://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return kubeconfig


def test_run_with_unreachable_cluster_exits_3_without_traceback(tmp_path):
    kubeconfig = unreachable_kubeconfig(tmp_path, "https")
    proc = netprobe("run", "-f", str(TUTORIAL), "--kubeconfig", str(kubeconfig),
                    env={"NETPROBE_API_RETRY_BUDGET": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr
    assert "cannot reach the API server" in proc.stderr and "Traceback" not in proc.stderr


# Issue 12: `netprobe run` pays for no import it does not need before its first API request. Each of these
# is imported by the command or format that uses it (the policy engine: explain, lint, expect,
# --from-policies; tabulate: table/markdown output; xml.etree: junit): together ~40 ms of imports.
NOT_ON_THE_RUN_PATH = ("probe.analysis", "probe.policy", "probe.workloads", "probe.manifests", "probe.expect_report",
                       "probe.report_html", "tabulate", "wcwidth", "xml.etree.ElementTree")


def test_run_imports_nothing_it_does_not_need_before_its_first_api_request(tmp_path):
    kubeconfig = unreachable_kubeconfig(tmp_path, "http")
    script = (
        "import sys\n"
        "from probe.cli import app\n"
        "try:\n"
        "    app(['run', '-f', sys.argv[1], '--kubeconfig', sys.argv[2], '-o', 'json'], prog_name='netprobe')\n"
        "except SystemExit as exc:\n"
        "    print(exc.code)\n"
        "print(' '.join(sorted(m for m in sys.modules if m == 'kubernetes' or m in sys.argv[3:])))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(TUTORIAL), str(kubeconfig), *NOT_ON_THE_RUN_PATH],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"NETPROBE_API_RETRY_BUDGET": "0", "PATH": "/usr/bin:/bin"})
    # It got as far as its first API request, so it has imported everything it imports before one ...
    assert "cannot reach the API server" in proc.stderr, proc.stderr
    # ... and nothing it does not need.
    assert proc.stdout.split("\n")[:2] == ["3", "kubernetes"], proc.stdout


def test_run_with_bad_kubeconfig_exits_2(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("this: [is not a kubeconfig")
    proc = netprobe("run", "-f", str(TUTORIAL), "--kubeconfig", str(kubeconfig))
    assert proc.returncode == 2 and "cannot load Kubernetes credentials" in proc.stderr


def test_run_rejects_a_bad_report_flag():
    proc = netprobe("run", "-f", str(TUTORIAL), "--report", "junit")
    assert proc.returncode == 2 and "expected FORMAT=PATH" in proc.stderr


def test_expect_writes_the_workload_matrix_as_one_self_contained_page_without_pods(tmp_path):
    out = tmp_path / "expect.html"
    with out.open("w", encoding="utf-8") as f:
        proc = subprocess.run([sys.executable, "-m", "probe", "expect", "-f", "examples/shop/", "-o", "html"],
                              stdout=f, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    html = out.read_text(encoding="utf-8")
    page = Page(html)  # well formed: every element closed in order
    assert page.root.one("h1").text == "netprobe expect: connectivity per workload"
    rows = [tr.attrs["data-name"] for tr in page.root.one("table", id="np-matrix").find_all("tr")
            if "data-name" in tr.attrs]
    assert rows[:3] == ["kube-system/coredns[Deployment]", "monitoring/prometheus[Deployment]", "shop/api[Deployment]"]
    # self-contained: no reference to anything outside the file, and a policy that would block one
    assert not re.search(r"https?://", html), re.search(r".{40}https?://.{40}", html)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html)
    assert all(not attrs.get("src") for attrs, _ in page.scripts) and len(page.scripts) == 2
    (csp,) = [m.attrs["content"] for m in page.root.find_all("meta") if m.attrs.get("http-equiv")]
    assert csp.startswith("default-src 'none'")
    # the pod view keeps its page too, and --diff has no page: a usage error, not a traceback
    pods = netprobe("expect", "-f", "examples/shop/", "--pods", "-o", "html")
    assert pods.returncode == 0 and Page(pods.stdout).root.one("h1").text == "netprobe expect: computed connectivity"
    diff = netprobe("expect", "-f", "examples/shop/", "--diff", "examples/shop-pr/", "-o", "html")
    assert diff.returncode == 2 and "--diff prints" in diff.stderr and "Traceback" not in diff.stderr


def test_every_command_has_help_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        assert command.callback is not None and command.callback.__doc__, name
        assert f"netprobe {name}" in readme, f"`netprobe {name}` is not documented in README.md"

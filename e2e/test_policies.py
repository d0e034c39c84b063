"""--from-policies, explain and lint against the live cluster: computed expectations meet real packets."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import IMAGE, ROOT, kubectl, netprobe

SPEC = ROOT / "examples" / "tutorial" / "expect.yaml"


def spec_without_expect(tmp_path: Path) -> Path:
    text = SPEC.read_text()
    path = tmp_path / "targets.yaml"
    path.write_text(text[:text.index("expect:")])
    return path


def test_expectations_computed_from_live_policies_match_the_probes(tutorial: str, tmp_path: Path) -> None:
    proc = netprobe("run", "-f", str(spec_without_expect(tmp_path)), "--from-policies", "-n", tutorial,
                    "--image", IMAGE, "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    cells = {(c["source"], c["target"]): c for c in doc["cells"]}
    assert cells[("api", "db")]["expected"] == "allow"
    assert cells[("frontend", "db")]["expected"] == "deny"
    assert "ingress-isolated by" in cells[("frontend", "db")]["expected_by"]


def test_policies_predict_the_dns_failure(tutorial_no_dns: str, tmp_path: Path) -> None:
    proc = netprobe("run", "-f", str(spec_without_expect(tmp_path)), "--from-policies", "-n", tutorial_no_dns,
                    "--image", IMAGE, "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = {(c["source"], c["target"]): c for c in json.loads(proc.stdout)["cells"]}
    assert cells[("api", "db")]["expected"] == "deny" and cells[("api", "db")]["observed"] == "dns-timeout"
    assert cells[("api", "db-pods")]["expected"] == "allow" and cells[("api", "db-pods")]["observed"] == "allowed"


def test_spec_and_policies_disagreeing_is_a_warning(tutorial_no_dns: str) -> None:
    proc = netprobe("run", "-f", str(SPEC), "--from-policies", "-n", tutorial_no_dns, "--image", IMAGE)
    assert proc.returncode == 1
    assert "Warnings:" in proc.stdout and "spec says api → db allow, the policies say deny" in proc.stdout


def test_explain_and_lint_read_the_live_cluster(tutorial: str, tutorial_no_dns: str) -> None:
    api = kubectl("get", "pods", "-n", tutorial, "-l", "app=api", "-o", "jsonpath={.items[0].metadata.name}").stdout
    db = kubectl("get", "pods", "-n", tutorial, "-l", "app=db", "-o", "jsonpath={.items[0].metadata.name}").stdout
    proc = netprobe("explain", f"{tutorial}/{api}", f"{tutorial}/{db}", "--port", "5432")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tutorial}/{api} → {tutorial}/{db} 5432/TCP: ALLOWED")
    lint = netprobe("lint", "-o", "json")
    assert lint.returncode == 1
    findings = json.loads(lint.stdout)
    assert any(f["code"] == "NP001" and f["object"].startswith(f"Pod {tutorial_no_dns}/api-") for f in findings)
    assert not any(f["object"].startswith(f"Pod {tutorial}/") for f in findings)

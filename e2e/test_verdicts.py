"""The cell model on a real cluster (issue 10): one replica or one identity that connects where
policy should block it is a `partial` leak whatever the spec says, and a Service without ready
endpoints proves nothing (not probed), never a deny match."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IMAGE, _namespace, kubectl, netprobe, wait_gone

_POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [python3, -m, http.server, "8080", --bind, 0.0.0.0, --directory, /tmp]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"""

# web-stable is ingress-isolated from everyone; web-canary is selected by no policy (the
# "mislabelled replica"). client team=a may only resolve names; team=b is unrestricted; the
# hermit may send nothing at all, not even a DNS query.
_POLICIES = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-stable-closed}
spec:
  podSelector: {matchLabels: {app: web, track: stable}}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-a-dns-only}
spec:
  podSelector: {matchLabels: {app: client, team: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: hermit-nothing-out}
spec:
  podSelector: {matchLabels: {app: hermit}}
  policyTypes: [Egress]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing-here}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module")
def mixed() -> Iterator[str]:
    for ns in _namespace("np-e2e-cells"):
        pods = [("web-stable", "{app: web, track: stable}"), ("web-canary", "{app: web, track: canary}"),
                ("client-a", "{app: client, team: a}"), ("client-b", "{app: client, team: b}"),
                ("hermit", "{app: hermit}")]
        manifest = "---\n".join(_POD.format(name=n, labels=labels, image=IMAGE) for n, labels in pods)
        kubectl("apply", "-n", ns, "-f", "-", check=True, input_text=manifest + "---\n" + _POLICIES)
        kubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "--all", "--timeout=120s")
        yield ns


def _spec(tmp_path: Path, target: str, expect: str, source: str = "{app: client}") -> Path:
    path = tmp_path / f"spec-{expect}.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        defaults: {{timeout: 2s}}
        sources: [{{name: client, selector: {source}}}]
        targets:
          - {target}
        expect: {{client: {{t: {expect}}}}}
        """))
    return path


def _cell(proc) -> dict:  # type: ignore[no-untyped-def]
    doc = json.loads(proc.stdout)
    return doc["cells"][0]


def _why(proc) -> str:  # type: ignore[no-untyped-def]
    """The parts of a JSON result that explain an unexpected exit code."""
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return proc.stdout + proc.stderr
    return json.dumps({"cells": [{k: c[k] for k in ("observed", "match", "reason", "subresults")}
                                 for c in doc["cells"]], "problems": doc["problems"]}, indent=1) + proc.stderr


@pytest.mark.parametrize("expect", ["deny", "allow"])
def test_a_target_whose_policy_admits_one_of_two_pods_is_partial(mixed: str, tmp_path: Path, expect: str) -> None:
    target = "{name: t, tcp: {selector: {app: web}, port: 8080}}"
    proc = netprobe("run", "-f", str(_spec(tmp_path, target, expect)), "-n", mixed, "--image", IMAGE,
                    "-o", "json")
    assert proc.returncode == 1, _why(proc)
    cell = _cell(proc)
    assert cell["observed"] == "partial" and cell["match"] is False
    # both identities of client: team=b reaches web-canary only; team=a (DNS only) reaches none
    reached = {(s["identity"].split("/")[1], s["pod"].split("/")[1]) for s in cell["subresults"]
               if s["verdict"] == "allowed"}
    assert reached == {("app=client,team=b", "web-canary")}, cell["subresults"]
    assert "web-canary" in cell["reason"] and "partly reachable" in cell["reason"]
    table = netprobe("run", "-f", str(_spec(tmp_path, target, expect)), "-n", mixed, "--image", IMAGE)
    assert table.returncode == 1 and "◐ partial ‼" in table.stdout
    assert wait_gone(mixed) == []


@pytest.mark.parametrize("expect", ["deny", "allow"])
def test_a_source_with_two_identities_of_which_one_is_allowed_is_partial(mixed: str, tmp_path: Path,
                                                                         expect: str) -> None:
    target = "{name: t, tcp: {selector: {app: web, track: canary}, port: 8080}}"
    proc = netprobe("run", "-f", str(_spec(tmp_path, target, expect)), "-n", mixed, "--image", IMAGE,
                    "-o", "json")
    assert proc.returncode == 1, _why(proc)
    cell = _cell(proc)
    assert cell["observed"] == "partial" and cell["match"] is False
    assert "connected from 1 of 2" in cell["reason"] or "reached 1 of 2" in cell["reason"], cell["reason"]
    assert "team=b" in cell["reason"]
    by_identity = {s["identity"].split("/")[1]: s["verdict"] for s in cell["subresults"]}
    assert by_identity == {"app=client,team=a": "blocked", "app=client,team=b": "allowed"}


def test_a_service_with_no_ready_endpoints_is_not_probed_never_a_deny_match(mixed: str, tmp_path: Path) -> None:
    proc = netprobe("run", "-f", str(_spec(tmp_path, '{name: t, tcp: "empty:80"}', "deny")), "-n", mixed,
                    "--image", IMAGE, "-o", "json")
    assert proc.returncode == 3, _why(proc)
    cell = _cell(proc)
    assert cell["match"] is None and cell["proof"] is None
    assert "no ready endpoint" in cell["reason"]
    # client-b's connection was refused by kube-proxy, client-a's dropped by its egress policy:
    # neither proves the policy on the port of a Service that has nothing behind it.
    assert {s["verdict"] for s in cell["subresults"]} == {"no-endpoints"}


def _deny_to_canary(mixed: str, tmp_path: Path, source: str, *flags: str):  # type: ignore[no-untyped-def]
    """Run a spec whose one source (`source`, a selector) is expected to reach nothing: web-canary:8080."""
    spec = _spec(tmp_path, "{name: t, tcp: {selector: {app: web, track: canary}, port: 8080}}", "deny",
                 source=source)
    return netprobe("run", "-f", str(spec), "-n", mixed, "--image", IMAGE, "-o", "json", *flags)


def test_an_all_deny_source_waits_for_its_nameserver_before_its_denies_are_probed(mixed: str,
                                                                                  tmp_path: Path) -> None:
    # client team=a may only resolve names, and the spec expects it to reach nothing: no check can
    # show its network up (the lab, like Calico, drops a new pod's packets until it is programmed),
    # so its gate polls its nameserver until it replies, then waits out --warmup, then probes.
    proc = _deny_to_canary(mixed, tmp_path, "{app: client, team: a}", "--warmup", "4s")
    assert proc.returncode == 0, _why(proc)
    assert _cell(proc)["observed"] == "blocked" and _cell(proc)["match"] is True
    (gate,) = json.loads(proc.stdout)["meta"]["gates"]
    assert gate["connect"] == ["gate:network"] and gate["network"] == "kubernetes.default"
    assert gate["opened"] == "no-candidate" and gate["missing"] == ["connect"] and gate["network_seen"] is True
    assert gate["last"]["gate:network"] == "answered" and gate["waited_ms"] >= 4000


def test_a_connection_the_node_answers_never_opens_the_gate(mixed: str, tmp_path: Path) -> None:
    # The lab, like some enforcers, never filters a pod's traffic to its own node, not even while
    # a new pod's other packets are dropped: the API server answers at once. Were it the gate's
    # "connect" check, the gate would open before the pod is programmed, and a leak probed with
    # one SYN (a timeout under the kernel's 1 s retransmission) would read "blocked".
    spec = tmp_path / "node.yaml"
    spec.write_text(textwrap.dedent("""\
        version: 1
        sources: [{name: client, selector: {app: client, team: b}}]
        targets:
          - {name: api, tcp: "kubernetes.default:443"}
          - {name: t, tcp: {selector: {app: web, track: canary}, port: 8080}, timeout: 900ms}
        expect: {client: {api: allow, t: deny}}
        """))
    proc = netprobe("run", "-f", str(spec), "-n", mixed, "--image", IMAGE, "-o", "json")
    assert proc.returncode == 1, _why(proc)  # the canary, selected by no policy, is a leak
    doc = json.loads(proc.stdout)
    cells = {c["target"]: c for c in doc["cells"]}
    assert cells["t"]["observed"] == "allowed" and cells["t"]["match"] is False, _why(proc)
    assert cells["api"]["observed"] == "allowed" and cells["api"]["match"] is True
    (gate,) = doc["meta"]["gates"]
    # the API server is no "connect" check: the gate polled the pod's nameserver instead, then
    # waited out its bound (where the deny it polls, the leak, kept connecting)
    assert gate["connect"] == ["gate:network"] and gate["network_seen"] is True, gate
    assert gate["opened"] == "bound-reached" and gate["unmet"] == ["block"], gate
    assert wait_gone(mixed) == []


def test_a_source_denied_even_dns_proves_no_deny_unless_a_fixed_wait_is_asked_for(mixed: str,
                                                                                  tmp_path: Path) -> None:
    # The hermit's egress policy denies everything, DNS included: nothing from inside its probe
    # pod can show that its network was ever up, so its "blocked" proves no deny -- not probed.
    proc = _deny_to_canary(mixed, tmp_path, "{app: hermit}", "--warmup", "3s")
    assert proc.returncode == 3, _why(proc)
    cell = _cell(proc)
    assert cell["match"] is None and "--warmup-mode fixed" in cell["reason"], cell
    warnings = json.loads(proc.stdout)["warnings"]
    assert not any("not even its DNS" in w for w in warnings)  # the spec did not say DNS is denied
    (gate,) = json.loads(proc.stdout)["meta"]["gates"]
    # (network_seen may be true where the lab leaves a new pod briefly un-isolated: NPL_NEW_PODS=allow)
    assert gate["opened"] == "bound-reached" and gate["unmet"] == ["connect"]
    # A user who knows the source is denied everything rests its denies on a fixed wait instead.
    fixed = _deny_to_canary(mixed, tmp_path, "{app: hermit}", "--warmup-mode", "fixed", "--warmup", "4s")
    assert fixed.returncode == 0, _why(fixed)
    assert _cell(fixed)["observed"] == "blocked" and _cell(fixed)["match"] is True
    assert wait_gone(mixed) == []

"""The agent inside a network namespace, with iptables producing real drops and rejects.

The namespace stands in for a pod; iptables rules in its OUTPUT chain stand in for the
source's egress policy. The host side runs real listeners and a real DNS server.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agenthelp import result, run_agent, verdicts
from dnsfixture import Zone, dns_server

pytestmark = pytest.mark.netns

_missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
if os.geteuid() != 0 or _missing:
    pytest.skip(f"needs root and ip/iptables (missing: {', '.join(_missing) or 'root'})",
                allow_module_level=True)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


@dataclass
class Pod:
    netns: str
    host_ip: str  # the "cluster" side: listeners and DNS
    dns_dropped_ip: str  # a second host address whose port 53 the pod's egress drops
    ports: dict[str, int]
    resolv_conf: str


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    n = random.randint(1, 254)
    ns, host_if, pod_if = f"npt-{n}-{os.getpid()}", f"npt{n}h{os.getpid() % 1000}", f"npt{n}p"
    net = f"198.18.{n}"
    sh("ip", "netns", "add", ns)
    listeners: list[socket.socket] = []
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if, "netns", ns)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", host_if)
        sh("ip", "addr", "add", f"{net}.5/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", pod_if)
        sh("ip", "-n", ns, "link", "set", pod_if, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        ports = {}
        for name in ("open", "drop", "reset", "icmp_port", "icmp_host"):
            s = socket.socket()
            s.bind((f"{net}.1", 0))
            s.listen(16)
            listeners.append(s)
            ports[name] = s.getsockname()[1]
        rules = [
            ["-p", "tcp", "--dport", str(ports["drop"]), "-j", "DROP"],
            ["-p", "tcp", "--dport", str(ports["reset"]), "-j", "REJECT", "--reject-with", "tcp-reset"],
            ["-p", "tcp", "--dport", str(ports["icmp_port"]), "-j", "REJECT",
             "--reject-with", "icmp-port-unreachable"],
            ["-p", "tcp", "--dport", str(ports["icmp_host"]), "-j", "REJECT",
             "--reject-with", "icmp-host-unreachable"],
            ["-d", f"{net}.5", "-p", "udp", "--dport", "53", "-j", "DROP"],
            ["-d", f"{net}.5", "-p", "tcp", "--dport", "53", "-j", "DROP"],
        ]
        for rule in rules:
            sh("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", *rule)
        conf = tmp_path_factory.mktemp("resolv") / "resolv.conf"
        conf.write_text(f"search default.svc.cluster.local svc.cluster.local cluster.local\n"
                        f"nameserver {net}.1\noptions ndots:5\n")
        yield Pod(ns, f"{net}.1", f"{net}.5", ports, str(conf))
    finally:
        for s in listeners:
            s.close()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", host_if], capture_output=True)


def test_each_verdict_comes_from_real_packets(pod: Pod) -> None:
    checks = [{"id": name, "kind": "tcp", "host": pod.host_ip, "port": port}
              for name, port in pod.ports.items()]
    checks.append({"id": "noroute", "kind": "tcp", "host": "198.51.100.1", "port": 443})
    started = time.monotonic()
    code, doc, err = run_agent({"version": 1, "timeout": 1.0, "checks": checks}, netns=pod.netns)
    wall = time.monotonic() - started
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {
        "open": "allowed",
        "drop": "blocked",  # silent DROP: the usual policy drop
        "reset": "refused",  # REJECT with tcp-reset
        "icmp_port": "refused",  # ICMP port-unreachable is reported by the kernel as ECONNREFUSED
        "icmp_host": "unreachable",  # ICMP host-unreachable
        "noroute": "unreachable",  # no route at all
    }
    assert result(doc, "drop")["elapsed_ms"] >= 900
    assert wall < 3.0  # concurrently: about one timeout, not the sum


def test_dropped_dns_is_dns_timeout_and_names_dns_as_the_cause(pod: Pod, tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"search default.svc.cluster.local\nnameserver {pod.dns_dropped_ip}\noptions ndots:5\n")
    zone = Zone(records={"db.default.svc.cluster.local": [pod.host_ip]})
    # The DNS server is alive: only the pod's egress rule stops the query.
    with dns_server(pod.dns_dropped_ip, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 1.0, "resolv_conf": str(conf), "checks": [
            {"id": "dns", "kind": "dns", "name": "db"},
            {"id": "db", "kind": "tcp", "host": "db", "port": pod.ports["open"]}]}, netns=pod.netns)
    assert doc is not None
    assert verdicts(doc) == {"dns": "dns-timeout", "db": "dns-timeout"}
    assert "DNS failed, port not tested" in result(doc, "db")["detail"]
    assert zone.queries == []  # nothing reached the server


def test_resolved_name_then_connects_through_the_search_list(pod: Pod) -> None:
    zone = Zone(records={"db.default.svc.cluster.local": [pod.host_ip]})
    with dns_server(pod.host_ip, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 1.0, "resolv_conf": pod.resolv_conf, "checks": [
            {"id": "db", "kind": "tcp", "host": "db", "port": pod.ports["open"]},
            {"id": "db-dropped", "kind": "tcp", "host": "db", "port": pod.ports["drop"]},
            {"id": "missing", "kind": "tcp", "host": "nosuch", "port": pod.ports["open"]}]},
            netns=pod.netns)
    assert doc is not None
    assert verdicts(doc) == {"db": "allowed", "db-dropped": "blocked", "missing": "nxdomain"}
    # one lookup served both checks to db
    assert sum(1 for q in zone.queries if q[1] == "db.default.svc.cluster.local" and q[2] == 1) == 1


# -- the readiness gate on real packets: an enforcer that programs the pod ~1 s late


def iptables(netns: str, *rule: str) -> None:
    sh("ip", "netns", "exec", netns, "iptables", *rule)


@contextmanager
def for_the_first(seconds: float, netns: str, rule: list[str]) -> Iterator[list[float]]:
    """Insert `rule` at the top of the pod's OUTPUT chain now, remove it after `seconds`.

    Yields a list that receives the monotonic time of the removal.
    """
    removed: list[float] = []

    def remove() -> None:
        iptables(netns, "-D", "OUTPUT", *rule)
        removed.append(time.monotonic())

    iptables(netns, "-I", "OUTPUT", "1", *rule)
    timer = threading.Timer(seconds, remove)
    timer.start()
    try:
        yield removed
    finally:
        timer.join()


def gate_opened_at(doc: dict[str, Any], finished: float) -> float:
    """When (monotonic, this process's clock) the agent's gate opened: its end minus the rest of its run."""
    return finished - (doc["elapsed_ms"] - doc["gate"]["waited_ms"]) / 1000


@contextmanager
def accepting_listener(host: str) -> Iterator[int]:
    """A listener that accepts (and closes) every connection, as a server does: its port."""
    server = socket.socket()
    server.bind((host, 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def serving_port(pod: Pod) -> Iterator[int]:
    """An accepting listener on the host side.

    The fixture's other listeners never accept: a few gate rounds fill their backlog, and a
    full accept queue drops SYNs -- a drop that is the test's doing, not a policy's.
    """
    with accepting_listener(pod.host_ip) as port:
        yield port


@pytest.fixture
def denied_port(pod: Pod) -> Iterator[int]:
    """An accepting listener that the pod's egress drops, as a policy would: a deny that answers
    whenever the pod is un-isolated (a full backlog would make a fail-open start look isolated)."""
    with accepting_listener(pod.host_ip) as port:
        rule = ["-d", pod.host_ip, "-p", "tcp", "--dport", str(port), "-j", "DROP"]
        iptables(pod.netns, "-A", "OUTPUT", *rule)
        try:
            yield port
        finally:
            iptables(pod.netns, "-D", "OUTPUT", *rule)


def gated_and_ungated(pod: Pod, checks: list[dict[str, Any]], gate: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Run the same checks twice at once: behind the gate, and straight away.

    Returns both documents and when the gated agent finished.
    """
    gated = {"version": 1, "timeout": 1.0, "checks": checks, "gate": gate}
    # 0.8 s: shorter than the kernel's first SYN retransmission (1 s), which, under load, could
    # otherwise land just after a 1 s start-up drop ends and connect at the deadline.
    ungated = {"version": 1, "timeout": 0.8, "checks": checks}

    def timed(plan: dict[str, Any]) -> tuple[tuple[int, dict[str, Any] | None, str], float]:
        out = run_agent(plan, netns=pod.netns)
        return out, time.monotonic()

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(timed, plan) for plan in (gated, ungated)]
        ((code_g, doc_g, err_g), finished), ((code_u, doc_u, err_u), _) = (r.result() for r in runs)
    assert code_g == 0 and doc_g is not None, err_g
    assert code_u == 0 and doc_u is not None, err_u
    return doc_g, doc_u, finished


def test_gate_waits_out_a_fail_closed_start_and_a_leak_still_shows(pod: Pod, serving_port: int,
        denied_port: int) -> None:
    # Calico-like: every packet of the new pod is dropped until its policy is programmed.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
              # expected deny but open: a real leak, deliberately not a gate check
              {"id": "leak", "kind": "tcp", "host": pod.host_ip, "port": serving_port}]
    gate = {"bound": 6, "connect": ["allowed"], "block": ["denied"]}
    with for_the_first(1.0, pod.netns, ["-d", pod.host_ip, "-j", "DROP"]) as removed:
        gated, ungated, finished = gated_and_ungated(pod, checks, gate)
    # Straight away, the leak hides behind the start-up drop: a green deny that is false.
    assert verdicts(ungated)["leak"] == "blocked" and verdicts(ungated)["allowed"] == "blocked"
    # Behind the gate, the real checks ran once packets flowed and saw what is there.
    assert verdicts(gated) == {"allowed": "allowed", "denied": "blocked", "leak": "allowed"}
    report = gated["gate"]
    # Rounds overlap: one starts every interval (0.05 s), up to three out at once, while earlier
    # ones still wait out their dropped probes (0.25 s): a 1 s drop sees ~12 rounds, not four.
    assert report["opened"] == "condition-met" and report["rounds"] >= 8
    # it opened once the drop was gone (the agent's own exit lags a little: 0.1 s of slack),
    # one gate timeout and interval after it (0.3 s; slack for a loaded machine), not at the 6 s bound
    assert removed[0] - 0.1 <= gate_opened_at(gated, finished) <= removed[0] + 0.9
    assert report["last"] == {"allowed": "allowed", "denied": "blocked"}


def test_gate_waits_out_a_fail_open_start(pod: Pod, serving_port: int,
        denied_port: int) -> None:
    # Fail-open enforcer: the new pod is un-isolated until its policy is programmed.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port}]
    gate = {"bound": 6, "connect": ["allowed"], "block": ["denied"]}
    with for_the_first(1.0, pod.netns, ["-d", pod.host_ip, "-j", "ACCEPT"]) as removed:
        gated, ungated, finished = gated_and_ungated(pod, checks, gate)
    assert verdicts(ungated)["denied"] == "allowed"  # straight away: a leak that is not one
    assert verdicts(gated) == {"allowed": "allowed", "denied": "blocked"}
    report = gated["gate"]
    assert report["opened"] == "condition-met" and report["rounds"] >= 2
    assert removed[0] - 0.1 <= gate_opened_at(gated, finished) <= removed[0] + 1.5


def test_gate_judges_each_round_alone_so_a_dead_then_open_start_does_not_open_it(
        pod: Pod, serving_port: int, denied_port: int) -> None:
    # An enforcer that first drops everything, then lets everything through, and only then
    # isolates the pod. A round from the dead phase saw the deny blocked and one from the open
    # phase saw the allow connect: together they would open the gate while the pod is still
    # un-isolated. Only a round that saw both at once may open it.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port}]
    gate = {"bound": 6, "connect": ["allowed"], "block": ["denied"]}
    with for_the_first(1.4, pod.netns, ["-d", pod.host_ip, "-j", "ACCEPT"]) as isolated, \
            for_the_first(0.7, pod.netns, ["-d", pod.host_ip, "-j", "DROP"]) as programmed:
        gated, ungated, finished = gated_and_ungated(pod, checks, gate)
    assert verdicts(ungated) == {"allowed": "blocked", "denied": "blocked"}  # straight away: dead
    assert verdicts(gated) == {"allowed": "allowed", "denied": "blocked"}
    report = gated["gate"]
    assert report["opened"] == "condition-met"
    assert programmed[0] < isolated[0]
    assert isolated[0] - 0.1 <= gate_opened_at(gated, finished) <= isolated[0] + 0.9


@pytest.mark.parametrize("candidate", ["dns", "name"])
def test_gate_looks_at_the_deny_only_after_the_allow_connected(pod: Pod, serving_port: int, denied_port: int,
                                                                candidate: str) -> None:
    # The same dead -> open -> isolated start, with the connect candidates a spec usually gives:
    # a DNS name, or a Service name. Their probes take their time (a DNS query is sent again
    # after 0.2 s, a name is resolved before its connect): sent beside the deny's single SYN, a
    # round begun in the dead phase saw them succeed in the open phase and the deny dropped --
    # and the real deny check then connected. The deny must be looked at after the allow.
    zone = Zone(records={"db.default.svc.cluster.local": [pod.host_ip]})
    allow = ({"id": "allowed", "kind": "dns", "name": "db"} if candidate == "dns" else
             {"id": "allowed", "kind": "tcp", "host": "db", "port": serving_port})
    checks = [allow, {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port}]
    plan = {"version": 1, "timeout": 1.0, "resolv_conf": pod.resolv_conf, "checks": checks,
            "gate": {"bound": 6, "connect": ["allowed"], "block": ["denied"]}}
    with dns_server(pod.host_ip, zone), \
            for_the_first(1.4, pod.netns, ["-d", pod.host_ip, "-j", "ACCEPT"]) as isolated, \
            for_the_first(0.7, pod.netns, ["-d", pod.host_ip, "-j", "DROP"]):
        code, doc, err = run_agent(plan, netns=pod.netns)
        finished = time.monotonic()
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "denied": "blocked"}, doc["gate"]
    assert doc["gate"]["opened"] == "condition-met"
    assert gate_opened_at(doc, finished) >= isolated[0] - 0.1


def test_gate_never_hides_a_leak_it_polls_it_reports_it_after_the_bound(pod: Pod, serving_port: int) -> None:
    # The deny the gate polls connects for good: the gate cannot open on its condition, so it
    # waits its bound -- then the real check runs anyway and reports the connection.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "leak", "kind": "tcp", "host": pod.host_ip, "port": serving_port}]
    started = time.monotonic()
    code, doc, err = run_agent({"version": 1, "timeout": 1.0, "checks": checks,
                                "gate": {"bound": 1.5, "connect": ["allowed"], "block": ["leak"]}},
                               netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "leak": "allowed"}
    assert doc["gate"]["opened"] == "bound-reached" and doc["gate"]["unmet"] == ["block"]
    assert 1500 <= doc["gate"]["waited_ms"] <= 2000
    assert time.monotonic() - started >= 1.5


# -- the gate's look at the pod's network: its nameserver answering at all


def test_gate_of_an_all_deny_pod_polls_its_nameserver_through_a_fail_closed_start_then_waits_out_the_bound(
        pod: Pod, serving_port: int, denied_port: int) -> None:
    # Every check is an expected deny, one of them a real leak. Calico-like start: everything
    # dropped for 1 s, during which every deny "holds", the leak included. No check can show the
    # network up, so the gate polls the pod's nameserver (here it answers NXDOMAIN: any reply
    # will do); a reply shows only this pod's side programmed, so it then waits out its bound.
    checks = [{"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
              {"id": "leak", "kind": "tcp", "host": pod.host_ip, "port": serving_port}]
    plan = {"version": 1, "timeout": 1.0, "resolv_conf": pod.resolv_conf, "checks": checks,
            "gate": {"bound": 2.0, "connect": [], "block": ["denied"], "network": "kubernetes.default"}}
    with dns_server(pod.host_ip, Zone()) as zone, \
            for_the_first(1.0, pod.netns, ["-d", pod.host_ip, "-j", "DROP"]):
        code, doc, err = run_agent(plan, netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"denied": "blocked", "leak": "allowed"}
    report = doc["gate"]
    assert report["connect"] == ["gate:network"] and report["missing"] == ["connect"]
    assert report["opened"] == "no-candidate" and report["network_seen"] is True
    assert report["last"]["gate:network"] == "answered" and report["waited_ms"] >= 2000
    assert report["rounds"] >= 4  # polled through the drop, one round every 0.05-0.2 s
    assert ("udp", "kubernetes.default.default.svc.cluster.local", 1) in zone.queries


def test_gate_of_an_all_deny_pod_whose_nameserver_never_answers_leaves_its_denies_unproven(
        pod: Pod, tmp_path: Path) -> None:
    # The pod's packets to its nameserver are dropped for the whole bound (a CNI that never
    # programmed it, or a policy that denies it DNS): the gate says so, and the run turns its
    # "blocked" denies into "not probed" (observe.network_unshown).
    from probe.observe import network_unshown

    conf = tmp_path / "resolv.conf"
    conf.write_text(f"search default.svc.cluster.local\nnameserver {pod.dns_dropped_ip}\noptions ndots:5\n")
    checks = [{"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": pod.ports["drop"]}]
    code, doc, err = run_agent({"version": 1, "timeout": 0.5, "resolv_conf": str(conf), "checks": checks,
                                "gate": {"bound": 1.0, "connect": [], "block": ["denied"],
                                         "network": "kubernetes.default"}}, netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"denied": "blocked"}
    assert doc["gate"]["opened"] == "bound-reached" and doc["gate"]["unmet"] == ["connect"]
    assert doc["gate"]["last"]["gate:network"] == "dns-timeout" and doc["gate"]["network_seen"] is False
    assert network_unshown(doc["gate"], {r["id"]: r for r in doc["results"]}, {"denied": "tcp"}) == "all"


@pytest.mark.parametrize("reply", ["nxdomain", "servfail"])
def test_gate_looks_at_the_nameserver_beside_an_expected_allow_that_never_connects(pod: Pod, reply: str) -> None:
    # A re-probe of an expected allow that the policy really blocks: the check never connects,
    # and nothing else of the plan answers. The nameserver replied (with NXDOMAIN, or SERVFAIL as
    # an unsynced CoreDNS would: a reply all the same), so the pod's network was up and the
    # "blocked" is a real mismatch; a deny beside it would stay unproven ("denies").
    from probe.observe import network_unshown

    zone = Zone(servfail={"kubernetes.default.default.svc.cluster.local"} if reply == "servfail" else set())
    checks = [{"id": "expected-allow", "kind": "tcp", "host": pod.host_ip, "port": pod.ports["drop"]}]
    with dns_server(pod.host_ip, zone):
        code, doc, err = run_agent({"version": 1, "timeout": 0.5, "resolv_conf": pod.resolv_conf,
                                    "checks": checks, "gate": {"bound": 1.0, "connect": ["expected-allow"],
                                                               "block": [], "network": "kubernetes.default"}},
                                   netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"expected-allow": "blocked"}
    gate = doc["gate"]
    assert gate["opened"] == "bound-reached" and gate["unmet"] == ["connect"] and gate["missing"] == ["block"]
    assert gate["network_seen"] is True
    results, kinds = {r["id"]: r for r in doc["results"]}, {"expected-allow": "tcp"}
    assert network_unshown(gate, results, kinds) == "denies"
    assert network_unshown({**gate, "network_seen": False}, results, kinds) == "all"


def test_a_refused_check_does_not_show_the_network_and_the_look_never_delays_a_round(
        pod: Pod, tmp_path: Path) -> None:
    # The nameserver is dropped. An expected allow is rejected (an RST), as a fail-closed enforcer
    # that rejects rather than drops (kube-router's default deny) would answer for a pod it has not
    # programmed: the RST is not the target's, so it does not show the network up. And where the
    # allow connects, the gate opens as soon as its round is done: the look at the dropped
    # nameserver runs beside the rounds, never inside them (a refused deny: milliseconds).
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"search default.svc.cluster.local\nnameserver {pod.dns_dropped_ip}\noptions ndots:5\n")
    with accepting_listener(pod.host_ip) as serving:
        checks = [{"id": "refused", "kind": "tcp", "host": pod.host_ip, "port": pod.ports["reset"]},
                  {"id": "open", "kind": "tcp", "host": pod.host_ip, "port": serving}]
        base = {"version": 1, "timeout": 0.5, "resolv_conf": str(conf), "checks": checks}
        _, refused, _ = run_agent({**base, "checks": checks[:1], "gate": {
            "bound": 0.8, "connect": ["refused"], "block": [], "network": "kubernetes.default"}}, netns=pod.netns)
        _, quick, _ = run_agent({**base, "gate": {"bound": 5, "connect": ["open"], "block": ["refused"],
                                                  "network": "kubernetes.default"}}, netns=pod.netns)
    assert refused is not None and quick is not None
    assert verdicts(refused) == {"refused": "refused"}
    assert refused["gate"]["unmet"] == ["connect"] and refused["gate"]["network_seen"] is False
    from probe.observe import network_unshown
    assert network_unshown(refused["gate"], {r["id"]: r for r in refused["results"]}, {"refused": "tcp"}) == "all"
    assert quick["gate"]["opened"] == "condition-met" and quick["gate"]["network_seen"] is True
    assert quick["gate"]["waited_ms"] < 200, quick["gate"]  # not the 0.25 s the DNS look takes to time out


# -- early denies: a deny's timeout runs beside the gate's last round, never proving less


def early_plan(checks: list[dict[str, Any]], block: list[str], early: list[str], timeout: float = 2.0,
               bound: float = 8) -> dict[str, Any]:
    return {"version": 1, "timeout": timeout, "checks": checks,
            "gate": {"bound": bound, "connect": ["allowed"], "block": block, "early": early}}


def test_early_denies_start_once_the_network_flows_and_a_leak_still_shows(pod: Pod, serving_port: int,
                                                                          denied_port: int) -> None:
    # Fail-closed start (1 s of drops). The deny's 2 s timeout starts as soon as the allow
    # connected, beside the gate's 0.25 s look at the deny, so the run ends ~1.75 s after the gate
    # opens, not 2 s. The leak -- an expected deny that connects -- connected before the gate
    # opened (which proves nothing), so it ran again after it, and connected again.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
              {"id": "leak", "kind": "tcp", "host": pod.host_ip, "port": serving_port}]
    with for_the_first(1.0, pod.netns, ["-d", pod.host_ip, "-j", "DROP"]):
        code, doc, err = run_agent(early_plan(checks, ["denied"], ["denied", "leak"]), netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "denied": "blocked", "leak": "allowed"}
    gate = doc["gate"]
    assert gate["opened"] == "condition-met" and gate["waited_ms"] >= 900
    assert gate["early"]["kept"] == 1 and gate["early"]["rerun"] == ["leak"]
    # the early start came with the network, before the gate's look at the deny
    assert gate["early"]["started_ms"] <= gate["waited_ms"] - 200
    assert doc["elapsed_ms"] - gate["waited_ms"] < 2000, (doc["elapsed_ms"], gate)


def test_an_early_deny_that_connects_in_a_fail_open_start_runs_again_after_the_gate(
        pod: Pod, serving_port: int, denied_port: int) -> None:
    # Un-isolated for 1 s: the early look at the deny connects, before the gate opened -- the
    # enforcer's doing, not the policy's. It is not the verdict: the check runs after the gate.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port}]
    with for_the_first(1.0, pod.netns, ["-d", pod.host_ip, "-j", "ACCEPT"]) as isolated:
        code, doc, err = run_agent(early_plan(checks, ["denied"], ["denied"]), netns=pod.netns)
        finished = time.monotonic()
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "denied": "blocked"}
    assert doc["gate"]["early"]["kept"] == 0 and doc["gate"]["early"]["rerun"] == ["denied"]
    assert doc["gate"]["early"]["started_ms"] < doc["gate"]["waited_ms"]
    assert gate_opened_at(doc, finished) >= isolated[0] - 0.1


def test_an_early_deny_rejected_before_the_gate_opened_runs_again_and_shows_the_leak(
        pod: Pod, serving_port: int, denied_port: int) -> None:
    # The leak's port answers RST for its first second (an enforcer that rejects a pod it has not
    # programmed, kube-router style), while the gate waits 1.5 s for its deny (fail-open for that
    # path). The early RST came before the opening: not a verdict; after the gate the leak connects.
    with accepting_listener(pod.host_ip) as leak_port:
        checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
                  {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
                  {"id": "leak", "kind": "tcp", "host": pod.host_ip, "port": leak_port}]
        reject = ["-d", pod.host_ip, "-p", "tcp", "--dport", str(leak_port), "-j", "REJECT",
                  "--reject-with", "tcp-reset"]
        with for_the_first(1.5, pod.netns, ["-d", pod.host_ip, "-p", "tcp", "--dport", str(denied_port),
                                            "-j", "ACCEPT"]), for_the_first(1.0, pod.netns, reject):
            code, doc, err = run_agent(early_plan(checks, ["denied"], ["denied", "leak"]), netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc)["leak"] == "allowed", doc
    assert "leak" in doc["gate"]["early"]["rerun"] and doc["gate"]["waited_ms"] >= 1400


def test_an_early_deny_sees_a_path_that_opens_after_the_gate(pod: Pod, serving_port: int, denied_port: int) -> None:
    # An expected deny that the policy allows, but whose target's side learns the new pod ~1 s
    # in (another node's agent): dropped at first, open from then on -- a leak. The early check
    # is a whole check: its SYN is retransmitted after 1 s and connects; an answer is never kept
    # from an early check, so it runs again after the gate, and connects again.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
              {"id": "late-leak", "kind": "tcp", "host": pod.host_ip, "port": serving_port}]
    with accepting_listener(pod.host_ip) as leak_port:
        checks[2]["port"] = leak_port
        with for_the_first(1.0, pod.netns, ["-d", pod.host_ip, "-p", "tcp", "--dport", str(leak_port),
                                            "-j", "DROP"]) as opened:
            started = time.monotonic()
            code, doc, err = run_agent(early_plan(checks, ["denied"], ["denied", "late-leak"], timeout=3.0),
                                       netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "denied": "blocked", "late-leak": "allowed"}
    assert doc["gate"]["early"]["rerun"] == ["late-leak"] and doc["gate"]["early"]["kept"] == 1, doc["gate"]
    assert doc["gate"]["waited_ms"] / 1000 < opened[0] - started  # the premise: the path opened after the gate


@pytest.mark.parametrize(("open_for", "timeout"), [(2.5, 1.0), (1.2, 2.0)])
def test_an_early_silence_started_before_the_policy_was_seen_in_force_proves_nothing(
        pod: Pod, serving_port: int, denied_port: int, open_for: float, timeout: float) -> None:
    # The deny the gate polls stays open for a while (a fail-open start, for that path only), so
    # the round that started the early denies (its allow connected at once) did not open the
    # gate: a later one did. The other deny, dropped all along, is silent -- whether its check
    # ended before the opening (1 s, gate at 2.5 s) or not (2 s, gate at 1.2 s), it started
    # before the policy was seen in force: not kept. It runs again as the gate opens (not at the
    # end of the early check), its whole timeout.
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
              {"id": "dropped", "kind": "tcp", "host": pod.host_ip, "port": pod.ports["drop"]}]
    with for_the_first(open_for, pod.netns, ["-d", pod.host_ip, "-p", "tcp", "--dport", str(denied_port),
                                             "-j", "ACCEPT"]):
        code, doc, err = run_agent(early_plan(checks, ["denied"], ["denied", "dropped"], timeout=timeout),
                                   netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "denied": "blocked", "dropped": "blocked"}
    assert sorted(doc["gate"]["early"]["rerun"]) == ["denied", "dropped"]
    after_gate = (doc["elapsed_ms"] - doc["gate"]["waited_ms"]) / 1000
    assert timeout - 0.05 <= after_gate <= timeout + 0.5, after_gate


def test_an_early_deny_by_name_is_kept_with_its_name(pod: Pod, serving_port: int, denied_port: int) -> None:
    # A Service-like name: looked up once in the window, the later check's lookup counted in its
    # deciding moment; the kept silence names the address and the name.
    zone = Zone(records={"db.default.svc.cluster.local": [pod.host_ip]})
    checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
              {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
              {"id": "db", "kind": "tcp", "host": "db", "port": pod.ports["drop"]}]
    plan = {**early_plan(checks, ["denied"], ["denied", "db"]), "resolv_conf": pod.resolv_conf}
    with dns_server(pod.host_ip, zone):
        code, doc, err = run_agent(plan, netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc) == {"allowed": "allowed", "denied": "blocked", "db": "blocked"}
    assert doc["gate"]["early"]["kept"] == 2, doc["gate"]
    assert result(doc, "db")["detail"].endswith("(db)")


_LINEAR = Path("/proc/sys/net/ipv4/tcp_syn_linear_timeouts")


@pytest.mark.skipif(not _LINEAR.exists() or int(_LINEAR.read_text()) < 4,
                    reason="needs Linux >= 6.5 with tcp_syn_linear_timeouts >= 4 (SYNs at 0, 1, 2, 3, 4, 5 s)")
def test_a_check_started_at_the_opening_sees_what_an_early_one_could_not(pod: Pod, serving_port: int,
                                                                       denied_port: int) -> None:
    # With linear SYN timeouts a 5.5 s connect started at the gate's opening (~1.2 s here) sends
    # its last SYN 5 s later, at ~6.2 s -- after the leak's path opens (6 s). The early check
    # (from ~0 s to 5.5 s) never sees it open; it started before the policy was seen in force (a
    # later round opened the gate), so its silence is not kept: the check runs again and connects.
    with accepting_listener(pod.host_ip) as leak_port:
        checks = [{"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
                  {"id": "denied", "kind": "tcp", "host": pod.host_ip, "port": denied_port},
                  {"id": "late-leak", "kind": "tcp", "host": pod.host_ip, "port": leak_port}]
        with for_the_first(1.2, pod.netns, ["-d", pod.host_ip, "-p", "tcp", "--dport", str(denied_port),
                                            "-j", "ACCEPT"]), \
                for_the_first(6.0, pod.netns, ["-d", pod.host_ip, "-p", "tcp", "--dport", str(leak_port),
                                               "-j", "DROP"]):
            code, doc, err = run_agent(early_plan(checks, ["denied"], ["denied", "late-leak"], timeout=5.5),
                                       netns=pod.netns)
    assert code == 0 and doc is not None, err
    assert verdicts(doc)["late-leak"] == "allowed", doc
    assert "late-leak" in doc["gate"]["early"]["rerun"]

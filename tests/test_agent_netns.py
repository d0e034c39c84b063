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
    # what held it: rounds whose allow was dropped (a fail-closed start), none a deny connecting
    assert report["missed"]["connect"] >= 3 and report["missed"]["block"] == 0, report


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
    # what held it: rounds that saw the deny connect (a fail-open start), none a dropped allow
    assert report["missed"]["block"] >= 1 and report["missed"]["connect"] == 0, report


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
    assert report["missed"]["connect"] >= 1 and report["missed"]["block"] >= 1, report  # both phases seen


def test_gate_never_opens_on_a_round_older_than_one_that_saw_the_deny_connect(pod: Pod, serving_port: int) -> None:
    # The deny the gate polls really connects (a leak), but the first SYN to it is dropped --
    # its path opened a moment after the pod's own side (the target's node learnt the new pod's
    # address late). The first round's look at it waits out its timeout while newer rounds see
    # it connect and finish first. The old round's silence must not open the gate after that.
    with accepting_listener(pod.host_ip) as leak_port:
        first_syn = ["-d", pod.host_ip, "-p", "tcp", "--dport", str(leak_port), "--syn",
                     "-m", "quota", "--quota", "100", "-j", "DROP"]  # one ~60-byte SYN, then none
        iptables(pod.netns, "-I", "OUTPUT", "1", *first_syn)
        try:
            code, doc, err = run_agent({"version": 1, "timeout": 1.0, "checks": [
                {"id": "allowed", "kind": "tcp", "host": pod.host_ip, "port": serving_port},
                {"id": "leak", "kind": "tcp", "host": pod.host_ip, "port": leak_port}],
                # a 0.8 s look: no SYN retransmission (1 s) inside the first round
                "gate": {"bound": 2.5, "connect": ["allowed"], "block": ["leak"], "timeout": 0.8,
                         "interval": 0.1}}, netns=pod.netns)
        finally:
            iptables(pod.netns, "-D", "OUTPUT", *first_syn)
    assert code == 0 and doc is not None, err
    report = doc["gate"]
    assert report["opened"] == "bound-reached" and report["unmet"] == ["block"], report
    assert report["last"] == {"allowed": "allowed", "leak": "allowed"} and report["rounds"] >= 3
    assert verdicts(doc) == {"allowed": "allowed", "leak": "allowed"}  # and the leak shows


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

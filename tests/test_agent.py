"""The agent on real sockets: loopback listeners and a real DNS server (no mocks)."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from agenthelp import AGENT, result, run_agent, verdicts
from dnsfixture import Zone, answer, dns_server

from probe import agent
from probe.probepod import agent_program


def resolv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    return str(path)


def test_listener_allowed_and_closed_port_refused(listener, closed_port):
    host, port = listener
    code, doc, _ = run_agent({"version": 1, "timeout": 1, "checks": [
        {"id": "open", "kind": "tcp", "host": host, "port": port},
        {"id": "closed", "kind": "tcp", "host": host, "port": closed_port}]})
    assert code == 0 and doc is not None
    assert verdicts(doc) == {"open": "allowed", "closed": "refused"}
    assert f"{host}:{port}" in result(doc, "open")["detail"]
    assert result(doc, "closed")["attempts"] == 1


def test_dns_resolves_through_search_list_with_ndots(tmp_path, loopback_ip):
    zone = Zone(records={"db.default.svc.cluster.local": ["10.96.0.7"]})
    conf = resolv(tmp_path, f"search default.svc.cluster.local svc.cluster.local\n"
                  f"nameserver {loopback_ip}\noptions ndots:5\n")
    with dns_server(loopback_ip, zone):
        code, doc, _ = run_agent({"version": 1, "timeout": 2, "resolv_conf": conf, "checks": [
            {"id": "short", "kind": "dns", "name": "db"}]})
    assert code == 0 and doc is not None
    r = result(doc, "short")
    assert r["verdict"] == "allowed"
    assert "10.96.0.7" in r["detail"]
    # glibc order: fewer dots than ndots, so the search list comes first
    assert zone.queries[0][1] == "db.default.svc.cluster.local"


def test_name_with_enough_dots_is_tried_as_is_first(tmp_path, loopback_ip):
    zone = Zone(records={"a.b.example": ["10.1.2.3"]})
    conf = resolv(tmp_path, f"search ns.svc.cluster.local\nnameserver {loopback_ip}\noptions ndots:2\n")
    with dns_server(loopback_ip, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 2, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "a.b.example"}]})
    assert doc is not None and verdicts(doc) == {"d": "allowed"}
    assert [q[1] for q in zone.queries] == ["a.b.example"]


def test_missing_name_is_nxdomain_after_every_search_domain(tmp_path, loopback_ip):
    zone = Zone()
    conf = resolv(tmp_path, f"search a.local b.local\nnameserver {loopback_ip}\noptions ndots:5\n")
    with dns_server(loopback_ip, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 2, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "nosuch"},
            {"id": "t", "kind": "tcp", "host": "nosuch", "port": 5432}]})
    assert doc is not None
    assert verdicts(doc) == {"d": "nxdomain", "t": "nxdomain"}
    assert "port not tested" in result(doc, "t")["detail"]
    assert {q[1] for q in zone.queries} == {"nosuch.a.local", "nosuch.b.local", "nosuch"}


def test_truncated_udp_answer_falls_back_to_tcp(tmp_path, loopback_ip):
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(60)]  # > 512 bytes of answers
    zone = Zone(records={"big.example": many})
    conf = resolv(tmp_path, f"nameserver {loopback_ip}\n")
    with dns_server(loopback_ip, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 2, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "big.example."}]})
    assert doc is not None and verdicts(doc) == {"d": "allowed"}
    assert ("udp", "big.example", 1) in zone.queries
    assert ("tcp", "big.example", 1) in zone.queries
    assert "10.0.0.60" in result(doc, "d")["detail"] or "10.0.0.1" in result(doc, "d")["detail"]


def test_servfail_is_an_error_not_a_missing_name(tmp_path, loopback_ip):
    zone = Zone(servfail={"broken.example"})
    conf = resolv(tmp_path, f"nameserver {loopback_ip}\n")
    with dns_server(loopback_ip, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 2, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "broken.example."}]})
    assert doc is not None and verdicts(doc) == {"d": "error"}
    assert "SERVFAIL" in result(doc, "d")["detail"]


def test_silent_nameserver_is_dns_timeout_within_the_timeout(tmp_path, loopback_ip, listener):
    # Nobody serves DNS on this address: queries vanish, as when a policy drops them.
    conf = resolv(tmp_path, f"search default.svc.cluster.local\nnameserver {loopback_ip}\noptions ndots:5\n")
    started = time.monotonic()
    _, doc, _ = run_agent({"version": 1, "timeout": 0.6, "resolv_conf": conf, "checks": [
        {"id": "d", "kind": "dns", "name": "db"},
        {"id": "t", "kind": "tcp", "host": "db", "port": listener[1]}]})
    wall = time.monotonic() - started
    assert doc is not None
    assert verdicts(doc) == {"d": "dns-timeout", "t": "dns-timeout"}
    assert "DNS failed, port not tested" in result(doc, "t")["detail"]
    assert wall < 3.0  # one shared lookup with a real deadline, not resolv.conf's 5 s x 2


@contextmanager
def udp_dns(address: str, reply: Callable[[socket.socket, bytes, tuple[str, int]], None]) -> Iterator[None]:
    """A UDP-only DNS server on address:53 whose every query is answered by `reply`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65536)
            except OSError:
                continue
            reply(sock, data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_stray_and_late_answers_are_ignored_until_the_real_one(tmp_path, loopback_ip):
    real, stray = Zone(records={"db.example": ["10.1.1.1"]}), Zone(records={"db.example": ["10.6.6.6"]})
    other_ip = loopback_ip.rsplit(".", 1)[0] + ".1"  # another loopback address: not our nameserver

    def reply(sock: socket.socket, query: bytes, peer: tuple[str, int]) -> None:
        wrong = answer(stray, query, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as elsewhere:
            elsewhere.bind((other_ip, 0))
            elsewhere.sendto(wrong, peer)  # the right id, from an address we did not ask
        sock.sendto(bytes([wrong[0] ^ 0xFF]) + wrong[1:], peer)  # a late answer to another query
        time.sleep(0.2)
        sock.sendto(answer(real, query, "udp"), peer)

    conf = resolv(tmp_path, f"nameserver {loopback_ip}\n")
    with udp_dns(loopback_ip, reply):
        _, doc, _ = run_agent({"version": 1, "timeout": 2, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "db.example."}]})
    assert doc is not None and verdicts(doc) == {"d": "allowed"}
    assert result(doc, "d")["detail"] == "db.example -> 10.1.1.1"


def test_a_silent_first_nameserver_is_retried_on_the_next(tmp_path, loopback_ip):
    answering = loopback_ip.rsplit(".", 1)[0] + ".1"
    zone = Zone(records={"db.example": ["10.1.1.1"]})
    conf = resolv(tmp_path, f"nameserver {loopback_ip}\nnameserver {answering}\n")  # nobody on the first
    with dns_server(answering, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 1.5, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "db.example."}]})
    assert doc is not None and verdicts(doc) == {"d": "allowed"}
    # one retransmit interval (timeout / 3) went to the silent server first
    assert result(doc, "d")["elapsed_ms"] >= 450


def test_a_truncated_answer_is_asked_again_over_tcp_of_the_server_that_gave_it(tmp_path, loopback_ip):
    # The first nameserver answers (truncated) only after the agent has also asked the second, silent
    # one: the TCP retry goes to the first, which answered, not to the last one asked.
    slow = loopback_ip.rsplit(".", 1)[0] + ".1"
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(60)]  # > 512 bytes of answers
    zone = Zone(records={"big.example": many}, udp_delay=0.7)
    conf = resolv(tmp_path, f"nameserver {slow}\nnameserver {loopback_ip}\n")  # nobody on the second
    with dns_server(slow, zone):
        _, doc, _ = run_agent({"version": 1, "timeout": 1.5, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "big.example."}]})
    assert doc is not None and verdicts(doc) == {"d": "allowed"}, doc
    assert ("tcp", "big.example", 1) in zone.queries


def test_malformed_udp_answer_is_an_error(tmp_path, loopback_ip):
    def reply(sock: socket.socket, query: bytes, peer: tuple[str, int]) -> None:
        sock.sendto(query[:2] + b"\x81\x80\x00", peer)  # our id, a response, cut inside the header

    conf = resolv(tmp_path, f"nameserver {loopback_ip}\n")
    with udp_dns(loopback_ip, reply):
        _, doc, _ = run_agent({"version": 1, "timeout": 1, "resolv_conf": conf, "checks": [
            {"id": "d", "kind": "dns", "name": "db.example."}]})
    assert doc is not None and verdicts(doc) == {"d": "error"}
    assert "malformed answer (short DNS message (5 bytes))" in result(doc, "d")["detail"]


def test_attempts_rerun_only_failed_checks(listener, closed_port):
    host, port = listener
    _, doc, _ = run_agent({"version": 1, "timeout": 1, "attempts": 3, "checks": [
        {"id": "open", "kind": "tcp", "host": host, "port": port},
        {"id": "closed", "kind": "tcp", "host": host, "port": closed_port}]})
    assert doc is not None
    assert result(doc, "open")["attempts"] == 1
    assert result(doc, "closed")["attempts"] == 3
    assert result(doc, "closed")["history"] == ["refused"] * 3


def test_http_check_reports_status(tmp_path):
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, doc, _ = run_agent({"version": 1, "timeout": 2, "checks": [
            {"id": "h", "kind": "http", "url": f"http://127.0.0.1:{server.server_port}/nope"}]})
    finally:
        server.shutdown()
        server.server_close()
    assert doc is not None and verdicts(doc) == {"h": "allowed"}
    assert "HTTP 404" in result(doc, "h")["detail"]


TEST_CERT = Path(__file__).resolve().parent / "data" / "selfsigned.pem"  # cert and key, valid until 2126


@pytest.fixture
def tls_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TLS server with a self-signed certificate answering each request with 204; yields (port, requests)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(TEST_CERT)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    requests: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    requests.append(tls.recv(4096))
                    tls.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            except OSError:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], requests
    finally:
        stop.set()
        thread.join()
        server.close()


def test_https_check_completes_the_handshake_without_trusting_the_certificate(tls_server):
    port, requests = tls_server
    _, doc, err = run_agent({"version": 1, "timeout": 2, "checks": [
        {"id": "h", "kind": "http", "url": f"https://127.0.0.1:{port}/health"}]})
    assert doc is not None, err
    assert verdicts(doc) == {"h": "allowed"}
    assert result(doc, "h")["detail"] == f"HTTP 204 from 127.0.0.1:{port}"
    assert requests and requests[0].startswith(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n")


def test_https_to_a_server_that_never_answers_the_handshake_times_out(listener):
    host, port = listener  # the kernel accepts the connection; nobody ever reads the ClientHello
    _, doc, _ = run_agent({"version": 1, "timeout": 0.5, "checks": [
        {"id": "h", "kind": "http", "url": f"https://{host}:{port}/"},
        {"id": "p", "kind": "http", "url": f"http://{host}:{port}/"}]})
    assert doc is not None and verdicts(doc) == {"h": "allowed", "p": "allowed"}
    for cid in ("h", "p"):
        assert result(doc, cid)["detail"] == f"connected to {host}:{port}, but the HTTP exchange failed: timed out"
        assert 450 <= result(doc, cid)["elapsed_ms"] < 1500


def test_result_is_written_to_the_termination_log(tmp_path, listener):
    import subprocess
    import sys

    log = tmp_path / "termination-log"
    plan = {"version": 1, "timeout": 1, "checks": [
        {"id": "c", "kind": "tcp", "host": listener[0], "port": listener[1]}]}
    proc = subprocess.run([sys.executable, str(AGENT), json.dumps(plan)], capture_output=True,
                          text=True, env={"NETPROBE_TERMINATION_LOG": str(log)}, check=True)
    assert json.loads(log.read_text()) == json.loads(proc.stdout)


@pytest.mark.parametrize("plan, message", [
    ("{not json", "not valid JSON"),
    ("/no/such/plan.json", "cannot read plan file"),
    ('{"version": 2, "checks": []}', "plan version: expected 1, got 2"),
    ('{"version": 1, "checks": [{"id": "x", "kind": "udp", "host": "a", "port": 1}]}',
     "checks[0].kind: expected one of tcp, dns, http"),
    ('{"version": 1, "checks": [{"id": "x", "kind": "tcp", "host": "db"}]}',
     "checks[0].port: expected a port between 1 and 65535"),
    ('{"version": 1, "checks": [{"id": "x", "kind": "dns"}]}', "checks[0].name"),
    ('{"version": 1, "timeout": -1, "checks": []}', "timeout: expected a positive number"),
    ('{"version": 1, "checks": [{"id": "x", "kind": "dns", "name": "a"},'
     ' {"id": "x", "kind": "dns", "name": "b"}]}', "duplicate id"),
    ('{"version": 1, "checks": [], "gate": {"bound": -1}}', "gate.bound: expected a number of seconds >= 0"),
    ('{"version": 1, "checks": [], "gate": {"bound": 1, "connect": ["nope"]}}',
     "gate.connect: no check with id 'nope'"),
    ('{"version": 1, "checks": [], "warmup": 1, "gate": {"bound": 1}}', "gate and warmup: give one of them"),
    ('{"version": 1, "checks": [], "gate": {"bound": 1, "network": 53}}', "gate.network: expected a DNS name"),
    ('{"version": 1, "checks": [], "gate": {"bound": 1, "network": "a..b"}}', "gate.network: expected a DNS name"),
    ('{"version": 1, "checks": [{"id": "gate:network", "kind": "dns", "name": "a"}]}',
     "ids starting with 'gate:' are the gate's own"),
], ids=["not-json", "missing-plan-file", "wrong-version", "unknown-kind", "missing-port", "dns-without-name",
        "negative-timeout", "duplicate-id", "gate-negative-bound", "gate-unknown-check", "gate-and-warmup",
        "gate-network-not-a-name", "gate-network-empty-label", "gate-reserved-id"])
def test_malformed_plan_exits_2_with_one_line(plan, message):
    code, doc, stderr = run_agent(plan)
    assert code == 2 and doc is None
    assert message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


def test_resolv_conf_parsing_follows_glibc():
    conf = agent.ResolvConf.parse(
        "# comment\nnameserver 10.96.0.10\nnameserver 10.96.0.11\nsearch a.svc b.svc\n"
        "options ndots:5 timeout:1\n")
    assert conf.nameservers == ["10.96.0.10", "10.96.0.11"]
    assert conf.candidates("db") == ["db.a.svc", "db.b.svc", "db"]
    assert conf.candidates("db.") == ["db"]
    assert agent.ResolvConf.parse("search x\n").candidates("a.b") == ["a.b", "a.b.x"]


def test_agent_source_is_python38_compatible_syntax():
    import ast

    source = AGENT.read_text()
    ast.parse(source, feature_version=(3, 8))
    assert "import probe" not in source  # travels alone into the pod
    # and what the pod runs, the same code without docstrings, comments and annotations, as well
    ast.parse(agent_program(), feature_version=(3, 8))
    assert ast.dump(ast.parse(agent_program())) == _without_docstrings_and_annotations(ast.parse(source))


def _without_docstrings_and_annotations(tree):
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            node.annotation = None
        if isinstance(node, ast.FunctionDef):
            node.returns = None
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list):
                stmts[:] = [ast.Assign(targets=[n.target], value=n.value, lineno=0) if isinstance(n, ast.AnnAssign)
                            else n for n in stmts if not (isinstance(n, ast.AnnAssign) and n.value is None)]
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def test_large_plan_split_over_several_arguments():
    import socket

    from probe.probepod import split_argument

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)  # room for every concurrent connect in the accept queue
    port = server.getsockname()[1]
    checks = [{"id": f"c{i}", "kind": "tcp", "host": "127.0.0.1", "port": port} for i in range(1500)]
    text = json.dumps({"version": 1, "timeout": 2, "checks": checks})
    parts = split_argument(text)
    assert len(parts) > 1 and all(len(p) <= 64 * 1024 for p in parts)
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(AGENT), *parts], capture_output=True, text=True,
                          env={"NETPROBE_TERMINATION_LOG": "/nonexistent"}, check=True)
    server.close()
    doc = json.loads(proc.stdout)
    assert len(doc["results"]) == 1500 and set(verdicts(doc).values()) == {"allowed"}


# -- the readiness gate on loopback (its real-packet proof is in test_agent_netns.py)


def test_gate_opens_at_once_when_the_network_already_answers_as_expected(tmp_path, loopback_ip, closed_port):
    zone = Zone(records={"db.default.svc.cluster.local": ["10.96.0.7"]})
    conf = resolv(tmp_path, f"search default.svc.cluster.local\nnameserver {loopback_ip}\noptions ndots:5\n")
    with dns_server(loopback_ip, zone):
        code, doc, err = run_agent({"version": 1, "timeout": 1, "resolv_conf": conf, "checks": [
            {"id": "dns", "kind": "dns", "name": "db"},
            {"id": "closed", "kind": "tcp", "host": "127.0.0.1", "port": closed_port}],
            "gate": {"bound": 5, "connect": ["dns"], "block": ["closed"]}})
    assert code == 0 and doc is not None, err
    gate = doc["gate"]
    assert gate["opened"] == "condition-met" and gate["rounds"] == 1
    assert gate["waited_ms"] < 1000 and gate["last"] == {"dns": "allowed", "closed": "refused"}
    assert verdicts(doc) == {"dns": "allowed", "closed": "refused"}


def test_gate_without_a_check_for_a_condition_waits_its_whole_bound(listener):
    host, port = listener
    started = time.monotonic()
    code, doc, _ = run_agent({"version": 1, "timeout": 1, "checks": [
        {"id": "open", "kind": "tcp", "host": host, "port": port}],
        "gate": {"bound": 1.2, "connect": ["open"], "block": []}})
    assert code == 0 and doc is not None
    # Nothing can show a fail-open start is over: wait it out, then probe as always.
    assert doc["gate"]["opened"] == "no-candidate" and doc["gate"]["missing"] == ["block"]
    assert doc["gate"]["waited_ms"] >= 1200 and time.monotonic() - started >= 1.2
    # it polled the allow only until it connected (the report says the network was up), not
    # 20 times a second for the rest of the bound
    assert doc["gate"]["last"] == {"open": "allowed"} and doc["gate"]["rounds"] <= 3
    assert verdicts(doc) == {"open": "allowed"}


def test_fixed_warmup_waits_and_says_so(listener):
    host, port = listener
    code, doc, _ = run_agent({"version": 1, "timeout": 1, "warmup": 0.5, "checks": [
        {"id": "open", "kind": "tcp", "host": host, "port": port}]})
    assert code == 0 and doc is not None
    assert doc["gate"]["opened"] == "fixed" and doc["gate"]["waited_ms"] >= 500


def test_no_gate_and_no_warmup_probe_at_once_with_no_gate_report(listener):
    host, port = listener
    _, doc, _ = run_agent({"version": 1, "timeout": 1, "checks": [
        {"id": "open", "kind": "tcp", "host": host, "port": port}]})
    assert doc is not None and "gate" not in doc and verdicts(doc) == {"open": "allowed"}


def test_first_done_answers_the_first_task_to_finish_or_none_at_its_deadline():
    def nap(seconds: float, value: str):
        yield from agent.sleep_until(time.monotonic() + seconds)
        return value

    def main():
        slow = yield from agent.spawn(nap(0.3, "slow"))
        fast = yield from agent.spawn(nap(0.05, "fast"))
        started = time.monotonic()
        nothing_yet = yield from agent.first_done([slow, fast], started + 0.01)
        first = yield from agent.first_done([slow, fast], started + 5)
        at_once = yield from agent.first_done([slow, fast], started)  # one is done already
        second = yield from agent.first_done([slow], started + 5)
        return nothing_yet, first, at_once, second, time.monotonic() - started

    nothing_yet, first, at_once, second, took = agent.Scheduler().run(main())
    assert nothing_yet is None
    assert first.value == "fast" and at_once is first  # the wait that timed out did not swallow it
    assert second.value == "slow" and 0.25 <= took < 1


def test_the_c_json_codec_writes_and_reads_what_the_json_module_does(monkeypatch):
    doc = {"version": 1, "elapsed_ms": 2012, "results": [
        {"id": "t0", "verdict": "blocked", "elapsed_ms": 2000, "detail": "no answer from 203.0.113.13:80 within 2s",
         "history": ["blocked"], "attempts": 1},
        {"id": "d\u00e9", "verdict": "allowed", "detail": 'quote " backslash \\ tab \t ctrl \x01 \u2603',
         "ratio": 0.1, "big": 10 ** 20, "none": None, "flag": False}],
        "gate": {"mode": "gate", "bound_s": 2.0, "last": {}}}
    expected = json.dumps(doc, separators=(",", ":"))
    loads, dumps = agent._json_codec()
    assert loads is not json.loads  # the C scanner, not the module
    assert dumps(doc) == expected and loads(expected) == doc and loads(f"  {expected}\n") == doc
    with pytest.raises(ValueError, match="Expecting"):  # json's own message for malformed text
        loads('{"version": 1,')
    with pytest.raises(ValueError, match="Extra data"):
        loads('{"a": 1} x')
    # an interpreter without _json: the json module stands in, with the same output
    monkeypatch.setitem(sys.modules, "_json", None)
    loads, dumps = agent._json_codec()
    assert loads is json.loads and dumps(doc) == expected


def test_gate_rounds_overlap_but_never_more_than_three_are_out(tmp_path, loopback_ip):
    # A nameserver that never answers: every round waits its whole 0.25 s timeout. Rounds start
    # every 0.05 s, but a slow target must not get a new round every 0.05 s on top of the old ones.
    conf = resolv(tmp_path, f"nameserver {loopback_ip}\n")
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((loopback_ip, 53))
    try:
        code, doc, err = run_agent({"version": 1, "timeout": 0.3, "resolv_conf": conf, "checks": [
            {"id": "dns", "kind": "dns", "name": "db.example."},
            {"id": "closed", "kind": "tcp", "host": "127.0.0.1", "port": 9}],
            "gate": {"bound": 1.0, "connect": ["dns"], "block": ["closed"]}})
    finally:
        silent.close()
    assert code == 0 and doc is not None, err
    gate = doc["gate"]
    assert gate["opened"] == "bound-reached" and gate["unmet"] == ["connect"]
    # 1 s / 0.25 s x 3 in flight = 12 at most (the last can only start while one still fits)
    assert 6 <= gate["rounds"] <= 12, gate


def test_gate_reads_only_the_newest_of_rounds_that_finished_together(monkeypatch):
    # Rounds 1-3 all finish while the scheduler is busy (a loaded node), in the order 1, 3, 2:
    # round 2's look at the deny was dropped, rounds 1 and 3 -- the newest -- saw it connect.
    # Read oldest first, round 2 would open the gate on evidence a newer round contradicts.
    t0 = time.monotonic()
    seen = {1: ("allowed", 0.30), 2: ("blocked", 0.32), 3: ("allowed", 0.31)}
    numbers = iter(range(1, 100))

    def fake_round(connect, block, conf, timeout):
        deny, ends = seen.get(next(numbers), ("allowed", 5.0))
        yield from agent.sleep_until(t0 + ends)
        return {"c": "allowed", "b": deny}

    def busy():
        yield from agent.sleep_until(t0 + 0.29)
        time.sleep(0.1)  # holds the scheduler past all three rounds' ends

    monkeypatch.setattr(agent, "_gate_round", fake_round)
    plan = agent.parse_plan(json.dumps({"version": 1, "timeout": 1, "checks": [
        {"id": "c", "kind": "tcp", "host": "127.0.0.1", "port": 1},
        {"id": "b", "kind": "tcp", "host": "127.0.0.1", "port": 2}],
        "gate": {"bound": 1.0, "connect": ["c"], "block": ["b"]}}))

    def main():
        yield from agent.spawn(busy())
        return (yield from agent.run_gate(plan, t0))

    report = agent.Scheduler().run(main())
    assert report["opened"] == "bound-reached" and report["unmet"] == ["block"], report
    assert report["last"] == {"c": "allowed", "b": "allowed"} and report["missed"] == {"connect": 0, "block": 1}

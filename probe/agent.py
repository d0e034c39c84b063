"""netprobe agent: runs inside a probe pod, runs every check of its plan at once, prints JSON.

Contract (README "Agent protocol"):
- one file, Python standard library only, python3 >= 3.8 (probe images vary);
- input: a plan as JSON in argv (the JSON text itself, split over several arguments when
  it is larger than one argument may be, or a path to a file holding it):
  {"version": 1, "timeout": 1.0, "attempts": 1, "checks": [
      {"id": "c1", "kind": "tcp", "host": "db.default.svc.cluster.local", "port": 5432},
      {"id": "d1", "kind": "dns", "name": "db"},
      {"id": "h1", "kind": "http", "url": "http://example.com/"}]}
  (a check may carry its own "timeout"). Before the first check, either a readiness gate
  "gate": {"bound": 2.0, "connect": ["d1"], "block": ["c1"], "timeout": 0.25, "interval": 0.1}
  (`run_gate`: wait until the pod's policy is observably in force, at most `bound` seconds
  from the agent's start) or a fixed "warmup": seconds to wait, never both;
- output: one compact JSON document on stdout, {"version": 1, "elapsed_ms", "results":
  [{"id", "verdict", "elapsed_ms", "detail", "attempts", "history"}, ...], "gate": {"mode",
  "opened", "waited_ms", ...}} ("gate" only when the plan had a gate or a warm-up), also
  written to /dev/termination-log when writable and when the document fits in 4096 bytes;
- exit 0 whenever it produced results, 2 on a malformed plan (one line on stderr).

DNS is resolved by our own stub resolver, not getaddrinfo: getaddrinfo cannot tell a dropped
query from a missing name and waits for resolv.conf's own timeouts. The resolver follows
glibc: nameservers, `search` and `ndots` from /etc/resolv.conf, UDP with TCP fallback on
truncation, and it stops the search on a timeout as glibc's res_nsearch does.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import random
import socket
import ssl
import struct
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

PLAN_VERSION = 1
RESULT_VERSION = 1
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LIMIT = 4096
KINDS = ("tcp", "dns", "http")
GATE_TIMEOUT = 0.25  # a gate check's timeout: in-cluster answers take milliseconds
GATE_INTERVAL = 0.1  # the shortest time between the starts of two gate rounds

ALLOWED = "allowed"
BLOCKED = "blocked"
REFUSED = "refused"
DNS_TIMEOUT = "dns-timeout"
NXDOMAIN = "nxdomain"
UNREACHABLE = "unreachable"
ERROR = "error"

_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_QTYPE_A, _QTYPE_AAAA, _QTYPE_CNAME = 1, 28, 5
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class PlanError(Exception):
    """The plan is malformed (exit 2)."""


# ---------------------------------------------------------------------------------- plan


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PlanError("%s: expected a positive number, got %r" % (where, value))
    return float(value)


def parse_plan(text: str) -> Dict[str, Any]:
    """Validate a plan document; raise PlanError naming the first problem."""
    try:
        plan = json.loads(text)
    except ValueError as exc:
        raise PlanError("plan is not valid JSON: %s" % exc) from None
    if not isinstance(plan, dict):
        raise PlanError("plan must be a JSON object, got %s" % type(plan).__name__)
    if plan.get("version") != PLAN_VERSION:
        raise PlanError("plan version: expected %d, got %r" % (PLAN_VERSION, plan.get("version")))
    timeout = _number(plan.get("timeout", 2.0), "timeout")
    attempts = plan.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise PlanError("attempts: expected a whole number >= 1, got %r" % (attempts,))
    checks = plan.get("checks")
    if not isinstance(checks, list):
        raise PlanError("checks: expected a list")
    seen = set()
    for i, check in enumerate(checks):
        where = "checks[%d]" % i
        if not isinstance(check, dict):
            raise PlanError("%s: expected an object" % where)
        cid = check.get("id")
        if not isinstance(cid, str) or not cid:
            raise PlanError("%s.id: expected a non-empty string" % where)
        if cid in seen:
            raise PlanError("%s.id: duplicate id %r" % (where, cid))
        seen.add(cid)
        kind = check.get("kind")
        if kind not in KINDS:
            raise PlanError("%s.kind: expected one of %s, got %r" % (where, ", ".join(KINDS), kind))
        if kind == "dns":
            if not isinstance(check.get("name"), str) or not check["name"]:
                raise PlanError("%s.name: a dns check needs a name" % where)
        elif kind == "tcp":
            if not isinstance(check.get("host"), str) or not check["host"]:
                raise PlanError("%s.host: a tcp check needs a host" % where)
            port = check.get("port")
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise PlanError("%s.port: expected a port between 1 and 65535, got %r" % (where, port))
        else:
            url = check.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise PlanError("%s.url: expected an http:// or https:// URL, got %r" % (where, url))
        if "timeout" in check:
            _number(check["timeout"], where + ".timeout")
    warmup = plan.get("warmup", 0)
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or warmup < 0:
        raise PlanError("warmup: expected a number of seconds >= 0, got %r" % (warmup,))
    gate = _parse_gate(plan.get("gate"), seen)
    if gate is not None and warmup:
        raise PlanError("gate and warmup: give one of them (a gate already waits at most its bound)")
    return {"timeout": timeout, "attempts": attempts, "checks": checks, "warmup": float(warmup),
            "gate": gate, "resolv_conf": plan.get("resolv_conf", "/etc/resolv.conf")}


def _parse_gate(gate: Any, ids: Any) -> Optional[Dict[str, Any]]:
    """The readiness gate of a plan (None: no gate), validated."""
    if gate is None:
        return None
    if not isinstance(gate, dict):
        raise PlanError("gate: expected an object")
    bound = gate.get("bound")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound < 0:
        raise PlanError("gate.bound: expected a number of seconds >= 0, got %r" % (bound,))
    out: Dict[str, Any] = {
        "bound": float(bound),
        "timeout": _number(gate.get("timeout", GATE_TIMEOUT), "gate.timeout"),
        "interval": _number(gate.get("interval", GATE_INTERVAL), "gate.interval")}
    for key in ("connect", "block"):
        value = gate.get(key, [])
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise PlanError("gate.%s: expected a list of check ids" % key)
        unknown = [c for c in value if c not in ids]
        if unknown:
            raise PlanError("gate.%s: no check with id %r" % (key, unknown[0]))
        out[key] = list(value)
    return out


# ----------------------------------------------------------------------------- resolver


class ResolvConf:
    """The parts of resolv.conf that decide how a name is looked up."""

    def __init__(self, nameservers: List[str], search: List[str], ndots: int) -> None:
        self.nameservers = nameservers
        self.search = search
        self.ndots = ndots

    @classmethod
    def parse(cls, text: str) -> "ResolvConf":
        nameservers: List[str] = []
        search: List[str] = []
        ndots = 1
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            if words[0] == "nameserver" and len(words) > 1 and len(nameservers) < 3:
                nameservers.append(words[1])
            elif words[0] in ("search", "domain"):
                search = [w.rstrip(".") for w in words[1:]]
            elif words[0] == "options":
                for opt in words[1:]:
                    if opt.startswith("ndots:") and opt[6:].isdigit():
                        ndots = min(15, int(opt[6:]))
        return cls(nameservers or ["127.0.0.1"], search, ndots)

    @classmethod
    def load(cls, path: str) -> "ResolvConf":
        try:
            with open(path) as f:
                return cls.parse(f.read())
        except OSError:
            return cls(["127.0.0.1"], [], 1)

    def candidates(self, name: str) -> List[str]:
        """Fully qualified names to try, in glibc's order."""
        if name.endswith("."):
            return [name.rstrip(".")]
        as_is = [name]
        searched = ["%s.%s" % (name, domain) for domain in self.search if domain]
        if name.count(".") >= self.ndots:
            return as_is + searched
        return searched + as_is


def encode_query(qid: int, name: str, qtype: int) -> bytes:
    """A DNS query message with recursion desired."""
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not raw or len(raw) > 63:
            raise ValueError("invalid DNS name %r" % name)
        qname += bytes([len(raw)]) + raw
    return header + qname + b"\x00" + struct.pack(">HH", qtype, 1)


def _read_name(msg: bytes, offset: int) -> Tuple[str, int]:
    labels: List[str] = []
    jumps, end = 0, None  # type: Tuple[int, Optional[int]]
    while True:
        if offset >= len(msg):
            raise ValueError("name runs past the message")
        length = msg[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(msg):
                raise ValueError("truncated pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | msg[offset + 1]
            jumps += 1
            if jumps > 32:
                raise ValueError("compression loop")
            continue
        if length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        labels.append(msg[offset + 1:offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def decode_response(msg: bytes, qid: int) -> Tuple[int, bool, List[str]]:
    """(rcode, truncated, addresses) of a response; ValueError when malformed."""
    if len(msg) < 12:
        raise ValueError("short DNS message (%d bytes)" % len(msg))
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid:
        raise ValueError("response id mismatch")
    if not flags & 0x8000:
        raise ValueError("not a response")
    truncated = bool(flags & 0x0200)
    rcode = flags & 0x000F
    offset = 12
    for _ in range(qd):
        _, offset = _read_name(msg, offset)
        offset += 4
    addresses = []
    for _ in range(an):
        _, offset = _read_name(msg, offset)
        if offset + 10 > len(msg):
            if truncated:
                break
            raise ValueError("truncated resource record")
        rtype, _rclass, _ttl, rdlen = struct.unpack(">HHIH", msg[offset:offset + 10])
        offset += 10
        rdata = msg[offset:offset + rdlen]
        offset += rdlen
        if rtype == _QTYPE_A and rdlen == 4:
            addresses.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == _QTYPE_AAAA and rdlen == 16:
            addresses.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return rcode, truncated, addresses


class _UdpWaiter(asyncio.DatagramProtocol):
    def __init__(self, future: "asyncio.Future[Any]", qid: int, server: str) -> None:
        self.future, self.qid, self.server = future, qid, server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr[0] != self.server or self.future.done():
            return
        try:
            answer = decode_response(data, self.qid)
        except ValueError as exc:
            if "id mismatch" in str(exc):
                return  # a late answer to an earlier query: keep waiting
            self.future.set_result(("malformed", str(exc)))
            return
        self.future.set_result(("answer", answer))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors on UDP: treat like silence, glibc does the same without a reply


def _waiter_factory(future: "asyncio.Future[Any]", qid: int, server: str) -> Any:
    return lambda: _UdpWaiter(future, qid, server)


class DnsOutcome:
    """What a lookup found: verdict plus detail and addresses."""

    def __init__(self, verdict: str, detail: str, addresses: Sequence[str] = ()) -> None:
        self.verdict, self.detail, self.addresses = verdict, detail, list(addresses)


class Resolver:
    """A stub resolver with a deadline, sharing lookups between concurrent checks."""

    def __init__(self, conf: ResolvConf) -> None:
        self.conf = conf
        self._cache: Dict[str, Any] = {}

    async def resolve(self, name: str, timeout: float) -> "DnsOutcome":
        key = name.lower()
        if key not in self._cache:
            self._cache[key] = asyncio.ensure_future(self._resolve(name, timeout))
        return await asyncio.shield(self._cache[key])

    def forget(self, name: str) -> None:
        self._cache.pop(name.lower(), None)

    async def _resolve(self, name: str, timeout: float) -> "DnsOutcome":
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        tried, nodata, servfail = [], False, None
        for fqdn in self.conf.candidates(name):
            tried.append(fqdn)
            for qtype in (_QTYPE_A, _QTYPE_AAAA):
                outcome = await self._query(fqdn, qtype, deadline)
                kind = outcome[0]
                if kind == "timeout":
                    return DnsOutcome(DNS_TIMEOUT, "DNS lookup of %s: no answer from %s within %gs"
                                      % (fqdn, ", ".join(self.conf.nameservers), timeout))
                if kind == "malformed":
                    return DnsOutcome(ERROR, "DNS lookup of %s: malformed answer (%s)" % (fqdn, outcome[1]))
                rcode, addresses = outcome[1], outcome[2]
                if rcode == 0 and addresses:
                    return DnsOutcome(ALLOWED, "%s -> %s" % (fqdn, ", ".join(addresses)), addresses)
                if rcode == 0:
                    nodata = True
                    continue  # no record of this type: try AAAA, then the next candidate
                if rcode == 3:
                    break  # NXDOMAIN: next candidate
                if rcode == 2:
                    servfail = fqdn
                    break  # glibc keeps searching after SERVFAIL
                return DnsOutcome(ERROR, "DNS lookup of %s: server answered %s"
                                  % (fqdn, _RCODES.get(rcode, "rcode %d" % rcode)))
        if servfail is not None and not nodata:
            return DnsOutcome(ERROR, "DNS lookup of %s: SERVFAIL" % servfail)
        why = "no address record" if nodata else "NXDOMAIN"
        return DnsOutcome(NXDOMAIN, "%s: %s (tried %s)" % (name, why, ", ".join(tried)))

    async def _query(self, fqdn: str, qtype: int, deadline: float) -> Tuple[Any, ...]:
        """('answer', rcode, addrs) | ('timeout',) | ('malformed', why) for one question."""
        loop = asyncio.get_event_loop()
        qid = random.randrange(1, 65536)
        try:
            query = encode_query(qid, fqdn, qtype)
        except (ValueError, UnicodeError):
            return ("answer", 3, [])  # a name that cannot exist on the wire
        future = loop.create_future()
        transports = []
        servers = self.conf.nameservers
        try:
            for server in servers:
                family = socket.AF_INET6 if ":" in server else socket.AF_INET
                transport, _ = await loop.create_datagram_endpoint(
                    _waiter_factory(future, qid, server), family=family)
                transports.append((transport, server))
            # Send to the first server; every retransmit interval, also try the next one.
            remaining = deadline - loop.time()
            interval = max(0.2, min(1.0, remaining / 3))
            i = 0
            while not future.done():
                transport, server = transports[i % len(transports)]
                transport.sendto(query, (server, 53))
                i += 1
                wait = min(interval, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(future), wait)
                except asyncio.TimeoutError:
                    continue
            if not future.done():
                return ("timeout",)
            kind, payload = future.result()
            if kind == "malformed":
                return ("malformed", payload)
            rcode, truncated, addresses = payload
            if truncated:
                return await self._query_tcp(query, qid, transports[(i - 1) % len(transports)][1], deadline)
            return ("answer", rcode, addresses)
        finally:
            for transport, _ in transports:
                transport.close()

    async def _query_tcp(self, query: bytes, qid: int, server: str, deadline: float) -> Tuple[Any, ...]:
        loop = asyncio.get_event_loop()
        writer = None
        try:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return ("timeout",)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(server, 53), remaining)
            writer.write(struct.pack(">H", len(query)) + query)
            length = struct.unpack(">H", await asyncio.wait_for(
                reader.readexactly(2), max(0.01, deadline - loop.time())))[0]
            msg = await asyncio.wait_for(reader.readexactly(length), max(0.01, deadline - loop.time()))
            rcode, _, addresses = decode_response(msg, qid)
            return ("answer", rcode, addresses)
        except asyncio.TimeoutError:
            return ("timeout",)
        except (OSError, asyncio.IncompleteReadError) as exc:
            return ("malformed", "TCP fallback to %s failed: %s" % (server, exc))
        except ValueError as exc:
            return ("malformed", str(exc))
        finally:
            if writer is not None:
                writer.close()


# -------------------------------------------------------------------------------- checks


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


async def _connect(host: str, port: int, timeout: float) -> Tuple[str, str, Optional[socket.socket]]:
    """(verdict, detail, socket or None) for a TCP connect to an IP address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_event_loop()
    where = "[%s]:%d" % (host, port) if family == socket.AF_INET6 else "%s:%d" % (host, port)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        return ALLOWED, "connected to %s" % where, sock
    except asyncio.TimeoutError:
        sock.close()
        return BLOCKED, "no answer from %s within %gs" % (where, timeout), None
    except ConnectionRefusedError:
        sock.close()
        return REFUSED, "%s refused the connection (RST)" % where, None
    except OSError as exc:
        sock.close()
        if exc.errno in _UNREACHABLE_ERRNOS:
            return UNREACHABLE, "%s: %s" % (where, os.strerror(exc.errno)), None
        return ERROR, "%s: %s" % (where, exc), None


async def _address_of(
    resolver: Resolver, host: str, timeout: float
) -> Tuple[Optional[str], Optional[Tuple[str, str]]]:
    """(address, None) or (None, (verdict, detail)) for a host that may be a name."""
    if _is_ip(host):
        return host, None
    outcome = await resolver.resolve(host, timeout)
    if outcome.verdict != ALLOWED:
        return None, (outcome.verdict, "DNS failed, port not tested: " + outcome.detail)
    v4 = [a for a in outcome.addresses if ":" not in a]
    return (v4 or outcome.addresses)[0], None


async def check_dns(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Tuple[str, str]:
    outcome = await resolver.resolve(check["name"], timeout)
    return outcome.verdict, outcome.detail


async def check_tcp(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Tuple[str, str]:
    address, failure = await _address_of(resolver, check["host"], timeout)
    if failure is not None or address is None:
        return failure or (ERROR, "no address")
    verdict, detail, sock = await _connect(address, check["port"], timeout)
    if sock is not None:
        sock.close()
    if address != check["host"]:
        detail = "%s (%s)" % (detail, check["host"])
    return verdict, detail


def _split_url(url: str) -> Tuple[str, str, int, str]:
    scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), "/" + path


async def check_http(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Tuple[str, str]:
    scheme, host, port, path = _split_url(check["url"])
    address, failure = await _address_of(resolver, host, timeout)
    if failure is not None or address is None:
        return failure or (ERROR, "no address")
    verdict, detail, sock = await _connect(address, port, timeout)
    if sock is None:
        return verdict, detail
    writer = None
    try:
        ctx = None
        if scheme == "https":
            # Reachability, not trust: a self-signed or private CA must not read as "blocked".
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            sock=sock, ssl=ctx, server_hostname=host if ctx else None), timeout)
        request = "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: netprobe\r\nConnection: close\r\n\r\n" % (path, host)
        writer.write(request.encode("ascii", "replace"))
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
            return ALLOWED, "HTTP %s from %s:%d" % (parts[1], address, port)
        return ALLOWED, "connected to %s:%d, but no HTTP status line" % (address, port)
    except (asyncio.TimeoutError, OSError, ssl.SSLError) as exc:
        why = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
        return ALLOWED, "connected to %s:%d, but the HTTP exchange failed: %s" % (address, port, why)
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()


_CHECKS = {"dns": check_dns, "tcp": check_tcp, "http": check_http}


async def _run_one(check: Dict[str, Any], resolver: Resolver, default_timeout: float) -> Dict[str, Any]:
    timeout = float(check.get("timeout", default_timeout))
    start = time.monotonic()
    try:
        verdict, detail = await _CHECKS[check["kind"]](check, resolver, timeout)
    except Exception as exc:  # a bug or an odd OS error must not lose the other results
        verdict, detail = ERROR, "probe failed: %s: %s" % (type(exc).__name__, exc)
    return {"id": check["id"], "verdict": verdict, "elapsed_ms": _ms(start), "detail": detail}


# ---------------------------------------------------------------------------------- gate

# What a gate check must show: the verdict its expectation asks for (the diff's match table).
_GATE_CONNECTED = (ALLOWED,)
_GATE_NOT_CONNECTED = (BLOCKED, REFUSED, UNREACHABLE, DNS_TIMEOUT)


async def _gate_probe(check: Dict[str, Any], resolver: Resolver, timeout: float) -> str:
    """One short look at a check: its verdict only. An http check is looked at as TCP."""
    if check["kind"] == "http":
        _scheme, host, port, _path = _split_url(check["url"])
        check = {"id": check["id"], "kind": "tcp", "host": host, "port": port}
    try:
        verdict, _ = await _CHECKS[check["kind"]](check, resolver, timeout)
    except Exception:  # a failed look is no evidence either way
        verdict = ERROR
    return verdict


async def run_gate(plan: Dict[str, Any], started: float) -> Dict[str, Any]:
    """Wait until this pod's policy is observably in force, or until the gate's bound passes.

    A new pod's policy is programmed asynchronously. A fail-closed enforcer (Calico) drops
    its packets until then, so an early probe of an allowed target times out -- and an early
    probe of a denied target reads "blocked" whether or not the policy denies it. A fail-open
    enforcer leaves it un-isolated, so an early probe of a denied target connects. The gate
    therefore polls, with short timeouts, checks the expectations say must connect and checks
    they say must not, and opens in the first round where every "connect" check connects (not
    fail-closed any more, for each of them) and every "block" check does not (not fail-open
    any more): where every polled check already shows what the spec expects of it. Where the
    plan has no check for one of the conditions, nothing can show it, so the gate waits out
    the whole bound. The gate only decides when the real checks start: they
    always run afterwards, and their verdicts are reported as observed.

    Returns the gate's report: waited_ms, opened (condition-met | bound-reached |
    no-candidate), rounds, and the last round's verdicts.
    """
    gate = plan["gate"]
    deadline = started + gate["bound"]
    loop_time = time.monotonic
    by_id = {c["id"]: c for c in plan["checks"]}
    connect = [by_id[i] for i in gate["connect"]]
    block = [by_id[i] for i in gate["block"]]
    report = {"mode": "gate", "bound_s": gate["bound"], "connect": gate["connect"],
              "block": gate["block"], "rounds": 0}  # type: Dict[str, Any]
    missing = [name for name, candidates in (("connect", connect), ("block", block)) if not candidates]
    if missing:
        await asyncio.sleep(max(0.0, deadline - loop_time()))
        report.update(opened="no-candidate", missing=missing, waited_ms=_ms(started))
        return report
    conf = ResolvConf.load(plan["resolv_conf"])
    last = {}  # type: Dict[str, str]
    unmet = ["connect", "block"]
    while loop_time() + gate["timeout"] <= deadline:
        round_start = loop_time()
        report["rounds"] += 1
        resolver = Resolver(conf)  # fresh each round: an answer from before must not be reused
        probes = connect + block
        verdicts = await asyncio.gather(*[_gate_probe(c, resolver, gate["timeout"]) for c in probes])
        last = {c["id"]: verdicts[i] for i, c in enumerate(probes)}
        unmet = []
        if not all(last[c["id"]] in _GATE_CONNECTED for c in connect):
            unmet.append("connect")
        if not all(last[c["id"]] in _GATE_NOT_CONNECTED for c in block):
            unmet.append("block")
        if not unmet:
            report.update(opened="condition-met", waited_ms=_ms(started), last=last)
            return report
        pause = min(round_start + gate["interval"], deadline) - loop_time()
        if pause > 0:
            await asyncio.sleep(pause)
    await asyncio.sleep(max(0.0, deadline - loop_time()))
    report.update(opened="bound-reached", unmet=unmet, waited_ms=_ms(started), last=last)
    return report


async def wait_until_ready(plan: Dict[str, Any], started: float) -> Optional[Dict[str, Any]]:
    """The plan's gate, or its fixed warm-up; the report of how long it waited (None: neither)."""
    if plan.get("gate") is not None:
        return await run_gate(plan, started)
    if plan.get("warmup"):
        # A fixed wait, as asked for: the CNI may program a new pod's policy asynchronously.
        await asyncio.sleep(max(0.0, started + plan["warmup"] - time.monotonic()))
        return {"mode": "fixed", "bound_s": plan["warmup"], "opened": "fixed", "waited_ms": _ms(started)}
    return None


async def run_plan(plan: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Run every check concurrently; re-run failed ones up to `attempts` times."""
    resolver = Resolver(ResolvConf.load(plan["resolv_conf"]))
    pending = list(plan["checks"])
    results: Dict[str, Dict[str, Any]] = {}
    for attempt in range(1, plan["attempts"] + 1):
        outcomes = await asyncio.gather(*[_run_one(c, resolver, plan["timeout"]) for c in pending])
        for outcome in outcomes:
            prior = results.get(outcome["id"])
            outcome["history"] = (prior["history"] if prior else []) + [outcome["verdict"]]
            outcome["attempts"] = attempt
            results[outcome["id"]] = outcome
        pending = [c for c in pending if results[c["id"]]["verdict"] != ALLOWED]
        if not pending:
            break
        for c in pending:  # a failed lookup must be asked again, not served from the cache
            resolver.forget(c.get("name") or c.get("host") or _split_url(c["url"])[1])
    return [results[c["id"]] for c in plan["checks"]]


def _raise_fd_limit(needed: int) -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


async def run_agent(plan: Dict[str, Any], started: float) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]]]:
    """The gate (or fixed warm-up), then the real checks: (gate report, results)."""
    gate = await wait_until_ready(plan, started)
    return gate, await run_plan(plan)


def _run_sync(coro: Any) -> Any:
    if hasattr(asyncio, "run"):
        return asyncio.run(coro)
    return asyncio.get_event_loop().run_until_complete(coro)  # pragma: no cover (python < 3.7)


def main(argv: Optional[List[str]] = None) -> int:
    # The gate's bound counts from here: as close to the container's start as the agent gets.
    started = time.monotonic()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.stderr.write("usage: agent.py PLAN_JSON [MORE_PLAN_JSON ...] | PLAN_FILE\n")
        return 2
    # A large plan arrives in several arguments: one argv string is capped at 128 KiB.
    text = "".join(argv)
    if not text.lstrip().startswith("{"):
        try:
            with open(text) as f:
                text = f.read()
        except OSError as exc:
            sys.stderr.write("netprobe-agent: cannot read plan file: %s\n" % exc)
            return 2
    try:
        plan = parse_plan(text)
    except PlanError as exc:
        sys.stderr.write("netprobe-agent: malformed plan: %s\n" % exc)
        return 2
    _raise_fd_limit(4 * len(plan["checks"]) + 64)
    gate, results = _run_sync(run_agent(plan, started))
    out = {"version": RESULT_VERSION, "elapsed_ms": _ms(started), "results": results}  # type: Dict[str, Any]
    if gate is not None:
        out["gate"] = gate
    doc = json.dumps(out, separators=(",", ":"))
    sys.stdout.write(doc + "\n")
    sys.stdout.flush()
    termination_log = os.environ.get("NETPROBE_TERMINATION_LOG", TERMINATION_LOG)
    if len(doc.encode()) <= TERMINATION_LIMIT:
        try:
            with open(termination_log, "w") as f:
                f.write(doc)
        except OSError:
            pass  # not in a pod, or read-only: stdout (the log) carries the result
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
  "gate": {"bound": 2.0, "connect": ["d1"], "block": ["c1"], "timeout": 0.25, "interval": 0.05}
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

Start-up is part of every probe pod's run, and probe images carry no .pyc files for the
standard library, so every import is compiled in every pod. Hence no asyncio (with ssl and
concurrent.futures it costs a pod ~0.3 s of CPU, and 20-50 pods start together): checks run
as generator tasks on a small scheduler over `select.poll` (`Scheduler`), `ssl` is imported
only for a plan with an https check, and `typing` only by the type checker. The same reason
keeps the agent on the C modules under the standard ones: `_socket` (_socket.py imports enum,
selectors, collections: ~25 ms), `select`, `_struct`, `_collections`, and `_json`'s scanner and
encoder (json.decoder imports re: ~40 ms) -- ~55 ms of CPU less per pod, measured in the lab's
image. Where `_json` is missing or differs, the json module stands in (`_json_codec`).
"""

from __future__ import annotations

import _socket
import _struct
import errno
import os
import select
import sys
import time
from _collections import deque  # type: ignore[import-not-found]  # collections/__init__.py: ~8 ms a pod

try:  # heapq.py is mostly pure-Python fallbacks for what _heapq does: not worth compiling in every pod
    from _heapq import heappop, heappush
except ImportError:  # pragma: no cover (an interpreter without the C module)
    from heapq import heappop, heappush

TYPE_CHECKING = False  # importing typing costs a pod ~45 ms of CPU; only mypy needs these names
if TYPE_CHECKING:
    from typing import Any, Deque, Dict, Generator, List, Optional, Sequence, Tuple, Type, TypeVar

    _T = TypeVar("_T")
    # A task or a step of one: yields requests to the Scheduler, is resumed with their answers.
    Step = Generator[Tuple[Any, ...], Any, _T]

PLAN_VERSION = 1
RESULT_VERSION = 1
TERMINATION_LOG = "/dev/termination-log"
TERMINATION_LIMIT = 4096
KINDS = ("tcp", "dns", "http")
GATE_TIMEOUT = 0.25  # a gate check's timeout: in-cluster answers take milliseconds
GATE_INTERVAL = 0.05  # between the starts of two gate rounds (they overlap: each waits up to GATE_TIMEOUT)
# At most this many gate rounds out at once: where the targets answer slowly rather than not at
# all (a loaded cluster DNS), a round every interval would multiply the load on them.
GATE_IN_FLIGHT = 3
GATE_MAX_INTERVAL = 0.2  # the rounds' interval grows to this

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
_READ, _WRITE = select.POLLIN, select.POLLOUT
_LINE_LIMIT = 2 ** 16  # the longest status line read, as asyncio's StreamReader.readline allowed


class PlanError(Exception):
    """The plan is malformed (exit 2)."""


def _bad_constant(name: str) -> Any:
    raise ValueError("%s is not a number JSON allows" % name)


def _not_serialisable(obj: Any) -> Any:
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def _json_codec() -> Tuple[Any, Any]:
    """(loads, dumps): _json's C scanner and encoder when they behave as json's, else json's.

    dumps writes what json.dumps(obj, separators=(",", ":")) writes (ASCII, no spaces)."""
    try:
        import _json

        class _Decoding:  # what _json.make_scanner reads of json.JSONDecoder
            strict = True
            object_hook = object_pairs_hook = None
            parse_float, parse_int, parse_constant = float, int, _bad_constant

        scan = _json.make_scanner(_Decoding)  # type: ignore[arg-type]
        encode = _json.make_encoder(None, _not_serialisable, _json.encode_basestring_ascii, None,
                                    ":", ",", False, False, True)

        def loads(text: str) -> Any:
            try:
                value, end = scan(text.strip(" \t\n\r"), 0)
                if end == len(text.strip(" \t\n\r")):
                    return value
            except (StopIteration, ValueError, SystemError):
                pass
            # Malformed: json says what is wrong (and _json needs json.decoder loaded to say it).
            import json

            return json.loads(text)

        def dumps(obj: Any) -> str:
            return "".join(encode(obj, 0))

        sample = {"a": [1, 2.5, "\u00e9\n", None, True, {}]}
        if dumps(sample) == '{"a":[1,2.5,"\\u00e9\\n",null,true,{}]}' and loads(dumps(sample)) == sample:
            return loads, dumps
    except Exception:  # no _json (another interpreter), or its interface changed: the module
        pass
    import json

    return json.loads, lambda obj: json.dumps(obj, separators=(",", ":"))


_json_loads, _json_dumps = _json_codec()


# ---------------------------------------------------------------------------------- plan


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PlanError("%s: expected a positive number, got %r" % (where, value))
    return float(value)


def parse_plan(text: str) -> Dict[str, Any]:
    """Validate a plan document; raise PlanError naming the first problem."""
    try:
        plan = _json_loads(text)
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
        if cid.startswith("gate:"):
            raise PlanError("%s.id: ids starting with 'gate:' are the gate's own, got %r" % (where, cid))
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
    network = gate.get("network")
    if network is not None:
        try:  # a name that cannot be sent would be "answered" by nobody: refuse it here
            if not isinstance(network, str) or not network.strip("."):
                raise ValueError
            encode_query(1, network, _QTYPE_A)
        except (ValueError, UnicodeError):
            raise PlanError("gate.network: expected a DNS name, got %r" % (network,)) from None
    out["network"] = network
    return out


# ----------------------------------------------------------------------------- scheduler
#
# A task is a generator. It yields one request and is resumed with the answer:
#   ("io", sockets, events, deadline) -> the first socket ready for `events`, None at the deadline
#   ("sleep", deadline)               -> None, once the deadline has passed
#   ("spawn", generator)              -> a new Task, started on the scheduler's next pass
#   ("join", task)                    -> the task's return value (or its exception, raised)
# Steps of a task are sub-generators run with `yield from`; the helpers below spell the requests.


class Task:
    """A running generator; once done, its outcome, which every task that joins it receives."""

    __slots__ = ("done", "error", "gen", "joiners", "socks", "token", "value")

    def __init__(self, gen: Step[Any]) -> None:
        self.gen = gen
        self.done = False
        self.value: Any = None
        self.error: Optional[Exception] = None
        # (task, None): joined, resumed with the outcome; (task, token): waits for the first of
        # several, resumed with this task unless that wait is over (its token moved on)
        self.joiners: List[Tuple[Task, Optional[int]]] = []
        self.token = 0  # counts resumptions: a timer or event for an older request is stale
        self.socks: Sequence[_socket.socket] = ()


class Scheduler:
    """Runs generator tasks until the one given to `run` returns: readiness from poll(2), deadlines from a heap."""

    def __init__(self) -> None:
        self._poll_fds = select.poll()
        self._waiting = {}  # type: Dict[int, Tuple[Task, int, Any]]  # fd -> (task, its token, socket)
        self._ready: Deque[Tuple[Task, Any, Optional[Exception]]] = deque()
        self._timers: List[Tuple[float, int, Task, int]] = []
        self._seq = 0

    def run(self, gen: Step[_T]) -> _T:
        main = self._spawn(gen)
        try:
            while not main.done:
                while self._ready and not main.done:
                    self._step(*self._ready.popleft())
                if not main.done:
                    self._poll()
        finally:
            self._waiting.clear()
        if main.error is not None:
            raise main.error
        return main.value  # type: ignore[no-any-return]

    def _spawn(self, gen: Step[Any]) -> Task:
        task = Task(gen)
        self._ready.append((task, None, None))
        return task

    def _step(self, task: Task, value: Any, error: Optional[Exception]) -> None:
        while True:  # answer what needs no waiting at once, so a spawn-and-store is atomic
            try:
                request = task.gen.send(value) if error is None else task.gen.throw(error)
            except StopIteration as stop:
                self._finish(task, stop.value, None)
                return
            except Exception as exc:
                self._finish(task, None, exc)
                return
            kind = request[0]
            if kind == "spawn":
                value, error = self._spawn(request[1]), None
            elif kind == "join":
                other = request[1]
                if not other.done:
                    other.joiners.append((task, None))
                    return
                value, error = other.value, other.error
            elif kind == "first":  # ("first", tasks, deadline): the first of them to finish, or None
                done = [other for other in request[1] if other.done]
                if done:
                    value, error = done[0], None
                    continue
                for other in request[1]:
                    other.joiners.append((task, task.token))
                self._seq += 1
                heappush(self._timers, (request[-1], self._seq, task, task.token))
                return
            else:
                if kind == "io":
                    task.socks = request[1]
                    for sock in task.socks:
                        fd = sock.fileno()
                        self._poll_fds.register(fd, request[2])
                        self._waiting[fd] = (task, task.token, sock)
                self._seq += 1
                heappush(self._timers, (request[-1], self._seq, task, task.token))
                return

    def _finish(self, task: Task, value: Any, error: Optional[Exception]) -> None:
        task.done, task.value, task.error = True, value, error
        for joiner, token in task.joiners:
            if token is None:  # join: the outcome itself
                self._ready.append((joiner, value, error))
            elif joiner.token == token:  # first: this task, unless another one came first
                self._resume(joiner, task)
        task.joiners = []

    def _resume(self, task: Task, value: Any) -> None:
        for sock in task.socks:
            fd = sock.fileno()
            self._poll_fds.unregister(fd)
            del self._waiting[fd]
        task.socks = ()
        task.token += 1
        self._ready.append((task, value, None))

    def _poll(self) -> None:
        if not self._timers:  # every request carries a deadline: nothing left can ever wake
            raise RuntimeError("scheduler: every task waits on another")
        timeout = max(0.0, self._timers[0][0] - time.monotonic())
        # Readiness first: an answer that arrived by its deadline counts, as with asyncio.wait_for.
        # Any event wakes the waiting task (POLLERR/POLLHUP too: its next call says what happened).
        for fd, _events in self._poll_fds.poll(timeout * 1000):
            waiting = self._waiting.get(fd)
            if waiting is not None and waiting[0].token == waiting[1]:
                self._resume(waiting[0], waiting[2])
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _deadline, _seq, task, token = heappop(self._timers)
            if task.token == token:
                self._resume(task, None)


def wait_ready(socks: Sequence[_socket.socket], events: int, deadline: float) -> Step[Optional[_socket.socket]]:
    """The first of `socks` ready for `events` (_READ / _WRITE: poll's POLLIN / POLLOUT), None at the deadline."""
    return (yield ("io", socks, events, deadline))  # type: ignore[no-any-return]


def _ready(sock: _socket.socket, events: int, deadline: float) -> Step[bool]:
    return (yield ("io", (sock,), events, deadline)) is not None


def sleep_until(deadline: float) -> Step[None]:
    """Wait until time.monotonic() reaches `deadline`."""
    if deadline > time.monotonic():
        yield ("sleep", deadline)


def spawn(gen: Step[_T]) -> Step[Task]:
    """Start `gen` as a task of its own; join it for its result (any number of tasks may)."""
    return (yield ("spawn", gen))  # type: ignore[no-any-return]


def join(task: Task) -> Step[Any]:
    """The task's return value, once it has one; its exception is raised here."""
    return (yield ("join", task))


def first_done(tasks: Sequence[Task], deadline: float) -> Step[Optional[Task]]:
    """The first of `tasks` to finish (one already done: at once), None at the deadline."""
    return (yield ("first", tasks, deadline))  # type: ignore[no-any-return]


def gather(gens: Sequence[Step[_T]]) -> Step[List[_T]]:
    """Run every generator concurrently; their results in the order given."""
    tasks = []
    for gen in gens:
        tasks.append((yield from spawn(gen)))
    results = []
    for task in tasks:
        results.append((yield from join(task)))
    return results


# ------------------------------------------------------------------------------- sockets


class _TimedOut(Exception):
    """A deadline passed inside a multi-step exchange (the verdicts say "timed out")."""


class _IncompleteRead(EOFError):
    """The peer closed before sending what it announced (worded as asyncio's IncompleteReadError)."""

    def __init__(self, partial: bytes, expected: int) -> None:
        super().__init__("%d bytes read on a total of %r expected bytes" % (len(partial), expected))


def _connect_socket(sock: _socket.socket, address: Tuple[Any, ...], deadline: float) -> Step[bool]:
    """Connect a non-blocking socket: True once connected, False at the deadline, else OSError."""
    try:
        sock.connect(address)
        return True
    except (BlockingIOError, InterruptedError):
        pass
    if not (yield from _ready(sock, _WRITE, deadline)):
        return False
    err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
    if err:
        # Worded as asyncio's sock_connect: an "error" verdict's detail stays the same.
        raise OSError(err, "Connect call failed %s" % (address,))
    return True


def _send_all(sock: Any, data: bytes, deadline: float) -> Step[None]:
    while data:
        try:
            data = data[sock.send(data):]
            continue
        except (BlockingIOError, InterruptedError):
            events = _WRITE
        except _TLS_WANTS_READ:
            events = _READ
        except _TLS_WANTS_WRITE:
            events = _WRITE
        if not (yield from _ready(sock, events, deadline)):
            raise _TimedOut()


def _recv(sock: Any, size: int, deadline: float) -> Step[bytes]:
    """Up to `size` bytes, b"" at the end of the stream (a plain or a TLS socket)."""
    while True:
        try:
            return sock.recv(size)  # type: ignore[no-any-return]
        except (BlockingIOError, InterruptedError):
            events = _READ
        except _TLS_WANTS_READ:
            events = _READ
        except _TLS_WANTS_WRITE:
            events = _WRITE  # TLS renegotiation
        if not (yield from _ready(sock, events, deadline)):
            raise _TimedOut()


def _recv_exactly(sock: _socket.socket, size: int, deadline: float) -> Step[bytes]:
    data = b""
    while len(data) < size:
        chunk = yield from _recv(sock, size - len(data), deadline)
        if not chunk:
            raise _IncompleteRead(data, size)
        data += chunk
    return data


def _read_line(sock: Any, deadline: float) -> Step[bytes]:
    """One line, newline included (or what came before the end of the stream), as asyncio's readline."""
    buf = b""
    while True:
        end = buf.find(b"\n")
        if end > _LINE_LIMIT:
            raise ValueError("Separator is found, but chunk is longer than limit")
        if end != -1:
            return buf[:end + 1]
        if len(buf) > _LINE_LIMIT:
            raise ValueError("Separator is not found, and chunk exceed the limit")
        chunk = yield from _recv(sock, _LINE_LIMIT, deadline)
        if not chunk:
            return buf
        buf += chunk


# What a non-blocking TLS socket raises when it must wait for readable / writable: empty
# (catching nothing) until a plan with an https check loads ssl.
_TLS_WANTS_READ: Tuple[Type[BaseException], ...] = ()
_TLS_WANTS_WRITE: Tuple[Type[BaseException], ...] = ()


def _load_tls() -> Any:
    """The ssl module, imported on first use: ~0.1 s of CPU a plan without https need not pay."""
    global _TLS_WANTS_READ, _TLS_WANTS_WRITE
    import ssl

    _TLS_WANTS_READ, _TLS_WANTS_WRITE = (ssl.SSLWantReadError,), (ssl.SSLWantWriteError,)
    return ssl


# ----------------------------------------------------------------------------- resolver


class ResolvConf:
    """The parts of resolv.conf that decide how a name is looked up."""

    def __init__(self, nameservers: List[str], search: List[str], ndots: int) -> None:
        self.nameservers = nameservers
        self.search = search
        self.ndots = ndots

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
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
    def load(cls, path: str) -> ResolvConf:
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
    header = _struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b""
    for label in name.rstrip(".").split("."):
        # idna only where needed: the codec imports stringprep and unicodedata (~4 ms a pod)
        raw = (label.encode("ascii") if label.isascii() else label.encode("idna")) if label else b""
        if not raw or len(raw) > 63:
            raise ValueError("invalid DNS name %r" % name)
        qname += bytes([len(raw)]) + raw
    return header + qname + b"\x00" + _struct.pack(">HH", qtype, 1)


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
    rid, flags, qd, an, _ns, _ar = _struct.unpack(">HHHHHH", msg[:12])
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
        rtype, _rclass, _ttl, rdlen = _struct.unpack(">HHIH", msg[offset:offset + 10])
        offset += 10
        rdata = msg[offset:offset + rdlen]
        offset += rdlen
        if rtype == _QTYPE_A and rdlen == 4:
            addresses.append(_socket.inet_ntop(_socket.AF_INET, rdata))
        elif rtype == _QTYPE_AAAA and rdlen == 16:
            addresses.append(_socket.inet_ntop(_socket.AF_INET6, rdata))
    return rcode, truncated, addresses


class DnsOutcome:
    """What a lookup found: verdict plus detail and addresses."""

    def __init__(self, verdict: str, detail: str, addresses: Sequence[str] = ()) -> None:
        self.verdict, self.detail, self.addresses = verdict, detail, list(addresses)


class Resolver:
    """A stub resolver with a deadline, sharing lookups between concurrent checks."""

    def __init__(self, conf: ResolvConf) -> None:
        self.conf = conf
        self._cache: Dict[str, Task] = {}

    def resolve(self, name: str, timeout: float) -> Step[DnsOutcome]:
        # One task per name, joined by every check that needs it: one lookup on the wire.
        key = name.lower()
        if key not in self._cache:
            self._cache[key] = yield from spawn(self._resolve(name, timeout))
        outcome = yield from join(self._cache[key])
        return outcome  # type: ignore[no-any-return]

    def forget(self, name: str) -> None:
        self._cache.pop(name.lower(), None)

    def _resolve(self, name: str, timeout: float) -> Step[DnsOutcome]:
        deadline = time.monotonic() + timeout
        tried, nodata, servfail = [], False, None
        for fqdn in self.conf.candidates(name):
            tried.append(fqdn)
            for qtype in (_QTYPE_A, _QTYPE_AAAA):
                outcome = yield from self._query(fqdn, qtype, deadline)
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

    def _query(self, fqdn: str, qtype: int, deadline: float) -> Step[Tuple[Any, ...]]:
        """('answer', rcode, addrs) | ('timeout',) | ('malformed', why) for one question."""
        qid = 0
        while not qid:  # ids 1..65535, unpredictable (and no `random` to import)
            qid = int.from_bytes(os.urandom(2), "big")
        try:
            query = encode_query(qid, fqdn, qtype)
        except (ValueError, UnicodeError):
            return ("answer", 3, [])  # a name that cannot exist on the wire
        socks: List[_socket.socket] = []
        servers = self.conf.nameservers
        try:
            for server in servers:  # one unconnected socket per nameserver
                family = _socket.AF_INET6 if ":" in server else _socket.AF_INET
                sock = _socket.socket(family, _socket.SOCK_DGRAM)
                sock.setblocking(False)
                socks.append(sock)
            # Send to the first server; every retransmit interval, also try the next one.
            remaining = deadline - time.monotonic()
            interval = max(0.2, min(1.0, remaining / 3))
            i = 0
            found: Optional[Tuple[Any, ...]] = None
            answered_by = servers[0]
            while found is None:
                try:  # noqa: SIM105 (contextlib: one more module for every pod to compile)
                    socks[i % len(socks)].sendto(query, (servers[i % len(socks)], 53))
                except OSError:
                    pass  # e.g. no route: like silence, as for ICMP errors below
                i += 1
                wait = min(interval, deadline - time.monotonic())
                if wait <= 0:
                    break
                until = time.monotonic() + wait
                while found is None:
                    ready = yield from wait_ready(socks, _READ, until)
                    if ready is None:
                        break
                    answered_by = servers[socks.index(ready)]
                    found = _receive(ready, answered_by, qid)
            if found is None:
                return ("timeout",)
            kind, payload = found
            if kind == "malformed":
                return ("malformed", payload)
            rcode, truncated, addresses = payload
            if truncated:
                # over TCP to the server that answered (truncated), not to the last one asked
                return (yield from self._query_tcp(query, qid, answered_by, deadline))
            return ("answer", rcode, addresses)
        finally:
            for sock in socks:
                sock.close()

    def _query_tcp(self, query: bytes, qid: int, server: str, deadline: float) -> Step[Tuple[Any, ...]]:
        sock = None
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ("timeout",)
            family = _socket.AF_INET6 if ":" in server else _socket.AF_INET
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            sock.setblocking(False)
            address = (server, 53, 0, 0) if family == _socket.AF_INET6 else (server, 53)
            if not (yield from _connect_socket(sock, address, deadline)):
                return ("timeout",)
            step_deadline = time.monotonic() + max(0.01, deadline - time.monotonic())
            yield from _send_all(sock, _struct.pack(">H", len(query)) + query, step_deadline)
            length = _struct.unpack(">H", (yield from _recv_exactly(sock, 2, step_deadline)))[0]
            msg = yield from _recv_exactly(sock, length, time.monotonic() + max(0.01, deadline - time.monotonic()))
            rcode, _, addresses = decode_response(msg, qid)
            return ("answer", rcode, addresses)
        except _TimedOut:
            return ("timeout",)
        except (OSError, _IncompleteRead) as exc:
            return ("malformed", "TCP fallback to %s failed: %s" % (server, exc))
        except ValueError as exc:
            return ("malformed", str(exc))
        finally:
            if sock is not None:
                sock.close()


def _receive(sock: _socket.socket, server: str, qid: int) -> Optional[Tuple[Any, ...]]:
    """Read every datagram waiting on `sock`: ('answer', decoded) | ('malformed', why) | None (keep waiting)."""
    while True:
        try:
            data, addr = sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            continue  # an ICMP error on UDP: treat like silence, glibc does the same without a reply
        if addr[0] != server:
            continue
        try:
            return ("answer", decode_response(data, qid))
        except ValueError as exc:
            if "id mismatch" in str(exc):
                continue  # a late answer to an earlier query: keep waiting
            return ("malformed", str(exc))


# -------------------------------------------------------------------------------- checks


def _is_ip(host: str) -> bool:
    """An IPv4 or IPv6 address (IPv6 with an optional %scope), as ipaddress.ip_address reads one.

    inet_pton rather than ipaddress: the same answers, without ~20 ms of imports in every pod.
    """
    address, sep, scope = host.partition("%")
    for family in (_socket.AF_INET, _socket.AF_INET6):
        if sep and (family == _socket.AF_INET or not scope or "%" in scope):
            continue
        try:
            _socket.inet_pton(family, address)
            return True
        except (OSError, ValueError):
            pass
    return False


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


def _connect(host: str, port: int, timeout: float) -> Step[Tuple[str, str, Optional[_socket.socket]]]:
    """(verdict, detail, socket or None) for a TCP connect to an IP address."""
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    where = "[%s]:%d" % (host, port) if family == _socket.AF_INET6 else "%s:%d" % (host, port)
    address: Tuple[Any, ...] = (host, port, 0, 0) if family == _socket.AF_INET6 else (host, port)
    try:
        if "%" in host:  # fe80::1%eth0: only getaddrinfo turns the scope into the scope id connect needs
            address = _socket.getaddrinfo(host, port, family, _socket.SOCK_STREAM, 0, _socket.AI_NUMERICHOST)[0][4]
        if (yield from _connect_socket(sock, address, deadline)):
            return ALLOWED, "connected to %s" % where, sock
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


def _address_of(
    resolver: Resolver, host: str, timeout: float
) -> Step[Tuple[Optional[str], Optional[Tuple[str, str]]]]:
    """(address, None) or (None, (verdict, detail)) for a host that may be a name."""
    if _is_ip(host):
        return host, None
    outcome = yield from resolver.resolve(host, timeout)
    if outcome.verdict != ALLOWED:
        return None, (outcome.verdict, "DNS failed, port not tested: " + outcome.detail)
    v4 = [a for a in outcome.addresses if ":" not in a]
    return (v4 or outcome.addresses)[0], None


def check_dns(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Step[Tuple[str, str]]:
    outcome = yield from resolver.resolve(check["name"], timeout)
    return outcome.verdict, outcome.detail


def check_tcp(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Step[Tuple[str, str]]:
    address, failure = yield from _address_of(resolver, check["host"], timeout)
    if failure is not None or address is None:
        return failure or (ERROR, "no address")
    verdict, detail, sock = yield from _connect(address, check["port"], timeout)
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


def _tls_handshake(stream: Any, deadline: float) -> Step[None]:
    """Drive a non-blocking TLS handshake to its end; _TimedOut at the deadline."""
    while True:
        try:
            stream.do_handshake()
            return
        except _TLS_WANTS_READ:
            events = _READ
        except _TLS_WANTS_WRITE:
            events = _WRITE
        if not (yield from _ready(stream, events, deadline)):
            raise _TimedOut()


def check_http(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Step[Tuple[str, str]]:
    scheme, host, port, path = _split_url(check["url"])
    address, failure = yield from _address_of(resolver, host, timeout)
    if failure is not None or address is None:
        return failure or (ERROR, "no address")
    verdict, detail, sock = yield from _connect(address, port, timeout)
    if sock is None:
        return verdict, detail
    stream: Any = sock
    try:
        if scheme == "https":
            ssl = _load_tls()
            # Reachability, not trust: a self-signed or private CA must not read as "blocked".
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            stream = ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            yield from _tls_handshake(stream, time.monotonic() + timeout)
        request = "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: netprobe\r\nConnection: close\r\n\r\n" % (path, host)
        deadline = time.monotonic() + timeout
        yield from _send_all(stream, request.encode("ascii", "replace"), deadline)
        line = yield from _read_line(stream, deadline)
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
            return ALLOWED, "HTTP %s from %s:%d" % (parts[1], address, port)
        return ALLOWED, "connected to %s:%d, but no HTTP status line" % (address, port)
    except (_TimedOut, OSError) as exc:  # ssl.SSLError is an OSError
        why = "timed out" if isinstance(exc, _TimedOut) else str(exc)
        return ALLOWED, "connected to %s:%d, but the HTTP exchange failed: %s" % (address, port, why)
    finally:
        stream.close()


_CHECKS = {"dns": check_dns, "tcp": check_tcp, "http": check_http}


def _run_one(check: Dict[str, Any], resolver: Resolver, default_timeout: float) -> Step[Dict[str, Any]]:
    timeout = float(check.get("timeout", default_timeout))
    start = time.monotonic()
    try:
        verdict, detail = yield from _CHECKS[check["kind"]](check, resolver, timeout)
    except Exception as exc:  # a bug or an odd OS error must not lose the other results
        verdict, detail = ERROR, "probe failed: %s: %s" % (type(exc).__name__, exc)
    return {"id": check["id"], "verdict": verdict, "elapsed_ms": _ms(start), "detail": detail}


# ---------------------------------------------------------------------------------- gate

# What a gate check must show: the verdict its expectation asks for (the diff's match table).
_GATE_CONNECTED = (ALLOWED,)
_GATE_NOT_CONNECTED = (BLOCKED, REFUSED, UNREACHABLE, DNS_TIMEOUT)
# The gate's own look at the pod's network (gate.network): one query to the pod's nameserver,
# for which any reply -- a record, NXDOMAIN, SERVFAIL, REFUSED -- shows that its packets flow.
# It is the "connect" condition where the spec expects nothing to connect, and otherwise runs
# beside the rounds until something the gate sent is answered (the report's network_seen).
NETWORK_CHECK = "gate:network"  # its id in the report (agent_protocol.GATE_NETWORK_CHECK); checks cannot take "gate:*"
NETWORK_ANSWERED = "answered"
# Verdicts that show the pod's packets flow: a connection, a DNS reply. Not `refused`: a
# fail-closed enforcer may reject a new pod's packets (kube-router's default deny) rather than
# drop them, and an RST or ICMP error then comes from the enforcer, not the target.
_ANSWERS = (ALLOWED, NXDOMAIN, NETWORK_ANSWERED)


def _network_look(conf: ResolvConf, name: str, timeout: float) -> Step[str]:
    """"answered" if the pod's nameserver replies at all to one query for `name`, else why not."""
    try:
        fqdn = conf.candidates(name)[0]
        encode_query(1, fqdn, _QTYPE_A)  # a name the wire cannot carry is never "answered"
        outcome = yield from Resolver(conf)._query(fqdn, _QTYPE_A, time.monotonic() + timeout)
    except Exception:  # no evidence either way
        return ERROR
    return DNS_TIMEOUT if outcome[0] == "timeout" else NETWORK_ANSWERED


def _shows_connected(check: Dict[str, Any], verdict: str) -> bool:
    """Whether a gate look at a "connect" check saw what the gate waits for."""
    return verdict in ((NETWORK_ANSWERED,) if check["kind"] == "network" else _GATE_CONNECTED)


def _watch_network(network: Dict[str, Any], conf: ResolvConf, timeout: float, report: Dict[str, Any],
                   until: float) -> Step[None]:
    """Look at the pod's network every GATE_MAX_INTERVAL until anything the gate sent was
    answered (report["network_seen"], which rounds set too), the gate is over, or `until`."""
    looked = False
    while not report.get("network_seen") and "opened" not in report:
        started = time.monotonic()
        if looked and started + timeout > until:
            return
        looked = True
        if (yield from _network_look(conf, network["name"], timeout)) == NETWORK_ANSWERED:
            report["network_seen"] = True
            return
        yield from sleep_until(started + GATE_MAX_INTERVAL)


def _gate_probe(check: Dict[str, Any], resolver: Resolver, timeout: float) -> Step[str]:
    """One short look at a check: its verdict only. An http check is looked at as TCP."""
    if check["kind"] == "network":
        return (yield from _network_look(resolver.conf, check["name"], timeout))
    if check["kind"] == "http":
        _scheme, host, port, _path = _split_url(check["url"])
        check = {"id": check["id"], "kind": "tcp", "host": host, "port": port}
    try:
        verdict, _ = yield from _CHECKS[check["kind"]](check, resolver, timeout)
    except Exception:  # a failed look is no evidence either way
        verdict = ERROR
    return verdict


NOT_LOOKED = "not-looked"  # a gate round's block check, when its connect checks did not all connect


def _gate_round(connect: Sequence[Dict[str, Any]], block: Sequence[Dict[str, Any]], conf: ResolvConf,
                timeout: float) -> Step[Dict[str, str]]:
    """One gate round, {check id: verdict}: the connect checks, then -- only once every one of them
    connected -- fresh probes of the block checks.

    In that order, a block check's "not connected" is always seen after the pod's packets were
    seen to flow: probes sent side by side would each sample their own moment (a DNS query is
    sent again after 0.2 s, a name is resolved before its connect), so a round that began while
    everything was dropped could see the connect checks succeed in an un-isolated moment after
    it and the block check's one early SYN dropped -- and open the gate while a deny still connects.
    """
    resolver = Resolver(conf)  # fresh each round: an answer from before must not be reused
    connected = yield from gather([_gate_probe(c, resolver, timeout) for c in connect])
    verdicts = {c["id"]: connected[i] for i, c in enumerate(connect)}
    if all(_shows_connected(c, connected[i]) for i, c in enumerate(connect)):
        blocked = yield from gather([_gate_probe(c, resolver, timeout) for c in block])
        verdicts.update((c["id"], blocked[i]) for i, c in enumerate(block))
    else:
        verdicts.update((c["id"], NOT_LOOKED) for c in block)
    return verdicts


def run_gate(plan: Dict[str, Any], started: float) -> Step[Dict[str, Any]]:
    """Wait until this pod's policy is observably in force, or until the gate's bound passes.

    A new pod's policy is programmed asynchronously. A fail-closed enforcer (Calico) drops
    its packets until then, so an early probe of an allowed target times out -- and an early
    probe of a denied target reads "blocked" whether or not the policy denies it. A fail-open
    enforcer leaves it un-isolated, so an early probe of a denied target connects. The gate
    therefore polls, with short timeouts, checks the expectations say must connect and checks
    they say must not, and opens on the first round in which every "connect" check connects
    (not fail-closed any more, for each of them) and every "block" check does not (not fail-open
    any more): where every polled check already shows what the spec expects of it. Both
    conditions are judged within one round, never across rounds (nor on a round that finished
    after a newer one: the newest look at the pod wins), and in a round the block checks
    are probed only after the connect checks connected, so an enforcer that goes from dropping
    everything to letting everything through before the policy lands cannot open the gate
    between the two. Beside the rounds, the gate looks at the pod's network (gate.network: any
    reply of its nameserver) until anything it sent was answered, for the report's network_seen.
    Where the spec expects nothing of the pod to connect, that look is the "connect" condition,
    and once it is met the gate still waits out the bound (the targets' side of the policy may
    still be on its way). Where the plan has no "block" check, nothing can show a fail-open start
    is over, so the gate waits out the whole bound too, polling its "connect" checks only until
    they connect. The gate only decides when the real checks start: they always run
    afterwards, and their verdicts are reported as observed.

    Within a round the block checks are looked at only after its connect checks all connected
    (`_gate_round`), so its verdicts describe one moment of the pod's life in order. Rounds overlap:
    a new one starts every `interval`, growing to GATE_MAX_INTERVAL, while fewer than
    GATE_IN_FLIGHT are out, without waiting for the previous one's dropped probes to time out.

    Returns the gate's report: waited_ms, opened (condition-met | bound-reached |
    no-candidate), rounds (started), missed (rounds read that missed each condition), the
    conditions not met at the bound (unmet) or without a check (missing), and the verdicts of
    the round that opened it (or the last round read).
    """
    gate = plan["gate"]
    deadline = started + gate["bound"]
    timeout = min(gate["timeout"], max(gate["bound"], 0.01))  # a bound below it still gets a round
    loop_time = time.monotonic
    by_id = {c["id"]: c for c in plan["checks"]}
    connect = [by_id[i] for i in gate["connect"]]
    block = [by_id[i] for i in gate["block"]]
    report = {"mode": "gate", "bound_s": gate["bound"], "connect": gate["connect"],
              "block": gate["block"], "rounds": 0}  # type: Dict[str, Any]
    # Rounds read that did not open the gate, by the condition they missed: "connect" -- a
    # connect check did not connect (a fail-closed start, or a target really blocked); "block"
    # -- a deny connected (a fail-open start, or a real leak the gate polls).
    missed = {"connect": 0, "block": 0}
    missing = [name for name, candidates in (("connect", connect), ("block", block)) if not candidates]
    if missing:
        report["missing"] = missing
    network = None  # type: Optional[Dict[str, Any]]
    if gate.get("network"):
        network = {"id": NETWORK_CHECK, "kind": "network", "name": gate["network"]}
        report.update(network=gate["network"], network_seen=False)
    network_only = not connect and network is not None
    if network_only:
        # Nothing is expected to connect, yet a deny seen while a fail-closed enforcer still
        # drops everything proves nothing: poll the pod's nameserver instead, then -- as a reply
        # shows only this pod's side programmed, not the targets' ingress side (another node's
        # agent learns the new pod's address in its own time) -- wait out the bound as well.
        connect = [network]
        report["connect"] = [NETWORK_CHECK]
    if not connect:
        yield from sleep_until(deadline)
        report.update(opened="no-candidate", waited_ms=_ms(started))
        return report
    conf = ResolvConf.load(plan["resolv_conf"])
    report["missed"] = missed
    if network is not None and not network_only:
        yield from spawn(_watch_network(network, conf, timeout, report, deadline))
    last = {}  # type: Dict[str, str]
    unmet = ["connect", "block"] if block else ["connect"]
    running = []  # type: List[Task]
    numbers = {}  # type: Dict[Task, int]
    newest = 0  # the number of the newest round that finished
    next_round = loop_time()
    while True:
        now = loop_time()
        if now >= next_round and (now + timeout <= deadline or not report["rounds"]) \
                and len(running) < GATE_IN_FLIGHT:
            running.append((yield from spawn(_gate_round(connect, block, conf, timeout))))
            report["rounds"] += 1
            numbers[running[-1]] = report["rounds"]
            # Back off from `interval` to GATE_MAX_INTERVAL: the first rounds find a fast
            # enforcer at once; where targets answer every round (a fail-open start, a leak the
            # gate polls), later ones do not hit them 20 times a second until the bound.
            next_round = now + min(GATE_MAX_INTERVAL, gate["interval"] * (1 + report["rounds"] / 5))
        if not running:
            if loop_time() + timeout > deadline:
                break  # no round can finish inside the bound any more
            yield from sleep_until(next_round)
            continue
        start_at = max(next_round, loop_time())  # never a wake-up in the past: no busy loop
        can_start = len(running) < GATE_IN_FLIGHT and start_at + timeout <= deadline
        wake = start_at if can_start else max(deadline, loop_time())
        finished = yield from first_done(running, wake)
        if finished is None:
            if loop_time() >= deadline:
                break  # a round still out at the bound opens nothing
            continue  # time for the next round
        # Every round done by now, read newest first: only the newest is read, and a round that
        # finishes after a newer one was read is not. A newer round saw the pod later: an older
        # round whose look at a deny was dropped must not open the gate after a newer one saw
        # that deny connect.
        done = [t for t in running if t.done]
        for task in done:
            running.remove(task)
        finished = max(done, key=numbers.__getitem__)
        number = numbers[finished]
        for task in done:
            del numbers[task]
        if number < newest:
            continue
        newest = number
        last = finished.value
        if network is not None and any(v in _ANSWERS for v in last.values()):
            report["network_seen"] = True
        unmet = []
        if not all(_shows_connected(c, last[c["id"]]) for c in connect):
            unmet.append("connect")  # the block checks were not looked at
        elif not all(last[c["id"]] in _GATE_NOT_CONNECTED for c in block):
            unmet.append("block")
        for condition in unmet:
            missed[condition] += 1
        if not unmet:
            if block and not network_only:
                report.update(opened="condition-met", waited_ms=_ms(started), last=last)
                return report
            break  # the network is up; nothing shows the rest is programmed: wait out the bound
    yield from sleep_until(deadline)  # rounds still out finish on their own, unread
    if unmet:
        report.update(opened="bound-reached", unmet=unmet)
    else:
        report["opened"] = "no-candidate"
    report.update(waited_ms=_ms(started), last=last)
    return report


def wait_until_ready(plan: Dict[str, Any], started: float) -> Step[Optional[Dict[str, Any]]]:
    """The plan's gate, or its fixed warm-up; the report of how long it waited (None: neither)."""
    if plan.get("gate") is not None:
        return (yield from run_gate(plan, started))
    if plan.get("warmup"):
        # A fixed wait, as asked for: the CNI may program a new pod's policy asynchronously.
        yield from sleep_until(started + plan["warmup"])
        return {"mode": "fixed", "bound_s": plan["warmup"], "opened": "fixed", "waited_ms": _ms(started)}
    return None


def run_plan(plan: Dict[str, Any]) -> Step[List[Dict[str, Any]]]:
    """Run every check concurrently; re-run failed ones up to `attempts` times."""
    resolver = Resolver(ResolvConf.load(plan["resolv_conf"]))
    pending = list(plan["checks"])
    results: Dict[str, Dict[str, Any]] = {}
    for attempt in range(1, plan["attempts"] + 1):
        outcomes = yield from gather([_run_one(c, resolver, plan["timeout"]) for c in pending])
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


def run_agent(plan: Dict[str, Any], started: float) -> Step[Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]]]]:
    """The gate (or fixed warm-up), then the real checks: (gate report, results)."""
    gate = yield from wait_until_ready(plan, started)
    return gate, (yield from run_plan(plan))


def _has_https(plan: Dict[str, Any]) -> bool:
    return any(c["kind"] == "http" and c["url"].startswith("https://") for c in plan["checks"])


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
    if _has_https(plan):
        _load_tls()  # now, not inside the first https check's timeout while other checks wait
    gate, results = Scheduler().run(run_agent(plan, started))
    out = {"version": RESULT_VERSION, "elapsed_ms": _ms(started), "results": results}  # type: Dict[str, Any]
    if gate is not None:
        out["gate"] = gate
    doc = _json_dumps(out)
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

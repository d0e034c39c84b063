"""A fault-injecting HTTP proxy in front of the cluster's API server, on loopback.

netprobe talks plain HTTP to the proxy; the proxy talks HTTPS to the API server with the
credentials of $KUBECONFIG. Faults come from a script: for each request whose description
matches a rule's predicate, the rule's next action is applied (then requests pass through):
  "429"   answer 429 Too Many Requests with Retry-After: 1
  "500" / "503"   answer that status
  "drop"  close the connection without answering
  "cut"   (watches) relay the first event, then close the stream mid-way
  "gone"  (watches) answer with a watch ERROR event 410 Gone (an expired resourceVersion)
  "gone-mid"  (watches) relay the first event, then an ERROR 410 event, and from then on treat
          the resourceVersions of that stream as expired (as a compacting server does): a watch
          from one of them gets ERROR 410 too, so only a re-list gets the client going again
  "lost"  forward the request (the server commits it), then close the connection unanswered
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

Predicate = Callable[[str, str], bool]  # (method, path with query) -> applies?


@dataclass
class Rule:
    predicate: Predicate
    actions: list[str]


@dataclass
class Script:
    rules: list[Rule] = field(default_factory=list)
    always: str | None = None  # apply to every request (persistent fault)
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, action)
    expired: set[str] = field(default_factory=set)  # resourceVersions "gone-mid" made too old
    lock: threading.Lock = field(default_factory=threading.Lock)

    def action(self, method: str, path: str) -> str:
        with self.lock:
            act = self.always or "pass"
            version = parse_qs(urlsplit(path).query).get("resourceVersion", [""])[-1]
            if "watch=" in path and version in self.expired:
                act = "gone"
            elif self.always is None:
                for rule in self.rules:
                    if rule.actions and rule.predicate(method, path):
                        act = rule.actions.pop(0)
                        break
            self.log.append((method, path, act))
            return act


def _versions(block: bytes) -> set[str]:
    """The resourceVersions of the watch events in a block of the stream."""
    found = set()
    for line in block.splitlines():
        try:
            found.add(str(json.loads(line)["object"]["metadata"]["resourceVersion"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _upstream(kubeconfig: Path) -> tuple[str, int, ssl.SSLContext, dict[str, str]]:
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx_name = cfg["current-context"]
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    url = urlsplit(cluster["server"])
    tmp = Path(tempfile.mkdtemp(prefix="faultproxy-"))

    def material(key: str) -> str | None:
        if f"{key}-data" in (cluster | user):
            path = tmp / key
            path.write_bytes(base64.b64decode((cluster | user)[f"{key}-data"]))
            return str(path)
        return (cluster | user).get(key)

    sslctx = ssl.create_default_context(cafile=material("certificate-authority"))
    cert, key = material("client-certificate"), material("client-key")
    if cert and key:
        sslctx.load_cert_chain(cert, key)
    headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    return url.hostname or "127.0.0.1", url.port or 443, sslctx, headers


@contextmanager
def fault_proxy(kubeconfig: Path, script: Script, out_kubeconfig: Path) -> Iterator[Path]:
    """Run the proxy; yield a kubeconfig pointing at it."""
    host, port, sslctx, auth = _upstream(kubeconfig)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            act = script.action(self.command, self.path)
            if act == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if act in ("429", "500", "503"):
                payload = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "message": f"injected {act}", "code": int(act)}).encode()
                self.send_response(int(act))
                if act == "429":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            gone_event = json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
                "message": "too old resource version (injected)", "code": 410}}).encode() + b"\n"
            if act == "gone":
                event = gone_event
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(event)))
                self.end_headers()
                self.wfile.write(event)
                return
            conn = http.client.HTTPSConnection(host, port, context=sslctx, timeout=120)
            try:
                self._forward(conn, act, body, gone_event)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # netprobe hung up (e.g. a log stream it was done with)
            finally:
                conn.close()

        def _forward(self, conn: http.client.HTTPSConnection, act: str, body: bytes | None,
                     gone_event: bytes) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            headers.update(auth)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            if act == "lost":  # the server has committed it; its answer never reaches the client
                resp.read()
                self.close_connection = True
                self.connection.close()
                return
            query = self.path.lower()
            streaming = "watch=true" in query or "watch=1" in self.path or "follow=true" in query
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            if not streaming:
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = 0
            try:
                while True:
                    block = resp.read1(65536)  # de-chunked by http.client
                    if not block:
                        break
                    self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                    self.wfile.flush()
                    events += block.count(b"\n")
                    if act == "gone-mid" and events >= 1:
                        with script.lock:
                            script.expired.add(parse_qs(urlsplit(self.path).query).get("resourceVersion", [""])[-1])
                            script.expired.update(_versions(block))
                        self.wfile.write(f"{len(gone_event):x}\r\n".encode() + gone_event + b"\r\n0\r\n\r\n")
                        self.wfile.flush()
                        return
                    if act == "cut" and events >= 1:
                        self.close_connection = True
                        self.connection.close()  # mid-stream: no terminating chunk
                        return
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _relay

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out_kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
        "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "none"}}],
        "users": [{"name": "none", "user": {}}]}))
    try:
        yield out_kubeconfig
    finally:
        server.shutdown()
        server.server_close()

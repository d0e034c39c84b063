"""A small authoritative DNS server for the agent's tests: real UDP and TCP packets.

Names in `records` answer with their A records; names in `servfail` answer SERVFAIL; every
other name is NXDOMAIN. UDP answers larger than 512 bytes are truncated (TC bit, no
answers) so that the resolver must retry over TCP, as RFC 1035 says.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Zone:
    records: dict[str, list[str]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    queries: list[tuple[str, str, int]] = field(default_factory=list)  # (proto, name, qtype)
    udp_delay: float = 0.0  # seconds before each UDP answer: a slow nameserver


def _parse_question(msg: bytes) -> tuple[int, str, int, int]:
    qid = struct.unpack(">H", msg[:2])[0]
    offset, labels = 12, []
    while msg[offset]:
        n = msg[offset]
        labels.append(msg[offset + 1:offset + 1 + n].decode())
        offset += 1 + n
    qtype = struct.unpack(">H", msg[offset + 1:offset + 3])[0]
    return qid, ".".join(labels).lower(), qtype, offset + 5


def answer(zone: Zone, msg: bytes, proto: str) -> bytes:
    qid, name, qtype, qend = _parse_question(msg)
    zone.queries.append((proto, name, qtype))
    question = msg[12:qend]
    if name in zone.servfail:
        return struct.pack(">HHHHHH", qid, 0x8182, 1, 0, 0, 0) + question
    if name not in zone.records:
        return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    ips = zone.records[name] if qtype == 1 else []
    body = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
                    for ip in ips)
    full = struct.pack(">HHHHHH", qid, 0x8180, 1, len(ips), 0, 0) + question + body
    if proto == "udp" and len(full) > 512:
        return struct.pack(">HHHHHH", qid, 0x8380, 1, 0, 0, 0) + question  # TC set
    return full


@contextmanager
def dns_server(address: str, zone: Zone, port: int = 53) -> Iterator[Zone]:
    """Serve `zone` on address:port over UDP and TCP until the block exits."""

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            time.sleep(zone.udp_delay)
            sock.sendto(answer(zone, data, "udp"), self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            length = struct.unpack(">H", self.request.recv(2))[0]
            data = b""
            while len(data) < length:
                data += self.request.recv(length - len(data))
            out = answer(zone, data, "tcp")
            self.request.sendall(struct.pack(">H", len(out)) + out)

    socketserver.UDPServer.allow_reuse_address = True
    socketserver.TCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((address, port), Udp)
    tcp = socketserver.ThreadingTCPServer((address, port), Tcp)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (udp, tcp)]
    for t in threads:
        t.start()
    try:
        yield zone
    finally:
        for s in (udp, tcp):
            s.shutdown()
            s.server_close()

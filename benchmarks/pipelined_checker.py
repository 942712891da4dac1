"""Check many OpenBao tokens at once: HTTP/1.1 requests pipelined over a few keep-alive sockets.

``dead([("token", t), ("accessor", a), ...])`` answers, per item, whether OpenBao refuses it:
``lookup-self`` with the token (403 = dead), or ``lookup-accessor`` with the admin token
(400 = no such accessor). Used by the revocation benchmark so that verifying 100 grants costs
a few milliseconds instead of measuring a Python HTTP client.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse


class PipelinedChecker:
    def __init__(self, address: str, admin_token: str, connections: int = 8) -> None:
        u = urlparse(address)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.admin = admin_token
        self.socks = [self._connect() for _ in range(connections)]

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def _request(self, kind: str, value: str) -> bytes:
        head = f"Host: {self.host}:{self.port}\r\n"
        if kind == "token":
            return f"GET /v1/auth/token/lookup-self HTTP/1.1\r\n{head}X-Vault-Token: {value}\r\n\r\n".encode()
        body = json.dumps({"accessor": value}).encode()
        return (
            f"POST /v1/auth/token/lookup-accessor HTTP/1.1\r\n{head}X-Vault-Token: {self.admin}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def dead(self, checks: list[tuple[str, str]]) -> list[bool]:
        lanes: list[list[int]] = [[] for _ in self.socks]
        for i in range(len(checks)):
            lanes[i % len(self.socks)].append(i)
        for sock, lane in zip(self.socks, lanes, strict=True):
            if lane:
                sock.sendall(b"".join(self._request(*checks[i]) for i in lane))
        out = [False] * len(checks)
        for sock, lane in zip(self.socks, lanes, strict=True):
            reader = _Reader(sock)
            for i in lane:
                out[i] = reader.status() in (400, 403)
        return out

    def close(self) -> None:
        for s in self.socks:
            s.close()


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("OpenBao closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n: int) -> None:
        while len(self.buf) < n:
            self._fill()
        self.buf = self.buf[n:]

    def status(self) -> int:
        code = int(self._line().split()[1])
        length, chunked = 0, False
        while line := self._line():
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while (size := int(self._line().split(b";")[0], 16)) > 0:
                self._take(size + 2)
            self._line()
        else:
            self._take(length)
        return code

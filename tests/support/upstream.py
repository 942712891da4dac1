"""A small upstream HTTP API on loopback for the gateway tests: it accepts only the credential the
broker injects (a static key from OpenBao KV, or an OpenBao token it checks at OpenBao itself) and
records what it received."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx


class Upstream:
    def __init__(self, *, api_key: str, openbao_addr: str, big_bytes: int = 64 * 1024) -> None:
        self.api_key = api_key
        self.openbao_addr = openbao_addr
        self.big_bytes = big_bytes
        self.received: list[dict[str, Any]] = []
        self.charges = 0
        self.bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # no Nagle: headers and body go out as two writes
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _auth_ok(self) -> bool:
                if self.headers.get("X-Api-Key") == up.api_key:
                    return True
                query = dict(parse_qsl(self.path.partition("?")[2]))
                if query.get("api_key") == up.api_key:
                    return True
                auth = self.headers.get("Authorization", "")
                if auth == "Basic " + base64.b64encode(f"svc:{up.api_key}".encode()).decode():
                    return True
                if auth.startswith("Bearer "):
                    token = auth.removeprefix("Bearer ")
                    if token == up.api_key:
                        return True
                    r = httpx.get(
                        f"{up.openbao_addr}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=5
                    )
                    return r.status_code == 200
                return False

            def _answer(
                self, status: int, body: bytes, ctype: str = "application/json", extra: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with up.lock:
                    up.received.append(
                        {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                if not self._auth_ok():
                    self._answer(401, b'{"error": "bad credential"}')
                    return
                path = self.path.split("?", 1)[0]
                if self.command == "GET" and path.startswith("/api/v1/customers/"):
                    cid = path.rsplit("/", 1)[1]
                    self._answer(
                        200,
                        json.dumps({"id": cid, "name": "Ada Lovelace"}).encode(),
                        extra={"X-Internal": "not-forwarded"},
                    )
                elif self.command == "POST" and path == "/api/v1/charges":
                    with up.lock:
                        up.charges += 1
                    self._answer(201, json.dumps({"charged": json.loads(body or b"{}")}).encode())
                elif path == "/api/v1/echo":  # a careless API that reflects the caller's credential
                    self._answer(
                        200,
                        json.dumps(
                            {"you_sent": self.headers.get("Authorization") or self.headers.get("X-Api-Key")}
                        ).encode(),
                    )
                elif path == "/api/v1/third-party":  # a secret the broker did not issue
                    planted = b'{"config": "aws_access_key_id = AKIAQWERTYUIOPASDFGH"}'  # nhi-broker: allow
                    self._answer(200, planted)
                elif path == "/api/v1/redirect":
                    self._answer(302, b"", extra={"Location": "http://example.org/steal"})
                elif path == "/api/v1/redirect-local":  # same host, outside the resource's base path
                    self._answer(307, b"", extra={"Location": "/admin/keys"})
                elif path == "/api/v1/gzip":  # a small compressed answer
                    body = gzip.compress(json.dumps({"id": "g", "name": "Ada Lovelace"}).encode())
                    self._answer(200, body, extra={"Content-Encoding": "gzip"})
                elif path == "/api/v1/gzip-bomb":  # 64 KiB on the wire, 64 MiB inflated
                    self._answer(200, up.bomb, ctype="text/plain", extra={"Content-Encoding": "gzip"})
                elif path == "/api/v1/brotli":  # an encoding the gateway does not decode
                    self._answer(200, b"\x0b\x02\x80hello\x03", ctype="text/plain", extra={"Content-Encoding": "br"})
                elif path == "/api/v1/hang":  # takes the request, never answers
                    up.stopping.wait(120)
                elif path == "/api/v1/slow":  # answers, then drips its body slower than the gateway waits
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    for _ in range(100):
                        if up.stopping.wait(0.1):
                            return
                        try:
                            self.wfile.write(b"x" * 10)
                            self.wfile.flush()
                        except OSError:
                            return
                elif path == "/api/v1/big":
                    self._answer(200, b"x" * up.big_bytes, ctype="text/plain")
                else:
                    self._answer(404, b'{"error": "no such endpoint"}')

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

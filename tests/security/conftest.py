"""Fixtures for the red-team regressions (issue 12 §3): a broker whose outbound policy is strict."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support.broker import RunningBroker, start_broker

from broker.openbao_server import OpenBaoServer


@pytest.fixture(scope="module")
def strict_broker(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """A dev broker with production's outbound policy (no loopback, no private ranges)."""
    running = start_broker(tmp_path_factory.mktemp("strict-broker"), openbao, outbound={"allow_loopback": False})
    yield running
    running.stop()


class HostileEndpoint:
    """A loopback HTTP server that counts connections and answers every request with ``body``
    (a marker that must never reach a log, an audit row or an API answer)."""

    def __init__(self, body: bytes, status: int = 403) -> None:
        self.hits = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                endpoint.hits += 1
                length = int(self.headers.get("content-length", 0) or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("content-type", "text/xml")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hostile() -> Iterator[HostileEndpoint]:
    marker = (
        b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>BODY-MARKER-7f3a9c "
        b"AKIAHOSTILEBODY0001</Message></Error></ErrorResponse>"
    )
    server = HostileEndpoint(marker)
    yield server
    server.close()


def resolves_non_global(name: str) -> bool:
    import ipaddress

    try:
        infos = socket.getaddrinfo(name, 443)
    except OSError:
        return False
    return any(not ipaddress.ip_address(i[4][0]).is_global for i in infos)

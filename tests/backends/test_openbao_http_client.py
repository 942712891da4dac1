"""The request path's OpenBao client (``OpenBaoHTTP.call``): keep-alive per thread, and safe.

A loopback server that records what it received stands in for OpenBao where the behaviour
under test is the connection's (the server closing an idle connection, a path prefix behind a
proxy, a certificate that is not trusted); real OpenBao for the calls themselves.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.backends.openbao_http import OpenBaoHTTP
from broker.errors import BrokerError, UpstreamUnavailable
from broker.secrets import Secret


class OneShotServer:
    """Answers each request with a JSON body, then closes the connection without saying so
    (no ``Connection: close``): the client learns it only from the socket."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.targets: list[str] = []
        self.connections = 0
        self.served = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.targets.append(data.split(b" ", 2)[1].decode())
                    body = json.dumps({"data": {"n": len(self.targets)}}).encode()
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()  # closed after one answer, as an idle timeout would
                self.served.set()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def one_shot() -> Iterator[OneShotServer]:
    server = OneShotServer()
    yield server
    server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(one_shot: OneShotServer) -> None:
    http = OpenBaoHTTP(f"http://127.0.0.1:{one_shot.port}", Secret("t"))
    assert http.call("GET", "/v1/sys/one")["data"]["n"] == 1
    one_shot.served.wait(10)
    # the server closed the socket after answering; the next call must notice before sending
    assert http.call("GET", "/v1/sys/two")["data"]["n"] == 2
    assert one_shot.connections == 2
    assert one_shot.targets == ["/v1/sys/one", "/v1/sys/two"]


def test_a_path_prefix_in_the_address_is_kept(one_shot: OneShotServer) -> None:
    http = OpenBaoHTTP(f"http://127.0.0.1:{one_shot.port}/vault/", Secret("t"))
    http.call("POST", "/v1/auth/token/create", body={"ttl": "60s"})
    assert one_shot.targets == ["/vault/v1/auth/token/create"]


def test_an_address_that_is_not_http_is_refused() -> None:
    with pytest.raises(BrokerError, match="http"):
        OpenBaoHTTP("ftp://127.0.0.1:8200", Secret("t"))


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA in the bundle signed."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(private, hashes.SHA256())
    )
    key, cert = directory / "key.pem", directory / "cert.pem"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, cert


def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = OneShotServer(tls)
    try:
        http = OpenBaoHTTP(f"https://127.0.0.1:{server.port}", Secret("t"))
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            http.call("GET", "/v1/sys/health")
        assert server.targets == []  # no request was sent over the unverified connection
    finally:
        server.close()


def test_each_thread_keeps_its_connection_to_real_openbao(openbao) -> None:  # type: ignore[no-untyped-def]
    http = OpenBaoHTTP(openbao.address, openbao.root_token)
    results: list[str] = []

    def create() -> None:
        for _ in range(5):
            auth = http.call("POST", "/v1/auth/token/create", body={"policies": ["default"], "ttl": "60s"})["auth"]
            results.append(auth["client_token"])

    threads = [threading.Thread(target=create) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(set(results)) == 20  # 20 distinct tokens created, no call lost or repeated
    looked = http.call("GET", "/v1/auth/token/lookup-self", token=Secret(results[0]))
    assert looked["data"]["policies"] == ["default"]

"""Unauthenticated resource use (issue 12 §3): the body is capped and the caller authenticated
before a byte of it is read; failures and scans are rate limited; auth.failed is aggregated; a
scan's queue is bounded and a disconnected client's scan is cancelled."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from support.broker import ADMIN_TOKEN, RunningBroker, start_broker

from broker.services.auth_failures import AuthFailureLog

pytestmark = pytest.mark.openbao
MiB = 1024 * 1024


def _raw(broker: RunningBroker) -> socket.socket:
    parts = urlsplit(broker.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def _read_status(sock: socket.socket) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return int(head.split(" ", 2)[1]), head.lower()


@pytest.fixture()
def limited(openbao, tmp_path_factory) -> Iterator[RunningBroker]:
    running = start_broker(
        tmp_path_factory.mktemp("limited"),
        openbao,
        limits={"auth_failures_per_minute": 5, "scans_per_minute": 3, "max_concurrent_scans": 1, "max_queued_scans": 1},
    )
    yield running
    running.stop()


def test_a_huge_declared_body_is_413_before_it_is_sent(broker) -> None:
    with _raw(broker) as sock:
        sock.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bad\r\n"
            b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        status, head = _read_status(sock)  # answered with no body byte sent
    assert status == 413 and "connection: close" in head


def test_a_streamed_body_with_a_bad_token_is_401_before_the_body_is_read(broker) -> None:
    with _raw(broker) as sock:
        sock.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not.a.jwt\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'10\r\n{"profile": "dem\r\n'
        )
        status, head = _read_status(sock)  # the rest of the body never comes
    assert status == 401 and "www-authenticate: bearer" in head


def test_a_streamed_body_past_the_limit_is_413_even_when_authenticated(broker) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"owner": "'
        for _ in range(3):
            yield b"a" * (MiB // 2)
        yield b'"}'

    r = httpx.put(
        f"{broker.url}/v1/admin/agents/big",
        content=chunks(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_body_limits_are_per_route(broker) -> None:
    body = {"text": "a" * (MiB + MiB // 2)}
    over = httpx.post(
        f"{broker.url}/v1/tasks",
        json={"profile": "demo", "purpose": "a" * (MiB + 10)},
        headers={"Authorization": f"Bearer {broker.token()}"},
    )
    assert over.status_code == 413
    scan = httpx.post(f"{broker.url}/v1/scan", json=body, headers={"Authorization": f"Bearer {broker.token()}"})
    assert scan.status_code == 422 and scan.json()["error"]["field"] == "text"  # read (4 MiB route), then refused


def test_auth_failures_from_one_address_are_429_with_retry_after(limited) -> None:
    for _ in range(5):
        assert (
            httpx.post(f"{limited.url}/v1/tasks", json={}, headers={"Authorization": "Bearer x.y.z"}).status_code == 401
        )
    r = httpx.post(
        f"{limited.url}/v1/tasks",
        json={"profile": "demo", "purpose": "p"},
        headers={"Authorization": f"Bearer {limited.token()}"},
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # even a good token waits
    admin = httpx.get(f"{limited.url}/v1/admin/agents", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 429
    rows = [
        e
        for e in limited.container.audit.events(kind="auth.failed", limit=100)
        if e.data.get("reason") == "identity token is malformed"
    ]
    assert len(rows) == 1 and rows[0].data["address"] == "127.0.0.1"  # one row, not five
    limited.container.authenticator.failures.flush()
    rows = [
        e
        for e in limited.container.audit.events(kind="auth.failed", limit=100)
        if e.data.get("reason") == "identity token is malformed"
    ]
    assert [r.data.get("count") for r in rows] == [None, 4]


def test_refused_token_exchanges_count_as_auth_failures(limited) -> None:
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": "x.y.z",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }
    codes = [httpx.post(f"{limited.url}/v1/token", data=form).status_code for _ in range(6)]
    assert codes[:5] == [400] * 5 and codes[5] == 429


def test_auth_failed_rows_are_aggregated_per_source_and_interval(broker) -> None:
    now = [0.0]
    log = AuthFailureLog(broker.container.audit, interval_seconds=60, clock=lambda: now[0])
    before = len(broker.container.audit.events(kind="auth.failed", limit=10000))
    for _ in range(1000):
        log.record(reason="identity token is expired", address="203.0.113.7", path="/v1/tasks")
    log.record(reason="identity token is expired", address="203.0.113.8", path="/v1/tasks")
    now[0] = 61.0
    log.record(reason="identity token is expired", address="203.0.113.7", path="/v1/tasks")  # next window
    rows = broker.container.audit.events(kind="auth.failed", limit=10000)[before:]
    assert [(r.data["address"], r.data.get("count")) for r in rows] == [
        ("203.0.113.7", None),
        ("203.0.113.8", None),
        ("203.0.113.7", 999),
        ("203.0.113.7", None),
    ]


def test_scans_are_rate_limited_per_agent(limited) -> None:
    codes = [
        httpx.post(
            f"{limited.url}/v1/scan", json={"text": "hello"}, headers={"Authorization": f"Bearer {limited.token()}"}
        )
        for _ in range(4)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert int(codes[-1].headers["retry-after"]) >= 1


def test_scan_queue_is_bounded_and_a_disconnected_client_leaves_it(limited) -> None:
    gate = limited.server.config.app.state.scan_gate
    assert (
        httpx.post(
            f"{limited.url}/v1/scan", json={"text": "warm"}, headers={"Authorization": f"Bearer {limited.token()}"}
        ).status_code
        == 200
    )
    loop = gate.loop
    assert loop is not None
    release = asyncio.run_coroutine_threadsafe(_make_event(), loop).result(10)

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    held = asyncio.run_coroutine_threadsafe(hold(), loop)  # a scan that occupies the one slot
    _wait(lambda: gate.running == 1)
    try:
        body = b'{"text": "queued"}'
        queued = _raw(limited)
        queued.sendall(
            b"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {limited.token()}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        _wait(lambda: gate.waiting == 1)
        full = httpx.post(
            f"{limited.url}/v1/scan", json={"text": "no room"}, headers={"Authorization": f"Bearer {limited.token()}"}
        )
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        queued.close()  # the client goes away while its scan waits
        _wait(lambda: gate.cancelled == 1 and gate.waiting == 0)
    finally:
        loop.call_soon_threadsafe(release.set)
        held.result(10)
    assert gate.running == 0


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def _wait(probe, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)

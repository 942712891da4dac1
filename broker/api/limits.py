"""Guards that run before a request body is read (pure ASGI, no per-request task or copy).

Order, for every request that matches a route:

1. **size**: a ``Content-Length`` over the route's limit is 413 at once (default 1 MiB,
   ``limits.max_body_bytes``; per route ``limits.route_max_body_bytes``, e.g. ``/v1/scan``);
2. **authentication**, from the headers alone: a person (the admin token, an API token or an ID
   token; roles are checked by the route's dependencies), or the agent's identity token
   (verified in a worker thread; the agent found is handed to the route, so a token's ``jti`` is
   spent once). An address over its budget of failures (``limits.auth_failures_per_minute``) is
   429 with ``Retry-After`` before any token is looked at; each failure is one
   ``auth.failed`` audit event per source and reason per interval, with a count
   (:mod:`broker.services.auth_failures`). The console's failed sign-ins (the callback) and
   refused forms (CSRF) count in the same budget (:func:`note_auth_failure`);
3. **rate** of ``POST /v1/scan`` per agent and per source address (``limits.scans_per_minute``):
   429 with ``Retry-After``;
4. the **body** is read, counting bytes: a body without ``Content-Length`` that grows past the
   limit is 413 once the limit is crossed (never buffered beyond it); then the route runs.

The limits are per process (each replica keeps its own); put a shared limiter in the load
balancer for fleet-wide limits (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl

import anyio.to_thread
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Match

from broker.config import LimitsSettings
from broker.errors import BrokerError, InvalidInput, Unauthenticated
from broker.text import first_bad
from broker.text import message as text_message

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AuthKind = Literal["person", "agent"]
T = TypeVar("T")

PRINCIPAL: Final = "nhi_principal"  # key in the ASGI scope's ``state``
AUTH_FAILED: Final = "nhi_auth_failed"  # set in the scope's ``state`` by :func:`note_auth_failure`
CONSOLE: Final = "/console"
# routes that authenticate from the body (token exchange): their 400/401 answers count as failures
TOKEN_ENDPOINTS: Final = frozenset({"/v1/token"})
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class TooManyRequests(BrokerError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, details={"retry_after_seconds": math.ceil(retry_after)})
        self.retry_after = math.ceil(retry_after)


class PayloadTooLarge(BrokerError):
    status_code = 413
    code = "payload_too_large"


class MethodNotAllowed(BrokerError):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(
            f"method {method[:16]} is not allowed here; allowed: {', '.join(allowed)}", details={"allowed": allowed}
        )
        self.allowed = allowed


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled evenly. Thread-safe; at most
    ``max_keys`` keys are tracked (the least recently used are forgotten first)."""

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def blocked_for(self, key: str) -> float | None:
        """Seconds until ``key`` may go again, or ``None`` (nothing is consumed)."""
        with self._lock:
            level = self._level(key, self.clock())
        return None if level >= 1.0 else (1.0 - level) / self.rate

    def hit(self, key: str) -> float | None:
        """Consume one request; ``None`` if allowed, else seconds until the next is."""
        with self._lock:
            now = self.clock()
            level = self._level(key, now)
            if level < 1.0:
                self._buckets[key] = (level, now)
                self._buckets.move_to_end(key)
                return (1.0 - level) / self.rate
            self._buckets[key] = (level - 1.0, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return None


class ScanGate:
    """Admission to ``POST /v1/scan``: ``concurrent`` scans run, ``queued`` wait, the rest are
    429. A request whose client disconnects leaves the queue, or has its scan cancelled."""

    def __init__(self, concurrent: int, queued: int) -> None:
        self.concurrent, self.queued = concurrent, queued
        self.running = self.waiting = self.cancelled = self.refused = 0
        self._sem: asyncio.Semaphore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once a scan came in

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrent)
            self.loop = asyncio.get_running_loop()
        return self._sem

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.running + self.waiting >= self.concurrent + self.queued:
            self.refused += 1
            raise TooManyRequests("too many scans in progress; retry later", retry_after=1.0)
        self.waiting += 1
        try:
            await self.semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.semaphore.release()

    async def until_disconnect(self, receive: Receive, work: Coroutine[Any, Any, T]) -> T | None:
        """Run ``work`` (queueing for a slot); ``None`` if the client went away first."""

        async def admitted() -> T:
            try:
                async with self.slot():
                    return await work
            finally:
                work.close()  # never started (queue full, or cancelled while queued): no warning

        job = asyncio.ensure_future(admitted())
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            done, _ = await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
            if job in done:
                return job.result()
            job.cancel()
            self.cancelled += 1
            with suppress(asyncio.CancelledError, TooManyRequests):
                await job
            return None
        finally:
            gone.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class RequestGuard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: Any, *, container: Any, routes: list[APIRoute], limits: LimitsSettings) -> None:
        """``routes``: every API route the app serves (from the routers it includes)."""
        self.app = app
        self.container = container
        self.routes = routes
        self.limits = limits
        self.auth_failures = RateLimiter(limits.auth_failures_per_minute)
        self.scans = RateLimiter(limits.scans_per_minute)
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in limits.trusted_proxies)
        self._kinds: dict[int, AuthKind | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_characters(scope)
        except BrokerError as exc:
            await _send_error(send, exc)
            return
        route = self._route(scope)
        if route is None:
            allowed = self._allowed_methods(scope)
            if allowed:  # the path exists, the method does not: 405 naming every method of the path
                await _send_error(send, MethodNotAllowed(scope["method"], allowed))
            else:  # 404: the router answers, nothing is read
                await self.app(scope, receive, send)
            return
        try:
            receive = await self._guard(scope, receive, route)
        except BrokerError as exc:
            await _send_error(send, exc)
            return
        if route.path_format in TOKEN_ENDPOINTS:  # credentials in the body: count refusals by status
            send = self._count_refusals(send, self._address(scope, _headers(scope)))
        elif _console_sign_in_or_form(route, scope):  # the console notes what failed
            send = self._count_noted(send, scope, self._address(scope, _headers(scope)))
        await self.app(scope, receive, send)

    def _count_noted(self, send: Send, scope: Scope, address: str) -> Send:
        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and scope.get("state", {}).get(AUTH_FAILED):
                self.auth_failures.hit(address)
            await send(message)

        return counting

    def _count_refusals(self, send: Send, address: str) -> Send:
        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 401):
                self.auth_failures.hit(address)
            await send(message)

        return counting

    async def _guard(self, scope: Scope, receive: Receive, route: APIRoute) -> Receive:
        limit = self.limits.route_max_body_bytes.get(route.path_format, self.limits.max_body_bytes)
        headers = _headers(scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise PayloadTooLarge(f"request body: must be at most {limit} bytes")
        address = self._address(scope, headers)
        kind = self._kind(route)
        if kind is not None:
            principal = await self._authenticate(kind, scope, headers.get("authorization"), scope["path"], address)
            scope.setdefault("state", {})[PRINCIPAL] = principal
            if route.path_format == "/v1/scan":
                for key in (f"agent:{principal.agent.name}", f"address:{address}"):
                    wait = self.scans.hit(key)
                    if wait is not None:
                        raise TooManyRequests("too many scan requests; retry later", retry_after=wait)
        elif route.path_format in TOKEN_ENDPOINTS or _console_sign_in_or_form(route, scope):
            wait = self.auth_failures.blocked_for(address)
            if wait is not None:
                raise TooManyRequests("too many failed authentications from this address; retry later", wait)
        if scope["method"] not in _BODY_METHODS:
            return receive
        return await _read_body(receive, limit)

    async def _authenticate(
        self, kind: AuthKind, scope: Scope, authorization: str | None, path: str, address: str
    ) -> Any:
        wait = self.auth_failures.blocked_for(address)
        if wait is not None:
            raise TooManyRequests("too many failed authentications from this address; retry later", wait)
        c = self.container
        try:
            if kind == "person":  # the admin token, a person's API token or ID token (docs/people.md)
                source = f"{scope['method']} {path}"
                return await anyio.to_thread.run_sync(lambda: c.people.authenticate(authorization, source=source))
            return await anyio.to_thread.run_sync(lambda: agent_principal(c, scope, address=address))
        except Unauthenticated:
            self.auth_failures.hit(address)
            raise

    def _address(self, scope: Scope, headers: dict[str, str]) -> str:
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = headers.get("x-forwarded-for")
        if forwarded and self._proxies:
            try:
                trusted = any(ipaddress.ip_address(peer) in net for net in self._proxies)
            except ValueError:
                trusted = False
            if trusted:
                return forwarded.split(",")[-1].strip()[:64] or str(peer)
        return str(peer)

    def _allowed_methods(self, scope: Scope) -> list[str]:
        methods: set[str] = set()
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.PARTIAL:
                methods |= set(route.methods or ())
        return sorted(methods)

    def _route(self, scope: Scope) -> APIRoute | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    def _kind(self, route: APIRoute) -> AuthKind | None:
        key = id(route)
        if key not in self._kinds:
            self._kinds[key] = auth_kind(route)
        return self._kinds[key]


def note_auth_failure(scope: Scope) -> None:
    """A console route's failed sign-in or refused form (bad state, unknown subject, bad ID token,
    CSRF): the guard counts it against the caller's address like a bad bearer token."""
    scope.setdefault("state", {})[AUTH_FAILED] = True


def _console_sign_in_or_form(route: APIRoute, scope: Scope) -> bool:
    """The sign-in callback and every console form post: where people's failures are counted
    (and an address over its budget is 429 before anything is looked at)."""
    path: str = route.path_format
    return path == CONSOLE + "/callback" or (path.startswith(CONSOLE + "/") and scope["method"] == "POST")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _check_characters(scope: Scope) -> None:
    """Path and query parameters are identifiers: no control, invisible or bidi characters
    (a NUL in a task id reaches PostgreSQL as an error, a U+202E reaches the audit trail)."""
    found = first_bad(scope.get("path", ""))
    if found is not None:
        raise InvalidInput("path", text_message(found, free_text=False))
    query = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
        found = first_bad(key) or first_bad(value)
        if found is not None:
            raise InvalidInput(key if first_bad(key) is None else "query", text_message(found, free_text=False))


def auth_kind(route: APIRoute) -> AuthKind | None:
    """``admin`` or ``agent``: the route depends on a dependency marked :func:`authenticates`."""
    return _auth_kind(route.dependant)


_AUTH_DEPENDENCIES: dict[Callable[..., Any], AuthKind] = {}


def authenticates(kind: AuthKind) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Marks a FastAPI dependency as the one that authenticates ``kind`` callers
    (:mod:`broker.api.deps`); routes that depend on it are guarded as such."""

    def mark(dependency: Callable[..., T]) -> Callable[..., T]:
        _AUTH_DEPENDENCIES[dependency] = kind
        return dependency

    return mark


def _auth_kind(dependant: Dependant) -> AuthKind | None:
    for dep in dependant.dependencies:
        kind = _AUTH_DEPENDENCIES.get(dep.call) if dep.call is not None else None
        if kind is not None:
            return kind
        found = _auth_kind(dep)
        if found is not None:
            return found
    return None


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("authorization header must be: Bearer <token>")
    return value.strip()


def request_url(request: Request, public_url: str) -> str:
    """The URL the caller used (DPoP ``htu``): the configured public URL behind a proxy."""
    if public_url:
        return public_url.rstrip("/") + request.url.path
    return str(request.url)


def agent_principal(c: Any, scope: Scope, *, address: str) -> Any:
    """The calling agent (a workload JWT, or a broker access token as Bearer or DPoP-bound), from
    the headers alone; a :class:`broker.services.authn.Principal`."""
    request = Request(scope)
    return c.authenticator.authenticate_http(
        request.headers.get("authorization"),
        request.headers.get("dpop"),
        method=request.method,
        url=request_url(request, c.settings.token_exchange.public_url),
        source=request.url.path,
        address=address,
    )


async def _read_body(receive: Receive, limit: int) -> Receive:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            return _replay([message], receive)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body: must be at most {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _send_error(send: Send, exc: BrokerError) -> None:
    body = json.dumps({"error": exc.to_dict()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, TooManyRequests):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", ", ".join(exc.allowed).encode()))
    if exc.status_code == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if exc.status_code == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

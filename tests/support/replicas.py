"""Real broker replicas: ``nhi-broker serve --config`` subprocesses on one PostgreSQL and one OpenBao.

``start_replicas`` writes one production-shaped config per replica (``dev_mode: false``, secrets
from the environment, the dev issuer's public key as a configured issuer), runs
``nhi-broker bootstrap --demo`` once, starts the replicas and waits for each ``/readyz``.
Agents get identity tokens from the shared dev issuer key; the replay guard lives in the store,
so a token is single-use across every replica.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from broker.identity import DevIssuer
from broker.openbao_server import die_with_parent

ROOT = Path(__file__).parents[2]
ADMIN_TOKEN = "replica-admin-token-0123456789abcdef"
FINGERPRINT_KEY = "7c" * 32
AUDIT_KEY = "a7" * 32


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    port: int
    config: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more `serve` options (e.g. --workers 2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "serve", "--config", str(self.config), *self.args],
            env=self.env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"replica {self.name} not ready in {timeout}s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no `finally`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class ReplicaSet:
    replicas: list[Replica]
    issuer: DevIssuer
    base_env: dict[str, str]
    base_config: dict[str, Any]
    clients: list[httpx.Client] = field(default_factory=list)

    def token(self, subject: str = "demo-agent") -> str:
        return self.issuer.mint(subject)

    def agent_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        for r in self.replicas:
            r.stop()


def replica_env(openbao_token: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHI_BROKER_")}
    env.update(
        {
            "NHI_BROKER_ADMIN_TOKEN": ADMIN_TOKEN,
            "NHI_BROKER_OPENBAO__TOKEN": openbao_token,
            "NHI_BROKER_FINGERPRINT_KEY": FINGERPRINT_KEY,
            "NHI_BROKER_AUDIT__KEY": AUDIT_KEY,
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra or {})
    return env


def base_config(base: Path, *, database_url: str, openbao_addr: str, issuer: DevIssuer) -> dict[str, Any]:
    cfg = issuer.issuer_config()
    return {
        "dev_mode": False,
        "database_url": database_url,
        "host": "127.0.0.1",
        "openbao": {"addr": openbao_addr, "timeout_seconds": 5},
        "issuers": [
            {
                "issuer": cfg.issuer,
                "audiences": list(cfg.audiences),
                "public_key_pem": cfg.public_key_pem,
                "algorithms": list(cfg.algorithms),
            }
        ],
        "revocation_worker_interval_seconds": 0.2,
        "log_format": "json",
        "log_level": "WARNING",
        "data_dir": str(base / "shared"),
    }


def bootstrap(base: Path, config: dict[str, Any], env: dict[str, str], *extra: str) -> str:
    path = base / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "broker.cli", "bootstrap", "--config", str(path), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bootstrap failed: {out.stdout[-2000:]} {out.stderr[-3000:]}")
    return out.stdout


def make_replica(
    base: Path, name: str, config: dict[str, Any], env: dict[str, str], port: int | None = None
) -> Replica:
    port = port or free_port()
    data_dir = base / name
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "broker.yaml"
    path.write_text(yaml.safe_dump({**config, "port": port, "data_dir": str(data_dir)}))
    return Replica(name=name, port=port, config=path, env=env, log=data_dir / "serve.log")


def start_replicas(
    base: Path,
    n: int,
    *,
    database_url: str,
    openbao_addr: str,
    openbao_token: str,
    seed: bool = True,
    extra_config: Mapping[str, Any] | None = None,
) -> ReplicaSet:
    base.mkdir(parents=True, exist_ok=True)
    issuer = DevIssuer.load_or_create(base / "issuer")
    config = {
        **base_config(base, database_url=database_url, openbao_addr=openbao_addr, issuer=issuer),
        **(extra_config or {}),
    }
    env = replica_env(openbao_token)
    if seed:
        bootstrap(base, config, env, "--demo")
    replicas = [make_replica(base, f"r{i}", config, env) for i in range(n)]
    rs = ReplicaSet(replicas=replicas, issuer=issuer, base_env=env, base_config=config)
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            r.wait_ready()
    except Exception:
        rs.stop()
        raise
    return rs

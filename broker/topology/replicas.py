"""Broker replicas: ``nhi-broker serve --config`` processes, one config file each.

Secrets reach a replica through its environment (``NHI_BROKER_ADMIN_TOKEN``,
``NHI_BROKER_FINGERPRINT_KEY``, ``NHI_BROKER_OPENBAO__APPROLE_SECRET_ID`` or ``..__TOKEN``), never
through the config file or the command line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from broker.errors import UpstreamUnavailable
from broker.topology.process import Child, clean_env


@dataclass
class ServeReplica:
    name: str
    port: int
    child: Child
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def create(
        cls, directory: Path, name: str, port: int, settings: Mapping[str, Any], secrets_env: Mapping[str, str]
    ) -> ServeReplica:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**settings, "port": port}))
        config.chmod(0o600)
        child = Child(
            name,
            [sys.executable, "-m", "broker.cli", "serve", "--config", str(config)],
            directory / f"{name}.log",
            env=clean_env(secrets_env),
        )
        return cls(name=name, port=port, child=child, config=config)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        self.child.start()

    def wait_ready(self, timeout: float = 120.0, restarts: int = 3) -> None:
        """Wait for ``/readyz``; a replica that exits while starting (e.g. OpenBao electing a leader
        just then) is started again, like a supervisor (systemd, Kubernetes) would."""
        for attempt in range(restarts + 1):
            try:
                self.child.wait_for(self.ready, timeout, "ready (/readyz)")
                return
            except UpstreamUnavailable:
                if self.child.alive() or attempt == restarts:
                    raise
                time.sleep(1.0)
                self.child.start()

    def stop(self) -> None:
        self.child.stop()

    def kill(self) -> None:
        self.child.kill()

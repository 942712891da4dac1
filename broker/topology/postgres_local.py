"""PostgreSQL for ``up --ha``: the configured URL, or a private cluster from the Debian binaries.

The private cluster lives in ``DIR`` (under the data dir), listens on 127.0.0.1 only, and runs as
the ``postgres`` OS user when we are root (PostgreSQL refuses to run as root). ``pg_hba.conf``
trusts the ``postgres`` superuser from loopback and asks every other role for a SCRAM password
(the demo's dynamic database logins prove their issued password that way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from broker.errors import BrokerError, UpstreamUnavailable

DATABASE = "nhi_broker"


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return versions[0].parent if versions else None


@dataclass
class LocalPostgres:
    dir: Path
    port: int
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *argv], capture_output=True, timeout=timeout, check=False)  # noqa: S603

    @classmethod
    def create(cls, directory: Path, port: int) -> LocalPostgres:
        bindir = _bin_dir()
        if bindir is None:
            raise BrokerError("no PostgreSQL binaries (initdb, pg_ctl): install postgresql, or pass --database-url")
        return cls(dir=directory, port=port, bindir=bindir)

    def start(self) -> None:
        data, sock = self.dir / "data", self.dir / "sock"
        root = os.geteuid() == 0
        if root and shutil.which("runuser") is None:
            raise BrokerError("running as root needs runuser to start PostgreSQL as the postgres user")
        self.dir.mkdir(parents=True, exist_ok=True)
        sock.mkdir(exist_ok=True)
        if root:  # the postgres user must reach its directory: traverse-only on the parents
            for p in (self.dir.parent, self.dir):
                p.chmod(p.stat().st_mode | 0o111)
            for p in (self.dir, sock):
                shutil.chown(p, user="postgres")
        if not (data / "PG_VERSION").exists():
            init = self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--no-sync",
                "--auth=trust",
                "-E",
                "UTF8",
            )
            if init.returncode != 0:
                raise BrokerError(f"initdb failed: {init.stderr.decode(errors='replace')[:300]}")
            (data / "pg_hba.conf").write_text(
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
            )
        start = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.dir / "postgres.log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {sock} -c fsync=off -c max_connections=500",
            "start",
        )
        if start.returncode != 0:
            raise BrokerError(
                f"pg_ctl start failed: {start.stderr.decode(errors='replace')[:300]}; see {self.dir / 'postgres.log'}"
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise UpstreamUnavailable(f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections")

    def conninfo(self, dbname: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres connect_timeout=5"

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop", timeout=60)

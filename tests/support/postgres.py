"""A real PostgreSQL for tests: the one at 127.0.0.1:5432 if it answers, else a private cluster.

The private cluster runs as the ``postgres`` OS user (PostgreSQL refuses root) from a directory
under plain ``/tmp`` (pytest's tmp dirs are closed to other users), loopback only, ``fsync=off``.
Its ``pg_hba.conf`` trusts only the ``postgres`` superuser and asks every other role for a
SCRAM password, so a test there also proves the issued password is the one that logs in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .ports import free_port


@dataclass
class PostgresServer:
    host: str
    port: int
    superuser: str = "postgres"
    private_dir: Path | None = None
    _pg_ctl: str | None = field(default=None, repr=False)

    def conninfo(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        info = f"host={self.host} port={self.port} dbname={dbname} user={user or self.superuser} connect_timeout=5"
        if password is not None:
            info += f" password={password}"
        return info

    def connection_url(self, dbname: str) -> str:
        """The OpenBao connection URL (templated: OpenBao fills in its own user and password)."""
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@{self.host}:{self.port}/{dbname}?sslmode=disable"

    def stop(self) -> None:
        if self.private_dir is None or self._pg_ctl is None:
            return
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                self._pg_ctl,
                "-D",
                str(self.private_dir / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(self.private_dir, ignore_errors=True)


def _answers(host: str, port: int) -> bool:
    try:
        with psycopg.connect(f"host={host} port={port} dbname=postgres user=postgres connect_timeout=2"):
            return True
    except psycopg.Error:
        return False


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return versions[0].parent if versions else None


def find_or_start(host: str = "127.0.0.1", port: int = 5432) -> PostgresServer | str:
    """A running server, or the reason there is none (for ``pytest.skip``).
    ``NHI_TEST_PG_PRIVATE=1`` skips the shared server and always starts a private cluster."""
    if os.environ.get("NHI_TEST_PG_PRIVATE") != "1" and _answers(host, port):
        return PostgresServer(host=host, port=port)
    bindir = _bin_dir()
    if bindir is None:
        return "no PostgreSQL at 127.0.0.1:5432 and no PostgreSQL binaries (initdb/pg_ctl) to start one"
    if shutil.which("runuser") is None or os.geteuid() != 0:
        return "no PostgreSQL at 127.0.0.1:5432 and cannot start one as the postgres user (needs root and runuser)"
    base = Path(tempfile.mkdtemp(prefix="nhi-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    shutil.chown(base, user="postgres")
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    shutil.chown(sock, user="postgres")
    run = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [
            *run,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--no-sync",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        return f"initdb failed: {init.stderr.decode(errors='replace')[:300]}"
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = free_port()
    server = PostgresServer(host="127.0.0.1", port=port, private_dir=base, _pg_ctl=str(bindir / "pg_ctl"))
    start = subprocess.run(
        [
            *run,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "pg.log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off",
            "start",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if start.returncode != 0:
        server.stop()
        return f"pg_ctl start failed: {start.stderr.decode(errors='replace')[:300]}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _answers("127.0.0.1", port):
            return server
        time.sleep(0.1)
    server.stop()
    return "private PostgreSQL cluster did not accept connections in 60 s"

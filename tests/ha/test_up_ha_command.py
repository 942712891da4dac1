"""`nhi-broker up --ha` as a user runs it: one command starts PostgreSQL (a private cluster from the
Debian binaries), a 3-node OpenBao raft cluster, HAProxy and the replicas; Ctrl-C stops them all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import hvac
import pytest

from broker.topology.ports import free_block

pytestmark = [pytest.mark.ha, pytest.mark.openbao, pytest.mark.slow]
BIN = Path(sys.executable).parent


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.skipif(
    shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="no PostgreSQL binaries to start the private cluster",
)
def test_up_ha_starts_the_topology_serves_through_haproxy_and_stops_everything() -> None:
    data_dir = Path("/tmp") / f"nhi-upha-{uuid.uuid4().hex[:8]}"
    port = free_block()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("NHI_BROKER_DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(BIN / "nhi-broker"), "up", "--ha", "--replicas", "2", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not (data_dir / "up.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "up.json never appeared"
            time.sleep(0.2)
        info = json.loads((data_dir / "up.json").read_text())
        assert {"url", "admin_token", "openbao_addr", "openbao_token", "replicas", "openbao_nodes"} <= set(info)
        assert info["url"] == f"http://127.0.0.1:{port}" and len(info["replicas"]) == 2
        assert len(info["openbao_nodes"]) == 3
        assert oct((data_dir / "up.json").stat().st_mode & 0o777) == "0o600"
        children = _children_of(proc.pid)
        assert len(children) >= 6  # 3 OpenBao nodes, HAProxy, 2 replicas (+ PostgreSQL, started by pg_ctl)
        # a raft cluster, not a dev server: one active node, two standbys, all voters
        codes = sorted(httpx.get(f"{n}/v1/sys/health").status_code for n in info["openbao_nodes"])
        assert codes == [200, 429, 429]
        bao = hvac.Client(url=info["openbao_addr"], token=info["openbao_token"])
        servers = bao.adapter.get("/v1/sys/storage/raft/configuration")["data"]["config"]["servers"]
        assert len(servers) == 3 and all(s["voter"] for s in servers)
        # the demo works through the load balancer, on both replicas
        token = subprocess.run(
            [str(BIN / "nhi-broker"), "agent", "token", "demo-agent", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        r = httpx.post(
            f"{info['url']}/v1/tasks",
            json={"profile": "demo", "purpose": "ha smoke"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201, r.text
        for replica in info["replicas"]:
            assert httpx.get(f"{replica}/readyz").status_code == 200
        names = {
            x["name"]
            for x in httpx.get(
                f"{info['url']}/v1/admin/resources", headers={"Authorization": f"Bearer {info['admin_token']}"}
            ).json()["items"]
        }
        assert {"demo-data", "demo-secrets", "demo-kv"} <= names
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
        assert "stopped" in err
        assert not (data_dir / "up.json").exists()
        assert not (data_dir / "postgres" / "data" / "postmaster.pid").exists()  # PostgreSQL stopped too
        for pid in children:  # nothing it started outlives it
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pg_ctl = shutil.which("pg_ctl") or next(iter(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")), None)
        if pg_ctl and (data_dir / "postgres" / "data" / "postmaster.pid").exists():
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(pg_ctl),
                    "-D",
                    str(data_dir / "postgres" / "data"),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(data_dir, ignore_errors=True)

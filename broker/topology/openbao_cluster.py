"""A 3-node OpenBao raft cluster from the ``bao`` binary (no dev mode).

Each node has raft storage under ``DIR/nodeN/raft`` and a ``retry_join`` to the others. The
cluster is sealed by a ``seal "static"`` key kept in ``DIR/seal.key`` (0600), so every node unseals
itself at start and after a restart; node 0 carries an ``initialize`` block that creates a known
admin token (``DIR/root.token``, 0600) on the first start, so no ``operator init``/``unseal`` call
is needed. (A static seal key on disk is for a machine-local topology: a production cluster uses a
KMS/transit seal or Shamir keys held by operators; docs/deploy.md.)

Ready means: a leader answers ``/v1/sys/health`` with 200 and autopilot reports the cluster
healthy with a failure tolerance of at least one node (all three are voters), so stopping the
leader elects another.
"""

from __future__ import annotations

import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from broker.errors import UpstreamUnavailable
from broker.openbao_server import bao_binary
from broker.secrets import Secret
from broker.topology.process import Child


@dataclass
class BaoNode:
    node_id: str
    port: int
    child: Child

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> int | None:
        """200 active, 429 standby, 503 sealed, 501 uninitialised; None when unreachable."""
        try:
            return httpx.get(f"{self.address}/v1/sys/health", timeout=1.0).status_code
        except httpx.HTTPError:
            return None


@dataclass
class OpenBaoCluster:
    dir: Path
    nodes: list[BaoNode]
    root_token: Secret = field(repr=False)

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    @classmethod
    def create(cls, directory: Path, ports: list[int]) -> OpenBaoCluster:
        """Write the configs (keeping an existing cluster's key, token and data)."""
        directory.mkdir(parents=True, exist_ok=True)
        seal_key = _secret_file(directory / "seal.key", lambda: secrets.token_hex(32))
        token = _secret_file(directory / "root.token", lambda: "hvs-ha-" + secrets.token_urlsafe(24))
        nodes = []
        for i, port in enumerate(ports):
            node_dir = directory / f"node{i}"
            (node_dir / "raft").mkdir(parents=True, exist_ok=True)
            joins = "".join(
                f'  retry_join {{ leader_api_addr = "http://127.0.0.1:{p}" }}\n' for j, p in enumerate(ports) if j != i
            )
            init = (
                ""
                if i
                else f"""
initialize "admin" {{
  request "admin-token" {{
    operation = "update"
    path = "auth/token/create-orphan"
    data = {{ id = "{token}", policies = ["root"] }}
  }}
}}
"""
            )
            config = node_dir / "bao.hcl"
            config.write_text(f"""storage "raft" {{
  path = "{node_dir / "raft"}"
  node_id = "node{i}"
  performance_multiplier = 1
{joins}}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{port + 1}"
  tls_disable = true
}}
seal "static" {{
  current_key_id = "k1"
  current_key = "{seal_key}"
}}
{init}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{port + 1}"
disable_mlock = true
""")
            config.chmod(0o600)
            child = Child(f"openbao node{i}", [bao_binary(), "server", f"-config={config}"], node_dir / "bao.log")
            nodes.append(BaoNode(node_id=f"node{i}", port=port, child=child))
        return cls(dir=directory, nodes=nodes, root_token=Secret(token))

    def start(self, timeout: float = 90.0) -> None:
        for n in self.nodes:
            n.child.start()
        self.wait_leader(timeout)
        self._tune_autopilot()
        self.wait_healthy(timeout)

    def stop(self) -> None:
        for n in self.nodes:
            n.child.stop()

    def leader(self) -> BaoNode | None:
        for n in self.nodes:
            if n.child.alive() and n.health() == 200:
                return n
        return None

    def wait_leader(self, timeout: float = 60.0) -> BaoNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        logs = " ".join(str(n.child.log) for n in self.nodes)
        raise UpstreamUnavailable(f"no OpenBao leader after {timeout:.0f}s; see {logs}")

    def _admin(self, method: str, path: str, json: dict[str, object] | None = None) -> httpx.Response:
        leader = self.wait_leader()
        return httpx.request(
            method,
            f"{leader.address}/v1/{path}",
            json=json,
            timeout=5.0,
            headers={"X-Vault-Token": self.root_token.reveal()},
        )

    def _tune_autopilot(self) -> None:
        # promote joined nodes to voters after 2 s of health instead of 10 s
        self._admin(
            "POST",
            "sys/storage/raft/autopilot/configuration",
            {"server_stabilization_time": "2s", "last_contact_threshold": "5s"},
        ).raise_for_status()

    def autopilot(self) -> dict[str, object]:
        data: dict[str, object] = self._admin("GET", "sys/storage/raft/autopilot/state").json()["data"]
        return data

    def wait_healthy(self, timeout: float = 90.0) -> None:
        """Every live node a voter and the cluster able to lose one (failure tolerance >= 1)."""
        deadline = time.monotonic() + timeout
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                state = self.autopilot()
                tolerance = state.get("failure_tolerance")
                if state.get("healthy") and isinstance(tolerance, int) and tolerance >= 1:
                    return
            except (httpx.HTTPError, KeyError, ValueError, UpstreamUnavailable):
                pass
            time.sleep(0.2)
        raise UpstreamUnavailable(
            f"OpenBao raft cluster not healthy after {timeout:.0f}s "
            f"(autopilot: healthy={state.get('healthy')}, "
            f"failure_tolerance={state.get('failure_tolerance')})"
        )

    def stop_node(self, node: BaoNode, *, sigkill: bool = False) -> None:
        if sigkill:
            node.child.kill()
        else:
            node.child.signal(signal.SIGTERM)
            node.child.stop()

    def start_node(self, node: BaoNode) -> None:
        node.child.start()


def _secret_file(path: Path, make: object) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.chmod(0o600)
        assert callable(make)
        path.write_text(str(make()))
    return path.read_text().strip()

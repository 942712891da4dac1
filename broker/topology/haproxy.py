"""HAProxy in front of the replicas (and of the OpenBao nodes): the topology's single URLs.

- ``broker``: round robin over the replicas, health-checked on ``/readyz`` every 500 ms (down after
  2 failures, up after 2 successes); a connection that fails before reaching a replica is retried on
  another (``retry-on conn-failure`` + ``redispatch``: safe, the request never arrived). A request
  already sent is never replayed: a credential request is not idempotent, and a replica marked down
  finishes the requests it has (no ``shutdown-sessions``: a replica turns unready when OpenBao
  does, and its in-flight answers — 503 or a real credential — must reach the agent). With no replica ready
  the answer is the broker's own JSON 503.
- ``replicas_live``: when no replica is *ready* (typically: OpenBao has no leader, so every replica's
  ``/readyz`` fails at once), requests go to replicas that are merely *alive* (``/healthz``). They
  answer credential requests with their own 503 (never a credential on a guess) but still end tasks
  and queue revocations, which complete when OpenBao is back.
- ``openbao``: only the active node passes ``/v1/sys/health`` (standbys answer 429), so the broker
  always talks to the leader and follows a leader change within a check interval (300 ms).
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BrokerError
from broker.topology.process import Child

# a replica that dies mid-request (HAProxy would say 502): the request may or may not have taken
# effect; the agent retries (the task lock and the chain make that safe) — never a bare 502
REPLICA_FAILED = (
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\n"
    "connection: close\r\n\r\n"
    '{"error":{"code":"upstream_unavailable","message":"the broker replica handling the request failed; '
    'retry (load balancer)"}}\n'
)
NO_REPLICA = (
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncache-control: no-store\r\n"
    "connection: close\r\n\r\n"
    '{"error":{"code":"upstream_unavailable","message":"no broker replica is ready (load balancer)"}}\n'
)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        raise BrokerError("haproxy is not installed (Debian: apt-get install -y haproxy)")
    return found


def render(
    *, port: int, replicas: list[int], openbao_port: int, openbao_nodes: list[int], errorfile: Path, stats_socket: Path
) -> str:
    servers = "\n".join(f"  server r{i} 127.0.0.1:{p} check" for i, p in enumerate(replicas))
    bao = "\n".join(f"  server node{i} 127.0.0.1:{p} check" for i, p in enumerate(openbao_nodes))
    return f"""# written by nhi-broker up --ha (docs/deploy.md explains every line)
global
  maxconn 4096
  stats socket {stats_socket} mode 600 level admin

defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  timeout check 2s
  retries 2
  option redispatch 1
  retry-on conn-failure

frontend broker
  bind 127.0.0.1:{port}
  use_backend replicas_live if {{ nbsrv(replicas) eq 0 }}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2
  errorfile 503 {errorfile}
  errorfile 502 {errorfile.with_name("502.http")}
  errorfile 504 {errorfile.with_name("502.http")}
{servers}

backend replicas_live
  balance roundrobin
  option httpchk GET /healthz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 1
  errorfile 503 {errorfile}
  errorfile 502 {errorfile.with_name("502.http")}
  errorfile 504 {errorfile.with_name("502.http")}
{servers}

frontend openbao
  bind 127.0.0.1:{openbao_port}
  default_backend openbao

backend openbao
  option httpchk GET /v1/sys/health
  http-check expect status 200
  default-server inter 300ms fall 1 rise 1 on-marked-down shutdown-sessions
{bao}
"""


@dataclass
class HAProxy:
    child: Child
    port: int
    openbao_port: int
    stats_socket: Path

    @classmethod
    def create(
        cls, directory: Path, *, port: int, replicas: list[int], openbao_port: int, openbao_nodes: list[int]
    ) -> HAProxy:
        directory.mkdir(parents=True, exist_ok=True)
        errorfile = directory / "503.http"
        errorfile.write_text(NO_REPLICA)
        (directory / "502.http").write_text(REPLICA_FAILED)
        config = directory / "haproxy.cfg"
        socket_path = directory / "haproxy.sock"
        config.write_text(
            render(
                port=port,
                replicas=replicas,
                openbao_port=openbao_port,
                openbao_nodes=openbao_nodes,
                errorfile=errorfile,
                stats_socket=socket_path,
            )
        )
        child = Child("haproxy", [haproxy_binary(), "-db", "-f", str(config)], directory / "haproxy.log")
        return cls(child=child, port=port, openbao_port=openbao_port, stats_socket=socket_path)

    def start(self, timeout: float = 20.0) -> None:
        self.child.start()

        def listening() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        self.child.wait_for(listening, timeout, "listening")

    def server_states(self, backend: str = "replicas") -> dict[str, str]:
        """``{server: "UP" | "DOWN" | ...}`` of ``backend``, from HAProxy's stats socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        out: dict[str, str] = {}
        for line in data.decode().splitlines()[1:]:
            cols = line.split(",")
            if len(cols) > 17 and cols[0] == backend and cols[1] not in ("FRONTEND", "BACKEND"):
                out[cols[1]] = cols[17].split(" ")[0]
        return out

    def stop(self) -> None:
        self.child.stop()

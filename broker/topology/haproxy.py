"""HAProxy in front of the replicas (and of the OpenBao nodes): the topology's single URLs.

- ``broker``: round robin over the replicas, health-checked on ``/readyz`` every 500 ms (down after
  2 failures, up after 2 successes); a connection that fails before reaching a replica is retried on
  another (``retry-on conn-failure`` + ``redispatch``: safe, the request never arrived). A request
  already sent is never replayed: a credential request is not idempotent. With no replica ready
  the answer is the broker's own JSON 503.
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


def render(*, port: int, replicas: list[int], openbao_port: int, openbao_nodes: list[int], errorfile: Path) -> str:
    servers = "\n".join(f"  server r{i} 127.0.0.1:{p} check" for i, p in enumerate(replicas))
    bao = "\n".join(f"  server node{i} 127.0.0.1:{p} check" for i, p in enumerate(openbao_nodes))
    return f"""# written by nhi-broker up --ha (docs/deploy.md explains every line)
global
  maxconn 4096

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
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
  errorfile 503 {errorfile}
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

    @classmethod
    def create(cls, directory: Path, *, port: int, replicas: list[int], openbao_port: int,
               openbao_nodes: list[int]) -> HAProxy:
        directory.mkdir(parents=True, exist_ok=True)
        errorfile = directory / "503.http"
        errorfile.write_text(NO_REPLICA)
        config = directory / "haproxy.cfg"
        config.write_text(render(port=port, replicas=replicas, openbao_port=openbao_port,
                                 openbao_nodes=openbao_nodes, errorfile=errorfile))
        child = Child("haproxy", [haproxy_binary(), "-db", "-f", str(config)], directory / "haproxy.log")
        return cls(child=child, port=port, openbao_port=openbao_port)

    def start(self, timeout: float = 20.0) -> None:
        self.child.start()

        def listening() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        self.child.wait_for(listening, timeout, "listening")

    def stop(self) -> None:
        self.child.stop()

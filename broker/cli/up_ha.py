"""``nhi-broker up --ha``: run the topology of ``broker.topology.stack`` until Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from broker.topology.stack import HAStack

console = Console(stderr=True, soft_wrap=True)


def run_ha(data_dir: Path, *, port: int, replicas: int, database_url: str | None) -> None:
    stack = HAStack(data_dir=data_dir, port=port, replica_count=replicas, database_url=database_url)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        console.print(f"starting: PostgreSQL, 3 OpenBao raft nodes, HAProxy, {replicas} replica(s) ...")
        stack.start()
        stack.write_up_json()
        _summary(stack)
        while not stop.wait(1.0):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        stack.stop()
        console.print(
            "[bold]nhi-broker stopped[/bold] (replicas, HAProxy, OpenBao nodes"
            + (", PostgreSQL" if stack.postgres is not None else "")
            + ")"
        )


def _summary(stack: HAStack) -> None:
    dd = str(stack.data_dir)
    assert stack.openbao is not None
    replicas = "\n".join(f"               {r.url}   log {r.child.log}" for r in stack.replicas)
    nodes = "  ".join(stack.openbao.addresses)
    pg = "" if stack.pg_note is None else f"; demo-db NOT configured: {stack.pg_note}"
    console.print(f"""
[bold green]nhi-broker is up (HA)[/bold green]
  API (HAProxy)   {stack.url}   (OpenAPI docs: {stack.url}/docs)
  replicas
{replicas}
  OpenBao (HAProxy to the active node)  {stack.openbao_addr}
  OpenBao nodes   {nodes}   (raft, data in {dd}/openbao)
  store           {stack.database_url}
  admin           token in {dd}/up.json (and {dd}/admin.token)
  demo            agent demo-agent (profile demo){pg}

  TOKEN=$(nhi-broker agent token demo-agent --data-dir {dd})
  curl -s -X POST {stack.url}/v1/tasks -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"profile":"demo","purpose":"try the broker"}}'

Ctrl-C stops everything it started.
""")

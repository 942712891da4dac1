"""``nhi-broker up`` (embedded default) and ``nhi-broker serve --config FILE`` (production)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import uvicorn
from rich.console import Console

from broker.cli._common import DataDirOption, handle_errors
from broker.cli.startup import load_settings_file, startup_errors, translate_build_errors
from broker.config import Settings
from broker.errors import BrokerError
from broker.logging import configure_logging
from broker.secrets import Secret

if TYPE_CHECKING:
    from broker.cli.shutdown import ShutdownReport

console = Console(stderr=True, soft_wrap=True)


def _admin_token(data_dir: Path) -> str:
    path = data_dir / "admin.token"
    if not path.exists():
        path.write_text("nhi-admin-" + secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class _Stopped(Exception):
    """SIGINT/SIGTERM after uvicorn's graceful shutdown: the run ends normally (exit 0)."""


def _stop_on_signal(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


def run_server(
    settings: Settings,
    *,
    on_ready: Any = None,
    on_listening: Any = None,
    on_exit: Any = None,
    sock: socket.socket | None = None,
) -> None:
    """Build the container, start the workers and serve until SIGINT/SIGTERM.

    ``on_ready(container)`` runs before the socket opens (seeding); ``on_listening(container)``
    runs once the server accepts connections (so files that announce the URL are never early).
    ``sock``: an already listening socket (a worker of ``serve --workers N``) instead of binding."""
    # the service stack is imported here, not at module level: every CLI command imports this
    # module, and `nhi-broker scan` must start without loading the broker (issue 18: < 1 s)
    from broker.api.app import create_app
    from broker.container import Container
    from broker.runtime import Workers, start_workers

    with translate_build_errors(settings):
        container = Container.build(settings)
    workers: Workers | None = None
    try:
        if on_ready is not None:
            on_ready(container)
        workers = start_workers(container)
        config = uvicorn.Config(
            create_app(container),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        if on_listening is not None:

            def announce() -> None:
                while not server.started and not server.should_exit:
                    time.sleep(0.02)
                if server.started:
                    on_listening(container)

            threading.Thread(target=announce, name="nhi-announce", daemon=True).start()
        # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; end the run normally so
        # every `finally` (workers, store, the OpenBao dev server) runs and the exit status is 0
        # (`make up` then reports no "Error 143"/"Error 130" after a clean stop)
        previous = {sig: signal.signal(sig, _stop_on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock] if sock is not None else None)
        except _Stopped:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not server.started:
            raise BrokerError(f"could not serve on {settings.host}:{settings.port} (port in use?)")
    finally:
        try:
            if on_exit is not None:
                on_exit(container)
        finally:
            if workers is not None:
                workers.stop()
            container.close()


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def up(
        data_dir: Path = DataDirOption,
        port: int = typer.Option(8080, "--port", min=0, max=65535, help="API port on 127.0.0.1."),
        log_format: str = typer.Option("console", "--log-format", help="console | json"),
        ha: bool = typer.Option(
            False,
            "--ha",
            help="Production-shaped topology: HAProxy, N serve replicas, "
            "PostgreSQL, a 3-node OpenBao raft cluster (uses --port .. --port+31).",
        ),
        replicas: int = typer.Option(3, "--replicas", min=1, max=9, help="With --ha: broker replicas."),
        database_url: str | None = typer.Option(
            None,
            "--database-url",
            envvar="NHI_BROKER_DATABASE_URL",
            help="With --ha: an existing PostgreSQL (default: a private cluster in the data dir).",
        ),
        console_issuer: str = typer.Option(
            "",
            "--console-issuer",
            envvar="NHI_BROKER_CONSOLE_ISSUER",
            help="OIDC issuer people sign in to /console with (e.g. a local provider: docs/console.md); "
            "its keys come from its discovery document. Empty: the console cannot sign anyone in.",
        ),
        console_client_id: str = typer.Option(
            "nhi-console", "--console-client-id", help="With --console-issuer: the console's client id there."
        ),
    ) -> None:
        """Run the broker on its embedded default: local OpenBao dev server + SQLite + demo seed."""
        if ha:
            # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
            from broker.cli.up_ha import run_ha

            configure_logging(log_format)
            run_ha(data_dir, port=port, replicas=replicas, database_url=database_url)
            return
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.demo import MCP_DEFAULT_URL, MCP_SERVER_AGENT, seed_kv, seed_mcp, seed_openbao, seed_registry
        from broker.demo_postgres import drop_demo_roles, seed_postgres
        from broker.openbao_server import start_dev_server

        configure_logging(log_format)
        sign_in = console_sign_in_settings(console_issuer, console_client_id) if console_issuer else {}
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        bao = start_dev_server(log_path=data_dir / "openbao.log")
        up_json = data_dir / "up.json"
        try:
            # the local MCP HTTP server (`nhi-broker mcp --transport http`, docs/mcp.md) is a registered
            # token audience unless NHI_BROKER_TOKEN_EXCHANGE__* says otherwise
            mcp: dict[str, Any] = (
                {}
                if any(k.upper().startswith("NHI_BROKER_TOKEN_EXCHANGE") for k in os.environ)
                else {"token_exchange": {"mcp_resources": [{"url": MCP_DEFAULT_URL, "server_agent": MCP_SERVER_AGENT}]}}
            )
            # `files` scan jobs may read the working directory and the system temp directory
            # (never the data dir: broker/pathpolicy.py)
            settings = Settings(
                dev_mode=True,
                data_dir=data_dir,
                port=port,
                dev_issuer=True,
                scan_roots=[Path.cwd(), Path(tempfile.gettempdir())],
                admin_token=_admin_token(data_dir),  # type: ignore[arg-type]
                log_format=log_format,  # type: ignore[arg-type]
                openbao={"addr": bao.address, "token": bao.root_token.reveal()},  # type: ignore[arg-type]
                **sign_in,
                **mcp,
            )
            url = f"http://127.0.0.1:{port}"

            postgres_note: dict[str, str | None] = {}

            def ready(container: Any) -> None:
                # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
                from broker.backends.openbao_http import OpenBaoHTTP

                http = OpenBaoHTTP(bao.address, bao.root_token)
                seed_openbao(http)
                seed_kv(http)
                postgres_note["skipped"] = seed_postgres(http, data_dir=data_dir)
                seed_registry(container, with_postgres=postgres_note["skipped"] is None)
                seed_mcp(container, bao.address)

            def listening(container: Any) -> None:
                up_json.write_text("")
                up_json.chmod(0o600)
                up_json.write_text(
                    json.dumps(
                        {
                            "url": url,
                            "admin_token": settings.admin_token.get_secret_value(),
                            "openbao_addr": bao.address,
                            "openbao_token": bao.root_token.reveal(),
                            "data_dir": str(data_dir.resolve()),
                            "pid": os.getpid(),
                            "database_url": settings.resolved_database_url(),
                        },
                        indent=2,
                    )
                )
                _summary(url, data_dir, bao.address, container, postgres_note.get("skipped"), console_issuer)

            run_server(settings, on_ready=ready, on_listening=listening, on_exit=end_active_tasks)
        finally:
            up_json.unlink(missing_ok=True)
            bao.stop()
            try:  # after OpenBao: its connections as the role are gone
                dropped = drop_demo_roles(data_dir)
            except Exception as exc:  # best effort on the way out
                console.print(f"[yellow]could not drop the demo PostgreSQL roles: {type(exc).__name__}[/yellow]")
            else:
                if dropped:
                    console.print(f"dropped the demo PostgreSQL roles {', '.join(dropped)}")
            console.print("[bold]nhi-broker stopped[/bold] (OpenBao dev server stopped too)")

    @app.command()
    def serve(
        config: Path = typer.Option(
            ..., "--config", dir_okay=False, help="YAML settings file (see docs/operations.md)"
        ),
        debug: bool = typer.Option(False, "--debug", help="Print the traceback of a start-up error."),
        workers: int = typer.Option(
            1,
            "--workers",
            help="Server processes on the one port (PostgreSQL store only; SQLite is single-process).",
        ),
        worker_port: int | None = typer.Option(None, "--worker-port", hidden=True),
    ) -> None:
        """Run the broker in production mode: external OpenBao, PostgreSQL, real issuers.

        A start-up error (bad YAML, a missing or invalid setting, an unreachable database or
        OpenBao) prints one line naming the setting and exits 2. ``--workers N`` runs N processes
        on the same port (docs/operations.md, "Workers")."""
        with startup_errors(debug):
            settings = load_settings_file(config)
            configure_logging(settings.log_format, settings.log_level)
            if worker_port is not None:  # one worker of `serve --workers N`, on the supervisor's port
                from broker.cli.workers import worker_listener

                run_server(settings, on_exit=report_backlog, sock=worker_listener(settings.host, worker_port))
                return
            if workers != 1:
                # deferred: every command module loads at CLI start; `scan` must start fast
                from broker.cli.workers import serve_workers

                raise typer.Exit(serve_workers(config, settings, workers))
            run_server(settings, on_exit=report_backlog)


def end_active_tasks(container: Any) -> ShutdownReport:
    """`up` only: the embedded OpenBao dies with the broker, and the credentials it issued into
    real systems (PostgreSQL roles) would outlive it. End every active task first, and say what
    was confirmed and what is still pending (and where it will complete)."""
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from broker.cli import shutdown

    report = shutdown.end_active_tasks(container)
    text = report.message(restart_hint=f"nhi-broker up --data-dir {container.settings.data_dir}")
    if text:
        console.print(text, markup=False, highlight=False)
    return report


def report_backlog(container: Any) -> ShutdownReport:
    """`serve`: tasks outlive a replica; report the outbox backlog this replica leaves."""
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from broker.cli import shutdown

    report = shutdown.outbox_backlog(container)
    text = report.message(restart_hint="nhi-broker serve --config ...")
    if text:
        console.print(text, markup=False, highlight=False)
    return report


def console_sign_in_settings(issuer: str, client_id: str) -> dict[str, Any]:
    """The settings `up --console-issuer` adds: the issuer as a human issuer that signs people in
    to the console (client ``client_id``; its keys from ``jwks_uri`` in its discovery document),
    and a session cookie without ``Secure`` (`up` serves http://127.0.0.1 only, which the settings
    check). People still sign in through the issuer and must be registered (`nhi-broker people
    put NAME --issuer ISSUER --subject SUB`): nothing here trusts a typed name."""
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    import httpx

    where = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = httpx.get(where, timeout=10.0, follow_redirects=False)
        doc = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        raise BrokerError(f"--console-issuer: cannot read {where}: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or doc.get("issuer") != issuer or not isinstance(doc.get("jwks_uri"), str):
        raise BrokerError(f"--console-issuer: {where} is not the discovery document of issuer {issuer}")
    return {
        "human_issuers": [
            {
                "issuer": issuer,
                "jwks_url": doc["jwks_uri"],
                "audiences": [f"{client_id}-actor"],  # actor tokens: never signs anyone in
                "sign_in_audiences": [client_id],
            }
        ],
        "console": {"issuer": issuer, "client_id": client_id, "cookie_secure": False},
    }


def _summary(
    url: str, data_dir: Path, bao_addr: str, container: Any, pg_skipped: str | None, console_issuer: str = ""
) -> None:
    dd = str(data_dir)
    console_text = (
        f"""Sign in to the console at {url}/console as a registered person (through {console_issuer}):
  nhi-broker people put alice --role approver --issuer {console_issuer} --subject SUBJECT --data-dir {dd}"""
        if console_issuer
        else f"The console ({url}/console) signs nobody in: restart with --console-issuer URL (docs/console.md)."
    )
    pg = (
        "demo-db (dynamic PostgreSQL login via OpenBao's database engine)"
        if pg_skipped is None
        else f"demo-db NOT configured: {pg_skipped}"
    )
    console.print(f"""
[bold green]nhi-broker is up[/bold green]
  API        {url}   (OpenAPI docs: {url}/docs)
  OpenBao    {bao_addr}   (dev server, in memory)
  store      {container.settings.resolved_database_url()}
  admin      token in {dd}/up.json (and {dd}/admin.token)
  demo       agent demo-agent (profile demo); resources demo-data, demo-secrets, prod-payments, demo-kv
             {pg}
             demo-api (http_api: called through the gateway, e.g. by `nhi-broker mcp`; docs/mcp.md)

Try it:
  TOKEN=$(nhi-broker agent token demo-agent --data-dir {dd})
  curl -s -X POST {url}/v1/tasks -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"profile":"demo","purpose":"try the broker"}}'
  # each identity token is single-use: mint a fresh one for the next request
  TOKEN=$(nhi-broker agent token demo-agent --data-dir {dd})
  curl -s -X POST {url}/v1/tasks/TASK_ID/credentials -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"action":"db.read","resource":"demo-data"}}'

Approve step-ups as a person (demo-owner, demo-agent's bound owner, never can: four-eyes):
  nhi-broker people put alice --role approver --data-dir {dd}
  export NHI_BROKER_PERSON_TOKEN=$(nhi-broker people token create alice --data-dir {dd})
  nhi-broker approvals approve APPROVAL_ID --reason "checked" --data-dir {dd}

{console_text}

Ctrl-C stops the broker and the OpenBao dev server.
""")


__all__ = ["Secret", "register", "run_server"]

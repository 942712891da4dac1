"""``nhi-broker audit verify``: walk the hash chain and report the first broken link."""

from __future__ import annotations

from pathlib import Path

import typer

from broker.cli._common import DataDirOption, handle_errors


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="Audit trail tools.", no_args_is_help=True)

    @audit_app.command("verify")
    @handle_errors
    def verify(data_dir: Path = DataDirOption,
               database_url: str = typer.Option("", "--database-url", envvar="NHI_BROKER_DATABASE_URL",
                                                help="Store URL (default: SQLite in --data-dir).")) -> None:
        """Verify the audit trail: exit 1 when an event was modified, inserted or deleted."""
        from broker.audit import AuditLog
        from broker.store.db import make_engine
        from broker.store.repo import Store

        url = database_url or f"sqlite:///{(data_dir / 'broker.db').resolve()}"
        if url.startswith("sqlite") and not (data_dir / "broker.db").exists() and not database_url:
            raise typer.BadParameter(f"no store at {data_dir / 'broker.db'}", param_hint="--data-dir")
        result = AuditLog(Store(make_engine(url))).verify()
        if result.ok:
            typer.echo(f"audit trail intact: {result.events} events")
            return
        typer.echo(f"audit trail BROKEN after {result.events} good events: {result.problem}", err=True)
        raise typer.Exit(1)

    app.add_typer(audit_app, name="audit")

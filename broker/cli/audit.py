"""``nhi-broker audit verify``: walk the keyed chain against the exported checkpoints.

Exit 0 when intact; 1 when an event was modified, inserted or deleted, the chain was re-keyed or
re-chained, the last events were deleted (the store ends before the latest checkpoint), or a
checkpoint line does not verify; 1 with a message when the key or the checkpoints are missing.
The key comes from ``audit.key`` in ``--config``, ``NHI_BROKER_AUDIT__KEY``, ``--key-file`` or
``<data-dir>/audit.key`` — never from a flag's value, and it is never created here.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from broker.cli._common import DataDirOption, handle_errors
from broker.errors import BrokerError


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="Audit trail tools.", no_args_is_help=True)

    @audit_app.command("verify")
    @handle_errors
    def verify(
        data_dir: Path = DataDirOption,
        database_url: str = typer.Option(
            "", "--database-url", envvar="NHI_BROKER_DATABASE_URL", help="Store URL (default: SQLite in --data-dir)."
        ),
        config: Path | None = typer.Option(
            None, "--config", exists=True, dir_okay=False, help="The broker's YAML settings (store, audit key, sinks)."
        ),
        key_file: Path | None = typer.Option(
            None, "--key-file", dir_okay=False, help="Audit key file (default: <data-dir>/audit.key)."
        ),
        checkpoints: list[Path] = typer.Option(
            [],
            "--checkpoints",
            dir_okay=False,
            help="Checkpoint file(s) (JSON lines; syslog lines too). Default: the file sinks of the settings.",
        ),
        no_checkpoints: bool = typer.Option(
            False, "--no-checkpoints", help="Check the chain alone (cannot detect truncation)."
        ),
    ) -> None:
        """Verify the audit trail: exit 1 when it was tampered with."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.audit.checkpoints import Checkpoint, parse
        from broker.audit.log import AuditLog
        from broker.audit.sinks import FileSink, build_sinks
        from broker.audit.wiring import audit_key
        from broker.config import AuditSettings, load_settings
        from broker.store.db import make_engine
        from broker.store.repo import Store

        if config is not None:
            settings = load_settings(config)
            audit_settings, data_dir = settings.audit, settings.data_dir
            url = database_url or settings.resolved_database_url()
        else:
            audit_settings = AuditSettings(key=os.environ.get("NHI_BROKER_AUDIT__KEY", ""))  # type: ignore[arg-type]
            url = database_url or f"sqlite:///{(data_dir / 'broker.db').resolve()}"
            if not database_url and not (data_dir / "broker.db").exists():
                raise typer.BadParameter(f"no store at {data_dir / 'broker.db'}", param_hint="--data-dir")
        if key_file is not None:
            audit_settings = audit_settings.model_copy(update={"key_file": key_file})
        key = audit_key(audit_settings, data_dir, create=False)
        files = (
            [FileSink(p) for p in checkpoints]
            if checkpoints
            else [s for s in build_sinks(audit_settings.sinks, data_dir) if isinstance(s, FileSink)]
        )
        found: list[Checkpoint] = []
        for sink in [] if no_checkpoints else files:
            parsed = parse(sink.read_lines(), key, source=str(sink.path))
            for note in parsed.notes:
                typer.echo(f"note: {note}", err=True)
            if parsed.problems:
                typer.echo("audit trail BROKEN: " + "; ".join(parsed.problems), err=True)
                raise typer.Exit(1)
            found += parsed.checkpoints
        if not no_checkpoints and not found:
            where = ", ".join(str(s.path) for s in files) or "(no file sink configured)"
            raise BrokerError(
                f"no exported checkpoint in {where}: deleting the last events cannot be ruled out; "
                f"pass --checkpoints FILE, or --no-checkpoints to check the chain alone"
            )
        engine = make_engine(url)
        try:
            result = AuditLog(Store(engine), key).verify(found)
        finally:
            engine.dispose()
        if result.ok:
            typer.echo(result.summary())
            return
        typer.echo(result.summary(), err=True)
        raise typer.Exit(1)

    app.add_typer(audit_app, name="audit")

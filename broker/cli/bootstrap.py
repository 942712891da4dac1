"""``nhi-broker bootstrap --config FILE``: prepare OpenBao and the store for ``serve`` (idempotent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from broker.cli._common import handle_errors

if TYPE_CHECKING:
    from broker.backends.openbao_http import OpenBaoHTTP
    from broker.config import Settings


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def bootstrap(
        config: Path = typer.Option(
            ..., "--config", exists=True, dir_okay=False, help="The YAML settings file `serve` uses (docs/deploy.md)."
        ),
        approle: bool = typer.Option(
            False,
            "--approle",
            help="Create the broker's AppRole (auth/approle/role/nhi-broker) bound to the nhi-broker policy.",
        ),
        secret_id_file: Path | None = typer.Option(
            None, "--secret-id-file", dir_okay=False, help="With --approle: write a new secret id here (0600)."
        ),
        demo: bool = typer.Option(
            False,
            "--demo",
            help="Also load the demo seed of `nhi-broker up` (policies, KV data, agent, profile, resources).",
        ),
    ) -> None:
        """Create the OpenBao mounts, policies and roles the broker needs, and migrate the store.

        Runs with an operator token (NHI_BROKER_OPENBAO__TOKEN); running it again changes nothing."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.backends.openbao_http import OpenBaoHTTP
        from broker.bootstrap import bootstrap_openbao
        from broker.config import load_settings
        from broker.secrets import Secret
        from broker.store.db import make_engine, migrate

        settings = load_settings(config)
        engine = make_engine(settings.resolved_database_url())
        try:
            migrate(engine)
        finally:
            engine.dispose()
        http = OpenBaoHTTP(
            settings.openbao.addr,
            Secret(settings.openbao.token.get_secret_value()),
            timeout=settings.openbao.timeout_seconds,
        )
        report = bootstrap_openbao(http, approle=approle, approle_secret_id=secret_id_file is not None)
        if secret_id_file is not None and report.approle_secret_id is not None:
            secret_id_file.touch(mode=0o600, exist_ok=True)
            secret_id_file.chmod(0o600)
            secret_id_file.write_text(report.approle_secret_id.reveal())
        body = report.to_dict()
        if demo:
            body["demo"] = _seed_demo(settings, http)
        typer.echo(json.dumps(body, indent=2))


def _seed_demo(settings: Settings, http: OpenBaoHTTP) -> str:
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from broker.container import Container
    from broker.demo import seed_kv, seed_openbao, seed_registry

    seed_openbao(http)
    seed_kv(http)
    container = Container.build(settings)
    try:
        seed_registry(container)
    finally:
        container.close()
    return "seeded"

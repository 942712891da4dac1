"""The ``nhi-broker`` entry point: ``scan`` is dispatched before the rest of the CLI is imported.

Importing every command module (the API, settings, Uvicorn, ...) costs about a second; a
pre-commit hook or CI step that only scans should not pay it. Every other command goes through
the full app in :mod:`broker.cli.main`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["scan"]:
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        import typer

        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.cli.scan import register

        app = typer.Typer(name="nhi-broker", add_completion=False)

        @app.callback()
        def _group() -> None:
            """Credential broker for non-human identities."""

        register(app)
        app(args=args, prog_name="nhi-broker")
        return
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from broker.cli.main import app as full

    full(args=args, prog_name="nhi-broker")


if __name__ == "__main__":
    main()

"""``nhi-broker policy validate|test|replay``: check, test and dry-run a policy bundle.

Exit codes: 0 when everything is fine, 1 on any problem, failing case or (with
``--fail-on-change``) any decision the candidate bundle would change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from broker.cli._common import DATA_DIR_ENV, handle_errors
from policies import DEFAULT_BUNDLE

out = Console(highlight=False, soft_wrap=True)


def _from_environment(ctx: typer.Context, param: str) -> bool:
    source = ctx.get_parameter_source(param)
    return source is not None and source.name == "ENVIRONMENT"


BundleDir = typer.Argument(
    DEFAULT_BUNDLE, help="Policy bundle directory (default: the shipped bundle).", show_default=False
)


def _store_records(
    data_dir: Path | None, database_url: str, since: datetime | None, limit: int
) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """The ``Decision.record()`` of every stored decision (oldest first), each with the time it
    was recorded, and the chain events of their tasks (for the chain detectors), read-only.
    With ``since``, the earlier decisions of the same tasks are read too: they are the chain
    the later ones were decided against (replay counts them as history, not as replayed)."""
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from sqlalchemy.exc import SQLAlchemyError

    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from broker.chain import store as chain_store
    from broker.errors import BrokerError, InvalidInput
    from broker.store.db import make_engine
    from broker.store.repo import Store

    if not database_url:
        assert data_dir is not None
        db_file = data_dir / "broker.db"
        if not db_file.exists():
            raise InvalidInput("--data-dir", f"no store at {db_file}")
        database_url = f"sqlite:///{db_file.resolve()}"
    store = Store(make_engine(database_url))
    try:
        with store.read() as conn:
            rows = store.decisions(conn, since=since.astimezone(UTC) if since else None, limit=limit)
            tasks = list(dict.fromkeys(str(r.task_id) for r in rows))
            if since is not None:
                seen = {r.decision_id for r in rows}
                earlier = [
                    e
                    for task in tasks
                    for e in store.decisions(conn, task_id=task, limit=limit)
                    if e.decision_id not in seen
                ]
                rows = earlier + rows
            events = {task: [chain_store.step_from_event(e) for e in chain_store.events(conn, task)] for task in tasks}
    except SQLAlchemyError as exc:
        raise BrokerError(f"cannot read decisions from the store ({type(exc).__name__})") from None
    finally:
        store.engine.dispose()
    if len(rows) >= limit:
        out.print(f"[yellow]note[/yellow]: read the first {limit} stored decisions only (--limit)")
    records = [{**dict(row.record), "recorded_at": row.created_at.isoformat()} for row in rows]
    return records, events


def register(app: typer.Typer) -> None:
    policy_app = typer.Typer(
        help="Policy-as-code: validate, test and replay a Cedar policy bundle.", no_args_is_help=True
    )

    @policy_app.command("validate")
    @handle_errors
    def validate(directory: Path = BundleDir) -> None:
        """Schema, syntax and lint checks; every problem as FILE:LINE: message."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.policy import check_bundle

        bundle, problems = check_bundle(directory)
        if problems or bundle is None:
            for p in problems:
                out.print(f"[red]{directory / p.file}{':' + str(p.line) if p.line else ''}[/red]: {p.message}")
            out.print(f"[red]invalid[/red]: {len(problems)} problem(s) in {directory}")
            raise typer.Exit(1)
        out.print(
            f"[green]valid[/green]: {directory} — {len(bundle.policies)} policies, "
            f"{len(bundle.catalog)} actions, bundle {bundle.bundle_hash[:16]}"
        )

    @policy_app.command("test")
    @handle_errors
    def test(
        directory: Path = BundleDir,
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every case, not only failures."),
    ) -> None:
        """Run the bundle's test cases (tests/*.yaml) and report pass/fail."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.policy.testing import run_tests

        report = run_tests(directory)
        for p in report.problems:
            out.print(f"[red]ERROR[/red] {directory / p.file}{':' + str(p.line) if p.line else ''}: {p.message}")
        for r in report.results:
            if r.passed and not verbose:
                continue
            mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
            d = r.decision
            out.print(
                f"{mark} {r.file}:{r.line} {r.name} — {d.outcome.value}, {d.tier.value}, {d.mode.value}, "
                f"ttl {d.ttl_seconds}s, policies {list(d.policy_ids)}"
            )
            for f in r.failures:
                out.print(f"     {f}")
        failed = sum(not r.passed for r in report.results)
        if report.uncovered:
            out.print(f"[yellow]note[/yellow]: no case exercises consequence class(es) {', '.join(report.uncovered)}")
        summary = f"{len(report.results) - failed} passed, {failed} failed, {len(report.problems)} error(s)"
        out.print(("[green]" if report.passed else "[red]") + summary + ("[/green]" if report.passed else "[/red]"))
        if not report.passed:
            raise typer.Exit(1)

    @policy_app.command("replay")
    @handle_errors
    def replay_cmd(
        ctx: typer.Context,
        bundle_dir: Path = typer.Option(..., "--bundle", help="Candidate policy bundle directory."),
        records: Path | None = typer.Option(
            None,
            "--records",
            exists=True,
            dir_okay=False,
            help="Decision records, one JSON object a line (JSONL).",
        ),
        data_dir: Path | None = typer.Option(
            None,
            "--data-dir",
            envvar=DATA_DIR_ENV,
            help="Read the recorded decisions from the store in this data directory.",
        ),
        database_url: str = typer.Option(
            "",
            "--database-url",
            envvar="NHI_BROKER_DATABASE_URL",
            help="Read the recorded decisions from this store (no OpenBao needed).",
        ),
        limit: int = typer.Option(100_000, "--limit", min=1, help="At most this many stored decisions."),
        since: datetime | None = typer.Option(
            None, "--since", help="Only decisions at or after this time (ISO 8601 with timezone)."
        ),
        fail_on_change: bool = typer.Option(False, "--fail-on-change", help="Exit 1 when any decision would change."),
    ) -> None:
        """Re-decide recorded decisions (from --records JSONL, or the broker's store with --data-dir /
        --database-url) with a candidate bundle and print what would change."""
        # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
        from broker.chain import config as chain_config
        from broker.chain.replay import ChainReplay
        from broker.errors import InvalidInput
        from broker.policy import CedarDecisionEngine, load_bundle
        from broker.policy.replay import read_jsonl, replay

        if since is not None and since.tzinfo is None:
            raise InvalidInput("--since", f"{since.isoformat()} has no timezone (add Z or +00:00)")
        bundle = load_bundle(bundle_dir)
        engine = CedarDecisionEngine(bundle)
        if records is not None and data_dir is not None and _from_environment(ctx, "data_dir"):
            data_dir = None  # an explicit --records wins over NHI_BROKER_DATA_DIR from the environment
        if records is not None and data_dir is not None:
            raise InvalidInput("--records", "give either --records or --data-dir/--database-url, not both")
        events: dict[str, list[Any]] = {}
        if records is not None:
            source: Iterable[dict[str, Any]] = read_jsonl(records)
        elif data_dir is not None or database_url:
            source, events = _store_records(data_dir, database_url, since, limit)
        else:
            raise InvalidInput(
                "--records", "give --records FILE.jsonl, or --data-dir / --database-url to read the store"
            )
        # the candidate bundle's chain detectors (chain.yaml) over each task's recorded chain
        chain = ChainReplay(chain_config.load(bundle_dir, catalog=bundle.catalog), events)
        report = replay(source, engine, since=since, chain=chain)
        if report.changes:
            out.print(f"{len(report.changes)} decision(s) would change under bundle {report.bundle_hash[:16]}:")
        for c in report.changes:
            out.print(
                f"  {c.decision_id}  {c.decided_at}  {c.agent}  {c.action} on {c.resource}: "
                f"[bold]{', '.join(c.kinds)}[/bold]  (now decided by {', '.join(c.after.policy_ids) or '-'})"
            )
        for s in report.skipped:
            out.print(f"[yellow]skipped[/yellow] {s.decision_id}: {s.reason}")
        out.print(
            f"replayed {report.replayed}: {len(report.changes)} changed, {report.unchanged} unchanged, "
            f"{len(report.skipped)} skipped, {report.filtered} before --since"
        )
        if fail_on_change and report.changes:
            raise typer.Exit(1)

    app.add_typer(policy_app, name="policy")

"""``nhi-broker scan PATH...``: scan files and directories for secrets.

Exit codes: 0 no new findings, 1 new findings, 2 usage error (bad path, format, baseline or plugin).
Inline ``nhi-broker: allow`` on a finding's line (or the line above) suppresses it here, and
``nhi-broker: allow-file`` in a file's first 2 KB suppresses the file — the API never honours
either, so a prompt cannot opt itself out. Broker-issued secrets are never suppressed.

Start-up is kept short: ``nhi-broker scan`` is dispatched before the rest of the CLI is imported
(``broker.cli.entry``), the engine's compiled rules and the own rules' Hyperscan database load
from the cache (``NHI_BROKER_CACHE_DIR``), and the engine loads in the background while the
broker's own rules are read.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from scanners.engine import Finding, Scanner


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


class EngineChoice(StrEnum):
    auto = "auto"
    kingfisher = "kingfisher"
    builtin = "builtin"


class MinConfidence(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class BaselineFormat(StrEnum):
    auto = "auto"
    nhi = "nhi-broker"
    detect_secrets = "detect-secrets"


def _display(path: Path) -> str:
    return os.path.normpath(path).replace(os.sep, "/")


def scan(
    paths: list[Path] = typer.Argument(..., help="Files or directories to scan."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text, json or sarif."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="Report only findings not in FILE (nhi-broker or detect-secrets format)."
    ),
    write_baseline: Path | None = typer.Option(None, "--write-baseline", help="Record all findings in FILE."),
    baseline_format: BaselineFormat = typer.Option(
        BaselineFormat.auto,
        "--baseline-format",
        help="Format for --write-baseline (auto: detect-secrets for a file named .secrets.baseline).",
    ),
    min_confidence: MinConfidence = typer.Option(
        MinConfidence.low, "--min-confidence", help="Report findings of at least this confidence."
    ),
    engine_choice: EngineChoice = typer.Option(
        EngineChoice.auto, "--engine", help="auto (Kingfisher when installed), kingfisher or builtin rules only."
    ),
    plugins: list[str] = typer.Option(
        [], "--detect-secrets-plugin", help="Run a detect-secrets plugin (class name or file:PATH) too."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to FILE."),
    validate: bool = typer.Option(
        False,
        "--validate",
        help="Ask each provider whether found credentials are live. Sends the secrets to third parties; "
        "off by default.",
    ),
) -> None:
    """Scan PATH... for secrets; exit 1 on new findings."""
    for p in paths:
        if not p.exists():
            typer.echo(f"path {p}: does not exist", err=True)
            raise typer.Exit(2)
    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from scanners import kingfisher

    engine = None
    if engine_choice is EngineChoice.kingfisher or (engine_choice is EngineChoice.auto and kingfisher.available()):
        engine = kingfisher.KingfisherEngine().start()  # loads while the own rules are read

    # deferred: every command module loads at CLI start; `scan`/`--version` must start fast
    from scanners import baseline as bl
    from scanners.engine import Scanner
    from scanners.files import iter_files, scan_file
    from scanners.plugins import DetectSecretsPlugins, ExtraDetector, PluginError, from_env
    from scanners.report import to_json, to_sarif, to_text
    from scanners.rules import Confidence

    try:
        base = bl.load(baseline) if baseline is not None else None
        key, salt = bl.fingerprint_key(base if base is not None and base.format == "nhi-broker" else None)
        extra: list[ExtraDetector] = [DetectSecretsPlugins(plugins)] if plugins else from_env()
    except (bl.BaselineError, PluginError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    scanner = Scanner(
        key=key,
        honor_allow_comments=True,
        engine=engine,
        extra=extra,
        min_confidence=Confidence(min_confidence.value),
        cache_dir=kingfisher.default_cache_dir(),
    )
    if engine is not None and not engine.wait(timeout=600):
        if engine_choice is EngineChoice.kingfisher:
            typer.echo(f"--engine kingfisher: {engine.error or 'engine not ready'}", err=True)
            raise typer.Exit(2)
        typer.echo(f"warning: {engine.error or 'engine not ready'}; scanning with the built-in rules only", err=True)
        scanner.engine = None
    findings: list[Finding] = []
    for root in paths:
        for f in iter_files(root):
            findings.extend(scan_file(scanner, f, _display(f)))

    if validate:
        findings = _validated(findings, scanner)

    texts: dict[str, str] = {}

    def secret_of(f: Finding) -> str | None:
        if f.path is None or f.end <= f.start:
            return None
        if f.path not in texts:
            texts[f.path] = Path(f.path).read_text(encoding="utf-8", errors="replace")
        return texts[f.path][f.start : f.end]

    if write_baseline is not None:
        as_ds = baseline_format is BaselineFormat.detect_secrets or (
            baseline_format is BaselineFormat.auto and write_baseline.name == ".secrets.baseline"
        )
        if as_ds:
            bl.write_detect_secrets(write_baseline, findings, secret_of)
        else:
            bl.write(write_baseline, findings, salt)
    new = [f for f in findings if f.grant is not None or base is None or not base.suppresses(f, secret_of)]
    report = {
        Format.text: lambda: to_text(new),
        Format.json: lambda: to_json(new),
        Format.sarif: lambda: to_sarif(new, scanner.rules),
    }[fmt]()
    if output is not None:
        output.write_text(report)
    else:
        sys.stdout.write(report)
    raise typer.Exit(1 if new and write_baseline is None else 0)


def _validated(findings: list[Finding], scanner: Scanner) -> list[Finding]:
    """Attach the provider's answer to engine findings (explicit ``--validate`` only)."""
    if scanner.engine is None or not scanner.engine.ready:
        typer.echo("--validate needs the Kingfisher engine; no finding was validated", err=True)
        return findings
    out: list[Finding] = []
    by_path: dict[str | None, list[tuple[int, int, str]]] = {}
    for f in findings:
        if f.path is not None and f.path not in by_path:
            text = Path(f.path).read_text(encoding="utf-8", errors="replace")
            by_path[f.path] = scanner.engine.validate(text, f.path)
        outcome = next((o for s, e, o in by_path.get(f.path, []) if s < f.end and f.start < e), None)
        out.append(replace(f, validation=outcome) if outcome else f)
    return out


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)

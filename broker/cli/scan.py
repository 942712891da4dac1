"""``nhi-broker scan PATH...``: scan files and directories for secrets.

Exit codes: 0 no new findings, 1 new findings, 2 usage error (bad path, format or baseline).
Inline ``nhi-broker: allow`` on a finding's line (or the line above) suppresses it here — the API
never honours it, so a prompt cannot opt itself out.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path

import typer

from scanners import baseline as bl
from scanners.engine import Finding, Scanner
from scanners.files import iter_files, scan_file
from scanners.report import to_json, to_sarif, to_text


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


def _display(path: Path) -> str:
    return os.path.normpath(path).replace(os.sep, "/")


def scan(
    paths: list[Path] = typer.Argument(..., help="Files or directories to scan."),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="text, json or sarif."),
    baseline: Path | None = typer.Option(None, "--baseline", help="Suppress findings recorded in FILE."),
    write_baseline: Path | None = typer.Option(None, "--write-baseline", help="Record all findings in FILE."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to FILE."),
) -> None:
    """Scan PATH... for secrets; exit 1 on new findings."""
    for p in paths:
        if not p.exists():
            typer.echo(f"path {p}: does not exist", err=True)
            raise typer.Exit(2)
    try:
        base = bl.load(baseline) if baseline is not None else None
        key, salt = bl.fingerprint_key(base)
    except bl.BaselineError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    scanner = Scanner(key=key, honor_allow_comments=True)
    findings: list[Finding] = []
    for root in paths:
        for f in iter_files(root):
            findings.extend(scan_file(scanner, f, _display(f)))
    if write_baseline is not None:
        bl.write(write_baseline, findings, salt)
    new = [f for f in findings if base is None or not base.suppresses(f)]
    report = {Format.text: lambda: to_text(new), Format.json: lambda: to_json(new),
              Format.sarif: lambda: to_sarif(new, scanner.rules)}[fmt]()
    if output is not None:
        output.write_text(report)
    else:
        sys.stdout.write(report)
    raise typer.Exit(1 if new and write_baseline is None else 0)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)

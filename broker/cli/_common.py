"""Shared CLI helpers: error handling and locating the data directory's files."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from broker.errors import BrokerError

err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_ENV = "NHI_BROKER_DATA_DIR"  # every --data-dir option reads it (and `serve`'s settings: data_dir)
DataDirOption = typer.Option(
    Path(".nhi-broker"), "--data-dir", envvar=DATA_DIR_ENV, help="Data directory of `nhi-broker up`."
)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokerError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def read_up_json(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "up.json"
    if not path.exists():
        raise BrokerError(f"{path} not found: is `nhi-broker up --data-dir {data_dir}` running?")
    data: dict[str, Any] = json.loads(path.read_text())
    return data

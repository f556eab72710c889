"""Shared fixtures: a fresh data dir, literal tables written through the bulk path, a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

Rows = Sequence[Mapping[str, Any]]

# session-wide PostgreSQL and MariaDB servers for the import tests (started only when used)
pytest_plugins = ("ahoy_databases",)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "trail-data"
    path.mkdir()
    return path


@pytest.fixture
def write_rows(data_dir: Path) -> Callable[[str, Rows], None]:
    """Write literal rows of one kind into the data dir's Delta table (bulk path, no WAL)."""
    from trailcli.store import tables

    def write(kind: str, rows: Rows) -> None:
        tables.bulk_write(data_dir, kind, tables.to_arrow(kind, rows))

    return write


@pytest.fixture
def run_cli() -> Callable[..., Any]:
    """Invoke `trail ARGS...` in-process; returns the click Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from trailcli.cli import app

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke

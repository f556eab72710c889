"""Load the SQL files shipped in `trailcli/queries` (top-level `queries/` in the source tree)."""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

_PARAMS_HEADER = re.compile(r"^--\s*params:\s*(.*)$", re.MULTILINE)
_BOUND = re.compile(r"(?<![:$\w])\$([A-Za-z_]\w*)")
_SKIPPED = re.compile(r"'(?:[^']|'')*'|\$\$.*?\$\$|--[^\n]*|/\*.*?\*/", re.DOTALL)


def queries_dir() -> Traversable:
    """The installed queries folder; in a source checkout, the top-level `queries/`."""
    packaged = files("trailcli") / "queries"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "queries"


@functools.cache
def load(name: str) -> str:
    """The text of `queries/<name>.sql`."""
    path = queries_dir() / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no query named {name!r} in {queries_dir()}")
    return path.read_text(encoding="utf-8")


def names() -> list[str]:
    return sorted(p.name[:-4] for p in queries_dir().iterdir() if p.name.endswith(".sql"))


def declared_params(text: str) -> set[str]:
    """The `$params` a file's header says it binds (`-- params: $since, $until` or `none`)."""
    match = _PARAMS_HEADER.search(text)
    if not match or match.group(1).strip().lower() == "none":
        return set()
    return {p.strip().lstrip("$") for p in match.group(1).split(",") if p.strip()}


def bound_params(text: str) -> set[str]:
    """The `$params` the statement body uses (string literals and comments excluded)."""
    # One left-to-right pass: whichever of literal or comment starts first wins, as in SQL itself.
    body = _SKIPPED.sub(" ", text)
    return set(_BOUND.findall(body))

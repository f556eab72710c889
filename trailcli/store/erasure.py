"""The erasure list: keyed hashes of the visitor tokens, visit tokens and user ids erased from a
data dir, which every write path honours so an erased person does not come back (docs/privacy.md).

The list holds no token or id, only `keyed_hash(salt, value)`, the salt being a random value kept
beside it (`_erasure/salt`). Whoever holds the data dir can check whether a given token was erased;
nobody can read the tokens from it. The audit log (`_erasure/audit.ndjson`) uses the same hash.

A write path drops a record whose visitor token, visit token or user id is on the list: the WAL's
commit to the tables (so records a node still held, or that a tab still open sends later, never
land), compaction, and the collector's live view.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailcli.store import layout

if TYPE_CHECKING:
    import pyarrow as pa

SALT_FILE = "salt"
LIST_FILE = "erased.ndjson"
AUDIT_FILE = "audit.ndjson"
COLUMNS = ("visitor_token", "visit_token", "user_id")  # what a record is matched on


def keyed_hash(salt: str, value: str) -> str:
    """The list's hash of a token or id: SHA-256 of the salt, a colon and the value, as hex.

    The same rule in SQL (compaction): `sha256(salt || ':' || value)`.
    """
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()


def salt(data_dir: Path, create: bool = False) -> str | None:
    """The data dir's salt (made once, when `create`), or None when there is none yet."""
    path = layout.erasure_dir(data_dir) / SALT_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process
        return path.read_text().strip()
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path.read_text().strip()


@dataclass(frozen=True)
class Erased:
    """The erasure list as read: the salt and, per column, the hashes of erased values."""

    salt: str = ""
    hashes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.hashes.values())

    def matches(self, column: str, value: Any) -> bool:
        hashes = self.hashes.get(column)
        if not hashes or not isinstance(value, str):
            return False
        return keyed_hash(self.salt, value) in hashes

    def record_erased(self, record: Mapping[str, Any]) -> bool:
        """Whether a record (a dict with any of COLUMNS) belongs to an erased person."""
        return bool(self) and any(self.matches(c, record.get(c)) for c in COLUMNS)

    def drop_from(self, table: pa.Table) -> pa.Table:
        """`table` without the rows of erased people (hashing each distinct value once)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self or table.num_rows == 0:
            return table
        erased = None
        for column in COLUMNS:
            if column not in table.column_names or not self.hashes.get(column):
                continue
            values = table.column(column)
            hits = [v for v in pc.unique(values).drop_null().to_pylist() if self.matches(column, v)]
            if hits:
                mask = pc.fill_null(pc.is_in(values, pa.array(hits, pa.string())), False)
                erased = mask if erased is None else pc.or_(erased, mask)
        return table if erased is None else table.filter(pc.invert(erased))

    def sql_filter(self, params: dict[str, Any], columns: Iterable[str]) -> str:
        """A DuckDB predicate true for rows of people not erased; binds its values in `params`."""
        if not self:
            return "true"
        params["erased_salt"] = self.salt
        clauses = []
        for column in COLUMNS:
            if column in columns and self.hashes.get(column):
                params[f"erased_{column}"] = sorted(self.hashes[column])
                clauses.append(
                    f"({column} IS NULL OR NOT list_contains($erased_{column}, "
                    f"sha256($erased_salt || ':' || {column})))"
                )
        return " AND ".join(clauses) or "true"


_cache: dict[Path, tuple[tuple[int, int], Erased]] = {}


def load(data_dir: Path) -> Erased:
    """The erasure list of `data_dir` (empty when there is none), read again only when it changed."""
    path = layout.erasure_dir(data_dir) / LIST_FILE
    try:
        st = path.stat()
    except FileNotFoundError:
        return Erased()
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    hashes: dict[str, set[str]] = {c: set() for c in COLUMNS}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            hashes[entry["column"]].add(entry["hash"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of a crashed append: that erasure was not reported done
    erased = Erased(salt(data_dir) or "", {c: frozenset(h) for c, h in hashes.items()})
    _cache[path] = (stamp, erased)
    return erased


def add(data_dir: Path, values: Mapping[str, Iterable[str]]) -> int:
    """Add the hashes of `values` (column -> tokens or ids) to the list, durably; how many new."""
    key = salt(data_dir, create=True)
    assert key is not None
    known = load(data_dir)
    lines = []
    for column, items in values.items():
        for value in sorted(set(items)):
            if not known.matches(column, value):
                entry = {"column": column, "hash": keyed_hash(key, value)}
                lines.append(json.dumps(entry) + "\n")
    if lines:
        _append_durably(layout.erasure_dir(data_dir) / LIST_FILE, "".join(lines))
    return len(lines)


def _append_durably(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def append_audit(data_dir: Path, entry: Mapping[str, Any]) -> None:
    """Add one entry to the audit log, durably."""
    _append_durably(layout.erasure_dir(data_dir) / AUDIT_FILE, json.dumps(dict(entry)) + "\n")


def read_audit(data_dir: Path) -> list[dict[str, Any]]:
    """The audit log's entries, oldest first ([] when none was written)."""
    path = layout.erasure_dir(data_dir) / AUDIT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries

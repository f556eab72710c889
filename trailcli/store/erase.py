"""Erasing rows for good: rewrite the files of a table that hold matching rows, then delete the
replaced files at once, with no time travel left that could bring them back.

`rewrite_files` is the one primitive (`trail forget` drops a person's rows with it; masking old
addresses replaces column values with it): it finds the table's current files holding a row that
matches a SQL predicate, writes each one again without those rows (or with columns replaced),
swaps them in one Delta commit, deletes the replaced files and every file an earlier commit
removed (compaction keeps those for a day), and rewrites the Delta log from a fresh checkpoint so
that no log entry still describes a replaced file (its statistics hold column values).

Readers that loaded the table before the commit and read a replaced file afterwards fail; they
succeed when run again (docs/privacy.md).

Writers that could put erased rows back take `erasure_lock(shared=True)` around what they read
and commit (the WAL's commit, compaction, the collector's bin-packing); an erasure holds it
exclusively from the moment it adds to the erasure list until its rewrites are committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from trailcli.errors import CorruptDataError, TrailError
from trailcli.store import layout
from trailcli.store.schema import KINDS

if TYPE_CHECKING:
    from deltalake import DeltaTable

LOCK_FILE = "erasure.lock"  # in the WAL root, beside compaction's lock
REWRITTEN_PREFIX = "trail-rewritten-"
ROW_GROUP_ROWS = 100_000
_LOG_VERSION = re.compile(r"^(\d{20})\.")


@dataclass
class TableRewrite:
    """What `rewrite_files` found and did in one table."""

    kind: str
    rows_matched: int = 0
    files_matched: int = 0  # current files holding a matching row: replaced unless a dry run
    files_written: int = 0
    bytes_replaced: int = 0  # the size of the replaced files
    bytes_written: int = 0
    files_deleted: int = 0  # replaced files plus older removed ones, deleted from disk
    log_entries_deleted: int = 0
    dates: list[str] = field(default_factory=list)  # partitions that held a matching row

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def erasure_lock(
    data_dir: Path,
    *,
    shared: bool,
    wait: bool = True,
    waiting: Callable[[], None] | None = None,
) -> Iterator[None]:
    """The data dir's erasure lock (this machine): writers that could put back erased rows hold
    it shared, an erasure exclusively. `waiting` is called when the lock is busy and this waits."""
    root = layout.wal_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise TrailError(
                    f"An erasure of {data_dir} is running.", "wait for it to finish, then retry"
                ) from None
            if waiting is not None:
                waiting()
            fcntl.flock(fd, flags)
        yield
    finally:
        os.close(fd)


def _current_files(table: DeltaTable) -> list[tuple[str, int, str | None]]:
    """The table's current files: (path relative to the table, size, partition date)."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    dates = (
        actions["partition.date"].to_pylist()
        if "partition.date" in actions.column_names
        else [None] * actions.num_rows
    )
    return list(
        zip(actions["path"].to_pylist(), actions["size_bytes"].to_pylist(), dates, strict=True)
    )


def rewrite_files(
    data_dir: Path,
    kind: str,
    match_sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    replace: Mapping[str, str] | None = None,
    dates: Iterable[str] | None = None,
    dry_run: bool = False,
    operation: str = "erase",
    matched: Mapping[str, int] | None = None,
) -> TableRewrite:
    """Rewrite the current files of `kind`'s table that hold a row matching `match_sql` (a DuckDB
    predicate over the file's columns, with `$name` parameters from `params`), in one commit, and
    delete the replaced files at once.

    Without `replace` the matching rows are dropped; with it (column -> SQL expression) they are
    kept with those columns replaced. `dates` limits the search to those partitions. A dry run
    only counts. `matched` (matching rows per file, from `find_matches` on the same predicate)
    spares the search. A file whose rows all go is removed without a replacement; a clean
    (compacted) file's replacement stays clean, as a subset of deduplicated rows is deduplicated.
    Raises CorruptDataError naming a file that cannot be read; the table is then unchanged.
    """
    from deltalake import DeltaTable

    result = TableRewrite(kind)
    root = layout.table_path(data_dir, kind)
    if kind not in KINDS or not DeltaTable.is_deltatable(str(root)):
        return result
    table = DeltaTable(str(root))
    wanted = None if dates is None else set(dates)
    files = [f for f in _current_files(table) if wanted is None or f[2] in wanted]
    if not files:
        return result
    if matched is None:
        matched = {}
        for path, *_, count in _matches(root, files, match_sql, params or {}, ()):
            matched[path] = matched.get(path, 0) + count
    result.rows_matched = sum(matched.values())
    result.files_matched = len(matched)
    old = [f for f in files if f[0] in matched]
    result.dates = sorted({d for _, _, d in old if d is not None})
    result.bytes_replaced = sum(size for _, size, _ in old)
    if dry_run or not old:
        return result
    written: list[tuple[str, str | None, Path, int]] = []
    try:
        for path, _, day in old:
            new = _rewrite_one(root, path, day, match_sql, params or {}, replace)
            if new is not None:
                written.append((new[0], day, new[1], new[2]))
        _commit(table, kind, old, written, operation)
    except BaseException:
        for _, _, target, _ in written:
            target.unlink(missing_ok=True)
        raise
    result.files_written = len(written)
    result.bytes_written = sum(t.stat().st_size for _, _, t, _ in written)
    for path, _, _ in old:
        with contextlib.suppress(FileNotFoundError):
            (root / unquote(path)).unlink()
            result.files_deleted += 1
    result.files_deleted += delete_removed_files(data_dir, kind)
    result.log_entries_deleted = scrub_log(data_dir, kind)
    return result


def _read(variable: str, filename: bool = False) -> str:
    """read_parquet over the paths in a DuckDB variable: the files' own columns only."""
    extra = ", filename = true" if filename else ""
    return (
        f"read_parquet(getvariable('{variable}'), union_by_name = true, "
        f"hive_partitioning = false{extra})"
    )


def find_matches(
    data_dir: Path,
    kind: str,
    match_sql: str,
    params: Mapping[str, Any] | None = None,
    columns: Iterable[str] = (),
) -> list[tuple[Any, ...]]:
    """The rows of `kind`'s current files matching `match_sql`, grouped by file and `columns`:
    (path relative to the table, *column values, rows). [] when the table is missing."""
    from deltalake import DeltaTable

    root = layout.table_path(data_dir, kind)
    if kind not in KINDS or not DeltaTable.is_deltatable(str(root)):
        return []
    files = _current_files(DeltaTable(str(root)))
    return _matches(root, files, match_sql, params or {}, tuple(columns)) if files else []


def _matches(
    root: Path,
    files: list[tuple[str, int, str | None]],
    match_sql: str,
    params: Mapping[str, Any],
    columns: tuple[str, ...],
) -> list[tuple[Any, ...]]:
    import duckdb

    by_local = {str(root / unquote(path)): path for path, _, _ in files}
    group = ", ".join(("filename", *columns))
    con = duckdb.connect()
    try:
        con.execute("SET VARIABLE erase_files = $files", {"files": list(by_local)})
        query = (
            f"SELECT {group}, count(*) FROM {_read('erase_files', filename=True)} "
            f"WHERE coalesce(({match_sql}), false) GROUP BY {group}"
        )
        rows = con.execute(query, dict(params)).fetchall()
    except duckdb.Error as exc:
        raise CorruptDataError(
            f"Cannot read the {root.name} table: {str(exc).splitlines()[0]}",
            "restore the named file from a backup; nothing was changed",
        ) from exc
    finally:
        con.close()
    return [(by_local[row[0]], *row[1:-1], int(row[-1])) for row in rows]


def _rewrite_one(
    root: Path,
    path: str,
    day: str | None,
    match_sql: str,
    params: Mapping[str, Any],
    replace: Mapping[str, str] | None,
) -> tuple[str, Path, int] | None:
    """Write `path` again without (or with replaced) matching rows; (relative path, local path,
    rows) of the new file, or None when no row is left."""
    import duckdb

    prefix = layout.CLEAN_PREFIX if layout.is_clean_file(path) else REWRITTEN_PREFIX
    name = f"{prefix}{uuid.uuid4().hex}.zstd.parquet"
    relative = f"{layout.partition_dir(day)}/{name}" if day is not None else name
    target = root / relative
    source = str(root / unquote(path))
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET VARIABLE erase_file = $file", {"file": source})
        relation = _read("erase_file")
        if replace:
            columns = ", ".join(
                f"CASE WHEN coalesce(({match_sql}), false) THEN {expr} ELSE {col} END AS {col}"
                for col, expr in replace.items()
            )
            select = f"SELECT * REPLACE ({columns}) FROM {relation}"
        else:
            select = f"SELECT * FROM {relation} WHERE NOT coalesce(({match_sql}), false)"
        target.parent.mkdir(parents=True, exist_ok=True)
        ((rows,),) = con.execute(
            f"COPY ({select}) TO '{_quote(str(target))}' "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})",
            dict(params),
        ).fetchall()
        if rows == 0:
            target.unlink(missing_ok=True)
            return None
    except duckdb.Error as exc:
        target.unlink(missing_ok=True)
        raise CorruptDataError(
            f"Cannot rewrite {source}: {str(exc).splitlines()[0]}",
            "restore the named file from a backup; nothing was changed",
        ) from exc
    finally:
        con.close()
    return relative, target, int(rows)


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _commit(
    table: DeltaTable,
    kind: str,
    old: list[tuple[str, int, str | None]],
    new: list[tuple[str, str | None, Path, int]],
    operation: str,
) -> None:
    """One Delta commit that adds the rewritten files and removes the ones they replace."""
    from deltalake import CommitProperties
    from deltalake.transaction import AddAction, RemoveAction

    now_ms = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        AddAction(
            path=relative,
            size=target.stat().st_size,
            partition_values={layout.PARTITION: day},
            modification_time=now_ms,
            data_change=True,
            stats=json.dumps({"numRecords": rows}),
        )
        for relative, day, target, rows in new
    ]
    actions += [
        RemoveAction(
            path=path,
            data_change=True,
            deletion_timestamp=now_ms,
            size=size,
            partition_values={layout.PARTITION: day},
        )
        for path, size, day in old
    ]
    table.create_write_transaction(
        actions,
        mode="append",
        schema=table.schema(),
        partition_by=[layout.PARTITION],
        commit_properties=CommitProperties(
            custom_metadata={"trail.operation": operation, "trail.kind": kind}
        ),
    )


def delete_removed_files(data_dir: Path, kind: str) -> int:
    """Delete now every file an earlier commit removed from the table (compaction's and
    rewrites' replaced files, normally kept a day for readers); how many."""
    from deltalake import DeltaTable

    table = DeltaTable(str(layout.table_path(data_dir, kind)))
    # not `full`: a file another writer wrote but has not committed yet is left alone
    deleted = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    return len(deleted)


def scrub_log(data_dir: Path, kind: str) -> int:
    """Checkpoint the table and delete every log entry and checkpoint before it: the log then
    describes only the current files (an add action's statistics hold column values, so the
    entries of replaced files must go too). Time travel to earlier versions ends here."""
    from deltalake import DeltaTable

    path = layout.table_path(data_dir, kind)
    table = DeltaTable(str(path))
    table.create_checkpoint()
    version = table.version()
    deleted = 0
    for entry in (path / "_delta_log").iterdir():
        found = _LOG_VERSION.match(entry.name)
        if found and int(found.group(1)) < version and entry.is_file():
            entry.unlink(missing_ok=True)
            deleted += 1
    return deleted

"""Dropping whole days from the tables (retention), the record of what was dropped, and the small
`daily` table of figures kept for dropped days.

A purge removes every file of the partitions dated before its limit from a table in one Delta
commit, then deletes those files from disk at once (not after the vacuum retention), together
with any older file of those partitions that no commit references any more (files compaction
replaced). The first day kept per kind is recorded in `_retention/purged.json`, so that a
question about an earlier time can say the log was cut there. Deciding which figures go into
`daily` belongs to the layers above (`trailcli.retention`); this module only stores them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from trailcli.store import coverage, layout, maintenance

if TYPE_CHECKING:
    from deltalake import DeltaTable

DAILY = "daily"  # the table of figures kept for dropped days (not a log kind)
# Figures per UTC day; a null figure was not computed (its raw rows were gone already).
DAILY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("date", "string"),
    ("visits", "int64"),  # visits started that day (bots left out)
    ("visitors", "int64"),  # distinct visitors of those visits
    ("views", "int64"),  # $view events that day (bots left out)
    ("view_visitors", "int64"),  # distinct visitors of those views
    ("entries", "int64"),  # sessions (30 min timeout) whose first view fell that day
    ("exits", "int64"),  # sessions whose last view fell that day
    ("into_next_day", "int64"),  # sessions with views on both sides of the day's end
    ("max_online", "int64"),  # persons online: the day's peak
    ("min_online", "int64"),
    ("avg_online", "float64"),  # time-weighted over the day
    ("peak_at", "timestamp"),  # the first instant of the day's peak
    ("kept_at", "timestamp"),  # when the row was written
)


@dataclass
class KindPurge:
    """What a purge removes (or removed) from one table."""

    kind: str
    days: list[str] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    bytes: int = 0
    deleted_files: int = 0  # from disk, replaced files of those days included

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "days": len(self.days),
            "first_day": self.days[0] if self.days else None,
            "last_day": self.days[-1] if self.days else None,
            "files": self.files,
            "rows": self.rows,
            "bytes": self.bytes,
            "deleted_files": self.deleted_files,
        }


@dataclass
class PurgeSummary:
    """A purge's plan or result, per table, with the first day it keeps."""

    keep_from: str
    dry_run: bool
    kinds: list[KindPurge] = field(default_factory=list)
    daily_rows: int = 0
    seconds: float = 0.0

    @property
    def days(self) -> list[str]:
        return sorted({d for k in self.kinds for d in k.days})

    def rows(self) -> list[dict[str, Any]]:
        return [k.row() for k in self.kinds]

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = [f"{k.kind}: {len(k.days)} day(s), {k.rows} row(s)" for k in self.kinds]
        kept = f"; {self.daily_rows} daily row(s) kept" if self.daily_rows else ""
        return (
            f"{verb} the days before {self.keep_from} (UTC): {', '.join(parts) or 'no table'}"
            f"{kept}, {self.seconds:.1f}s"
        )


def days_before(data_dir: Path, kind: str, limit: str) -> list[str]:
    """The partition days of `kind` dated before `limit` (YYYY-MM-DD)."""
    from deltalake import DeltaTable

    from trailcli.store import tables

    if not tables.table_exists(data_dir, kind):
        return []
    table = DeltaTable(str(layout.table_path(data_dir, kind)))
    return sorted(d for d in maintenance.partitions(table) if d is not None and d < limit)


def drop_days_before(
    data_dir: Path, kinds: Iterable[str], limit: str, *, dry_run: bool = False
) -> PurgeSummary:
    """Remove the partitions of `kinds` dated before `limit` (one commit per table), then delete
    their files; with `dry_run`, only say what would go. Holds the compaction lock and the
    erasure lock (shared, as other writers)."""
    from deltalake import DeltaTable

    from trailcli.store import tables

    started = time.monotonic()
    summary = PurgeSummary(keep_from=limit, dry_run=dry_run)
    present = [k for k in kinds if tables.table_exists(data_dir, k)]
    if dry_run:
        for kind in present:
            summary.kinds.append(
                _plan(DeltaTable(str(layout.table_path(data_dir, kind))), kind, limit)
            )
        summary.seconds = time.monotonic() - started
        return summary
    from trailcli.store import erase

    # as compaction: no compaction rewrites a day while it goes, and an erasure's rewrite of
    # the same files is wholly before or after
    with maintenance.compaction_lock(data_dir), erase.erasure_lock(data_dir, shared=True):
        for kind in present:
            root = layout.table_path(data_dir, kind)
            table = DeltaTable(str(root))
            plan = _plan(table, kind, limit)
            cutoff_ns = time.time_ns()
            if plan.days:
                _remove_partitions(table, kind, limit)
            plan.deleted_files = _delete_unreferenced(root, limit, cutoff_ns)
            if plan.days:
                table = DeltaTable(str(root))
                table.create_checkpoint()  # the older commits' statistics can then be cleaned up
                table.cleanup_metadata()
            summary.kinds.append(plan)
        dropped = [k.kind for k in summary.kinds if k.days]
        if dropped:
            _record(data_dir, dropped, limit)
    summary.seconds = time.monotonic() - started
    return summary


def _plan(table: DeltaTable, kind: str, limit: str) -> KindPurge:
    plan = KindPurge(kind)
    for day, files in sorted(maintenance.partitions(table).items()):
        if day is None or day >= limit:
            continue
        plan.days.append(day)
        plan.files += len(files)
        plan.bytes += sum(f.size for f in files)
        plan.rows += sum(f.rows or 0 for f in files)
    return plan


def _remove_partitions(table: DeltaTable, kind: str, limit: str) -> None:
    """One Delta commit removing every current file of the days before `limit`."""
    from deltalake import CommitProperties
    from deltalake.transaction import AddAction, RemoveAction

    now_ms = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        RemoveAction(
            path=f.path,
            data_change=True,
            deletion_timestamp=now_ms,
            size=f.size,
            partition_values={layout.PARTITION: day},
        )
        for day, files in sorted(maintenance.partitions(table).items())
        if day is not None and day < limit
        for f in files
    ]
    table.create_write_transaction(
        actions,
        mode="append",
        schema=table.schema(),
        partition_by=[layout.PARTITION],
        commit_properties=CommitProperties(
            custom_metadata={"trail.operation": "purge", "trail.kind": kind, "trail.before": limit}
        ),
    )


def _delete_unreferenced(root: Path, limit: str, cutoff_ns: int) -> int:
    """Delete the files of the partition folders dated before `limit` that no current version of
    the table references (all of them, unless a late row for such a day was appended since),
    except files written after the purge began (a writer's file not yet committed); how many
    were deleted. Folders of days dropped by an earlier, interrupted purge are swept too."""
    from deltalake import DeltaTable

    live = {
        unquote(f.path)
        for files in maintenance.partitions(DeltaTable(str(root))).values()
        for f in files
    }
    deleted = 0
    for folder in sorted(root.iterdir()):
        day = layout.partition_of(str(folder / "x"))
        if day is None or day >= limit or not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            relative = f"{folder.name}/{path.name}"
            if relative in live or not path.is_file() or path.stat().st_mtime_ns > cutoff_ns:
                continue
            path.unlink()
            deleted += 1
        with contextlib.suppress(OSError):  # a late row's file remains
            folder.rmdir()
    return deleted


# -- what was dropped ---------------------------------------------------------------------------


def _record(data_dir: Path, kinds: Iterable[str], limit: str) -> None:
    kept = coverage.purged_before(data_dir)
    for kind in kinds:
        kept[kind] = max(kept.get(kind, limit), limit)
    path = layout.retention_marker_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kept_from": dict(sorted(kept.items()))}) + "\n")
    os.replace(tmp, path)


# -- the daily table ------------------------------------------------------------------------------


def _daily_schema() -> Any:
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([(name, types[kind]) for name, kind in DAILY_COLUMNS])


def write_daily(data_dir: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Merge figures into the `daily` table, one row per date: a figure already kept for a date
    stays (it was computed from fuller data), a figure it lacks is filled in. Returns how many
    dates the given rows cover."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from trailcli.store import tables, views

    new = {r["date"]: dict(r) for r in rows}
    if not new:
        return 0
    merged = {r["date"]: r for r in views.daily_rows(data_dir)}
    now = datetime.now(UTC)
    for day, row in new.items():
        old = merged.get(day, {})
        merged[day] = {
            name: old.get(name) if old.get(name) is not None else row.get(name)
            for name, _ in DAILY_COLUMNS
        }
        merged[day]["kept_at"] = old.get("kept_at") or now
    table = pa.Table.from_pylist([merged[d] for d in sorted(merged)], schema=_daily_schema())
    write_deltalake(
        str(layout.table_path(data_dir, DAILY)),
        table,
        mode="overwrite",
        configuration=None if tables.table_exists(data_dir, DAILY) else tables.TABLE_CONFIG,
    )
    return len(new)


# -- masking old addresses ------------------------------------------------------------------------

_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def mask_ip_sql(column: str) -> str:
    """A DuckDB expression masking the address in `column` as the collector's `--mask-ips` does
    (`trailcli/collector/enrich.py` `mask_ip`, the statement of the rule): IPv4 to its /24
    network address, IPv6 to its /48, in the same text; what is not an address stays as it is.

    A scalar subquery, one step a layer, so that each step is written once: the IPv6 text is
    expanded to its first three groups, which make the /48 network address."""
    v4 = rf"'{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}'"
    group = "coalesce(nullif(ltrim(split_part(expanded, ':', {i}), '0'), ''), '0')"
    steps = [
        f"SELECT {column} AS raw, lower(trim(split_part({column}, '%', 1), '[] ')) AS x",
        "SELECT *, CASE WHEN strpos(x, '.') > 0 THEN regexp_replace(x, '[0-9.]+$', '0:0') "
        "ELSE x END AS v",
        "SELECT *, (length(v) - length(replace(v, '::', ''))) // 2 AS doubles",
        "SELECT *, CASE WHEN doubles > 0 THEN split_part(v, '::', 1) ELSE v END AS head, "
        "CASE WHEN doubles > 0 THEN split_part(v, '::', 2) ELSE '' END AS tail",
        "SELECT *, CASE WHEN head = '' THEN 0 ELSE length(head) - length(replace(head, ':', '')) "
        "+ 1 END AS nh, CASE WHEN tail = '' THEN 0 ELSE length(tail) - "
        "length(replace(tail, ':', '')) + 1 END AS nt",
        "SELECT *, concat_ws(':', nullif(head, ''), "
        "nullif(rtrim(repeat('0:', greatest(8 - nh - nt, 0)), ':'), ''), nullif(tail, '')) AS expanded",
        "SELECT *, " + ", ".join(group.format(i=i) + f" AS g{i}" for i in (1, 2, 3)),
        "SELECT CASE WHEN raw IS NULL THEN NULL "
        f"WHEN regexp_full_match(x, {v4}) THEN regexp_replace(x, '\\.[0-9]+$', '.0') "
        "WHEN strpos(x, ':') > 0 "
        "AND regexp_full_match(v, '([0-9a-f]{1,4})?(:{1,2}[0-9a-f]{1,4})*(::)?') "
        "AND ((doubles = 1 AND nh + nt <= 7) OR (doubles = 0 AND nh = 8)) THEN "
        "CASE WHEN g3 <> '0' THEN g1 || ':' || g2 || ':' || g3 || '::' "
        "WHEN g2 <> '0' THEN g1 || ':' || g2 || '::' "
        "WHEN g1 <> '0' THEN g1 || '::' ELSE '::' END "
        "ELSE raw END",
    ]
    text = steps[0]
    for step in steps[1:]:
        text = f"{step} FROM ({text})"
    return f"({text})"


def mask_ips_before(data_dir: Path, limit: str, *, dry_run: bool = False) -> Any:
    """Mask the stored addresses (`visits.ip`) of the days before `limit` in place, as the
    collector's `--mask-ips` masks them when it records them: the files holding an address not
    masked yet are rewritten in one commit and the replaced files deleted at once (the
    erasure's rewrite, under its lock). Returns the rewrite's figures (`erase.TableRewrite`)."""
    from trailcli.store import erase

    days = days_before(data_dir, "visits", limit)
    masked = mask_ip_sql("ip")
    match = f"ip IS DISTINCT FROM {masked}"
    if not days:
        return erase.TableRewrite("visits")
    if dry_run:
        return erase.rewrite_files(data_dir, "visits", match, dates=days, dry_run=True)
    with erase.erasure_lock(data_dir, shared=False):
        return erase.rewrite_files(
            data_dir, "visits", match, replace={"ip": masked}, dates=days, operation="mask-ips"
        )

"""Presence snapshots after an erasure: those that held an erased person are deleted, then every
snapshot the erasure made stale is built again, so `trail online --at` stays exact for everyone
else and no snapshot keeps a token or id of the person (docs/privacy.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from trailcli.presence.snapshots import build_snapshots
from trailcli.store import layout

SNAPSHOT_COLUMNS = {
    "visitor_token": ("visitor_token",),
    "visit_token": ("visit_token",),
    "user_id": ("user_id", "resolved_user_id"),
}


def snapshots_holding(data_dir: Path, values: Mapping[str, set[str]]) -> list[Path]:
    """The snapshot files (Parquet) holding a row of any of `values` (column -> tokens or ids)."""
    import duckdb

    files = sorted(str(p) for p in layout.snapshot_dir(data_dir).glob("*.parquet"))
    clauses, params = [], {}
    for column, items in values.items():
        if items:
            params[column] = sorted(items)
            clauses += [f"list_contains(${column}, {c})" for c in SNAPSHOT_COLUMNS[column]]
    if not files or not clauses:
        return []
    con = duckdb.connect()
    try:
        con.execute("SET VARIABLE snapshot_files = $f", {"f": files})
        rows = con.execute(
            "SELECT DISTINCT filename FROM read_parquet(getvariable('snapshot_files'), "
            f"filename = true, union_by_name = true) WHERE {' OR '.join(clauses)}",
            params,
        ).fetchall()
    finally:
        con.close()
    return [Path(name) for (name,) in rows]


def rebuild_after_erasure(
    data_dir: Path,
    values: Mapping[str, set[str]],
    progress: Callable[[str], None] | None = None,
) -> tuple[int, list[str]]:
    """Delete the snapshots holding the erased values, then build the missing and stale ones;
    (snapshots deleted, instants written)."""
    holding = snapshots_holding(data_dir, values)
    for path in holding:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    return len(holding), build_snapshots(data_dir, progress=progress)

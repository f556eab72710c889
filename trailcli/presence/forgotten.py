"""Presence snapshots after an erasure, so `trail online --at` stays exact for everyone else and
no snapshot keeps a token or id of the person (docs/privacy.md).

An erasure changes the row counts of the days it touched, which makes every later snapshot
stale; building them all again reads every three hours of the log since then. Instead, each
snapshot that was fresh before the erasure is patched: the erased person's sessions are taken
out and its fingerprint moved to the counts after the erasure. That is exact because a
snapshot's state for one person does not depend on another's rows, unless the two share a
person key (a visitor erased while another visitor of the same user stays): such a snapshot is
deleted and built again, as is any snapshot that still holds the person afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from trailcli.presence.intervals import Session
from trailcli.presence.snapshots import (
    FORMAT_VERSION,
    Carry,
    _read,
    _write,
    build_snapshots,
    carry_person,
    dedup_counts,
    fingerprint,
)
from trailcli.store import layout
from trailcli.store.views import Lake

SNAPSHOT_COLUMNS = {
    "visitor_token": ("visitor_token",),
    "visit_token": ("visit_token",),
    "user_id": ("user_id", "resolved_user_id"),
}

Counts = dict[str, dict[str, int]]


@dataclass
class LakeCounts:
    """Rows per partition date of the fingerprinted kinds: distinct, and as stored."""

    distinct: Counts
    stored: Counts


def counts_now(data_dir: Path) -> LakeCounts:
    lake = Lake(data_dir)
    return LakeCounts(dedup_counts(lake), {k: dict(v) for k, v in lake.counts.items()})


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


def _erased(carry: Carry, s: Session, values: Mapping[str, set[str]]) -> bool:
    users = values.get("user_id", set())
    return (
        s.visitor_token in values.get("visitor_token", set())
        or s.visit_token in values.get("visit_token", set())
        or s.user_id in users
        or carry.resolved.get(s.key) in users
    )


def patch_snapshots(
    data_dir: Path, values: Mapping[str, set[str]], before: LakeCounts, after: LakeCounts
) -> tuple[int, int]:
    """Patch each snapshot that was fresh at `before` to the data at `after` without the erased
    `values`; delete one that cannot be patched exactly. (patched, deleted)."""
    patched = deleted = 0
    lake = Lake(data_dir)
    holding = set(snapshots_holding(data_dir, values))
    for meta_path in sorted(layout.snapshot_dir(data_dir).glob("*.json")):
        try:
            meta = json.loads(meta_path.read_text())
            instant = datetime.fromisoformat(meta["instant"])
        except (OSError, ValueError, KeyError):
            continue
        if meta.get("version") != FORMAT_VERSION:
            continue
        if meta.get("fingerprint") != fingerprint(before.distinct, instant):
            continue  # stale already: build_snapshots builds it again
        new_fp = fingerprint(after.distinct, instant)
        if meta_path.with_suffix(".parquet") not in holding:
            if new_fp != meta["fingerprint"]:  # none of theirs in it: only the counts move
                meta.update(fingerprint=new_fp, stored=fingerprint(after.stored, instant))
                _replace_text(meta_path, json.dumps(meta))
                patched += 1
            continue
        carry = _read(lake, instant, meta)
        if carry is None:
            continue
        gone = [s for s in carry.sessions if _erased(carry, s, values)]
        if new_fp == meta["fingerprint"] and not gone:
            continue
        kept = [s for s in carry.sessions if not _erased(carry, s, values)]
        keys = {carry_person(carry, s) for s in gone}
        if any(carry_person(carry, s) in keys for s in kept):
            meta_path.unlink(missing_ok=True)
            meta_path.with_suffix(".parquet").unlink(missing_ok=True)
            deleted += 1
            continue
        for s in gone:
            carry.resolved.pop(s.key, None)
            carry.gone.discard(s.key)
            if s.visit_token:
                carry.pages.pop(s.visit_token, None)
        carry.sessions = kept
        _write(data_dir, carry, new_fp, fingerprint(after.stored, instant))
        patched += 1
    return patched, deleted


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rebuild_after_erasure(
    data_dir: Path,
    values: Mapping[str, set[str]],
    before: LakeCounts | None = None,
    after: LakeCounts | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, int, list[str]]:
    """Patch the snapshots fresh before the erasure (given the counts before and after it),
    delete any that still hold the erased values, then build the missing and stale ones;
    (patched, deleted, instants built)."""
    patched = deleted = 0
    if before is not None and after is not None:
        patched, deleted = patch_snapshots(data_dir, values, before, after)
    holding = snapshots_holding(data_dir, values)
    for path in holding:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
    return patched, deleted + len(holding), build_snapshots(data_dir, progress=progress)

"""Forgetting one visitor in a large lake: `trail forget` beside deltalake's own delete + vacuum.

The lake is `trail sample` traffic (default: 10 M events over 30 days), compacted, with its
presence snapshots. Each round picks another visitor with visits on several days, copies the lake
twice and, alternating which goes first, erases that visitor's rows:

- trail: `store.forget.forget` (finds the visitor's visits, erasure list, rewrites the files that
  hold a row of theirs in one commit per table, deletes the replaced files and the log before a
  fresh checkpoint) plus `presence.forgotten.rebuild_after_erasure` (snapshots holding them
  deleted, stale ones rebuilt), as `trail forget` runs them;
- baseline: `DeltaTable.delete` with the same predicate on each table, then `vacuum` with zero
  retention (the replaced files deleted at once); no snapshots, no log scrub, no WAL.

Prints seconds, files and bytes rewritten, and the ratio.
Run: python bench/forget.py [--data-dir DIR] [--events N] [--days D] [--rounds R]
(DIR is made with `trail sample` and `trail compact` when missing.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from trailcli.presence.forgotten import LakeCounts, counts_now, rebuild_after_erasure
from trailcli.store import forget, layout, views
from trailcli.store.schema import KINDS

END = "2026-11-01"


def make_lake(path: Path, events: int, days: int) -> None:
    trail = [sys.executable, "-c", "from trailcli.cli import main; main()"]
    subprocess.run([*trail, "sample", "--data-dir", str(path), "--events", str(events),
                    "--days", str(days), "--end", END], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*trail, "compact", "--data-dir", str(path), "--older-than", "2026-11-02", "--retention", "0h"],
                   check=True)  # fmt: skip


def visitors(lake: Path, count: int) -> list[tuple[str, list[str]]]:
    """`count` visitors with visits on several days (most rows first), with their visits."""
    con = views.connect(lake, need=("visits",))
    rows = con.execute(
        "SELECT visitor_token, list(visit_token) FROM visits GROUP BY 1 "
        "HAVING count(DISTINCT date) >= 3 ORDER BY count(*) DESC, 1 LIMIT $n",
        {"n": count},
    ).fetchall()
    return [(v, list(visits)) for v, visits in rows]


def run_trail(lake: Path, visitor: str) -> dict[str, Any]:
    counts: dict[str, LakeCounts] = {}

    def under_lock(stage: str) -> None:
        counts[stage] = counts_now(lake)

    started, cpu = time.monotonic(), time.process_time()
    report = forget.forget(lake, [forget.Selector("visitor", visitor)], under_lock=under_lock)
    tables_done = time.monotonic()
    patched, deleted, built = rebuild_after_erasure(
        lake, report.person.values(), counts["before"], counts["after"]
    )
    ended = time.monotonic()
    return {
        "seconds": ended - started,
        "cpu": time.process_time() - cpu,
        "tables_seconds": tables_done - started,
        "snapshot_seconds": ended - tables_done,
        "rows": sum(report.rows.values()),
        "files": sum(t.files_matched for t in report.tables.values()),
        "bytes": sum(t.bytes_replaced for t in report.tables.values()),
        "snapshots": f"{patched} patched, {deleted} deleted, {len(built)} built",
    }


def run_baseline(lake: Path, visitor: str, visits: list[str]) -> dict[str, Any]:
    listed = ", ".join(f"'{v}'" for v in visits)
    predicate = f"visitor_token = '{visitor}' OR visit_token IN ({listed})"
    started, cpu = time.monotonic(), time.process_time()
    rows = files = size = 0
    for kind in KINDS:
        table = DeltaTable(str(layout.table_path(lake, kind)))
        before = {a["path"]: a["size_bytes"] for a in _adds(table)}
        metrics = table.delete(predicate)
        table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        rows += metrics.get("num_deleted_rows", 0)
        after = {a["path"] for a in _adds(table)}
        files += len(set(before) - after)
        size += sum(s for p, s in before.items() if p not in after)
    return {
        "seconds": time.monotonic() - started,
        "cpu": time.process_time() - cpu,
        "rows": rows,
        "files": files,
        "bytes": size,
    }


def _adds(table: DeltaTable) -> list[dict[str, Any]]:
    import pyarrow as pa

    return pa.table(table.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pylist()


def lake_size(path: Path) -> tuple[int, int]:
    files = [p for k in KINDS for p in layout.table_path(path, k).rglob("*.parquet")]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None, help="Where the copies go.")
    args = parser.parse_args()
    lake = args.data_dir or Path(tempfile.mkdtemp(prefix="trail-bench-forget-")) / "lake"
    if not lake.exists():
        print(f"making the lake in {lake} ...", file=sys.stderr)
        make_lake(lake, args.events, args.days)
    count, size = lake_size(lake)
    print(f"lake {lake}: {count} Parquet files, {size / 1e6:.0f} MB; load {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="trail-bench-forget-", dir=args.work_dir))
    try:
        for n, (visitor, visits) in enumerate(visitors(lake, args.rounds)):
            results: dict[str, dict[str, Any]] = {}
            order = ["trail", "baseline"] if n % 2 == 0 else ["baseline", "trail"]
            for side in order:
                copy = work / side
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(lake, copy)
                if side == "trail":
                    results[side] = run_trail(copy, visitor)
                else:
                    results[side] = run_baseline(copy, visitor, visits)
                shutil.rmtree(copy)
            t, b = results["trail"], results["baseline"]
            print(
                f"round {n + 1} ({len(visits)} visits, first: {order[0]}): "
                f"trail {t['seconds']:.1f}s, CPU {t['cpu']:.1f}s (tables {t['tables_seconds']:.1f}s, snapshots "
                f"{t['snapshot_seconds']:.1f}s: {t['snapshots']}), {t['rows']} rows, "
                f"{t['files']} files / {t['bytes'] / 1e6:.0f} MB rewritten | baseline "
                f"{b['seconds']:.1f}s, CPU {b['cpu']:.1f}s, {b['rows']} rows, {b['files']} files / "
                f"{b['bytes'] / 1e6:.0f} MB rewritten | ratio {t['seconds'] / b['seconds']:.2f}x"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

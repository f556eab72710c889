"""Compaction speed: `trail compact` beside deltalake's bin-packing optimize on the same data.

Events land as many small commits (as a collector leaves them), with re-sent duplicates. Reports
rows/s, files before/after, and a query over the views before and after.
Run: python bench/compact.py [--scale N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from trailcli.store import layout, maintenance, tables, views
from trailcli.store.schema import EVENTS

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def batch(rng: np.random.Generator, start: int, rows: int, days: int, dup_rate: float) -> pa.Table:
    """`rows` events with ids from `start`, plus re-sent copies of a share of them."""
    ids = np.arange(start, start + rows)
    seconds = rng.integers(0, days * 86400, rows)
    copies = rng.random(rows) < dup_rate
    ids = np.concatenate([ids, ids[copies]])
    seconds = np.concatenate([seconds, seconds[copies]])
    delay = np.concatenate([rng.integers(0, 5, rows), rng.integers(60, 3600, int(copies.sum()))])
    time_us = DAY0.timestamp() * 1e6 + seconds * 1e6
    n = len(ids)
    columns = {
        "event_id": pa.array([f"e{i}" for i in ids]),
        "visit_token": pa.array([f"v{i // 7}" for i in ids]),
        "visitor_token": pa.array([f"vis{i // 20}" for i in ids]),
        "user_id": pa.nulls(n, pa.string()),
        "name": pa.array(rng.choice(["$view", "add_to_cart", "checkout", "purchase"], n)),
        "properties": pa.array([f'{{"page":"/p/{i % 500}"}}' for i in ids]),
        "time": pa.array(time_us.astype("int64"), pa.int64()).cast(pa.timestamp("us", "UTC")),
        "received_at": pa.array((time_us + delay * 1e6).astype("int64")).cast(
            pa.timestamp("us", "UTC")
        ),
    }
    return tables.with_date(EVENTS, pa.table(columns, schema=EVENTS.schema))


def stored_rows(data_dir: Path) -> int:
    """Rows in the table's current files, duplicates included (from the Delta log's stats)."""
    from deltalake import DeltaTable

    table = DeltaTable(str(layout.table_path(data_dir, "events")))
    return int(pa.table(table.get_add_actions(flatten=True))["num_records"].to_numpy().sum())


def query_seconds(data_dir: Path) -> tuple[float, int]:
    """Time a typical report-shaped query over the events view; and the rows it saw."""
    started = time.perf_counter()
    con = views.connect(data_dir, need=("events",))
    ((rows,),) = con.execute(
        "SELECT count(*) FROM (SELECT visitor_token, name, count(*) FROM events GROUP BY ALL)"
    ).fetchall()
    ((total,),) = con.execute("SELECT count(*) FROM events").fetchall()
    del rows
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of events")
    parser.add_argument(
        "--commits", type=int, default=120, help="small commits to spread them over"
    )
    parser.add_argument("--days", type=int, default=8)
    args = parser.parse_args()
    events = int(300_000 * args.scale)
    per_commit = max(1, events // args.commits)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        data_dir = Path(tmp) / "data"
        for c in range(args.commits):
            tables.bulk_write(
                data_dir, "events", batch(rng, c * per_commit, per_commit, args.days, 0.05)
            )
        rows_stored = stored_rows(data_dir)
        files_before = len(tables.file_list(data_dir, "events"))
        before_s, before_rows = query_seconds(data_dir)

        copy = Path(tmp) / "copy"
        shutil.copytree(data_dir, copy)
        started = time.perf_counter()
        DeltaTable(str(layout.table_path(copy, "events"))).optimize.compact()
        optimize_s = time.perf_counter() - started
        optimize_files = len(tables.file_list(copy, "events"))

        started = time.perf_counter()
        summary = maintenance.compact(data_dir, older_than=DAY0 + dt.timedelta(days=args.days))
        compact_s = time.perf_counter() - started
        after_s, after_rows = query_seconds(data_dir)

    assert before_rows == after_rows == summary.rows_after
    print(
        f"events stored {rows_stored} ({summary.duplicates_dropped} duplicates) in "
        f"{files_before} files over {args.days} days, {args.commits} commits"
    )
    print(f"{'':28} {'seconds':>8} {'rows/s':>10} {'files after':>12}")
    print(
        f"{'deltalake optimize.compact':28} {optimize_s:>8.2f} {rows_stored / optimize_s:>10.0f} "
        f"{optimize_files:>12}"
    )
    print(
        f"{'trail compact (dedup, sort)':28} {compact_s:>8.2f} {rows_stored / compact_s:>10.0f} "
        f"{summary.files_after:>12}"
    )
    print(f"ratio trail/optimize time: {compact_s / optimize_s:.2f}")
    print(
        f"query over the views: {before_s:.3f}s before, {after_s:.3f}s after "
        f"({before_s / after_s:.1f}x faster)"
    )


if __name__ == "__main__":
    main()

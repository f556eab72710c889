"""Dropping old days: `trail purge` beside deltalake's own delete + vacuum.

The lake is `trail sample` traffic (default: 1 M events over 30 days), compacted, with its
presence snapshots. Each round copies the lake twice and, alternating which goes first, removes
the days before the limit (default: the first 20) from every table:

- trail: `retention.purge.purge` (one commit per table removing the days' files, the files
  deleted at once, a checkpoint, the snapshots before the limit deleted and the later ones kept
  fresh), as `trail purge --older-than` runs it;
- baseline: `DeltaTable.delete("date < limit")` on each table (a partition-only predicate: no
  file is rewritten), then `vacuum` with zero retention (the files deleted at once); no
  snapshots handled.

With `--keep-daily` the trail side also computes and keeps the days' figures first (the
baseline has nothing like it). Prints seconds per side and round, and the ratio of medians.
Run: python bench/purge.py [--data-dir DIR] [--events N] [--days D] [--purge P] [--rounds R]
[--keep-daily] (DIR is made with `trail sample` and `trail compact` when missing.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deltalake import DeltaTable

from trailcli.retention.purge import purge
from trailcli.store import layout
from trailcli.store.schema import KINDS

END = datetime(2026, 11, 1, tzinfo=UTC)


def make_lake(path: Path, events: int, days: int) -> None:
    trail = [sys.executable, "-c", "from trailcli.cli import main; main()"]
    subprocess.run([*trail, "sample", "--data-dir", str(path), "--events", str(events),
                    "--days", str(days), "--end", END.date().isoformat()],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*trail, "compact", "--data-dir", str(path), "--older-than", "2026-11-02",
                    "--retention", "0h"], check=True)  # fmt: skip


def run_trail(lake: Path, older_than: timedelta, keep_daily: bool) -> float:
    started = time.perf_counter()
    purge(lake, older_than, now=END, keep_daily=keep_daily)
    return time.perf_counter() - started


def run_baseline(lake: Path, limit: str) -> float:
    started = time.perf_counter()
    for kind in KINDS:
        table = DeltaTable(str(layout.table_path(lake, kind)))
        table.delete(f"date < '{limit}'")
        table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--purge", type=int, default=20, help="days dropped")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-daily", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trail-bench-purge-"))
    lake = args.data_dir or work / "lake"
    if not lake.exists():
        make_lake(lake, args.events, args.days)
    first = END - timedelta(days=args.days)
    limit = first + timedelta(days=args.purge)
    older_than = END - limit
    print(f"load: {os.getloadavg()[0]:.2f}; dropping {args.purge} of {args.days} days "
          f"(before {limit.date()}){' with --keep-daily' if args.keep_daily else ''}")  # fmt: skip
    times: dict[str, list[float]] = {"trail": [], "baseline": []}
    for r in range(args.rounds):
        order = ["trail", "baseline"] if r % 2 == 0 else ["baseline", "trail"]
        for side in order:
            copy = work / f"{side}-{r}"
            shutil.copytree(lake, copy)
            if side == "trail":
                seconds = run_trail(copy, older_than, args.keep_daily)
            else:
                seconds = run_baseline(copy, limit.date().isoformat())
            left = [p for k in KINDS for p in layout.table_path(copy, k).glob("date=*/*")]
            old = [
                p for p in left if (layout.partition_of(str(p)) or "") < limit.date().isoformat()
            ]
            assert not old, f"{side} left {len(old)} file(s) of dropped days"
            times[side].append(seconds)
            print(f"round {r + 1} {side:8} {seconds:7.2f}s")
            shutil.rmtree(copy)
    trail, base = statistics.median(times["trail"]), statistics.median(times["baseline"])
    print(f"median trail {trail:.2f}s, baseline {base:.2f}s, ratio {trail / base:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

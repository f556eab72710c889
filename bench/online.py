"""`trail online --at` on a long presence log: a snapshot plus a few hours, beside the full scan.

Makes the log once (`trail sample --tables presence --days N --peak-online P`, then `trail
compact`, which sorts presence by time and builds the snapshots), then for random instants times,
in the same run: the whole command (`trail online --at T --format json`, a fresh process, the
median of `--repeat` runs), the library query (the latest snapshot + the rows after it), and the
baseline: one DuckDB query over the whole table taking the latest transition of each client at
or before T. Also times `trail online timeline` over one whole day.
Run: python bench/online.py [--days 7] [--peak-online 5000] [--instants 5] [--data-dir DIR]
     python bench/online.py --full      # a year: --days 365 (about an hour to make on 2 cores)
     python bench/online.py --compare /tmp/old   # also the command of another checkout

For --compare (make the other checkout with `git worktree add /tmp/old <commit>`), each instant's
command runs alternately from this checkout and the other (its working directory and
PYTHONPATH), `--repeat` times each, and the ratio of the medians is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trailcli.presence import online
from trailcli.store.views import Lake

END = datetime(2026, 11, 1, tzinfo=UTC)
NOW = END + timedelta(days=30)  # every node long gone: no session is "open now"


HERE = Path(__file__).resolve().parent.parent  # this checkout


def trail(*args: str, checkout: Path = HERE) -> tuple[float, str]:
    """Run `trail ARGS` of `checkout` in a fresh process; wall seconds and stdout."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", "from trailcli.cli import main; main()", *args],
        capture_output=True, text=True, check=True, cwd=checkout, env=env,
    )  # fmt: skip
    return time.perf_counter() - started, out.stdout


def make_log(data_dir: Path, days: int, peak: int) -> None:
    """Generate and compact the presence log unless `data_dir` already holds one."""
    if (data_dir / "presence").exists():
        print(f"reusing {data_dir}", file=sys.stderr)
        return
    end = END.date().isoformat()
    spent, _ = trail(
        "sample", "--data-dir", str(data_dir), "--tables", "presence", "--days", str(days),
        "--peak-online", str(peak), "--end", end,
    )  # fmt: skip
    print(f"generated in {spent:.0f} s", file=sys.stderr)
    spent, _ = trail("compact", "--data-dir", str(data_dir), "--older-than", end)
    print(f"compacted and snapshotted in {spent:.0f} s", file=sys.stderr)


def full_scan(data_dir: Path, at: datetime) -> tuple[float, int]:
    """The baseline: open sessions at `at` from the latest transition per client, whole table."""
    lake = Lake(data_dir)
    lake.bind("presence")
    started = time.perf_counter()
    (row,) = lake.fetch("online_full_scan", {"at": at})
    return time.perf_counter() - started, int(row["open_sessions"])


def snapshot_query(data_dir: Path, at: datetime) -> tuple[float, int, int, bool]:
    """The library answer: seconds, persons, open sessions, and whether a snapshot served it."""
    started = time.perf_counter()
    window = online.load_window(data_dir, at, at, NOW, online.Options())
    rows = online.online_at(data_dir, at, NOW)
    spent = time.perf_counter() - started
    return spent / 2, len(rows), sum(r["clients"] for r in rows), window.used_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--peak-online", type=int, default=5000)
    parser.add_argument("--instants", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the command per instant")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--full", action="store_true", help="a year of presence (--days 365)")
    parser.add_argument("--compare", type=Path, help="also time the command of this checkout")
    args = parser.parse_args()
    days = 365 if args.full else args.days
    data_dir = (args.data_dir or Path("bench/out") / f"online-{days}d-{args.peak_online}").resolve()
    make_log(data_dir, days, args.peak_online)
    rng = random.Random(args.seed)
    first = END - timedelta(days=days - 1)  # the first day has no snapshot before it
    commands, queries, scans, others = [], [], [], []
    print("| instant | persons | sessions (query / scan) | command | query | full scan | ratio |")
    print("|---|---|---|---|---|---|---|")
    command_args = ("online", "--data-dir", str(data_dir), "-f", "json")
    for _ in range(args.instants):
        at = first + timedelta(seconds=rng.randrange(int((END - first).total_seconds())))
        runs, other_runs = [], []
        for _ in range(args.repeat):  # alternating, so both see the same machine load
            runs.append(trail(*command_args, "--at", at.isoformat()))
            if args.compare:
                other_runs.append(
                    trail(*command_args, "--at", at.isoformat(), checkout=args.compare)
                )
        command, out = statistics.median(r[0] for r in runs), runs[0][1]
        if args.compare:
            others.append(statistics.median(r[0] for r in other_runs))
            assert json.loads(other_runs[0][1]) == json.loads(out), "the checkouts disagree"
        query, persons, sessions, used = snapshot_query(data_dir, at)
        scan, open_sessions = full_scan(data_dir, at)
        assert len(json.loads(out)) == persons
        commands.append(command), queries.append(query), scans.append(scan)
        print(
            f"| {at:%Y-%m-%d %H:%M:%S} | {persons:,} | {sessions:,} / {open_sessions:,} "
            f"| {command:.2f} s | {query:.2f} s{'' if used else ' (scan)'} | {scan:.2f} s "
            f"| {scan / query:.1f}× |"
        )
    day = (END - timedelta(days=1)).date().isoformat()
    timeline, _ = trail(
        "online", "timeline", "--data-dir", str(data_dir), "--from", day, "--to",
        END.date().isoformat(), "--every", "5m", "-f", "json",
    )  # fmt: skip
    print(
        f"\nmedian: command {statistics.median(commands):.2f} s, query "
        f"{statistics.median(queries):.2f} s, full scan {statistics.median(scans):.2f} s "
        f"({statistics.median(scans) / statistics.median(queries):.1f}×); "
        f"timeline for {day} every 5m: {timeline:.2f} s (whole command)"
    )
    if args.compare:
        ratios = [c / o for c, o in zip(commands, others, strict=True)]
        print(
            f"--compare {args.compare}: command median {statistics.median(others):.2f} s there, "
            f"{statistics.median(commands):.2f} s here; per instant this/that "
            + ", ".join(f"{r:.2f}" for r in ratios)
            + f" (median {statistics.median(ratios):.2f})"
        )


if __name__ == "__main__":
    main()

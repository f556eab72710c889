"""Sample generation speed: `trail sample --events N` beside writing N random rows with pyarrow.

The baseline draws N rows of random data shaped like the events table (UUID-like ids, a name, a
JSON string, two timestamps) with numpy and writes them as zstd Parquet with pyarrow alone: the
least any generator of that many stored rows must pay. trail's side generates every table
(visits, events, presence, identities) with ground truth and writes them as Delta tables.

Run: python bench/sample.py [--events N] [--days D]   (10 million: --events 10000000)
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(work: Callable[[], int]) -> tuple[int, float, float]:
    """Run `work` (returns a row count); its rows, wall seconds and CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    rows = work()
    return rows, time.perf_counter() - wall, cpu_seconds() - cpu


def random_events(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    hex_chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

    def ids() -> pa.Array:
        raw = hex_chars[rng.integers(0, 16, size=(n, 36), dtype=np.uint8)]
        return pa.array(raw.view("S36").ravel(), pa.binary()).cast(pa.string())

    names = pa.array(["$view", "add_to_cart", "checkout", "purchase"]).take(
        pa.array(rng.integers(0, 4, n))
    )
    pages = pa.array([f'{{"page":"/product/{i}","title":"Product {i}"}}' for i in range(2000)])
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    times = np.sort(rng.integers(start, start + 7 * 86_400_000_000, n))
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "event_id": ids(),
            "visit_token": ids(),
            "visitor_token": ids(),
            "name": names,
            "properties": pages.take(pa.array(rng.integers(0, 2000, n))),
            "time": pa.array(times).cast(ts),
            "received_at": pa.array(times + 500_000).cast(ts),
        }
    )


def baseline(n: int, out: Path) -> int:
    """N random event-shaped rows written with pyarrow alone, in 2M-row files."""
    out.mkdir(parents=True)
    written = 0
    for part, lo in enumerate(range(0, n, 2_000_000)):
        table = random_events(min(2_000_000, n - lo), seed=part)
        pq.write_table(table, out / f"part-{part}.parquet", compression="zstd")
        written += table.num_rows
    return written


def trail_sample(n: int, days: int, out: Path) -> int:
    from trailcli.sample.generator import SampleOptions, generate

    result = generate(
        SampleOptions(data_dir=out, events=n, days=days, end=datetime(2026, 2, 1, tzinfo=UTC))
    )
    return result.rows["events"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="target events (default 1M)")
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trail-bench-sample-"))
    try:
        base_rows, base_wall, base_cpu = timed(lambda: baseline(args.events, root / "baseline"))
        rows, wall, cpu = timed(lambda: trail_sample(args.events, args.days, root / "sample"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"target {args.events:,} events over {args.days} days")
    print(
        f"pyarrow random rows : {base_rows:>12,} rows  {base_wall:7.1f} s wall  {base_cpu:7.1f} s CPU"
        f"  {base_rows / base_wall:>11,.0f} rows/s"
    )
    print(
        f"trail sample        : {rows:>12,} events {wall:7.1f} s wall  {cpu:7.1f} s CPU"
        f"  {rows / wall:>11,.0f} events/s (all four tables + ground truth)"
    )
    print(f"ratio (trail / baseline, wall): {wall / base_wall:.1f}x; CPU: {cpu / base_cpu:.1f}x")


if __name__ == "__main__":
    main()

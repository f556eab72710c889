"""Durable append throughput: trail's WAL (group commit) beside one write+fsync per record.

Both sides acknowledge a record only once it is fsynced. Run: python bench/append.py [--scale N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trailcli.store import wal
from trailcli.store.wal import LogWriter


def make_event(writer_no: int, i: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "event_id": f"{writer_no}-{i}-{os.urandom(6).hex()}",
        "visit_token": f"visit-{writer_no}",
        "visitor_token": f"visitor-{writer_no}",
        "name": "$view",
        "properties": {"page": f"/products/{i % 50}", "url": f"https://shop.example/p/{i}"},
        "time": now,
        "received_at": now,
    }


def run_threads(writers: int, per_writer: int, append_one: Callable[[int, int], None]) -> float:
    """Run `writers` threads appending `per_writer` records each; records per second."""
    start = threading.Barrier(writers + 1)

    def work(w: int) -> None:
        start.wait()
        for i in range(per_writer):
            append_one(w, i)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return writers * per_writer / (time.perf_counter() - began)


def baseline(root: Path, writers: int, per_writer: int) -> tuple[float, int]:
    """One O_APPEND write and one fsync per record, no batching."""
    fd = os.open(root / "baseline.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    fsyncs = 0

    def append_one(w: int, i: int) -> None:
        nonlocal fsyncs
        os.write(fd, wal.encode_frame("events", [make_event(w, i)]))
        os.fsync(fd)
        fsyncs += 1

    try:
        return run_threads(writers, per_writer, append_one), fsyncs
    finally:
        os.close(fd)


def trail(root: Path, writers: int, per_writer: int) -> tuple[float, int, int]:
    """LogWriter.append (group commit), committing to Delta every 2 s in the background."""
    writer = LogWriter.open(root / "data", f"bench-{writers}", flush_interval=2.0)
    try:
        rate = run_threads(
            writers, per_writer, lambda w, i: writer.append("events", [make_event(w, i)])
        )
        stats = writer.stats()
    finally:
        writer.close()
    return rate, stats["fsyncs"], stats["commits"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the record counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; medians shown")
    args = parser.parse_args()
    print(
        f"{'writers':>7} {'records':>8} {'baseline rec/s':>15} {'trail rec/s':>12} "
        f"{'ratio':>6} {'trail fsyncs':>13} {'delta commits':>14}"
    )
    for writers, per_writer in ((1, 3000), (64, 400)):
        per_writer = max(1, int(per_writer * args.scale))
        base_rates, rates, fsyncs, commits = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so both sides see the same machine load
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
                base_rates.append(baseline(Path(tmp), writers, per_writer)[0])
                rate, syncs, made = trail(Path(tmp), writers, per_writer)
            rates.append(rate)
            fsyncs.append(syncs)
            commits.append(made)
        base, rate = statistics.median(base_rates), statistics.median(rates)
        print(
            f"{writers:>7} {writers * per_writer:>8} {base:>15.0f} {rate:>12.0f} "
            f"{rate / base:>6.1f} {statistics.median(fsyncs):>13.0f} "
            f"{statistics.median(commits):>14.0f}"
        )


if __name__ == "__main__":
    main()

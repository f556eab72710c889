"""Benchmark `trail collect --workers 2` against `--workers 1` in the same run: wrk posts
single-event ahoy.js beacons (durable: each answered once fsynced), alternating rounds between the
two collectors, both nodes of clusters on one redis-server of the benchmark's own; events/s,
p50/p99, the ratio, and every acknowledged event counted in the tables afterwards.

    python bench/workers.py                  # 3 rounds x 10 s per collector (recorded)
    python bench/workers.py --duration 3     # quicker
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from collect import ROOT, Result, combine, free_port, run_wrk

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(work)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    raise SystemExit("redis-server did not start")


def start_collector(
    data_dir: Path, redis_url: str, workers: int, node_id: str
) -> tuple[subprocess.Popen[str], int]:
    """`trail collect --workers N` on a free port, once every worker listens."""
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect",
           "--port", "0", "--data-dir", str(data_dir), "--no-access-log", "--no-compact",
           "--node-id", node_id, "--redis", redis_url, "--workers", str(workers)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stderr is not None
    stderr = proc.stderr
    listening, port = 0, 0
    for line in stderr:
        match = LISTENING.search(line)
        if match:
            listening, port = listening + 1, int(match.group(1))
            if listening == workers:
                threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
                return proc, port
    raise SystemExit("collector did not start: " + (stderr.read() or ""))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its children (the workers), from /proc."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(x) for x in children.read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(name: str, pid: int, port: int, args: argparse.Namespace) -> Result:
    before = tree_cpu_seconds(pid)
    result = run_wrk(name, port, args.duration, args.connections, args.threads)
    result.cpu_seconds = tree_cpu_seconds(pid) - before
    return result


def stored(data_dir: Path) -> tuple[int, int]:
    """Events in the tables, with duplicates, and their distinct ids."""
    from trailcli.store import views

    con = views.connect(data_dir, need=())
    rows, ids = con.execute("SELECT count(*), count(DISTINCT event_id) FROM raw_events").fetchone()
    return int(rows), int(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per collector")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="trail-bench-workers-"))
    redis, url = start_redis(work)
    one, one_port = start_collector(work / "one", url, 1, "one")
    two, two_port = start_collector(work / "two", url, 2, "two")
    singles, doubles = [], []
    try:
        for _ in range(args.rounds):  # alternate, so both see the same background load
            singles.append(measure("--workers 1", one.pid, one_port, args))
            doubles.append(measure("--workers 2", two.pid, two_port, args))
    finally:
        codes = []
        for proc in (one, two):
            proc.send_signal(signal.SIGTERM)
            codes.append(proc.wait(120))
        redis.terminate()
        redis.wait(20)
    base, measured = combine(singles), combine(doubles)
    print(f"machine: {os.cpu_count()} cores; wrk -t{args.threads} -c{args.connections} on the "
          f"same machine, {args.rounds} alternating rounds of {args.duration}s per collector, "
          f"single-event multipart beacons, each answered once durable")  # fmt: skip
    print(
        f"{'collector':<16}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU us/req':>12}"
    )
    for r in (base, measured):
        print(f"{r.name:<16}{r.rate:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}"
              f"{r.cpu_us_per_request:>12.0f}")  # fmt: skip
    per_round = [d.rate / s.rate for s, d in zip(singles, doubles, strict=True)]
    print(
        f"ratio --workers 2 / --workers 1: {measured.rate / base.rate:.2f}; per round "
        + ", ".join(f"{r:.2f}" for r in per_round)
        + f" (median {statistics.median(per_round):.2f})"
    )
    for name, data_dir, result in (("one", work / "one", base), ("two", work / "two", measured)):
        rows, ids = stored(data_dir)
        print(f"events stored by {name}: {rows} rows, {ids} distinct ids (wrk counted "
              f"{result.requests} replies, {result.errors} errors; requests in flight when a "
              f"round ended are stored but not counted)")  # fmt: skip
    print(f"exit codes: {codes}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

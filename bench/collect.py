"""Benchmark `trail collect`: wrk posts single-event ahoy.js beacons at 64 connections, side by side
with a no-op aiohttp handler in the same run; events/s, p50/p99 latency, the ratio; `--soak` also
samples the collector's RSS over a longer run.

    python bench/collect.py                  # 3 rounds x 10 s per server = 30 s each (recorded)
    python bench/collect.py --duration 3     # quicker
    python bench/collect.py --soak 300       # plus a 5-minute RSS soak (after a 60 s warm-up)
    python bench/collect.py --loop uvloop    # both servers on uvloop
    python bench/collect.py --compare /tmp/old   # also another checkout's collector, same rounds

For --compare, make the other checkout with `git worktree add /tmp/old <commit>`. Each collector
runs with its checkout as working directory and PYTHONPATH: Python puts the working directory
ahead of PYTHONPATH, so a collector started elsewhere would import whatever `trailcli` lies there.
"""

from __future__ import annotations

import argparse
import http.client
import json
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
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the checkout whose collector is measured
LUA = HERE / "beacon.lua"
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")

NOOP_SERVER = """
import sys
from aiohttp import web
if sys.argv[2] == "uvloop":
    import uvloop
    uvloop.install()

async def noop(request):
    await request.read()
    return web.json_response({})

app = web.Application()
app.router.add_post("/ahoy/events", noop)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float = 0.0  # the server process's user + system CPU during the run

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / self.requests if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not come up")


def start_collector(
    data_dir: Path, loop: str, checkout: Path = ROOT
) -> tuple[subprocess.Popen[str], int]:
    """`trail collect` of `checkout` on a free port; its stderr is drained once it listens."""
    boot = "import uvloop; uvloop.install(); " if loop == "uvloop" else ""
    cmd = [sys.executable, "-c", boot + "from trailcli.cli import main; main()", "collect",
           "--port", "0", "--data-dir", str(data_dir), "--no-access-log", "--no-compact",
           "--node-id", "bench"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=checkout, env=env)
    assert proc.stderr is not None
    stderr = proc.stderr
    for line in stderr:
        match = LISTENING.search(line)
        if match:
            threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
            return proc, int(match.group(1))
    raise SystemExit("collector did not start: " + (stderr.read() or ""))


def start_noop(loop: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", NOOP_SERVER, str(port), loop], text=True)
    wait_http(port)
    return proc, port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, pid: int, port: int, args: argparse.Namespace) -> Result:
    """wrk against one server, with that server's CPU time over the run."""
    before = cpu_seconds(pid)
    result = run_wrk(name, port, args.duration, args.connections, args.threads)
    result.cpu_seconds = cpu_seconds(pid) - before
    return result


def wrk_command(port: int, duration: int, connections: int, threads: int) -> list[str]:
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
            "-s", str(LUA), f"http://127.0.0.1:{port}/ahoy/events"]  # fmt: skip


def run_wrk(name: str, port: int, duration: int, connections: int, threads: int) -> Result:
    cmd = wrk_command(port, duration, connections, threads)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    errors = sum(v for k, v in data.items() if k.startswith("errors_"))
    return Result(name, data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000,
                  data["p99_us"] / 1000, errors)  # fmt: skip


def combine(rounds: list[Result]) -> Result:
    """Rounds of one server as one result: totals, and the median round's percentiles."""
    by_p50 = sorted(rounds, key=lambda r: r.p50_ms)
    by_p99 = sorted(rounds, key=lambda r: r.p99_ms)
    middle = len(rounds) // 2
    return Result(
        rounds[0].name,
        sum(r.requests for r in rounds),
        sum(r.seconds for r in rounds),
        by_p50[middle].p50_ms,
        by_p99[middle].p99_ms,
        sum(r.errors for r in rounds),
        sum(r.cpu_seconds for r in rounds),
    )


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(120)


def stored_events(data_dir: Path) -> int:
    from trailcli.store import views

    con = views.connect(data_dir, need=())
    return int(con.execute("SELECT count(*) FROM raw_events").fetchone()[0])


def memory_mib(pid: int) -> tuple[float, float]:
    """The process's resident memory and the anonymous part of it (heap, not mapped files)."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, rest = line.split(":", 1)
        values[key] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Anonymous"]


def soak(
    data_dir: Path, warmup: int, seconds: int, step: int, connections: int, threads: int,
    loop: str,
) -> list[tuple[float, float, float]]:  # fmt: skip
    """One wrk run of `warmup + seconds` against a fresh collector; (elapsed s, RSS, anonymous
    MiB) every `step` seconds. The warm-up is the time the bounded state takes to fill (the
    de-duplication memory of 200,000 event ids fills in about half a minute at this rate)."""
    proc, port = start_collector(data_dir, loop)
    cmd = wrk_command(port, warmup + seconds, connections, threads)
    samples: list[tuple[float, float, float]] = []
    started = time.monotonic()
    load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        for tick in range(step, warmup + seconds, step):
            time.sleep(max(0.0, started + tick - time.monotonic()))
            rss, anon = memory_mib(proc.pid)
            samples.append((time.monotonic() - started, rss, anon))
            phase = "warm-up" if tick <= warmup else "soak"
            print(f"  {phase:<8}{tick:5d}s  RSS {rss:7.1f} MiB  anonymous {anon:7.1f} MiB",
                  flush=True)  # fmt: skip
        load.wait()
    finally:
        load.kill()
        stop(proc)
    return samples


def soak_summary(samples: list[tuple[float, float, float]], warmup: int) -> str:
    """The RSS spread over the soak after the warm-up, against its first sample there."""
    after = [rss for at, rss, _ in samples if at >= warmup - 1]
    first = after[0]
    low, high = 100 * (min(after) / first - 1), 100 * (max(after) / first - 1)
    whole = [rss for _, rss, _ in samples]
    return (
        f"soak RSS after the {warmup} s warm-up: first {first:.1f} MiB, min {min(after):.1f}, "
        f"max {max(after):.1f}, last {after[-1]:.1f} MiB: {low:+.1f} % to {high:+.1f} % "
        f"(from the very first sample at {samples[0][0]:.0f} s: {whole[0]:.1f} MiB, "
        f"max {100 * (max(whole) / whole[0] - 1):+.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of both servers (uvloop must be installed; trail does not depend on it)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="CHECKOUT",
        help="also run the collector of another checkout in the same rounds (an A/B)",
    )
    parser.add_argument("--soak", type=int, default=0, help="also soak the collector N seconds")
    parser.add_argument("--soak-warmup", type=int, default=60, help="seconds before the soak")
    parser.add_argument("--soak-step", type=int, default=15, help="seconds between RSS samples")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="trail-bench-"))
    noop, noop_port = start_noop(args.loop)
    collector, port = start_collector(work / "data", args.loop)
    other = start_collector(work / "other", args.loop, args.compare) if args.compare else None
    start_rss = memory_mib(collector.pid)[0]
    baseline, measured, compared = [], [], []
    try:
        for _ in range(args.rounds):  # alternate, so all see the same background load
            baseline.append(measure("no-op aiohttp handler", noop.pid, noop_port, args))
            measured.append(measure("trail collect", collector.pid, port, args))
            if other:
                compared.append(measure(str(args.compare), other[0].pid, other[1], args))
        end_rss = memory_mib(collector.pid)[0]
    finally:
        stop(noop)
        code = stop(collector)
        if other:
            stop(other[0])
    base, coll = combine(baseline), combine(measured)
    print(f"machine: {os.cpu_count()} cores; wrk -t{args.threads} -c{args.connections}, "
          f"{args.rounds} alternating rounds of {args.duration}s per server, single-event "
          f"multipart beacons")  # fmt: skip
    print(
        f"{'server':<24}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU us/req':>12}"
    )
    for r in (base, coll, *([combine(compared)] if compared else [])):
        print(f"{r.name:<24}{r.rate:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}"
              f"{r.cpu_us_per_request:>12.0f}")  # fmt: skip
    print(
        f"ratio trail collect / no-op: {coll.rate / base.rate:.2f} (throughput), "
        f"{base.cpu_us_per_request / coll.cpu_us_per_request:.2f} (CPU per request)"
    )
    # the host's speed drifts between rounds: each round's ratio shows how far that moves it
    per_round = [m.rate / b.rate for b, m in zip(baseline, measured, strict=True)]
    print(
        "ratio per round: "
        + ", ".join(f"{r:.2f}" for r in per_round)
        + f" (median {statistics.median(per_round):.2f})"
    )
    if compared:
        ab = [m.rate / c.rate for c, m in zip(compared, measured, strict=True)]
        print(
            f"this checkout / {args.compare} per round: "
            + ", ".join(f"{r:.2f}" for r in ab)
            + f" (median {statistics.median(ab):.2f})"
        )
    print(
        f"collector RSS: {start_rss:.1f} MiB at start, {end_rss:.1f} MiB after the run; exit {code}"
    )
    print(f"events stored: {stored_events(work / 'data')} (wrk counted {coll.requests} replies)")
    if args.soak:
        samples = soak(work / "soak", args.soak_warmup, args.soak, args.soak_step,
                       args.connections, args.threads, args.loop)  # fmt: skip
        print(soak_summary(samples, args.soak_warmup))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""A two-node trail cluster (`--redis`) beside Faye 1.4.3 with the faye-redis 0.2.0 engine on two
Node processes, the same Redis server and the same load script, in the same run.

Fan-out deliveries/s with 1 publisher (on node 1) and N subscribers spread over both nodes, over
WebSocket and long-polling, and publish-to-receive p50/p99 at a steady rate, for every
subscriber and for those on the other node than the publisher. Rounds alternate which cluster
goes first; nothing is pinned (4 server processes, Redis and the load script share the cores).

The baseline's packages (faye@1.4.3, faye-redis@0.2.0 and the redis@3.1.2 client it needs) are
installed with npm into --faye-dir (default ~/.cache/trail-bench/faye-redis) when missing; they
are never part of trail.

Run: python bench/bayeux_cluster.py [--scale 1.0] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bayeux import median_run

ROOT = Path(__file__).resolve().parents[1]
LOAD = ROOT / "bench/bayeux_load"
NODE_PATH = ROOT / "tests/interop/node_modules"
TIMEOUT = 30  # seconds a connect is held, the same on both clusters
BASELINE = ["faye@1.4.3", "faye-redis@0.2.0", "redis@3.1.2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def install_baseline(where: Path) -> Path:
    modules = where / "node_modules"
    if not all((modules / p.split("@")[0] / "package.json").exists() for p in BASELINE):
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(where), "--no-audit", "--no-fund", *BASELINE],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return modules


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="trail-bench-redis-")
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", workdir], stdout=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "redis-server")
        yield port
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def cluster(kind: str, redis_port: int, modules: Path) -> Iterator[str]:
    """Two nodes of one kind; yields their /faye URLs, comma-separated."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAYE_REDIS_MODULES": str(modules)}
    urls = []
    try:
        for i in range(2):
            port = free_port()
            if kind == "trail":
                url = f"redis://127.0.0.1:{redis_port}/1"
                cmd = [sys.executable, str(LOAD / "trail_cluster_server.py"), str(port)]
                cmd += [str(TIMEOUT), url, f"bench-{i}"]
            else:
                cmd = ["node", str(LOAD / "faye_redis_server.js"), str(port), str(TIMEOUT)]
                cmd.append(str(redis_port))
            proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
            procs.append(proc)
            wait_port(port, proc, f"{kind} node {i}")
            urls.append(f"http://127.0.0.1:{port}/faye")
        time.sleep(0.5)
        yield ",".join(urls)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def load(urls: str, *args: Any) -> dict[str, Any]:
    """Run the load script to completion; its last stdout line is the JSON result."""
    env = {**os.environ, "NODE_PATH": str(NODE_PATH)}
    cmd = ["node", str(LOAD / "load.js"), urls, *map(str, args)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if out.returncode != 0:
        raise RuntimeError(f"load.js {args} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measurements(scale: float, rate: float) -> list[tuple[str, tuple[Any, ...]]]:
    small, large = max(2, round(100 * scale)), max(2, round(1000 * scale))
    out: list[tuple[str, tuple[Any, ...]]] = []
    for mode in ("ws", "lp"):
        out.append((f"fanout_{mode}_{small}", (mode, "fanout", small, 200)))
        out.append((f"fanout_{mode}_{large}", (mode, "fanout", large, 50)))
        out.append((f"latency_{mode}", (mode, "latency", small, rate, max(5, 30 / rate))))
    return out


def run_all(scale: float, repeat: int, rate: float, modules: Path) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"trail": {}, "faye": {}}
    with (
        redis_server() as redis_port,
        cluster("trail", redis_port, modules) as trail_urls,
        cluster("faye", redis_port, modules) as faye_urls,
    ):
        urls = {"trail": trail_urls, "faye": faye_urls}
        for round_ in range(repeat):
            for i, (key, args) in enumerate(measurements(scale, rate)):
                order = ("trail", "faye") if (i + round_) % 2 == 0 else ("faye", "trail")
                for kind in order:
                    runs[kind].setdefault(key, []).append(load(urls[kind], *args))
    return {
        kind: {key: median_run(samples) for key, samples in by_key.items()}
        for kind, by_key in runs.items()
    }


def report(trail: dict[str, Any], faye: dict[str, Any]) -> str:
    rows = ["| measure | trail, 2 nodes | Faye 1.4.3 + faye-redis, 2 nodes | trail ÷ Faye |"]
    rows.append("|---|---|---|---|")
    for key in trail:
        t, f = trail[key], faye[key]
        if key.startswith("fanout"):
            label = f"fan-out {t['mode'].upper()}, {t['subscribers']} subscribers × {t['messages']} msgs"
            rows.append(
                f"| {label} (deliveries/s) | {t['deliveries_per_s']:,.0f} | "
                f"{f['deliveries_per_s']:,.0f} | {t['deliveries_per_s'] / f['deliveries_per_s']:.2f}× |"
            )
            for name, r in (("trail", t), ("Faye", f)):
                if r["received"] != r["expected"] or any(r["errors"].values()):
                    rows.append(
                        f"| ⚠ {name} {label}: {r['received']}/{r['expected']}, {r['errors']} | | | |"
                    )
        else:
            rate = t["published"] / t["seconds"]
            label = f"publish→receive {t['mode'].upper()}, {t['subscribers']} subscribers, {rate:g} msg/s"
            for q, name in (("p50", "all"), ("p99", "all"), ("cross_p50", "other node")):
                tv, fv = t[q + "_ms"], f[q + "_ms"]
                rows.append(
                    f"| {label}, {name} {q[-3:]} (ms) | {tv:.1f} | {fv:.1f} | {tv / fv:.2f}× |"
                )
            for name, r in (("trail", t), ("Faye", f)):
                if r["received"] != r["expected"]:
                    rows.append(f"| ⚠ {name} {label}: {r['received']}/{r['expected']} | | | |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the issue's sizes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument("--rate", type=float, default=5.0, help="publishes/s in the latency runs")
    parser.add_argument(
        "--faye-dir",
        type=Path,
        default=Path.home() / ".cache/trail-bench/faye-redis",
        help="where the baseline's npm packages are installed",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    modules = install_baseline(args.faye_dir)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    results = run_all(args.scale, args.repeat, args.rate, modules)
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, scale {args.scale}, "
        f"median of {args.repeat}, "
        f"load average {load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    print(report(results["trail"], results["faye"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

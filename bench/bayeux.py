"""trail's /faye beside Faye 1.4.3's own Node server, under one load script, in the same run.

For each server (pinned to CPU 0; the Node load generator `bench/bayeux_load/load.js` on CPU 1):
fan-out deliveries/s with 1 publisher and N subscribers over WebSocket and long-polling,
publish-to-receive p50/p99 at a steady rate, and the server's RSS per idle client (WebSocket
clients, handshaken, subscribed and connected). Faye runs with its memory engine and NodeAdapter.

Run: python bench/bayeux.py [--scale 1.0] [--repeat 1]
(--scale 1.0 is the issue's size: 100 and 1,000 subscribers, 5,000 idle clients; 0.2 is quick;
--repeat N runs each measurement N times and keeps the median, for a busy machine.)
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
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOAD = ROOT / "bench/bayeux_load"
NODE_PATH = ROOT / "tests/interop/node_modules"
TIMEOUT = 30  # seconds a connect is held, the same on both servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: int, args: list[str]) -> list[str]:
    """`args` run on one CPU (when taskset exists)."""
    return ["taskset", "-c", str(cpu), *args] if shutil.which("taskset") else args


def env() -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(NODE_PATH), "PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def server(kind: str) -> Iterator[tuple[str, int]]:
    """Start one server on CPU 0; yields (url, pid)."""
    port = free_port()
    if kind == "trail":
        cmd = [sys.executable, str(LOAD / "trail_server.py"), str(port), str(TIMEOUT)]
    else:
        cmd = ["node", str(LOAD / "faye_server.js"), str(port), str(TIMEOUT)]
    proc = subprocess.Popen(pinned(0, cmd), env=env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.05)
        time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/faye", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def load(url: str, *args: Any) -> dict[str, Any]:
    """Run the load script to completion on CPU 1; its last stdout line is the JSON result."""
    cmd = pinned(1, ["node", str(LOAD / "load.js"), url, *map(str, args)])
    out = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"load.js {args} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (taskset execs in place)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def idle_rss(url: str, pid: int, clients: int) -> dict[str, Any]:
    """RSS before and with `clients` idle WebSocket clients; KiB per client."""
    before = rss_kib(pid)
    cmd = pinned(1, ["node", str(LOAD / "load.js"), url, "ws", "idle", str(clients)])
    proc = subprocess.Popen(
        cmd, env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"idle clients did not connect: {line!r}")
        time.sleep(3)  # let both servers settle (Node's GC, aiohttp's buffers)
        during = rss_kib(pid)
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(30)
    return {
        "clients": clients,
        "rss_before_mib": before / 1024,
        "rss_mib": during / 1024,
        "kib_per_client": (during - before) / clients,
    }


def measurements(scale: float, rate: float) -> list[tuple[str, tuple[Any, ...]]]:
    small, large = max(2, round(100 * scale)), max(2, round(1000 * scale))
    out: list[tuple[str, tuple[Any, ...]]] = []
    for mode in ("ws", "lp"):
        out.append((f"fanout_{mode}_{small}", (mode, "fanout", small, 200)))
        out.append((f"fanout_{mode}_{large}", (mode, "fanout", large, 50)))
        out.append((f"latency_{mode}", (mode, "latency", small, rate, max(5, 30 / rate))))
    return out


def run_all(scale: float, repeat: int, rate: float) -> dict[str, dict[str, Any]]:
    """Every measurement on both servers back to back (alternating who goes first), `repeat`
    times, so that load from other work on the machine hits both alike; the median run counts."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"trail": {}, "faye": {}}
    with server("trail") as (trail_url, _), server("faye") as (faye_url, _):
        urls = {"trail": trail_url, "faye": faye_url}
        for round_ in range(repeat):
            for i, (key, args) in enumerate(measurements(scale, rate)):
                order = ("trail", "faye") if (i + round_) % 2 == 0 else ("faye", "trail")
                for kind in order:
                    runs[kind].setdefault(key, []).append(load(urls[kind], *args))
    results: dict[str, dict[str, Any]] = {
        kind: {key: median_run(samples) for key, samples in by_key.items()}
        for kind, by_key in runs.items()
    }
    for kind in ("trail", "faye"):
        with server(kind) as (url, pid):
            results[kind]["idle"] = idle_rss(url, pid, max(10, round(5000 * scale)))
    return results


def median_run(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median figure (deliveries/s, or p50 latency), with every run's figure."""
    field = "deliveries_per_s" if "deliveries_per_s" in samples[0] else "p50_ms"
    ordered = sorted(samples, key=lambda r: r[field])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_" + field] = [round(r[field], 1) for r in samples]
    return chosen


def report(trail: dict[str, Any], faye: dict[str, Any]) -> str:
    rows = ["| measure | trail | Faye 1.4.3 (Node) | trail ÷ Faye |", "|---|---|---|---|"]
    for key in trail:
        if key.startswith("fanout"):
            t, f = trail[key], faye[key]
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
        elif key.startswith("latency"):
            t, f = trail[key], faye[key]
            rate = t["published"] / t["seconds"]
            label = f"publish→receive {t['mode'].upper()}, {t['subscribers']} subscribers, {rate:g} msg/s"
            for q in ("p50", "p99"):
                rows.append(
                    f"| {label} {q} (ms) | {t[q + '_ms']:.1f} | {f[q + '_ms']:.1f} | "
                    f"{t[q + '_ms'] / f[q + '_ms']:.2f}× |"
                )
    t, f = trail["idle"], faye["idle"]
    rows.append(
        f"| RSS per idle WS client, {t['clients']:,} clients (KiB) | {t['kib_per_client']:.1f} | "
        f"{f['kib_per_client']:.1f} | {t['kib_per_client'] / f['kib_per_client']:.2f}× |"
    )
    rows.append(
        f"| RSS with them (MiB; at start) | {t['rss_mib']:.0f} ({t['rss_before_mib']:.0f}) | "
        f"{f['rss_mib']:.0f} ({f['rss_before_mib']:.0f}) | |"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = the issue's sizes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument("--rate", type=float, default=5.0, help="publishes/s in the latency runs")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both servers
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    results = run_all(args.scale, args.repeat, args.rate)
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

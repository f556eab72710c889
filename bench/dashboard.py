"""Benchmark the dashboard page in headless Chromium: 5,000 persons online, 1,000 events/s.

A real `trail collect` gets N persons (a visit, a Bayeux session bound to it, a `$view`), then a
steady stream of events. Each round opens /dashboard in a fresh Chromium page and reports the first
contentful paint, when the list of N persons is drawn (the page's `trail:online-ready` mark), and
over a window of live traffic the main thread's busy share (Chromium's Performance.getMetrics
TaskDuration over wall time), the longest task and the events/s the page shows. The baseline, in
the same run and alternating rounds, is the same page with live updates off (`?live=0`).

    python bench/dashboard.py                          # 5,000 persons, 1,000 events/s, 3 rounds
    python bench/dashboard.py --persons 500 --rate 200 --rounds 1 --window 5
    python bench/dashboard.py --serve                   # populate, pump, keep it open to look at
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
TOKEN = "bench-read-token"
SECRET = "bench-secret"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
FAYE_JS = ROOT / "tests/interop/node_modules/faye/client/faye-browser-min.js"

AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
]  # fmt: skip
PAGES = ["/", "/pricing", "/blog/launch", "/docs/start", "/cart", "/checkout", "/account"] + [
    f"/product/{n}" for n in range(1, 40)
]
ARRIVALS = [
    ("https://shop.test/?utm_source=newsletter&utm_medium=email", None),
    ("https://shop.test/", "https://www.google.com/search?q=hiking+boots"),
    ("https://shop.test/product/7", "https://www.facebook.com/"),
    ("https://shop.test/", None),
    ("https://shop.test/blog/launch", "https://news.ycombinator.com/item?id=1"),
    ("https://shop.test/pricing", "https://duckduckgo.com/"),
]
EVENTS = ["$view", "$view", "$view", "$click", "add_to_cart", "scroll", "search"]


@dataclass
class Person:
    visit: str
    visitor: str
    user: str | None
    agent: str


@dataclass
class Round:
    mode: str
    fcp_ms: float
    ready_ms: float
    count: str
    busy: float
    script: float
    layout: float
    longest_ms: float
    long_tasks: int
    shown_rate: float


@dataclass
class Collector:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def start_collector(data_dir: Path, timeout: str) -> Collector:
    env = {**os.environ, "TRAIL_API_TOKEN": TOKEN, "TRAIL_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect",
           "--port", "0", "--data-dir", str(data_dir), "--no-access-log", "--no-compact",
           "--timeout", timeout, "--max-events-per-request", "100", "--max-clients", "100000",
           "--faye-client-js", str(FAYE_JS)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("the collector did not start")
        match = LISTENING.search(line)
        if match:
            collector = Collector(proc, int(match.group(1)), [line])
            threading.Thread(target=_drain, args=(collector,), daemon=True).start()
            return collector


def _drain(collector: Collector) -> None:
    assert collector.proc.stderr is not None
    for line in collector.proc.stderr:
        collector.lines.append(line)


def make_persons(n: int, seed: int) -> list[Person]:
    rng = random.Random(seed)
    persons = []
    for i in range(n):
        user = f"user-{i}" if rng.random() < 0.3 else None
        persons.append(Person(str(uuid.UUID(int=rng.getrandbits(128))),
                              str(uuid.UUID(int=rng.getrandbits(128))), user, rng.choice(AGENTS)))  # fmt: skip
    return persons


async def populate(port: int, persons: list[Person]) -> None:
    """A visit, a Bayeux session bound to it (a signed user token for some) and a first view."""
    import aiohttp

    from trailcli.collector.identity import sign_user_id

    base = f"http://127.0.0.1:{port}"
    rng = random.Random(1)
    limit = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as http:

        async def one(p: Person) -> None:
            landing, referrer = rng.choice(ARRIVALS)
            headers = {"User-Agent": p.agent}
            async with limit:
                visit = {"visit_token": p.visit, "visitor_token": p.visitor,
                         "landing_page": landing, "referrer": referrer}  # fmt: skip
                async with http.post(f"{base}/ahoy/visits", json=visit, headers=headers) as r:
                    r.raise_for_status()
                await post_events(http, base, p, [view_event(rng.choice(PAGES))])

        for start in range(0, len(persons), 250):
            batch = persons[start : start + 250]
            await asyncio.gather(*(one(p) for p in batch))
            handshakes = []
            for i, p in enumerate(batch):
                trail: dict[str, Any] = {"visit_token": p.visit, "visitor_token": p.visitor}
                if p.user:
                    trail["user_token"] = sign_user_id(p.user, SECRET)
                handshakes.append({"channel": "/meta/handshake", "version": "1.0", "id": str(i),
                                   "supportedConnectionTypes": ["long-polling"], "ext": {"trail": trail}})  # fmt: skip
            async with http.post(f"{base}/faye", json=handshakes) as r:
                replies = await r.json()
                assert all(x.get("successful") for x in replies), replies[:1]


def view_event(page: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "name": "$view", "time": time.time(),
            "properties": {"page": page, "url": f"https://shop.test{page}", "title": page}}  # fmt: skip


def some_event(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(EVENTS)
    if name == "$view":
        return view_event(rng.choice(PAGES))
    props = {"$click": {"tag": "a", "text": "Buy now", "section": "hero"},
             "add_to_cart": {"product_id": rng.randint(1, 40), "price": round(rng.uniform(5, 200), 2)},
             "scroll": {"depth": rng.choice([25, 50, 75, 100])},
             "search": {"q": rng.choice(["boots", "tent", "jacket"]), "results": rng.randint(0, 90)}}[name]  # fmt: skip
    return {"id": str(uuid.uuid4()), "name": name, "time": time.time(), "properties": props}


async def post_events(http: Any, base: str, p: Person, events: list[dict[str, Any]]) -> None:
    body = {"visit_token": p.visit, "visitor_token": p.visitor, "events": events}
    async with http.post(f"{base}/ahoy/events", json=body, headers={"User-Agent": p.agent}) as r:
        r.raise_for_status()


async def pump(port: int, persons: list[Person], rate: float, stop: threading.Event) -> int:
    """Post `rate` events/s (5 per request, random persons) until `stop`; returns how many."""
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    rng = random.Random(2)
    sent = 0
    tick = 0.1
    per_tick = max(1, round(rate * tick))
    async with aiohttp.ClientSession() as http:
        next_at = time.monotonic()
        while not stop.is_set():
            jobs = []
            left = per_tick
            while left > 0:
                n = min(5, left)
                p = rng.choice(persons)
                jobs.append(post_events(http, base, p, [some_event(rng) for _ in range(n)]))
                left -= n
            await asyncio.gather(*jobs)
            sent += per_tick
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


class Pump:
    """The event stream in a thread of its own; `finish()` stops it and gives the events/s sent."""

    def __init__(self, port: int, persons: list[Person], rate: float) -> None:
        self.stop = threading.Event()
        self.sent: list[int] = []
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(port, persons, rate), daemon=True)
        self.thread.start()

    def _run(self, port: int, persons: list[Person], rate: float) -> None:
        self.sent.append(asyncio.run(pump(port, persons, rate, self.stop)))

    def finish(self) -> float:
        self.stop.set()
        self.thread.join(30)
        return (self.sent[0] if self.sent else 0) / (time.monotonic() - self.started)


def session_cookie(port: int) -> str:
    import http.client
    import urllib.parse

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urllib.parse.urlencode({"token": TOKEN})
    conn.request(
        "POST", "/dashboard/sign-in", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    response = conn.getresponse()
    cookie = response.getheader("Set-Cookie") or ""
    conn.close()
    assert response.status == 303, response.status
    return cookie.split(";", 1)[0].split("=", 1)[1]


LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push([entry.startTime, entry.duration]);
}).observe({ type: "longtask", buffered: true });
"""


def measure(browser: Any, port: int, cookie: str, live: bool, window: float) -> Round:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_cookies([{"name": "trail_dashboard", "value": cookie, "url": f"http://127.0.0.1:{port}/dashboard"}])  # fmt: skip
    context.add_init_script(LONG_TASKS)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable", {"timeDomain": "timeTicks"})
    try:
        page.goto(f"http://127.0.0.1:{port}/dashboard" + ("" if live else "?live=0"))
        wait_for_mark(page, "trail:online-ready")
        fcp = page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
        )
        ready = page.evaluate("performance.getEntriesByName('trail:online-ready')[0].startTime")
        count = page.text_content("#online-count") or ""
        time.sleep(1.0)  # let the first frames settle before the window
        before = _metrics(cdp)
        since = page.evaluate("performance.now()")
        time.sleep(window)
        after = _metrics(cdp)
        tasks = page.evaluate(f"window.__longTasks.filter(([start]) => start >= {since})")
        shown = page.text_content("#activity-rate") or "0/s"
    finally:
        context.close()
    wall = after["Timestamp"] - before["Timestamp"]
    share = lambda name: (after[name] - before[name]) / wall  # noqa: E731
    return Round(
        mode="live" if live else "live off",
        fcp_ms=fcp,
        ready_ms=ready,
        count=count,
        busy=share("TaskDuration"),
        script=share("ScriptDuration"),
        layout=share("LayoutDuration") + share("RecalcStyleDuration"),
        longest_ms=max((d for _, d in tasks), default=0.0),
        long_tasks=len(tasks),
        shown_rate=float(shown.replace("/s", "").replace(",", "") or 0),
    )


def wait_for_mark(page: Any, name: str, timeout: float = 60.0) -> None:
    """Poll from here: the page's CSP (no eval) rules out Playwright's in-page polling."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"performance.getEntriesByName({name!r}).length > 0"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {name} mark within {timeout} s")
        time.sleep(0.02)


def _metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def report(rounds: list[Round], args: argparse.Namespace) -> None:
    print(
        f"\n{args.persons} persons online, {args.rate:g} events/s posted, window {args.window:g} s"
    )
    print(f"{'mode':9} {'FCP ms':>7} {'list ms':>8} {'count':>7} {'busy':>6} {'script':>7} "
          f"{'layout':>7} {'longest':>8} {'long':>5} {'shown/s':>8}")  # fmt: skip
    for r in rounds:
        print(f"{r.mode:9} {r.fcp_ms:7.0f} {r.ready_ms:8.0f} {r.count:>7} {r.busy:6.1%} "
              f"{r.script:7.1%} {r.layout:7.1%} {r.longest_ms:6.0f}ms {r.long_tasks:5d} {r.shown_rate:8.0f}")  # fmt: skip
    for mode in ("live", "live off"):
        these = [r for r in rounds if r.mode == mode]
        if these:
            print(f"median {mode:9}: first paint {statistics.median(r.fcp_ms for r in these):.0f} ms, "
                  f"list drawn {statistics.median(r.ready_ms for r in these):.0f} ms, "
                  f"busy {statistics.median(r.busy for r in these):.1%}")  # fmt: skip
    live = [r.busy for r in rounds if r.mode == "live"]
    off = [r.busy for r in rounds if r.mode == "live off"]
    if live and off:
        print(f"busy share, live minus live off: {statistics.median(live) - statistics.median(off):.1%}"
              f" of the main thread (ratio {statistics.median(live) / max(statistics.median(off), 1e-6):.1f}x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--window", type=float, default=15.0, help="seconds of live traffic per round"
    )
    parser.add_argument(
        "--serve", action="store_true", help="populate and pump, then wait for Ctrl-C"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trail-bench-dashboard-") as tmp:
        collector = start_collector(Path(tmp) / "data", timeout="30m")
        try:
            persons = make_persons(args.persons, seed=7)
            started = time.monotonic()
            asyncio.run(populate(collector.port, persons))
            print(
                f"populated {len(persons)} persons in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
            events = Pump(collector.port, persons, args.rate)
            if args.serve:
                print(
                    f"http://127.0.0.1:{collector.port}/dashboard  token: {TOKEN}  (Ctrl-C stops)"
                )
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
                return
            time.sleep(3)  # the pump reaches its rate
            rounds = run_rounds(collector.port, args)
            posted = events.finish()
            report(rounds, args)
            print(f"events posted: {posted:.0f}/s on average over the run")
            print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            collector.stop()


def run_rounds(port: int, args: argparse.Namespace) -> list[Round]:
    from playwright.sync_api import sync_playwright

    cookie = session_cookie(port)
    rounds = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(args.rounds):
                order = (True, False) if i % 2 == 0 else (False, True)
                for live in order:
                    rounds.append(measure(browser, port, cookie, live, args.window))
                    print(rounds[-1], file=sys.stderr)
        finally:
            browser.close()
    return rounds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()

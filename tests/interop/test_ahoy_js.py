"""The real ahoy.js 0.4.5 in headless Chromium, on a page from another origin, against `trail collect`."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from collector_support import Daemon, stored

HERE = Path(__file__).resolve().parent
AHOY_JS = HERE / "node_modules" / "ahoy.js" / "dist" / "ahoy.js"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
REFERRER = "https://www.example.com/search?q=shoes"
QUERY = "?utm_source=news&utm_medium=email&utm_campaign=launch"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]


class PageServer:
    """Serves the test page and ahoy.js from its own loopback origin (another port = another origin)."""

    def __init__(self, use_beacon: bool) -> None:
        self.collector_url = ""
        template = (HERE / "ahoy_page.html").read_text()
        template = template.replace("__USE_BEACON__", "true" if use_beacon else "false")
        server = self

        def files(path: str) -> tuple[bytes, str]:
            if path == "/page.html":
                return template.replace("__COLLECTOR__", server.collector_url).encode(), "text/html"
            if path == "/ahoy.js":
                return AHOY_JS.read_bytes(), "text/javascript"
            return b"not found", "text/plain"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, ctype = files(self.path.split("?")[0])
                self.send_response(200 if ctype != "text/plain" else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def metric(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    match = re.search(rf"^trail_{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_for(port: int, name: str, value: float, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(port, name) >= value:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} did not reach {value} (now {metric(port, name)})")


@pytest.mark.parametrize("use_beacon", [True, False], ids=["beacon", "xhr"])
def test_ahoy_js_visits_and_events(browser: Any, tmp_path: Path, use_beacon: bool) -> None:
    data_dir = tmp_path / "trail-data"
    page_server = PageServer(use_beacon)
    collector = Daemon(data_dir, "--no-access-log", "--allow-origin", page_server.origin)
    page_server.collector_url = f"http://127.0.0.1:{collector.port}"
    assert page_server.origin != page_server.collector_url
    try:
        cookies = _drive(browser, collector, page_server)
    finally:
        page_server.close()
        code = collector.stop(signal.SIGTERM)
    assert code == 0
    _check(data_dir, page_server.origin, cookies)


def _drive(browser: Any, collector: Daemon, page_server: PageServer) -> dict[str, str]:
    """Load the page (from a search referrer), click, reload; the browser's cookies at the end."""
    context = browser.new_context(
        viewport={"width": 1200, "height": 800}, screen={"width": 1440, "height": 900}
    )
    try:
        page = context.new_page()
        url = f"{page_server.origin}/page.html{QUERY}"
        page.goto(url, referer=REFERRER)
        wait_for(collector.port, "visits_total", 1)
        wait_for(collector.port, "events_total", 2)
        page.click("#buy")
        wait_for(collector.port, "events_total", 3)
        page.reload()
        wait_for(collector.port, "events_total", 5)
        time.sleep(1.5)  # anything late (a duplicate visit, a re-sent queue) would land by now
        cookies = {c["name"]: c["value"] for c in context.cookies()}
    finally:
        context.close()
    assert metric(collector.port, "visits_total") == 1
    assert "ahoy_visit" in cookies and "ahoy_visitor" in cookies
    return cookies


def _check(data_dir: Path, origin: str, cookies: dict[str, str]) -> None:
    """One visit with every field ahoy.js sends; five events with their property types intact."""
    [visit] = stored(data_dir, "visits")
    assert visit["visit_token"] == cookies["ahoy_visit"]
    assert visit["visitor_token"] == cookies["ahoy_visitor"]
    assert visit["landing_page"] == f"{origin}/page.html{QUERY}"
    assert visit["referrer"] == REFERRER
    assert visit["referring_domain"] == "www.example.com"
    assert (visit["utm_source"], visit["utm_medium"], visit["utm_campaign"]) == (
        "news",
        "email",
        "launch",
    )
    assert (visit["screen_width"], visit["screen_height"]) == (1440, 900)
    assert visit["platform"] == "Web"
    assert (visit["browser"], visit["os"], visit["device_type"]) == (
        "HeadlessChrome",
        "Linux",
        "Desktop",
    )
    assert visit["ip"] == "127.0.0.1"

    events = stored(data_dir, "events")
    names = sorted(e["name"] for e in events)
    assert names == ["$click", "$view", "$view", "Purchase", "Purchase"]
    assert {e["visit_token"] for e in events} == {visit["visit_token"]}
    assert len({e["event_id"] for e in events}) == 5
    purchase = json.loads(next(e for e in events if e["name"] == "Purchase")["properties"])
    assert purchase == {"price": 9.5, "qty": 2, "gift": True, "note": "hi", "tags": ["a", 1],
                        "nested": {"k": None}}  # fmt: skip
    view = json.loads(next(e for e in events if e["name"] == "$view")["properties"])
    assert view == {
        "url": f"{origin}/page.html{QUERY}",
        "title": "Interop shop",
        "page": "/page.html",
    }
    click = json.loads(next(e for e in events if e["name"] == "$click")["properties"])
    assert click == {"tag": "button", "id": "buy", "class": "cta", "page": "/page.html",
                     "section": "hero", "text": "Buy now"}  # fmt: skip
    for e in events:
        assert visit["started_at"] <= e["time"] <= e["received_at"]

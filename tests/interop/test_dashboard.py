"""The dashboard in headless Chromium against a real `trail collect`, with visitors driven by the
real ahoy.js and Faye browser client on a page of another origin.

Screenshots of each view land in the test's temporary folder; with TRAIL_DOCS_SCREENSHOTS=1 (see
`make screenshots`) they replace the ones in docs/img/ that docs/dashboard.md shows.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from collector_support import Daemon, write_mmdb

from trailcli.collector.claims import sign_user_token

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SITE = HERE / "site"
AHOY_JS = HERE / "node_modules" / "ahoy.js" / "dist" / "ahoy.js"
FAYE_JS = HERE / "node_modules" / "faye" / "client" / "faye-browser-min.js"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
TOKEN = "dashboard-test-token"
SECRET = "dashboard-test-secret"
GRACE = 3.0  # the collector's --transport-grace in these tests
DOCS_IMAGES = ROOT / "docs" / "img"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
    pytest.mark.skipif(
        not FAYE_JS.exists(), reason="needs tests/interop/node_modules (make node-deps)"
    ),
]


# --- the visited site, on its own origin ----------------------------------------------------------


class Site:
    """Serves shop pages with ahoy.js and the Faye client from another loopback origin."""

    def __init__(self) -> None:
        self.collector = ""
        self.user_id = ""  # the user signed in on the site, if any
        self.extra: dict[str, Any] | None = None
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, ctype = site.file(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", ctype)
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def file(self, path: str) -> tuple[bytes | None, str]:
        titles = {"/shop.html": "Trail outdoor shop", "/cart.html": "Your cart"}
        if path in titles or path == "/xss.html":
            extra = '<script src="/extra.js"></script>' if path == "/xss.html" else ""
            title = (
                self.extra["title"] if path == "/xss.html" and self.extra else titles.get(path, "")
            )
            html = (SITE / "shop.html").read_text().replace("__TITLE__", title)
            return self.fill(html.replace("__EXTRA__", extra)), "text/html; charset=utf-8"
        if path == "/visitor.js":
            return self.fill((SITE / "visitor.js").read_text()), "text/javascript"
        if path == "/extra.js":
            return f"window.VISITOR_EXTRA = {json.dumps(self.extra)};".encode(), "text/javascript"
        if path == "/ahoy.js":
            return AHOY_JS.read_bytes(), "text/javascript"
        if path.startswith("/user_token/") and self.user_id:
            # the app server's part: a user token for the visit the page has just started
            visit = path.removeprefix("/user_token/")
            return sign_user_token(self.user_id, visit, SECRET).encode(), "text/plain"
        return None, "text/plain"

    def fill(self, text: str) -> bytes:
        text = text.replace("__COLLECTOR__", self.collector)
        return text.replace("__SIGNED_IN__", "yes" if self.user_id else "").encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


COUNTRIES = ["Germany", "France", "United States", "Japan", "Brazil", "Canada", "India", "Spain"]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


@pytest.fixture(scope="module")
def collector(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("dashboard")
    geo = {f"10.{i}.0.0/16": {"country": {"names": {"en": c}}} for i, c in enumerate(COUNTRIES)}
    geo["127.0.0.0/8"] = {"country": {"names": {"en": "Netherlands"}}}
    mmdb = write_mmdb(tmp / "geo.mmdb", geo)
    args = ["--no-access-log", "--transport-grace", f"{GRACE:g}s", "--allow-origin", site.origin,
            "--faye-client-js", str(FAYE_JS), "--geoip", str(mmdb), "--trust-proxy"]  # fmt: skip
    daemon = with_env(lambda: Daemon(tmp / "data", *args))
    site.collector = daemon.url("")
    yield daemon
    daemon.stop()


def with_env(start: Callable[[], Daemon]) -> Daemon:
    saved = {k: os.environ.get(k) for k in ("TRAIL_API_TOKEN", "TRAIL_SECRET")}
    os.environ.update(TRAIL_API_TOKEN=TOKEN, TRAIL_SECRET=SECRET)
    try:
        return start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# --- helpers -------------------------------------------------------------------------------------


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    """Keep a screenshot with the test's files; refresh docs/img/ when asked to."""
    target = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(target))
    if os.environ.get("TRAIL_DOCS_SCREENSHOTS"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(target, DOCS_IMAGES / target.name)


def signed_in(browser: Any, daemon: Daemon, **context: Any) -> Any:
    """A dashboard page, signed in through its own form."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="UTC", **context)
    page = ctx.new_page()
    page.goto(daemon.url("/dashboard"))
    page.fill("#token", TOKEN)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_selector("#status[data-state=live]", timeout=10_000)
    return page


def visitor_page(browser: Any, site: Site, path: str = "/shop.html") -> Any:
    """A visitor's own browser (cookies of its own) on the shop, once its Faye session is up."""
    page = browser.new_context().new_page()
    page.goto(site.origin + path)
    wait_until(lambda: page.evaluate("window.fayeReady === true"), 10, "the visitor's Faye session")
    return page


def wait_until(test: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def online_rows(page: Any) -> dict[str, dict[str, str]]:
    """The online list's drawn rows by person, each cell's text by column."""
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        "#online-list .vrow:not([hidden])",
        """rows => rows.map(row => Object.fromEntries([["key", row.dataset.person],
            ...[...row.children].map(cell => [cell.className.slice(2), cell.textContent])]))""",
    )
    return {row["key"]: row for row in rows}


def trail_rows(page: Any) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        "#trail-rows .trail-row",
        """rows => rows.map(row => ({kind: row.dataset.kind,
            name: row.querySelector('.name').textContent,
            detail: row.querySelector('.detail').textContent}))""",
    )
    return rows


def background_persons(daemon: Daemon, count: int) -> None:
    """Other persons online (visits, views and Bayeux sessions over HTTP), from several countries."""
    agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    ]  # fmt: skip
    arrivals = [("?utm_source=newsletter", ""), ("", "https://www.google.com/search?q=tent"),
                ("", "https://www.facebook.com/"), ("", ""), ("", "https://duckduckgo.com/")]  # fmt: skip
    pages = [
        "/",
        "/product/summit-tent",
        "/blog/packing-list",
        "/cart",
        "/pricing",
        "/product/trail-boots",
    ]
    handshakes = []
    for i in range(count):
        visit, visitor = (
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"v{i}")),
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")),
        )
        query, referrer = arrivals[i % len(arrivals)]
        headers = {
            "User-Agent": agents[i % len(agents)],
            "X-Forwarded-For": f"10.{i % len(COUNTRIES)}.0.9",
        }
        send(daemon, "/ahoy/visits", {"visit_token": visit, "visitor_token": visitor,
             "landing_page": f"https://shop.test/{query}", "referrer": referrer}, headers)  # fmt: skip
        views = [{"id": f"bg-{i}-{n}", "name": "$view", "time": time.time(),
                  "properties": {"page": pages[(i + n) % len(pages)]}} for n in range(1 + i % 4)]  # fmt: skip
        send(
            daemon,
            "/ahoy/events",
            {"visit_token": visit, "visitor_token": visitor, "events": views},
            headers,
        )
        trail: dict[str, Any] = {"visit_token": visit, "visitor_token": visitor}
        if i % 3 == 0:
            trail["user_token"] = sign_user_token(str(1000 + i), visit, SECRET)
        handshakes.append({"channel": "/meta/handshake", "version": "1.0", "id": str(i),
                           "supportedConnectionTypes": ["long-polling"], "ext": {"trail": trail}})  # fmt: skip
    replies = send(daemon, "/faye", handshakes, {})
    # each session's first connect, as a Faye client sends it at once: only then is it online
    connects = [{"channel": "/meta/connect", "clientId": r["clientId"],
                 "connectionType": "long-polling", "advice": {"timeout": 0}} for r in replies]  # fmt: skip
    send(daemon, "/faye", connects, {})


def send(daemon: Daemon, path: str, body: Any, headers: dict[str, str]) -> Any:
    """POST `body` as JSON; the JSON reply."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        text = response.read()
        assert response.status == 200, (path, response.status)
        return json.loads(text)
    finally:
        conn.close()


def get_status(daemon: Daemon, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# --- the tests -----------------------------------------------------------------------------------


def test_without_a_session_401_and_the_form_and_a_wrong_token_is_refused(
    browser: Any, collector: Daemon, tmp_path: Path
) -> None:
    for path in ("/dashboard/api/online", "/dashboard/api/live", "/dashboard/static/js/main.js"):
        assert get_status(collector, path) == 401
    ctx = browser.new_context(viewport={"width": 1000, "height": 640})
    page = ctx.new_page()
    first = page.goto(collector.url("/dashboard"))
    assert first is not None and first.status == 401
    assert page.is_visible("form[action='/dashboard/sign-in'] input#token[type=password]")
    page.fill("#token", "not-the-token")
    with page.expect_navigation() as refused:
        page.click("button[type=submit]")
    assert refused.value.status == 401
    assert page.text_content("[role=alert]") == "That token is not right."
    assert ctx.cookies() == []
    screenshot(page, "sign-in", tmp_path)
    page.fill("#token", TOKEN)
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_selector("#status[data-state=live]", timeout=10_000)
    assert page.url == collector.url("/dashboard")  # the token never travels in a URL
    (cookie,) = ctx.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        True,
        "Strict",
        "/dashboard",
    )
    assert TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # out of reach of the page's scripts
    assert TOKEN not in page.content()
    ctx.close()


def test_a_visitor_appears_moves_shows_a_trail_and_leaves(
    browser: Any, collector: Daemon, site: Site, tmp_path: Path
) -> None:
    background_persons(collector, 24)
    dashboard = signed_in(browser, collector)
    wait_until(lambda: len(online_rows(dashboard)) >= 24, 10, "the other persons")

    visitor = visitor_page(browser, site)
    person = visitor.evaluate("ahoy.getVisitorId()")
    row = wait_until(lambda: online_rows(dashboard).get(person), 2, "the visitor in the list")
    wait_until(lambda: online_rows(dashboard)[person]["page"] == "/shop.html", 2, "its page")
    assert row["tabs"] == "1"
    wait_until(lambda: online_rows(dashboard)[person]["device"] == "Desktop", 5, "its device")
    assert online_rows(dashboard)[person]["country"] == "Netherlands"

    # navigating: a reload of the Bayeux session inside the grace, so the row never goes away
    seen: list[bool] = []
    visitor.click("#to-cart")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = online_rows(dashboard)
        seen.append(person in rows)
        if rows.get(person, {}).get("page") == "/cart.html":
            break
        time.sleep(0.05)
    assert all(seen), "the visitor vanished from the list while navigating"
    assert online_rows(dashboard)[person]["page"] == "/cart.html"
    wait_until(lambda: visitor.evaluate("window.fayeReady === true"), 10, "the cart page's session")
    wait_until(lambda: online_rows(dashboard)[person]["views"] == "2", 5, "two pages this visit")
    wait_until(lambda: online_rows(dashboard)[person]["source"] == "(direct)", 5, "its source")
    screenshot(dashboard, "live", tmp_path)

    dashboard.click(f"#online-list .vrow[data-person='{person}']")
    dashboard.wait_for_selector("#trail:not([hidden])")
    wait_until(lambda: len(trail_rows(dashboard)) > 0, 10, "the trail's rows")
    views = lambda: [r["detail"] for r in trail_rows(dashboard) if r["name"] == "$view"]  # noqa: E731
    wait_until(lambda: views()[:2] == ["/shop.html", "/cart.html"], 10, "both views in the trail")
    visitor.click("#buy")
    wait_until(
        lambda: [
            r for r in trail_rows(dashboard) if r["name"] == "$click" and "Buy now" in r["detail"]
        ],
        5,
        "the new click on the trail",
    )
    screenshot(dashboard, "trail", tmp_path)
    dashboard.click("#trail-close")

    closed_at = time.monotonic()
    visitor.close(run_before_unload=True)
    time.sleep(GRACE / 3)
    assert person in online_rows(dashboard), "gone before the grace period ended"
    wait_until(lambda: person not in online_rows(dashboard), GRACE + 3, "the leave after the grace")
    assert time.monotonic() - closed_at >= GRACE * 0.9
    dashboard.context.close()


PAYLOAD_IMG = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
PAYLOAD_SCRIPT = "<script>window.__xss=(window.__xss||0)+1</script>"
PAYLOAD_USER = "<img src=y onerror=alert(1)>"


def test_payloads_in_properties_pages_titles_and_ids_show_as_text(
    browser: Any, collector: Daemon, site: Site
) -> None:
    site.extra = {
        "title": PAYLOAD_IMG,
        "view": {"page": PAYLOAD_SCRIPT},
        "event": {"name": PAYLOAD_IMG, "properties": {"note": PAYLOAD_SCRIPT, "<b>key</b>": 1}},
    }
    site.user_id = PAYLOAD_USER
    try:
        dashboard = signed_in(browser, collector)
        dialogs: list[str] = []
        dashboard.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        visitor = visitor_page(
            browser, site, "/xss.html?utm_source=" + "%3Cscript%3Ex()%3C/script%3E"
        )
        row = wait_until(lambda: online_rows(dashboard).get(PAYLOAD_USER), 5, "the payload user")
        wait_until(
            lambda: online_rows(dashboard)[PAYLOAD_USER]["page"] == PAYLOAD_SCRIPT, 5, "page"
        )
        wait_until(
            lambda: online_rows(dashboard)[PAYLOAD_USER]["source"] == "<script>x()</script>",
            10,
            "the source",
        )
        assert row["key"] == row["person"] == PAYLOAD_USER
        activity = dashboard.eval_on_selector_all(
            "#activity-list .vrow:not([hidden])",
            "rows => rows.map(r => [r.querySelector('.e-name').textContent, r.querySelector('.e-what').textContent])",
        )
        assert [PAYLOAD_IMG, f"note={PAYLOAD_SCRIPT}, <b>key</b>=1"] in activity
        dashboard.eval_on_selector_all(
            "#online-list .vrow",
            f"rows => rows.find(r => r.dataset.person === {json.dumps(PAYLOAD_USER)}).click()",
        )
        wait_until(
            lambda: any(r["name"] == PAYLOAD_IMG for r in trail_rows(dashboard)), 10, "the trail"
        )
        title = dashboard.text_content("#trail-title") or ""
        assert PAYLOAD_USER in title
        assert dashboard.evaluate("window.__xss") is None and dialogs == []
        assert dashboard.query_selector_all("img") == []
        assert len(dashboard.query_selector_all("script")) == 1  # the module, nothing injected
        visitor.close()
        dashboard.context.close()
    finally:
        site.extra = None
        site.user_id = ""


# --- history against the sample data --------------------------------------------------------------

SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="module")
def sample_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    data = tmp_path_factory.mktemp("sample") / "data"
    shutil.copytree(SAMPLE, data)
    daemon = with_env(lambda: Daemon(data, "--no-access-log"))
    yield daemon, data
    daemon.stop()


def history_persons(page: Any) -> list[str]:
    persons: list[str] = page.eval_on_selector_all(
        "#at-rows tr", "rows => rows.map(r => r.dataset.person)"
    )
    return persons


def test_history_lists_who_trail_online_lists_and_marks_the_peak(
    browser: Any, sample_collector: tuple[Daemon, Path], tmp_path: Path
) -> None:
    from trailcli.presence.online import online_at

    daemon, data = sample_collector
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    page = signed_in(browser, daemon)
    for case in truth["online"]:
        page.goto(daemon.url(f"/dashboard#history?end={case['at']}&range=24h&at={case['at']}"))
        count = str(case["count"])
        wait_until(lambda c=count: page.text_content("#at-count") == c, 10, case["label"])
        shown = sorted(history_persons(page))
        library = online_at(data, datetime.fromisoformat(case["at"]), datetime.now(UTC))
        assert (
            shown
            == sorted(case["persons"])
            == sorted(r["user_id"] or r["visitor_token"] for r in library)
        )

    peak = truth["peak"]
    page.goto(daemon.url(f"/dashboard#history?end={peak['to']}&range=7d"))
    wait_until(
        lambda: page.get_attribute("#chart", "data-peak") == str(peak["peak_online"]), 10, "peak"
    )
    assert datetime.fromisoformat(
        page.get_attribute("#chart", "data-peak-at") or ""
    ) == datetime.fromisoformat(peak["peak_at"])
    page.click("#chart .peak")
    wait_until(
        lambda: page.text_content("#at-count") == str(peak["peak_online"]), 10, "who at the peak"
    )
    at_peak = online_at(data, datetime.fromisoformat(peak["peak_at"]), datetime.now(UTC))
    assert sorted(history_persons(page)) == sorted(
        r["user_id"] or r["visitor_token"] for r in at_peak
    )

    def top_sources() -> list[str]:
        cells: list[str] = page.eval_on_selector_all(
            "#top-sources tr", "rows => rows.map(r => r.cells[0].textContent)"
        )
        return cells

    wait_until(lambda: top_sources()[:3] == ["(direct)", "Google", "Facebook"], 10, "top sources")
    page.set_viewport_size({"width": 1440, "height": 1000})
    screenshot(page, "history", tmp_path)
    page.context.close()

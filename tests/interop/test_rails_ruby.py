"""The Ruby of docs/rails.md, run by Debian's `ruby` against a live `trail collect`.

The store snippet is loaded into the real Ahoy gem (Debian's ruby-ahoy-matey): Ahoy's own
tracker calls it for visits, events and logins. The faye_pub helper publishes to a Node Faye
client subscribed on the same collector.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from node_lines import Lines

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SECRET = "rails-secret"
RUBY = shutil.which("ruby")
FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:78.0) Gecko/20100101 Firefox/78.0"


def snippet(name: str) -> str:
    """The Ruby block that follows `<!-- snippet: NAME -->` in docs/rails.md."""
    text = (ROOT / "docs" / "rails.md").read_text()
    match = re.search(rf"<!-- snippet: {name} -->\n```ruby\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/rails.md has no snippet {name}"
    return match.group(1)


def ruby_has(library: str) -> bool:
    if RUBY is None:
        return False
    return subprocess.run([RUBY, "-e", f"require {library!r}"], capture_output=True).returncode == 0


needs_ruby = pytest.mark.skipif(
    RUBY is None, reason="ruby is not installed (make test installs Debian's ruby)"
)
needs_ahoy = pytest.mark.skipif(
    not ruby_has("ahoy"),
    reason="the Ahoy gem is not installed (make test installs Debian's ruby-ahoy-matey)",
)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from collector_support import Daemon

    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    daemon = Daemon(tmp_path / "data", "--secret-file", str(secret_file))
    daemon.data_dir = tmp_path / "data"
    yield daemon
    if daemon.proc.poll() is None:
        daemon.stop()


def run_ruby(tmp_path: Path, daemon: Any, script: str) -> str:
    path = tmp_path / "scenario.rb"
    path.write_text(script)
    env = {**os.environ, "TRAIL_SECRET": SECRET, "TRAIL_URL": daemon.url("")}
    done = subprocess.run(
        [RUBY or "ruby", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def rows(daemon: Any, kind: str) -> list[dict[str, Any]]:
    from collector_support import stored

    return stored(daemon.data_dir, kind)


@needs_ruby
@needs_ahoy
def test_the_store_sends_ahoys_visits_events_and_logins(tmp_path: Path, collector: Any) -> None:
    (tmp_path / "store.rb").write_text(snippet("store"))
    out = run_ruby(
        tmp_path,
        collector,
        f"""
require "ahoy"
require "json"
load {str(tmp_path / "store.rb")!r}
User = Struct.new(:id)

# a signed-in user's visit and event, through Ahoy's own tracker
tracker = Ahoy::Tracker.new(visit_token: "rb-visit-1", user: User.new(42))
tracker.track_visit
soon = Time.now + 30.25
tracker.track("Viewed product", {{product_id: 7, tags: ["a", "b"], price: 9.5}}, time: soon)
tracker.track("Viewed product", {{product_id: 8}}, id: "fixed-id")
tracker.track("Viewed product", {{product_id: 8}}, id: "fixed-id")  # sent twice: stored once

# an anonymous visit whose user signs in later
later = Ahoy::Tracker.new(visit_token: "rb-visit-2")
later.track_visit
later.authenticate(User.new(7))

# the data hash Ahoy builds for a visit from a page request (ip, user agent, referrer, ...)
job = Ahoy::Tracker.new(visit_token: "rb-visit-3")
job.instance_variable_get(:@store).track_visit(visit_token: "rb-visit-3", visitor_token: job.visitor_token,
  started_at: Time.at(1_700_000_100), ip: "203.0.113.7", user_agent: {FIREFOX!r},
  referrer: "https://www.google.com/search?q=boots", landing_page: "https://shop.example/boots?utm_source=Newsletter",
  platform: "Web", browser: "Firefox", os: "Mac", device_type: "Desktop", referring_domain: "www.google.com",
  utm_source: "Newsletter")
# an event of that visit from a background job, with a time of its own long past
job.track("Shipped", {{}}, time: Time.at(1_700_000_200.5), id: "job-1")
puts JSON.generate(visitor_1: tracker.visitor_token, visitor_3: job.visitor_token, soon: soon.to_f)
""",
    )
    tokens = json.loads(out)
    assert collector.stop() == 0  # SIGTERM: the collector commits what its WAL holds
    visits = {v["visit_token"]: v for v in rows(collector, "visits")}
    assert set(visits) == {"rb-visit-1", "rb-visit-2", "rb-visit-3"}
    assert visits["rb-visit-1"]["visitor_token"] == tokens["visitor_1"]
    assert visits["rb-visit-1"]["user_id"] == "42"
    third = visits["rb-visit-3"]
    assert third["started_at"] == datetime.fromtimestamp(1_700_000_100, UTC)
    assert (third["ip"], third["browser"], third["os"], third["device_type"]) == (
        "203.0.113.7",
        "Firefox",
        "Mac OS X",
        "Desktop",
    )
    assert (third["referring_domain"], third["search_term"], third["utm_source"]) == (
        "www.google.com",
        "boots",
        "Newsletter",
    )
    assert third["extra"] is None
    events = rows(collector, "events")
    assert sorted(e["name"] for e in events) == ["Shipped", "Viewed product", "Viewed product"]
    first = next(e for e in events if e["event_id"] not in ("fixed-id", "job-1"))
    assert abs(first["time"].timestamp() - tokens["soon"]) < 2e-6  # the time Ahoy gave
    shipped = next(e for e in events if e["event_id"] == "job-1")
    assert shipped["time"] == datetime.fromtimestamp(1_700_000_200.5, UTC)
    assert (shipped["visit_token"], shipped["visitor_token"]) == ("rb-visit-3", tokens["visitor_3"])
    assert (first["visit_token"], first["visitor_token"], first["user_id"]) == (
        "rb-visit-1",
        tokens["visitor_1"],
        "42",
    )
    assert json.loads(first["properties"]) == {"product_id": 7, "tags": ["a", "b"], "price": 9.5}
    bindings = {
        (i["visit_token"], i["user_id"], i["source"]) for i in rows(collector, "identities")
    }
    assert bindings == {("rb-visit-1", "42", "api"), ("rb-visit-2", "7", "api")}


@needs_ruby
def test_the_signed_user_token_is_accepted(tmp_path: Path, collector: Any) -> None:
    (tmp_path / "helper.rb").write_text(snippet("user_token"))
    token = run_ruby(
        tmp_path,
        collector,
        f"""
load {str(tmp_path / "helper.rb")!r}
include TrailHelper
puts trail_user_token(Struct.new(:id).new(1234))
""",
    ).strip()
    from trailcli.collector.identity import sign_user_id

    assert token == sign_user_id("1234", SECRET)
    body = {
        "visit_token": "tok-visit",
        "visitor_token": "tok-visitor",
        "user_token": token,
        "js": True,
    }
    request = urllib.request.Request(
        collector.url("/ahoy/visits"), data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": FIREFOX},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert collector.stop() == 0
    [binding] = rows(collector, "identities")
    assert (binding["visit_token"], binding["user_id"], binding["source"]) == (
        "tok-visit",
        "1234",
        "user_token",
    )


def next_line(lines: Lines, prefix: str, deadline: float) -> str | None:
    """The next line starting with `prefix`, skipping the client's transport up/down lines."""
    while (line := lines.next(deadline)) is not None:
        if line.startswith(prefix):
            return line
    return None


@needs_ruby
def test_faye_pub_reaches_a_faye_subscriber(tmp_path: Path, collector: Any) -> None:
    node = shutil.which("node")
    listen = ROOT / "tests" / "interop" / "faye" / "listen.js"
    if node is None or not (ROOT / "tests" / "interop" / "node_modules" / "faye").is_dir():
        pytest.skip("node and the faye npm client are needed (make node-deps)")
    (tmp_path / "faye.rb").write_text(snippet("faye_pub"))
    proc = subprocess.Popen(
        [node, str(listen), collector.url("/faye"), "long-polling", "/chat/room1", "1", "20"],
        stdout=subprocess.PIPE, text=True, cwd=listen.parent,
    )  # fmt: skip
    try:
        lines = Lines(proc.stdout)  # type: ignore[arg-type]
        deadline = time.monotonic() + 20
        assert next_line(lines, "ready ", deadline) is not None
        reply = run_ruby(
            tmp_path,
            collector,
            f"""
load {str(tmp_path / "faye.rb")!r}
include FayeHelper
response = faye_pub("/chat/room1", {{text: "hello from Rails", from: "ünïcode"}})
puts response.body
""",
        )
        assert json.loads(reply) == [{"channel": "/chat/room1", "successful": True}]
        got = next_line(lines, "got ", deadline)
        assert got == 'got /chat/room1 {"text":"hello from Rails","from":"ünïcode"}'
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""Fuzzed bodies, headers and encodings never get a 5xx from the Ahoy endpoints (live server)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from collector_support import make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailcli.collector.app import create_app
from trailcli.collector.keys import METRICS


class LiveServer:
    """The collector app on a loopback port, served from its own thread and event loop."""

    def __init__(self, data_dir: Path, **overrides: object) -> None:
        self.app = create_app(make_settings(data_dir, **overrides))
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(20), "server did not start"

    def _run(self, ready: threading.Event) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        ready.set()
        self.loop.run_forever()

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("fuzz"), cookies="none", track_bots=True, secret="s", body_timeout=2,
                      trust_proxy=True, mask_ips=True)  # fmt: skip
    yield live
    live.stop()
    series = live.app[METRICS]._values.get("http_requests_total", {})
    assert not [k for k in series if dict(k)["status"].startswith("5")]


header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=80,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
events_like = st.fixed_dictionaries(
    {"events": st.lists(st.dictionaries(st.sampled_from(["name", "id", "time", "properties"]),
                                        json_values), max_size=12)},
    optional={"visit_token": json_values, "visitor_token": json_values, "user_token": json_values},
)  # fmt: skip
bodies = (
    st.binary(max_size=600)
    | json_values.map(lambda v: json.dumps(v).encode())
    | events_like.map(lambda v: json.dumps(v).encode())
    | st.text(max_size=200).map(lambda t: ("events_json=" + t).encode("utf-8", "surrogatepass"))
)
content_types = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "multipart/form-data; boundary=zz",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
        ]
    )
    | header_text
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/ahoy/visits", "/ahoy/events", "/api/identify"]),
    body=bodies,
    content_type=content_types,
    visit_header=header_text,
    user_agent=header_text,
    forwarded=header_text,
    encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity", "bogus"]),
    query=st.text(max_size=40),
)
def test_fuzzed_requests_never_5xx(
    server: LiveServer,
    path: str,
    body: bytes,
    content_type: str,
    visit_header: str,
    user_agent: str,
    forwarded: str,
    encoding: str | None,
    query: str,
) -> None:
    headers = {
        "Content-Type": content_type,
        "Ahoy-Visit": visit_header,
        "User-Agent": user_agent,
        "X-Forwarded-For": forwarded,
    }
    if encoding:
        headers["Content-Encoding"] = encoding
    from urllib.parse import quote

    status = server.request("POST", f"{path}?{quote(query, safe='=&[]')}", body, headers)
    assert status < 500, (path, body[:80], headers)


def test_server_still_healthy_after_fuzzing(server: LiveServer) -> None:
    assert server.request("GET", "/health", b"", {}) == 200

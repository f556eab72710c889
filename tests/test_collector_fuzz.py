"""Fuzzed bodies, headers, encodings, nesting, charsets and WebSocket frames never get a 5xx from
any route of a live collector, and a WebSocket survives bad frames."""

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
        return self.exchange(method, path, body, headers)[0]

    def exchange(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("fuzz"), cookies="none", track_bots=True, secret="s", body_timeout=2,
                      trust_proxy=True, mask_ips=True, bayeux_timeout=1.0,
                      bayeux_handshake_burst=1_000_000)  # fmt: skip
    yield live
    live.stop()
    series = live.app[METRICS]._values.get("http_requests_total", {})
    assert not [k for k in series if dict(k)["status"].startswith("5")]


def nested(depth: int, opener: str = "[") -> str:
    """JSON nested `depth` levels deep: `[[[...]]]` or `{"a":{"a":...}}`."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def deep(depth: int, opener: str, wrap: str) -> str:
    """A Bayeux message (or bare value) whose `data` or `ext` is nested `depth` levels."""
    inner = nested(depth, opener)
    if wrap == "bare":
        return inner
    return f'{{"channel":"/chat/x","id":"1","{wrap}":{inner}}}'


depths = st.sampled_from([1, 20, 65, 200, 999, 1200, 3000, 20000])
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
    | st.builds(deep, depths, st.sampled_from(["[", "{"]), st.just("bare")).map(str.encode)
    | st.builds(deep, depths, st.just("{"), st.just("bare")).map(
        lambda t: f'{{"events":[{t}]}}'.encode()
    )
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
            "application/x-www-form-urlencoded; charset=x-no-such-charset",
            "multipart/form-data; boundary=zz; charset=bogus",
            "application/json; charset=utf-16",
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


# --- /faye and the presence endpoints: nesting, charsets, every transport ---------------------

charsets = st.sampled_from(
    ["utf-8", "UTF-8", "latin-1", "utf-16", "ascii", "bogus", "x-no-such-charset", "", '"utf-8"']
)
bayeux_bodies = (
    st.builds(deep, depths, st.sampled_from(["[", "{"]), st.sampled_from(["bare", "data", "ext"]))
    | json_values.map(json.dumps)
    | st.just('{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}')
    | st.text(max_size=120)
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=bayeux_bodies,
    how=st.sampled_from(["json", "form", "jsonp", "identify-json", "identify-form"]),
    charset=charsets,
)
def test_fuzzed_bayeux_and_identify_requests_never_5xx(
    server: LiveServer, text: str, how: str, charset: str
) -> None:
    from urllib.parse import quote, urlencode

    suffix = f"; charset={charset}" if charset else ""
    if how == "jsonp":
        status = server.request(
            "GET", "/faye?" + urlencode({"message": text, "jsonp": "cb"}), b"", {}
        )
    elif how == "json":
        headers = {"Content-Type": "application/json" + suffix}
        status = server.request("POST", "/faye", text.encode("utf-8", "surrogatepass"), headers)
    elif how == "form":
        body = ("message=" + quote(text, safe="")).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded" + suffix}
        status = server.request("POST", "/faye", body, headers)
    else:
        kind = "application/json" if how == "identify-json" else "application/x-www-form-urlencoded"
        body = (
            text.encode("utf-8", "surrogatepass")
            if how == "identify-json"
            else ("client_id=" + quote(text[:60], safe="") + "&visit_token=v").encode()
        )
        status = server.request(
            "POST", "/api/presence/identify", body, {"Content-Type": kind + suffix}
        )
    assert status < 500, (how, charset, text[:80])  # fmt: skip


@pytest.mark.parametrize("how", ["json", "form", "jsonp"])
@pytest.mark.parametrize("wrap", ["bare", "data", "ext"])
def test_deep_nesting_gets_a_400_on_every_http_transport(
    server: LiveServer, how: str, wrap: str
) -> None:
    from urllib.parse import quote, urlencode

    text = deep(1200, "[", wrap)  # as deep as a JSON-P URL of aiohttp's longest request line
    if how == "jsonp":
        status, body = server.exchange("GET", "/faye?" + urlencode({"message": text}), b"", {})
    elif how == "json":
        headers = {"Content-Type": "application/json"}
        status, body = server.exchange("POST", "/faye", text.encode(), headers)
    else:
        form = ("message=" + quote(text, safe="")).encode()
        status, body = server.exchange("POST", "/faye", form, {})
    assert status == 400
    assert b"nested deeper than" in body


@pytest.mark.parametrize("path", ["/faye", "/api/presence/identify"])
def test_an_unknown_charset_gets_a_415(server: LiveServer, path: str) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=x-no-such-charset"}
    status, body = server.exchange("POST", path, b"message=%5B%5D&client_id=c", headers)
    assert status == 415
    assert b"x-no-such-charset" in body


def test_the_nesting_limit_is_a_setting(tmp_path: Path) -> None:
    live = LiveServer(tmp_path, max_json_depth=4)
    try:
        ok = '{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"ext":{"a":{"b":1}}}'
        too_deep = '{"channel":"/x","data":{"a":{"b":{"c":{"d":1}}}}}'
        headers = {"Content-Type": "application/json"}
        assert live.exchange("POST", "/faye", ok.encode(), headers)[0] == 200
        status, body = live.exchange("POST", "/faye", too_deep.encode(), headers)
        assert (status, b"nested deeper than 4 levels" in body) == (400, True)
        live.app[METRICS].scrape()
        refused = live.app[METRICS].value("bayeux_refused_total", {"limit": "max_json_depth"})
        assert refused == 1
    finally:
        live.stop()


websocket_frames = st.lists(
    bayeux_bodies.map(lambda t: ("text", t))
    | st.binary(max_size=64).map(lambda b: ("binary", b))
    | st.builds(deep, depths, st.just("["), st.just("bare")).map(lambda t: ("text", t)),
    min_size=1,
    max_size=6,
)


async def _websocket_survives(port: int, frames: list[tuple[str, object]]) -> list[str]:
    """Send `frames`, then a handshake; returns the replies (the last one is the handshake's)."""
    import aiohttp

    replies: list[str] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/faye", max_msg_size=0) as ws,
    ):
        for kind, payload in frames:
            if kind == "binary":
                await ws.send_bytes(payload)  # type: ignore[arg-type]
            else:
                await ws.send_str(payload)  # type: ignore[arg-type]
        handshake = [{"channel": "/meta/handshake", "version": "1.0", "id": "last",
                      "supportedConnectionTypes": ["websocket"]}]  # fmt: skip
        await ws.send_str(json.dumps(handshake))
        while True:
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            replies.append(message.data)
            if '"id":"last"' in message.data:
                return replies


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames=websocket_frames)
def test_a_websocket_lives_on_after_bad_frames(
    server: LiveServer, frames: list[tuple[str, object]]
) -> None:
    replies = asyncio.run(_websocket_survives(server.port, frames))
    assert json.loads(replies[-1])[-1]["successful"] is True


def test_a_too_deep_websocket_frame_gets_an_error_reply(server: LiveServer) -> None:
    replies = asyncio.run(_websocket_survives(server.port, [("text", deep(1500, "[", "data"))]))
    assert len(replies) == 2
    (error,) = json.loads(replies[0])
    assert error["successful"] is False and "nested deeper than" in error["error"]

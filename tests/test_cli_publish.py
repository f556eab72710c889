"""`trail publish` against a real /faye on loopback."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from trailcli.collector.bayeux import BAYEUX_ENGINE, mount
from trailcli.collector.bayeux.engine import Context
from trailcli.collector.settings import Settings

SECRET = "cli-secret"


@pytest.fixture
async def faye(aiohttp_server: Any) -> Any:
    app = web.Application()
    mount(app, Settings(bayeux_timeout=5.0, transport_grace=1.0, secret=SECRET))
    server = await aiohttp_server(app)
    engine = app[BAYEUX_ENGINE]
    batch = await engine.handle(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["websocket"],
            }
        ],
        Context(),
    )
    client_id = batch.replies[0]["clientId"]
    await engine.handle(
        [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/news/**"}],
        Context(),
    )
    return SimpleNamespace(url=str(server.make_url("/faye")), engine=engine, client=client_id)


def queued(faye: Any) -> list[Any]:
    return [d.message for d in faye.engine.clients[faye.client].queue]


async def test_publish_with_a_secret_file(faye: Any, run_cli: Any, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    result = await asyncio.to_thread(
        run_cli,
        "publish",
        "/news/today",
        '{"headline": "hi"}',
        "--url",
        faye.url,
        "--secret-file",
        str(secret_file),
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "Published to /news/today" in result.stderr
    assert queued(faye) == [{"channel": "/news/today", "data": {"headline": "hi"}}]


async def test_publish_with_the_secret_in_the_environment(faye: Any, run_cli: Any) -> None:
    result = await asyncio.to_thread(
        run_cli, "publish", "/news/x", "42", "--url", faye.url, env={"TRAIL_SECRET": SECRET}
    )
    assert result.exit_code == 0, result.stderr
    assert queued(faye) == [{"channel": "/news/x", "data": 42}]


async def test_publish_without_the_secret_is_refused(faye: Any, run_cli: Any) -> None:
    result = await asyncio.to_thread(
        run_cli, "publish", "/news/x", "1", "--url", faye.url, env={"TRAIL_SECRET": ""}
    )
    assert result.exit_code == 1
    assert "Authentication required" in result.stderr
    assert "--secret-file" in result.stderr
    assert queued(faye) == []


@pytest.mark.parametrize(
    ("channel", "data", "expected"),
    [
        ("/news/x", "{not json", "not valid JSON"),
        ("/news/*", "1", "Invalid channel"),
        ("news", "1", "Invalid channel"),
        ("/trail/presence", "1", "cannot be published to"),
        ("/meta/connect", "1", "cannot be published to"),
    ],
)
def test_bad_arguments_are_usage_errors(
    run_cli: Any, channel: str, data: str, expected: str
) -> None:
    result = run_cli("publish", channel, data, "--url", "http://127.0.0.1:9/faye")
    assert result.exit_code == 2
    assert expected in result.stderr


def test_unreachable_server(run_cli: Any, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("publish", "/a", "1", "--url", f"http://127.0.0.1:{port}/faye")
    assert result.exit_code == 1
    assert "Cannot reach" in result.stderr
    missing = run_cli("publish", "/a", "1", "--secret-file", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "Cannot read secret file" in missing.stderr

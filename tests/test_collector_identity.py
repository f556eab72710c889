"""Identity: signed user tokens, POST /api/identify with the secret, first binding wins, bearer checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from collector_support import BROWSER_UA, make_settings, stored

from trailcli.collector import identity
from trailcli.collector.app import create_app
from trailcli.collector.keys import METRICS

SECRET = "s3cret"


def test_sign_and_verify() -> None:
    token = identity.sign_user_id("user.42", SECRET)
    assert token.startswith("user.42.")
    assert len(token.rpartition(".")[2]) == 64
    assert identity.verify_user_token(token, SECRET) == "user.42"
    assert (
        identity.verify_user_token(token.upper().replace("USER.42", "user.42"), SECRET) == "user.42"
    )
    assert identity.verify_user_token(token, "other") is None
    assert identity.verify_user_token("user.42", SECRET) is None
    assert identity.verify_user_token("user.43." + token.rpartition(".")[2], SECRET) is None
    assert identity.verify_user_token(token, None) is None
    assert identity.verify_user_token(42, SECRET) is None


def test_tokens_equal() -> None:
    assert identity.tokens_equal("a", "a")
    assert not identity.tokens_equal("a", "b")
    assert not identity.tokens_equal("", None)
    assert not identity.tokens_equal(None, "a")


async def _client(aiohttp_client, data_dir: Path, **kw: object):
    return await aiohttp_client(create_app(make_settings(data_dir, secret=SECRET, **kw)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_identify_needs_the_secret(aiohttp_client, data_dir: Path) -> None:
    client = await _client(aiohttp_client, data_dir)
    body = {"visit_token": "v1", "user_id": "u1"}
    assert (await client.post("/api/identify", json=body)).status == 401
    wrong = await client.post("/api/identify", json=body, headers=bearer("nope"))
    assert wrong.status == 401
    assert "error" in await wrong.json()
    ok = await client.post("/api/identify", json=body, headers=bearer(SECRET))
    assert ok.status == 200
    assert await ok.json() == {"visit_token": "v1", "user_id": "u1", "bound": True}


async def test_identify_without_configured_secret_is_403(aiohttp_client, data_dir: Path) -> None:
    client = await aiohttp_client(create_app(make_settings(data_dir)))
    resp = await client.post("/api/identify", json={}, headers=bearer("anything"))
    assert resp.status == 403


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", b'{"visit_token": "v"}', b'{"user_id": "u"}', b'{"visit_token": "!!", "user_id": "u"}',
     b'{"visit_token": "v", "user_id": ""}', b'{"visit_token": "v", "user_id": {"a": 1}}'],
)  # fmt: skip
async def test_identify_bad_bodies_are_400(aiohttp_client, data_dir: Path, body: bytes) -> None:
    client = await _client(aiohttp_client, data_dir)
    resp = await client.post("/api/identify", data=body, headers=bearer(SECRET))
    assert resp.status == 400
    await client.close()
    assert stored(data_dir, "identities") == []


async def test_first_binding_wins(aiohttp_client, data_dir: Path) -> None:
    client = await _client(aiohttp_client, data_dir)
    first = await client.post(
        "/api/identify", json={"visit_token": "v1", "user_id": "alice"}, headers=bearer(SECRET)
    )
    second = await client.post(
        "/api/identify", json={"visit_token": "v1", "user_id": "mallory"}, headers=bearer(SECRET)
    )
    assert (await first.json())["bound"] is True
    assert await second.json() == {"visit_token": "v1", "user_id": "alice", "bound": False}
    await client.close()
    [row] = stored(data_dir, "identities")
    assert (row["visit_token"], row["user_id"], row["source"], row["node_id"]) == (
        "v1",
        "alice",
        "api",
        "test-node",
    )


async def test_signed_user_token_in_visit_binds(aiohttp_client, data_dir: Path) -> None:
    client = await _client(aiohttp_client, data_dir)
    token = identity.sign_user_id("42", SECRET)
    resp = await client.post(
        "/ahoy/visits",
        json={"visit_token": "v1", "visitor_token": "u1", "user_token": token, "plan": "pro"},
        headers={"User-Agent": BROWSER_UA},
    )
    assert resp.status == 200
    events = await client.post(
        "/ahoy/events",
        json={"visit_token": "v1", "visitor_token": "u1", "events": [{"name": "x", "id": "e1"}]},
        headers={"User-Agent": BROWSER_UA},
    )
    assert events.status == 200
    await client.close()
    [visit] = stored(data_dir, "visits")
    assert visit["user_id"] == "42"
    assert token not in (visit["extra"] or "")
    assert "user_token" not in (visit["extra"] or "")
    [row] = stored(data_dir, "identities")
    assert (row["visit_token"], row["visitor_token"], row["user_id"], row["source"]) == (
        "v1",
        "u1",
        "42",
        "user_token",
    )
    [event] = stored(data_dir, "events")
    assert event["user_id"] == "42"


async def test_unsigned_claims_are_ignored_and_counted(aiohttp_client, data_dir: Path) -> None:
    client = await _client(aiohttp_client, data_dir)
    for claim in ({"user_token": "42.deadbeef"}, {"user_id": "42"}, {"user_token": "42"}):
        resp = await client.post(
            "/ahoy/visits",
            json={"visit_token": "v-" + str(len(claim)) + next(iter(claim.values())), "visitor_token": "u", **claim},
            headers={"User-Agent": BROWSER_UA},
        )  # fmt: skip
        assert resp.status == 200
    assert client.server.app[METRICS].value("unsigned_claims_total") == 3
    await client.close()
    assert {v["user_id"] for v in stored(data_dir, "visits")} == {None}
    assert stored(data_dir, "identities") == []


async def test_require_helpers_for_other_mounts(aiohttp_client, data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, secret=SECRET, api_token="read-me"))

    async def secret_only(request: web.Request) -> web.Response:
        identity.require_secret(request)
        return web.Response(text="ok")

    async def readers(request: web.Request) -> web.Response:
        identity.require_api_token(request)
        return web.Response(text="ok")

    app.router.add_post("/t/secret", secret_only)
    app.router.add_get("/t/read", readers)
    client = await aiohttp_client(app)
    assert (await client.post("/t/secret", headers=bearer(SECRET))).status == 200
    assert (await client.post("/t/secret", headers=bearer("read-me"))).status == 401
    assert (await client.get("/t/read", headers=bearer("read-me"))).status == 200
    denied = await client.get("/t/read", headers=bearer(SECRET))
    assert denied.status == 401
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")

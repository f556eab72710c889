"""Identity: signed user tokens, POST /api/identify with the secret, first binding wins, bearer checks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from collector_support import BROWSER_UA, make_settings, stored

from trailcli.collector import claims, identity
from trailcli.collector.app import create_app
from trailcli.collector.claims import sign_user_token
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
    token = sign_user_token("42", "v1", SECRET)
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


# --- a user token binds the visit it was signed for, and no other --------------------------------


def test_claims_name_their_visit() -> None:
    token = sign_user_token("user.42", "v-1", SECRET)
    assert token.startswith("user.42.v-1.") and len(token.rpartition(".")[2]) == 64
    assert claims.check_user_token(token, "v-1", SECRET) == claims.ClaimCheck(user_id="user.42")
    assert claims.check_user_token(token.upper().replace("USER.42.V-1", "user.42.v-1"), "v-1",
                                   SECRET).user_id == "user.42"  # fmt: skip
    for visit, secret, refused in [
        ("v-2", SECRET, claims.OTHER_VISIT),
        (None, SECRET, claims.OTHER_VISIT),
        ("v-1", "other", claims.BAD_SIGNATURE),
        ("v-1", None, claims.BAD_SIGNATURE),
    ]:
        assert claims.check_user_token(token, visit, secret).refused == refused
    forged = "admin.v-1." + token.rpartition(".")[2]
    assert claims.check_user_token(forged, "v-1", SECRET).refused == claims.BAD_SIGNATURE
    old = identity.sign_user_id("user.42", SECRET)
    assert claims.check_user_token(old, "v-1", SECRET).refused == claims.UNSCOPED
    accepted = claims.check_user_token(old, "v-1", SECRET, accept_unscoped=True)
    assert (accepted.user_id, accepted.unscoped) == ("user.42", True)
    assert claims.check_user_token(["x"], "v-1", SECRET).refused == claims.BAD_SIGNATURE


@pytest.mark.parametrize("scoped", [True, False])
async def test_a_user_token_cannot_claim_another_persons_visit(
    aiohttp_client, data_dir: Path, run_cli, scoped: bool
) -> None:
    client = await _client(aiohttp_client, data_dir)
    victim = {"visit_token": "victim-visit", "visitor_token": "victim"}
    ua = {"User-Agent": BROWSER_UA}
    await client.post("/ahoy/visits", json=victim, headers=ua)
    events = {**victim, "events": [{"name": "viewed_private_page", "id": "e-victim"}]}
    assert (await client.post("/ahoy/events", json=events, headers=ua)).status == 200
    # the attacker's own, validly signed token, presented with the victim's visit token
    token = (
        sign_user_token("attacker", "attacker-visit", SECRET)
        if scoped
        else identity.sign_user_id("attacker", SECRET)
    )
    claim = {"visit_token": "victim-visit", "visitor_token": "attacker", "user_token": token}
    assert (await client.post("/ahoy/visits", json=claim, headers=ua)).status == 200
    reason = claims.OTHER_VISIT if scoped else claims.UNSCOPED
    metrics = client.server.app[METRICS]
    assert metrics.value("user_tokens_refused_total", {"reason": reason, "where": "visit"}) == 1
    await client.close()

    assert stored(data_dir, "identities") == []
    shown = run_cli("replay", "--user", "attacker", "--data-dir", data_dir, "--format", "json")
    assert json.loads(shown.stdout) == []


async def test_unscoped_tokens_are_accepted_only_with_the_option(
    aiohttp_client, data_dir: Path
) -> None:
    client = await _client(aiohttp_client, data_dir, accept_unscoped_user_tokens=True)
    body = {"visit_token": "v1", "visitor_token": "u1",
            "user_token": identity.sign_user_id("42", SECRET)}  # fmt: skip
    assert (
        await client.post("/ahoy/visits", json=body, headers={"User-Agent": BROWSER_UA})
    ).status == 200
    assert client.server.app[METRICS].value("user_tokens_unscoped_total", {"where": "visit"}) == 1
    await client.close()
    [row] = stored(data_dir, "identities")
    assert (row["visit_token"], row["user_id"]) == ("v1", "42")


def _documented_one_liner(language: str) -> str:
    """The command of docs/collector.md's `user_token` section for `language` (ruby/python)."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "collector.md").read_text()
    block = re.search(rf"```sh\n\s*(# {language}\n.*?)\n\s*```", docs, re.S)
    assert block, f"docs/collector.md shows the {language} one-liner"
    return block.group(1)


@pytest.mark.parametrize("language", ["ruby", "python"])
async def test_the_documented_one_liners_make_tokens_the_collector_accepts(
    aiohttp_client, data_dir: Path, language: str
) -> None:
    if shutil.which(language if language == "ruby" else "python3") is None:
        pytest.skip(f"{language} is not installed (make system-deps installs it)")
    env = {**os.environ, "TRAIL_SECRET": SECRET, "USER_ID": "user-7", "VISIT_TOKEN": "v-docs"}
    made = subprocess.run(["sh", "-c", _documented_one_liner(language)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token == sign_user_token("user-7", "v-docs", SECRET)
    client = await _client(aiohttp_client, data_dir)
    body = {"visit_token": "v-docs", "visitor_token": "u", "user_token": token}
    assert (
        await client.post("/ahoy/visits", json=body, headers={"User-Agent": BROWSER_UA})
    ).status == 200
    await client.close()
    [row] = stored(data_dir, "identities")
    assert row["user_id"] == "user-7"

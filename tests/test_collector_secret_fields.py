"""Secret-like field names, and URLs and JSON values with their secrets redacted or removed."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from trailcli.collector.secret_fields import (
    REDACTED,
    is_secret_name,
    redacted_json,
    redacted_target,
    without_secrets,
)


@pytest.mark.parametrize(
    "name",
    ["auth", "token", "auth_token", "authToken", "AUTH-TOKEN", "secret", "clientSecret",
     "user_token", "visit_token", "password", "X-Api-Key", "apiKey", "api_key", "Authorization",
     "private_key", "csrf_token", "accessToken", "sessionCookie"],
)  # fmt: skip
def test_secret_like_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["author", "authors", "keyboard", "key", "room", "channel", "page", "tokenizer", 7]
)
def test_ordinary_names(name: object) -> None:
    assert not is_secret_name(name)


def test_without_secrets_drops_fields_at_any_depth() -> None:
    value = {"a": 1, "auth": "x", "n": [{"token": "t", "b": 2}], "trail": {"token": "r", "p": "/"}}
    assert without_secrets(value) == {"a": 1, "n": [{"b": 2}], "trail": {"p": "/"}}
    assert redacted_json(value) == {
        "a": 1, "auth": REDACTED, "n": [{"token": REDACTED, "b": 2}],
        "trail": {"token": REDACTED, "p": "/"},
    }  # fmt: skip


def test_a_json_p_handshake_url_loses_its_secrets() -> None:
    message = [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes":
                ["callback-polling"], "ext": {"auth": "S3CRET", "trail": {"token": "READ",
                "visit_token": "v-1"}}}]  # fmt: skip
    from urllib.parse import urlencode

    target = "/faye?" + urlencode({"message": json.dumps(message), "jsonp": "__jsonp1__"})
    clean = redacted_target(target)
    assert "S3CRET" not in clean and "READ" not in clean and "v-1" not in clean
    fields = parse_qs(clean.partition("?")[2])
    assert fields["jsonp"] == ["__jsonp1__"]
    assert json.loads(fields["message"][0])[0]["ext"]["auth"] == REDACTED
    assert json.loads(fields["message"][0])[0]["channel"] == "/meta/handshake"


def test_targets_without_secrets_are_left_exactly_as_sent() -> None:
    for target in ["/health", "/faye?message=%5B%5D&jsonp=cb", "/x?a=1&b=%7Bbad", "/x?"]:
        assert redacted_target(target) == target
    assert (
        redacted_target("/ahoy/events?user_token=abc&x=1")
        == f"/ahoy/events?user_token={REDACTED}&x=1"
    )

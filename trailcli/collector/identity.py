"""Who a visit belongs to: signed user tokens, `POST /api/identify`, and the secret checks other mounts use."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from trailcli.collector import claims
from trailcli.collector.ahoy_payload import loads, sanitize_token
from trailcli.collector.http import Reply, json_error, read_body, unavailable_json
from trailcli.collector.keys import METRICS, NODE_ID, SETTINGS, WRITER
from trailcli.collector.lru import LRU
from trailcli.collector.settings import Settings
from trailcli.errors import DiskFull

MAX_USER_ID = 255


# --- pure: the older, unscoped user tokens (current ones, bound to a visit: `claims`) ----------


def sign_user_id(user_id: str, secret: str) -> str:
    """The older user token `<user_id>.<hex HMAC-SHA256(secret, user_id)>`, which names no visit
    (accepted only with `accept-unscoped-user-tokens`; see `claims.sign_user_token`)."""
    return claims.sign_unscoped_user_token(user_id, secret)


def verify_user_token(token: object, secret: str | None) -> str | None:
    """The user id of a correctly signed older (unscoped) token; None for anything else."""
    check = claims.check_user_token(token, None, secret, accept_unscoped=True)
    return check.user_id if check.unscoped else None


def tokens_equal(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; never true when no token is configured."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


# --- request checks other mounts use ------------------------------------------------------------


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def has_secret(request: web.Request) -> bool:
    """The request carries TRAIL_SECRET as its bearer token (trusted writes)."""
    return tokens_equal(bearer_token(request), request.app[SETTINGS].secret)


def has_api_token(request: web.Request) -> bool:
    """The request carries TRAIL_API_TOKEN as its bearer token (reading personal data)."""
    return tokens_equal(bearer_token(request), request.app[SETTINGS].api_token)


def require_secret(request: web.Request) -> None:
    """Raise 403 when no secret is configured, 401 when the request lacks it."""
    if not request.app[SETTINGS].secret:
        raise json_error(403, "This endpoint needs a secret.", "set TRAIL_SECRET or --secret-file")
    if not has_secret(request):
        raise json_error(
            401, "Missing or wrong bearer secret.", "send Authorization: Bearer <secret>"
        )


def require_api_token(request: web.Request) -> None:
    """Raise 403 when no API token is configured, 401 when the request lacks it."""
    if not request.app[SETTINGS].api_token:
        raise json_error(403, "This endpoint needs an API token.", "set TRAIL_API_TOKEN")
    if not has_api_token(request):
        raise json_error(401, "Missing or wrong API token.", "send Authorization: Bearer <token>")


# --- bindings -----------------------------------------------------------------------------------


@dataclass
class Bindings:
    """Visits already bound to a user (bounded): the first binding of a visit wins."""

    users: LRU[str, str]

    def first(self, visit_token: str, user_id: str) -> bool:
        return self.users.add_if_absent(visit_token, user_id)


BINDINGS = web.AppKey("identity_bindings", Bindings)


async def bind(
    app: web.Application,
    visit_token: str,
    user_id: str,
    source: str,
    visitor_token: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Write an identity row unless the visit is already bound; True when this binding is new."""
    if not app[BINDINGS].first(visit_token, user_id):
        app[METRICS].inc("identify_ignored_total", {"reason": "already_bound"})
        return False
    row = {
        "time": at or datetime.now(UTC),
        "visit_token": visit_token,
        "visitor_token": visitor_token,
        "user_id": user_id,
        "source": source,
        "node_id": app.get(NODE_ID),
    }
    try:
        await app[WRITER].append_async("identities", [row])
    except BaseException:
        app[BINDINGS].users.pop(visit_token)
        raise
    app[METRICS].inc("identities_total", {"source": source})
    return True


# --- POST /api/identify -------------------------------------------------------------------------


def _clean_user_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= MAX_USER_ID else None


async def identify(request: web.Request) -> web.Response:
    """Bind a visit to a user id on behalf of the app server (needs the secret)."""
    require_secret(request)
    try:
        body = loads(await read_body(request, request.app[SETTINGS].max_content_length) or b"null")
    except Reply as reply:
        return reply.response()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise json_error(400, "Body must be a JSON object.", '{"visit_token": ..., "user_id": ...}')
    visit_token = sanitize_token(body.get("visit_token"))
    user_id = _clean_user_id(body.get("user_id"))
    if not visit_token or not user_id:
        raise json_error(
            400,
            "Both visit_token and user_id are required.",
            f"user_id: 1-{MAX_USER_ID} characters",
        )
    visitor = sanitize_token(body.get("visitor_token"))
    try:
        bound = await bind(request.app, visit_token, user_id, "api", visitor)
    except DiskFull as exc:
        return unavailable_json(exc)
    winner = request.app[BINDINGS].users.get(visit_token) or user_id
    return web.json_response({"visit_token": visit_token, "user_id": winner, "bound": bound})


def mount(app: web.Application, settings: Settings) -> None:
    """Add `POST /api/identify` and the bindings state."""
    app[BINDINGS] = Bindings(LRU(settings.visit_cache_size))
    app.router.add_post("/api/identify", identify)

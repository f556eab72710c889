"""CORS for pages on other origins: preflights answered, allowed origins echoed with credentials."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from trailcli.collector.keys import SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALLOW_METHODS = "GET, POST, OPTIONS"
DEFAULT_ALLOW_HEADERS = "Content-Type, X-CSRF-Token, Authorization, Ahoy-Visit, Ahoy-Visitor"
MAX_AGE = "600"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether a page on `origin` may call the collector (`*` in the list allows any origin)."""
    return bool(origin) and ("*" in allowed or origin.rstrip("/") in allowed)


def cors_headers(origin: str) -> dict[str, str]:
    """Headers that let a page on `origin` read a response, cookies and credentials included."""
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def preflight_headers(origin: str, requested: str | None) -> dict[str, str]:
    headers = cors_headers(origin)
    headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
    headers["Access-Control-Allow-Headers"] = _safe_header_list(requested) or DEFAULT_ALLOW_HEADERS
    headers["Access-Control-Max-Age"] = MAX_AGE
    return headers


def _safe_header_list(requested: str | None) -> str:
    """Echo the requested header names, keeping only token characters (no header injection)."""
    if not requested:
        return ""
    names = [n.strip() for n in requested.split(",")]
    ok = [n for n in names if n and all(c.isalnum() or c in "-_" for c in n)]
    return ", ".join(ok[:32])


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The CORS rules as an aiohttp middleware."""
    return await handle(request, handler)


async def handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights for allowed origins and add CORS headers to their responses (errors too)."""
    origin = request.headers.get("Origin", "")
    allowed = origin_allowed(origin, request.app[SETTINGS].allow_origins)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return web.Response(status=403, text="Origin not allowed\n")
        requested = request.headers.get("Access-Control-Request-Headers")
        return web.Response(status=204, headers=preflight_headers(origin, requested))
    if not allowed:
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _merge(exc.headers, cors_headers(origin))
        raise
    if not response.prepared:
        _merge(response.headers, cors_headers(origin))
    return response


def _merge(headers: CIMultiDict[str], extra: dict[str, str]) -> None:
    for name, value in extra.items():
        headers[name] = value

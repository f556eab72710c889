"""CORS for pages on other origins: preflights answered, allowed origins echoed with credentials."""

from __future__ import annotations

from aiohttp import web

from trailcli.collector.keys import SETTINGS

ALLOW_METHODS = "GET, POST, OPTIONS"
DEFAULT_ALLOW_HEADERS = "Content-Type, X-CSRF-Token, Authorization, Ahoy-Visit, Ahoy-Visitor"
MAX_AGE = "600"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether a page on `origin` may call the collector (`*` in the list allows any origin but
    `null`, the origin of sandboxed frames and local files, which must be listed by name)."""
    if not origin:
        return False
    if origin.rstrip("/") in allowed:
        return True
    return "*" in allowed and origin != "null"


def cors_headers(origin: str) -> dict[str, str]:
    """Headers that let a page on `origin` read a response, cookies and credentials included."""
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def preflight_headers(
    origin: str,
    requested: str | None,
    *,
    methods: str = ALLOW_METHODS,
    default_headers: str = DEFAULT_ALLOW_HEADERS,
    max_age: str = MAX_AGE,
) -> dict[str, str]:
    headers = cors_headers(origin)
    headers["Access-Control-Allow-Methods"] = methods
    headers["Access-Control-Allow-Headers"] = _safe_header_list(requested) or default_headers
    headers["Access-Control-Max-Age"] = max_age
    return headers


def _safe_header_list(requested: str | None) -> str:
    """Echo the requested header names, keeping only token characters (no header injection)."""
    if not requested:
        return ""
    names = [n.strip() for n in requested.split(",")]
    ok = [n for n in names if n and all(c.isalnum() or c in "-_" for c in n)]
    return ", ".join(ok[:32])


def add_preflight_routes(app: web.Application) -> None:
    """Let every route answer preflights, except those that answer them already (`/faye` does,
    as Faye does). Call it once every route is added."""
    for resource in app.router.resources():
        methods = {route.method for route in resource}
        if isinstance(resource, web.Resource) and not methods & {"OPTIONS", "*"}:
            resource.add_route("OPTIONS", preflight)


async def preflight(request: web.Request) -> web.Response:
    """A preflight: 204 with the CORS headers for an allowed origin, 403 for any other; a plain
    OPTIONS request gets the methods the collector takes."""
    if "Access-Control-Request-Method" not in request.headers:
        return web.Response(status=204, headers={"Allow": ALLOW_METHODS})
    origin = request.headers.get("Origin", "")
    if not origin_allowed(origin, request.app[SETTINGS].allow_origins):
        return web.Response(status=403, text="Origin not allowed\n")
    requested = request.headers.get("Access-Control-Request-Headers")
    return web.Response(status=204, headers=preflight_headers(origin, requested))


def add_response_headers(
    request: web.Request, response: web.StreamResponse, allowed: tuple[str, ...]
) -> None:
    """Let an allowed origin read `response` (errors too), unless its handler set CORS itself."""
    origin = request.headers.get("Origin")
    if origin and origin_allowed(origin, allowed):
        headers = response.headers
        if "Access-Control-Allow-Origin" not in headers:
            for name, value in cors_headers(origin).items():
                headers[name] = value

"""Request plumbing shared by the collector's endpoints: a body read within its limits, JSON or
form fields, and the two kinds of error reply (Ahoy's plain text, and JSON `{error, hint}`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from trailcli.collector.keys import SETTINGS
from trailcli.collector.untrusted import known_charset
from trailcli.errors import DiskFull

TOO_LARGE = "Payload too large\n"
BAD_BODY = "Unreadable request body\n"
SLOW_BODY = "Request body timeout\n"
DISK_FULL = "Service unavailable: storage full, retry later\n"


class Reply(Exception):
    """Stop handling and answer `status` with a text body (Ahoy's plain-text errors)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.text, content_type="text/plain")


def unavailable(exc: DiskFull) -> web.Response:
    """503 with Retry-After for a write the store refused on a full disk (Ahoy's plain text;
    nothing about the server's files goes to a browser). The store logs the refusals."""
    return web.Response(
        status=503,
        text=DISK_FULL,
        content_type="text/plain",
        headers={"Retry-After": str(max(1, round(exc.retry_after)))},
    )


def unavailable_json(exc: DiskFull) -> web.Response:
    """The same for the app server's JSON API: `{"error", "hint"}`."""
    text = json.dumps(
        {
            "error": "The collector's disk is full; nothing of this request was stored.",
            "hint": f"send it again after Retry-After ({max(1, round(exc.retry_after))} s)",
        }
    )
    return web.Response(
        status=503,
        text=text,
        content_type="application/json",
        headers={"Retry-After": str(max(1, round(exc.retry_after)))},
    )


def json_error(status: int, message: str, hint: str) -> web.HTTPException:
    """The error reply `{"error": message, "hint": hint}` with `status`, to raise."""
    text = json.dumps({"error": message, "hint": hint})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(0, text=text, content_type="application/json")
    cls = _JSON_ERRORS[status]
    headers = {"WWW-Authenticate": 'Bearer realm="trail"'} if status == 401 else None
    return cls(text=text, content_type="application/json", headers=headers)


_JSON_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, or Reply(413) when Content-Length or the bytes read exceed `limit`.

    A body that cannot be decoded (bad gzip) gives 400; one that does not arrive within the
    body timeout gives 408.
    """
    declared = request.content_length  # parsed from the header on every access
    if declared is not None and declared > limit:
        raise Reply(413, TOO_LARGE)
    try:
        if request.content.is_eof():  # the usual small POST: already received in full
            body = request.content.read_nowait(-1)
            if len(body) > limit:
                raise Reply(413, TOO_LARGE)
            return body
        async with asyncio.timeout(request.app[SETTINGS].body_timeout):
            return await _read_upto(request, limit)
    except (RequestPayloadError, HttpProcessingError):
        raise Reply(400, BAD_BODY) from None
    except TimeoutError:
        raise Reply(408, SLOW_BODY) from None


async def _read_upto(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Reply(413, TOO_LARGE)


async def request_fields(request: web.Request) -> Mapping[str, Any] | None:
    """A JSON object body, or form fields (as the old jQuery `$.post` sent them); None for
    anything else. A form in a charset Python has no codec for is refused with 415."""
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, RecursionError):
            return None
        return body if isinstance(body, dict) else None
    if not known_charset(request.charset or "utf-8"):
        raise web.HTTPUnsupportedMediaType(
            text=json.dumps({"error": f"Unsupported charset {(request.charset or '')[:40]!r}.",
                             "hint": "send UTF-8 JSON or form fields"}),
            content_type="application/json",
        )  # fmt: skip
    try:
        form = await request.post()
    except ValueError:
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}

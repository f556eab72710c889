"""The collector's access log: one line per request, secrets in the URL redacted."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from trailcli.collector.secret_fields import redacted_target


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request, `%a "%r" %s %b %Tfs "%{User-Agent}i"` in aiohttp's terms, with the
    request target passed through `redacted_target` (a JSON-P handshake carries `ext` in its URL).
    The format is fixed; the runner's `access_log_format` is not used."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        first_line = (
            f"{request.method} {redacted_target(request.raw_path)} "
            f"HTTP/{version.major}.{version.minor}"
        )
        self.logger.info(
            '%s "%s" %s %s %.6fs "%s"',
            request.remote or "-",
            first_line,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
        )

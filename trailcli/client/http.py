"""The one HTTP stack of the clients: urllib, with one way to say a collector cannot be reached."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from trailcli.errors import TrailError


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of any status, with its body."""

    url: str
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode("utf-8", "replace").strip()

    def json(self, what: str = "JSON") -> Any:
        """The body as JSON; TrailError naming the URL when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise TrailError(f"{self.url} did not answer {what}.", "check the URL") from None


class Unreachable(TrailError):
    """Nothing answered at the URL (refused, unknown host, timed out, dropped)."""


def send(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """GET `url` (POST `data` when given) and return the answer, whatever its status; raises
    Unreachable when nothing answers (refused, unknown host, timed out, dropped)."""
    method = "GET" if data is None else "POST"
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(url, response.status, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(url, exc.code, exc.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = str(getattr(exc, "reason", exc)).rstrip(".") or type(exc).__name__
        raise Unreachable(
            f"Cannot reach {url}: {reason}.", "is 'trail collect' running there? check the URL"
        ) from None


def bearer(token: str | None) -> dict[str, str]:
    """The header that carries a token or secret."""
    return {"Authorization": f"Bearer {token}"} if token else {}

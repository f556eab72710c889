"""Who is online now, from a running collector's `GET /api/online`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trailcli.client.http import bearer, send
from trailcli.errors import TrailError, UsageError


def online_url(base: str) -> str:
    """The `/api/online` address of a collector at `base` (`http://host:9292`)."""
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"Cannot use the address {base!r}.", "pass --url http://host:9292")
    return base.rstrip("/") + "/api/online"


def fetch_online(base: str, token: str | None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The collector's rows, one per person online now (`online_since` as a datetime)."""
    if not token:
        raise UsageError(
            "Reading /api/online needs the API token.", "pass --token or set TRAIL_API_TOKEN"
        )
    url = online_url(base)
    answer = send(url, headers=bearer(token), timeout=timeout)
    if not answer.ok:
        hint = "check --token / TRAIL_API_TOKEN" if answer.status in (401, 403) else "check --url"
        raise TrailError(f"{url} answered {answer.status}.", hint)
    rows = answer.json()
    if not isinstance(rows, list):
        raise TrailError(f"{url} did not answer a list of rows.", "check --url")
    return [_typed(r) for r in rows if isinstance(r, dict)]


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    since = row.get("online_since")
    if isinstance(since, str):
        row["online_since"] = datetime.fromisoformat(since)
    return row

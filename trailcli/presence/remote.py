"""Read who is online now from a running collector's `GET /api/online` (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from trailcli.errors import TrailError, UsageError
from trailcli.presence.rules import channel_matches


def online_url(base: str) -> str:
    """The `/api/online` address of a collector at `base` (`http://host:9292`)."""
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"Cannot use the address {base!r}.", "pass --url http://host:9292")
    return base.rstrip("/") + "/api/online"


def fetch_online(
    base: str,
    token: str | None,
    channel: str | None = None,
    users_only: bool = False,
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """The collector's rows (one per person online now), filtered like `trail online --at now`."""
    if not token:
        raise UsageError(
            "Reading /api/online needs the API token.", "pass --token or set TRAIL_API_TOKEN"
        )
    request = urllib.request.Request(online_url(base), headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            rows = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        hint = "check --token / TRAIL_API_TOKEN" if exc.code in (401, 403) else "check --url"
        raise TrailError(f"{online_url(base)} answered {exc.code} {exc.reason}.", hint) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TrailError(
            f"Cannot reach {online_url(base)}: {exc}.", "is 'trail collect' running there?"
        ) from exc
    except ValueError as exc:
        raise TrailError(f"{online_url(base)} did not answer JSON.", "check --url") from exc
    if not isinstance(rows, list):
        raise TrailError(f"{online_url(base)} did not answer a list of rows.", "check --url")
    return [_typed(r) for r in rows if _keep(r, channel, users_only)]


def _keep(row: dict[str, Any], channel: str | None, users_only: bool) -> bool:
    if users_only and not row.get("user_id"):
        return False
    return channel is None or any(channel_matches(channel, c) for c in row.get("channels") or [])


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    since = row.get("online_since")
    if isinstance(since, str):
        row["online_since"] = datetime.fromisoformat(since)
    return row

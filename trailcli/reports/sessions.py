"""Analytics sessions: a visitor's run of events with no gap of the timeout (30 min) or more.

The views `session_events` (each event with its `session_id`) and `sessions` (one row per
session) are bound on every connection by `trailcli.store.views.connect`, from
`queries/session_events.sql` and `queries/sessions.sql`; this module changes their timeout.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from trailcli.errors import UsageError
from trailcli.store.views import SESSION_TIMEOUT

if TYPE_CHECKING:
    import duckdb

__all__ = ["SESSION_TIMEOUT", "use_timeout"]


def use_timeout(con: duckdb.DuckDBPyConnection, timeout: timedelta | None) -> None:
    """Make the connection's session views split at gaps of `timeout` or more (None: 30 min)."""
    value = SESSION_TIMEOUT if timeout is None else timeout
    if value <= timedelta(0):
        raise UsageError(
            f"The session timeout must be positive, not {value}.", "use e.g. --session-timeout 30m"
        )
    con.execute("SET VARIABLE session_timeout = $timeout", {"timeout": value})

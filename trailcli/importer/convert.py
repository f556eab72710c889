"""Ahoy's rows in trail's columns, with the fields trail derives at ingest.

A visit goes through the collector's own visit builder (referring domain, source facts, UTM tags
from the landing page, unknown columns into `extra`) and user-agent parser; an event batch is
converted column-wise by one DuckDB statement (`queries/import_ahoy_events.sql`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trailcli import sql
from trailcli.collector import ahoy_payload as payload
from trailcli.collector import enrich
from trailcli.importer.ahoy_schema import VISIT_COLUMNS
from trailcli.store.schema import DEVICE_TYPES

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

IDENTITY_SOURCE = "import"
MAX_USER_ID = 255
# Ahoy's visit columns that are not request params: they never go into `extra`
NOT_PARAMS = frozenset(
    (
        "id", "started_at", "ip", "user_agent", "referring_domain", "browser", "os",
        "device_type", "country", "region", "city", "latitude", "longitude",
    )
)  # fmt: skip
KNOWN_VISIT_COLUMNS = frozenset(c.name for c in VISIT_COLUMNS)
# Ahoy's device types (device_detector's, titleized) in trail's: for visits without a user agent
AHOY_DEVICE_TYPES = {"Smartphone": "Mobile", "Phablet": "Mobile", "Feature Phone": "Mobile"}


def _text(value: Any, limit: int = payload.MAX_TEXT) -> str | None:
    return payload.text_or_none(value, limit)


def _token(value: Any) -> str | None:
    """A stored token as it is (the events refer to it), empty as null."""
    return payload.text_or_none(value, 1024)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stored_device(row: Mapping[str, Any]) -> enrich.Device:
    """A visit without a user agent keeps what Ahoy stored, its device type in trail's terms:
    such a visit comes from a server (a job, an API call), not from a crawler."""
    stored = _text(row.get("device_type"), 64)
    kind = AHOY_DEVICE_TYPES.get(stored or "", stored)
    return enrich.Device(
        browser=_text(row.get("browser"), 255),
        os=_text(row.get("os"), 255),
        device_type=kind if kind in DEVICE_TYPES else "Other",
        is_bot=kind == "Bot",
    )


@dataclass
class VisitRows:
    """A batch's visits and the identity rows of those with a user, each with its source id."""

    visits: list[dict[str, Any]] = field(default_factory=list)
    identities: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    skipped: int = 0  # rows without a visit token or a start time


def convert_visits(rows: list[dict[str, Any]], agents: enrich.UserAgentCache) -> VisitRows:
    """Ahoy visit rows (a raw batch's `to_pylist()`) as trail visits and identities."""
    out = VisitRows()
    for row in rows:
        visit = visit_record(row, agents)
        if visit is None:
            out.skipped += 1
            continue
        out.visits.append(visit)
        if visit["user_id"] is not None:
            out.identities.append((row["id"], identity_record(visit)))
    return out


def visit_record(row: Mapping[str, Any], agents: enrich.UserAgentCache) -> dict[str, Any] | None:
    """One Ahoy visit as a trail visit (None without a visit token or a start time)."""
    token = _token(row.get("visit_token"))
    started_at: datetime | None = row.get("started_at")
    if token is None or started_at is None:
        return None
    params = {k: v for k, v in row.items() if v is not None and k not in NOT_PARAMS}
    record = payload.visit_record(
        params,
        visit_token=token,
        visitor_token=_token(row.get("visitor_token")),
        user_id=_text(row.get("user_id"), MAX_USER_ID),
        started_at=started_at,
    )
    user_agent = _text(row.get("user_agent"), 2048)
    device = agents.parse(user_agent) if user_agent else stored_device(row)
    record.update(
        ip=_text(row.get("ip"), 64),
        user_agent=user_agent,
        browser=device.browser,
        os=device.os,
        device_type=device.device_type,
        country=_text(row.get("country"), 255),
        region=_text(row.get("region"), 255),
        city=_text(row.get("city"), 255),
        latitude=_float(row.get("latitude")),
        longitude=_float(row.get("longitude")),
    )
    return record


def identity_record(visit: Mapping[str, Any]) -> dict[str, Any]:
    """The binding of an imported visit to its user, at the visit's start."""
    return {
        "time": visit["started_at"],
        "visit_token": visit["visit_token"],
        "visitor_token": visit["visitor_token"],
        "user_id": visit["user_id"],
        "source": IDENTITY_SOURCE,
        "node_id": None,
    }


class EventConverter:
    """Converts raw event batches on one DuckDB connection."""

    def __init__(self, id_prefix: str) -> None:
        import duckdb

        self.id_prefix = id_prefix
        self.con: duckdb.DuckDBPyConnection = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.query = sql.load("import_ahoy_events")

    def convert(self, batch: pa.Table) -> pa.Table:
        """trail's events columns (without `date`) for the batch's rows that have a time."""
        self.con.register("ahoy_batch", batch)
        try:
            result = self.con.sql(self.query, params={"id_prefix": self.id_prefix})
            return result.to_arrow_table()
        finally:
            self.con.unregister("ahoy_batch")

    def close(self) -> None:
        self.con.close()

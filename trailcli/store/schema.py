"""The columns of each log kind (DESIGN.md, Columns); the single source of the data contract."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()


@dataclass(frozen=True)
class Kind:
    """One log kind: its Arrow schema (without `date`), key columns and partition time column."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    time_column: str
    first_wins_by: str  # duplicates keep the row with the earliest value of this column

    @property
    def table_schema(self) -> pa.Schema:
        """The schema as stored: the columns plus the `date` partition column."""
        return self.schema.append(pa.field("date", STR))


VISITS = Kind(
    name="visits",
    schema=pa.schema(
        [
            ("visit_token", STR),
            ("visitor_token", STR),
            ("user_id", STR),
            ("started_at", TS),
            ("ip", STR),
            ("user_agent", STR),
            ("referrer", STR),
            ("referring_domain", STR),
            ("referrer_kind", STR),
            ("referrer_path_rule", STR),
            ("search_term", STR),
            ("click_id", STR),
            ("landing_host", STR),
            ("landing_page", STR),
            ("browser", STR),
            ("os", STR),
            ("device_type", STR),
            ("country", STR),
            ("region", STR),
            ("city", STR),
            ("latitude", pa.float64()),
            ("longitude", pa.float64()),
            ("utm_source", STR),
            ("utm_medium", STR),
            ("utm_term", STR),
            ("utm_content", STR),
            ("utm_campaign", STR),
            ("platform", STR),
            ("app_version", STR),
            ("os_version", STR),
            ("screen_width", pa.int32()),
            ("screen_height", pa.int32()),
            ("extra", STR),
        ]
    ),
    key=("visit_token",),
    time_column="started_at",
    first_wins_by="started_at",
)

EVENTS = Kind(
    name="events",
    schema=pa.schema(
        [
            ("event_id", STR),
            ("visit_token", STR),
            ("visitor_token", STR),
            ("user_id", STR),
            ("name", STR),
            ("properties", STR),
            ("time", TS),
            ("received_at", TS),
        ]
    ),
    key=("event_id",),
    time_column="time",
    first_wins_by="received_at",
)

PRESENCE = Kind(
    name="presence",
    schema=pa.schema(
        [
            ("time", TS),
            ("seq", pa.int64()),
            ("node_id", STR),
            ("client_id", STR),
            ("transition", STR),
            ("reason", STR),
            ("channel", STR),
            ("visit_token", STR),
            ("visitor_token", STR),
            ("user_id", STR),
            ("detected_at", TS),
        ]
    ),
    key=("node_id", "seq"),
    time_column="time",
    first_wins_by="detected_at",
)

IDENTITIES = Kind(
    name="identities",
    schema=pa.schema(
        [
            ("time", TS),
            ("visit_token", STR),
            ("visitor_token", STR),
            ("user_id", STR),
            ("source", STR),
            ("node_id", STR),
        ]
    ),
    key=("visit_token", "time", "user_id"),
    time_column="time",
    first_wins_by="time",
)

KINDS: dict[str, Kind] = {k.name: k for k in (VISITS, EVENTS, PRESENCE, IDENTITIES)}

TRANSITIONS = ("online", "offline", "subscribe", "unsubscribe", "identify", "heartbeat")
OFFLINE_REASONS = ("disconnect", "transport_closed", "timeout", "server_shutdown", "node_lost")
IDENTITY_SOURCES = ("api", "user_token", "presence")
DEVICE_TYPES = ("Desktop", "Mobile", "Tablet", "Bot", "Other")


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown log kind {name!r}; expected one of {sorted(KINDS)}") from None

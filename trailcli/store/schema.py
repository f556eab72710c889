"""The columns of each log kind (docs/data-model.md); the single source of the data contract.

Columns are plain names and type names, so reading the tables through DuckDB needs no pyarrow;
the Arrow schema of a kind is built (and pyarrow imported) only when something writes Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

# The column types (docs/data-model.md), by name.
STR = "string"
TS = "timestamp"  # microseconds, UTC
INT32 = "int32"
INT64 = "int64"
FLOAT64 = "float64"

SQL_TYPES = {
    STR: "VARCHAR",
    TS: "TIMESTAMPTZ",
    INT32: "INTEGER",
    INT64: "BIGINT",
    FLOAT64: "DOUBLE",
}


class Column(NamedTuple):
    name: str
    type: str  # one of SQL_TYPES

    @property
    def sql_type(self) -> str:
        """The DuckDB type of the column."""
        return SQL_TYPES[self.type]


DATE = Column("date", STR)  # the partition column, YYYY-MM-DD


def arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type of a column type name."""
    import pyarrow as pa

    types = {
        STR: pa.string(),
        TS: pa.timestamp("us", tz="UTC"),
        INT32: pa.int32(),
        INT64: pa.int64(),
        FLOAT64: pa.float64(),
    }
    return types[type_name]


@dataclass(frozen=True)
class Kind:
    """One log kind: its columns (without `date`), key columns and partition time column."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    time_column: str
    first_wins_by: str  # duplicates keep the row with the earliest value of this column

    @property
    def table_columns(self) -> tuple[Column, ...]:
        """The columns as stored: the kind's columns plus the `date` partition column."""
        return (*self.columns, DATE)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the columns (without `date`)."""
        import pyarrow as pa

        return pa.schema([(c.name, arrow_type(c.type)) for c in self.columns])

    @cached_property
    def table_schema(self) -> pa.Schema:
        """The Arrow schema as stored: the columns plus the `date` partition column."""
        import pyarrow as pa

        return pa.schema([(c.name, arrow_type(c.type)) for c in self.table_columns])


def _columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, type_name) for name, type_name in pairs)


VISITS = Kind(
    name="visits",
    columns=_columns(
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
        ("latitude", FLOAT64),
        ("longitude", FLOAT64),
        ("utm_source", STR),
        ("utm_medium", STR),
        ("utm_term", STR),
        ("utm_content", STR),
        ("utm_campaign", STR),
        ("platform", STR),
        ("app_version", STR),
        ("os_version", STR),
        ("screen_width", INT32),
        ("screen_height", INT32),
        ("extra", STR),
    ),
    key=("visit_token",),
    time_column="started_at",
    first_wins_by="started_at",
)

EVENTS = Kind(
    name="events",
    columns=_columns(
        ("event_id", STR),
        ("visit_token", STR),
        ("visitor_token", STR),
        ("user_id", STR),
        ("name", STR),
        ("properties", STR),
        ("time", TS),
        ("received_at", TS),
    ),
    key=("event_id",),
    time_column="time",
    first_wins_by="received_at",
)

PRESENCE = Kind(
    name="presence",
    columns=_columns(
        ("time", TS),
        ("seq", INT64),
        ("node_id", STR),
        ("client_id", STR),
        ("transition", STR),
        ("reason", STR),
        ("channel", STR),
        ("visit_token", STR),
        ("visitor_token", STR),
        ("user_id", STR),
        ("detected_at", TS),
    ),
    key=("node_id", "seq"),
    time_column="time",
    first_wins_by="detected_at",
)

IDENTITIES = Kind(
    name="identities",
    columns=_columns(
        ("time", TS),
        ("visit_token", STR),
        ("visitor_token", STR),
        ("user_id", STR),
        ("source", STR),
        ("node_id", STR),
    ),
    key=("visit_token", "time", "user_id"),
    time_column="time",
    first_wins_by="time",
)

KINDS: dict[str, Kind] = {k.name: k for k in (VISITS, EVENTS, PRESENCE, IDENTITIES)}

TRANSITIONS = ("online", "offline", "subscribe", "unsubscribe", "identify", "heartbeat")
OFFLINE_REASONS = ("disconnect", "transport_closed", "timeout", "server_shutdown", "node_lost")
IDENTITY_SOURCES = ("api", "user_token", "presence", "import")
DEVICE_TYPES = ("Desktop", "Mobile", "Tablet", "Bot", "Other")


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown log kind {name!r}; expected one of {sorted(KINDS)}") from None

"""Ahoy's tables as its migration generator creates them, and the check of a database against it.

The generator (`rails generate ahoy:install`) makes `ahoy_visits` with `visit_token`,
`visitor_token`, `user_id`, the request facts, the technology, location and UTM columns and
`started_at`, and `ahoy_events` with `visit_id`, `user_id`, `name`, `properties` (jsonb on
PostgreSQL, json on MySQL and MariaDB, text elsewhere) and `time`. Its template says every visit
column but the tokens is optional, so only what the import cannot do without is required; every
column present must have a type the import can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trailcli.errors import TrailError

# type classes of source columns
INTEGER = "integer"
TEXT = "text"
UUID = "uuid"
TIMESTAMP = "timestamp"  # without a zone: Rails writes UTC
TIMESTAMPTZ = "timestamptz"
FLOAT = "float"
JSON = "json"
INET = "inet"
OTHER = "other"

_POSTGRES_TYPES = {
    **dict.fromkeys(("smallint", "integer", "bigint"), INTEGER),
    **dict.fromkeys(("character varying", "character", "text", "citext", "name"), TEXT),
    "uuid": UUID,
    "timestamp without time zone": TIMESTAMP,
    "timestamp with time zone": TIMESTAMPTZ,
    **dict.fromkeys(("double precision", "real", "numeric"), FLOAT),
    **dict.fromkeys(("json", "jsonb"), JSON),
    **dict.fromkeys(("inet", "cidr"), INET),
}
_MYSQL_TYPES = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "bigint"), INTEGER),
    **dict.fromkeys(
        ("varchar", "char", "tinytext", "text", "mediumtext", "longtext", "enum", "set"), TEXT
    ),
    "uuid": UUID,  # MariaDB 10.7+
    "json": JSON,  # MySQL; MariaDB's json is a longtext, so it reads as TEXT
    # the session runs in UTC, so MySQL's TIMESTAMP columns read as UTC like DATETIME ones
    **dict.fromkeys(("datetime", "timestamp"), TIMESTAMP),
    **dict.fromkeys(("float", "double", "decimal", "real"), FLOAT),
}
TYPES = {"postgresql": _POSTGRES_TYPES, "mysql": _MYSQL_TYPES}

_DESCRIBED = {
    INTEGER: "an integer",
    TEXT: "text",
    UUID: "a uuid",
    TIMESTAMP: "a timestamp",
    TIMESTAMPTZ: "a timestamp",
    FLOAT: "a number",
    JSON: "JSON",
    INET: "an inet address",
}


def type_class(dialect: str, data_type: str) -> str:
    """The type class of a column type as the database's information_schema names it."""
    return TYPES[dialect].get(data_type.lower(), OTHER)


@dataclass(frozen=True)
class Expected:
    """A column the import reads: the type classes it accepts, and whether it must exist."""

    name: str
    accepts: frozenset[str]
    required: bool = False

    def describe(self) -> str:
        return " or ".join(sorted({_DESCRIBED[a] for a in self.accepts}))


def _expect(name: str, *accepts: str, required: bool = False) -> Expected:
    return Expected(name, frozenset(accepts), required)


TIMES = (TIMESTAMP, TIMESTAMPTZ)
USER_ID = (INTEGER, TEXT, UUID)
VISIT_TEXT = (
    "user_agent", "referrer", "referring_domain", "landing_page", "browser", "os", "device_type",
    "country", "region", "city", "utm_source", "utm_medium", "utm_term", "utm_content",
    "utm_campaign", "app_version", "os_version", "platform",
)  # fmt: skip

VISIT_COLUMNS = (
    _expect("id", INTEGER, required=True),
    _expect("visit_token", TEXT, UUID, required=True),
    _expect("visitor_token", TEXT, UUID, required=True),
    _expect("started_at", *TIMES, required=True),
    _expect("user_id", *USER_ID),
    _expect("ip", TEXT, INET),
    *(_expect(name, TEXT) for name in VISIT_TEXT),
    _expect("latitude", FLOAT, INTEGER),
    _expect("longitude", FLOAT, INTEGER),
    _expect("screen_width", INTEGER),  # Ahoy 1.x schemas
    _expect("screen_height", INTEGER),
)
EVENT_COLUMNS = (
    _expect("id", INTEGER, required=True),
    _expect("visit_id", INTEGER, required=True),
    _expect("user_id", *USER_ID),
    _expect("name", TEXT, required=True),
    _expect("properties", JSON, TEXT, required=True),
    _expect("time", *TIMES, required=True),
)


@dataclass(frozen=True)
class TablePlan:
    """What the import reads from one source table.

    `columns`: each expected column present, with its type class; `others`: the table's other
    columns (a visit keeps them in `extra`; events have no place for them).
    """

    table: str
    columns: Mapping[str, str]
    others: tuple[str, ...]


def check_table(
    dialect: str,
    table: str,
    found: Mapping[str, str] | None,
    expected: tuple[Expected, ...],
    option: str,
) -> TablePlan:
    """The plan for `table` given its columns (`found`: name → database type, None when the
    table does not exist). Raises TrailError naming the first missing or mistyped column."""
    if found is None:
        raise TrailError(
            f"The source database has no table {table}.",
            f"pass {option} with the table's name (schema.table for another schema)",
        )
    by_lower = {name.lower(): name for name in found}
    columns: dict[str, str] = {}
    for column in expected:
        actual = by_lower.get(column.name)
        if actual is None:
            if column.required:
                raise TrailError(
                    f"{table} has no column {column.name}, which the import needs.",
                    "Ahoy's migration creates it; check the table name or the migration",
                )
            continue
        type_name = found[actual]
        kind = type_class(dialect, type_name)
        if kind not in column.accepts:
            raise TrailError(
                f"{table}.{column.name} is {type_name}; the import reads it as "
                f"{column.describe()}.",
                _mistyped_hint(column),
            )
        columns[column.name] = kind
    known = {c.name for c in expected}
    others = tuple(name for name in found if name.lower() not in known)
    return TablePlan(table, columns, others)


def _mistyped_hint(column: Expected) -> str:
    if column.name == "id":
        return (
            "the import resumes by an increasing integer id; tables with uuid or other "
            "non-integer primary keys are not supported"
        )
    return "Ahoy's migration gives it that type; change the column or import from a copy"

"""Ahoy's rows in trail's columns, with the fields trail derives at ingest.

Both kinds are converted a batch at a time, column by column. A visit gets what the collector's
visit builder gives (`ahoy_payload.visit_record` and enrichment): text cut and cleaned as there,
the referring domain, the source facts (`source_facts`), the UTM tags (stored, else the landing
page's) and the device from the user agent, each worked out once per distinct referrer, landing
page and user agent. Unknown columns go into `extra`. Events are converted by one DuckDB
statement (`queries/import_ahoy_events.sql`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from trailcli import sql
from trailcli.collector import ahoy_payload as payload
from trailcli.collector import enrich
from trailcli.collector.lru import LRU
from trailcli.importer.ahoy_schema import VISIT_COLUMNS
from trailcli.sources.referrer_facts import source_facts
from trailcli.store.schema import DEVICE_TYPES, IDENTITIES, VISITS
from trailcli.store.tables import with_date

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

IDENTITY_SOURCE = "import"
MAX_USER_ID = 255
KNOWN_VISIT_COLUMNS = frozenset(c.name for c in VISIT_COLUMNS)
# Ahoy's device types (device_detector's, titleized) in trail's: for visits without a user agent
AHOY_DEVICE_TYPES = {"Smartphone": "Mobile", "Phablet": "Mobile", "Feature Phone": "Mobile"}


def stored_device(row: Mapping[str, Any]) -> enrich.Device:
    """A visit without a user agent keeps what Ahoy stored, its device type in trail's terms:
    such a visit comes from a server (a job, an API call), not from a crawler."""
    stored = payload.text_or_none(row.get("device_type"), 64)
    kind = AHOY_DEVICE_TYPES.get(stored or "", stored)
    return enrich.Device(
        browser=payload.text_or_none(row.get("browser"), 255),
        os=payload.text_or_none(row.get("os"), 255),
        device_type=kind if kind in DEVICE_TYPES else "Other",
        is_bot=kind == "Bot",
    )


class VisitConverter:
    """Converts raw visit batches column by column; what needs Python (URLs, user agents) is
    worked out once per distinct value and remembered across batches (bounded)."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self.agents = enrich.UserAgentCache(cache_size)
        self.referrers: LRU[str | None, tuple[Any, ...]] = LRU(cache_size)
        self.landings: LRU[str | None, tuple[Any, ...]] = LRU(cache_size)

    def convert(self, batch: pa.Table) -> tuple[pa.Table, pa.Table, pa.Array]:
        """(visits with `date`, identities with `date`, the source ids of the identities) for
        the batch's rows that have a visit token and a start time."""
        import pyarrow as pa
        import pyarrow.compute as pc

        token = _text(batch.column("visit_token"), 1024)
        keep = pc.and_(pc.is_valid(token), pc.is_valid(batch.column("started_at")))
        batch = batch.filter(keep)
        referrer = _text(batch.column("referrer"), payload.MAX_TEXT)
        landing = _text(batch.column("landing_page"), payload.MAX_TEXT)
        user_agent = _text(batch.column("user_agent"), 2048)
        columns: dict[str, Any] = {
            "visit_token": _text(batch.column("visit_token"), 1024),
            "visitor_token": _text(batch.column("visitor_token"), 1024),
            "user_id": _text(batch.column("user_id"), MAX_USER_ID),
            "started_at": batch.column("started_at"),
            "ip": _text(batch.column("ip"), 64),
            "user_agent": user_agent,
            "referrer": referrer,
            "landing_page": landing,
            "country": _text(batch.column("country"), 255),
            "region": _text(batch.column("region"), 255),
            "city": _text(batch.column("city"), 255),
            "latitude": batch.column("latitude"),
            "longitude": batch.column("longitude"),
            "screen_width": _int32(batch.column("screen_width")),
            "screen_height": _int32(batch.column("screen_height")),
            "extra": _extra(batch, [n for n in batch.column_names if n not in KNOWN_VISIT_COLUMNS]),
        }
        for name in ("platform", "app_version", "os_version"):
            columns[name] = _text(batch.column(name), payload.MAX_TEXT)
        columns.update(_by_value(referrer, REFERRER_FIELDS, self._referrer))
        landed = _by_value(landing, LANDING_FIELDS, self._landing)
        columns.update({k: v for k, v in landed.items() if not k.startswith("utm_")})
        for name in payload.UTM_FIELDS:
            columns[name] = pc.coalesce(_text(batch.column(name), 255), landed[name])
        columns.update(self._devices(batch, user_agent))
        visits = pa.table([columns[c.name] for c in VISITS.columns], schema=VISITS.schema)
        identities, source_ids = _identities(visits, batch.column("id"))
        return with_date(VISITS, visits), with_date(IDENTITIES, identities), source_ids

    def _referrer(self, referrer: str | None) -> tuple[Any, ...]:
        found = self.referrers.get(referrer)
        if found is None:
            facts = source_facts(referrer, None)
            found = (payload.referring_domain(referrer), *(facts[k] for k in REFERRER_FACTS))
            self.referrers.put(referrer, found)
        return found

    def _landing(self, landing: str | None) -> tuple[Any, ...]:
        found = self.landings.get(landing)
        if found is None:
            facts = source_facts(None, landing)
            utm = payload.utm_params({}, landing)
            found = (*(facts[k] for k in LANDING_FACTS), *(utm[k] for k in payload.UTM_FIELDS))
            self.landings.put(landing, found)
        return found

    def _devices(self, batch: pa.Table, user_agent: pa.ChunkedArray) -> dict[str, Any]:
        """browser, os, device_type: from the user agent, else from what Ahoy stored."""
        import pyarrow as pa
        import pyarrow.compute as pc

        parsed = _by_value(
            user_agent,
            DEVICE_FIELDS,
            lambda ua: _device_fields(self.agents.parse(ua)) if ua else (None,) * 3,
        )
        if user_agent.null_count == 0:
            return parsed
        stored = [
            _device_fields(stored_device(dict(zip(DEVICE_FIELDS, row, strict=True))))
            for row in zip(*(batch.column(n).to_pylist() for n in DEVICE_FIELDS), strict=True)
        ]
        missing = pc.is_null(user_agent)
        return {
            name: pc.if_else(missing, pa.array([d[i] for d in stored], pa.string()), parsed[name])
            for i, name in enumerate(DEVICE_FIELDS)
        }


REFERRER_FACTS = ("referrer_kind", "referrer_path_rule", "search_term")
REFERRER_FIELDS = ("referring_domain", *REFERRER_FACTS)
LANDING_FACTS = ("click_id", "landing_host")
LANDING_FIELDS = (*LANDING_FACTS, *payload.UTM_FIELDS)
DEVICE_FIELDS = ("browser", "os", "device_type")


def _device_fields(device: enrich.Device) -> tuple[str | None, str | None, str | None]:
    return device.browser, device.os, device.device_type


def _text(column: pa.ChunkedArray, limit: int) -> pa.ChunkedArray:
    """Text as the collector stores it (`text_or_none`): NUL replaced, at most `limit`
    characters, empty as null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    column = pc.utf8_slice_codeunits(pc.replace_substring(column, "\x00", "\ufffd"), 0, limit)
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _int32(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Integers that fit in 32 bits, else null (`int32_or_none`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fits = pc.and_(pc.greater_equal(column, -(2**31)), pc.less(column, 2**31))
    return pc.if_else(fits, column, pa.scalar(None, column.type)).cast(pa.int32())


def _by_value(
    column: pa.ChunkedArray, fields: tuple[str, ...], work_out: Callable[[Any], tuple[Any, ...]]
) -> dict[str, pa.ChunkedArray]:
    """`work_out(value)` (a tuple with one item per field) for each distinct value of the
    column, spread back over the rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    distinct = pc.unique(column)
    found = [work_out(v) for v in distinct.to_pylist()]
    positions = pc.index_in(column, value_set=distinct)
    return {
        name: pa.array([f[i] for f in found], pa.string()).take(positions)
        for i, name in enumerate(fields)
    }


def _extra(batch: pa.Table, others: list[str]) -> pa.Array:
    """The columns Ahoy's migration does not have, as a JSON object per row (null when empty),
    as the collector keeps unknown visit params."""
    import pyarrow as pa

    if not others:
        return pa.nulls(batch.num_rows, pa.string())
    values = [batch.column(n).to_pylist() for n in others]
    rows = (
        {k: v for k, v in zip(others, row, strict=True) if v is not None}
        for row in zip(*values, strict=True)
    )
    return pa.array([payload.dumps(r) if r else None for r in rows], pa.string())


def _identities(visits: pa.Table, ids: pa.ChunkedArray) -> tuple[pa.Table, pa.ChunkedArray]:
    """Each visit with a user bound to that user at its start (source `import`), and the source
    ids of those visits."""
    import pyarrow as pa
    import pyarrow.compute as pc

    with_user = pc.is_valid(visits.column("user_id"))
    chosen = visits.filter(with_user)
    n = chosen.num_rows
    columns = {
        "time": chosen.column("started_at"),
        "visit_token": chosen.column("visit_token"),
        "visitor_token": chosen.column("visitor_token"),
        "user_id": chosen.column("user_id"),
        "source": pa.array([IDENTITY_SOURCE] * n, pa.string()),
        "node_id": pa.nulls(n, pa.string()),
    }
    table = pa.table([columns[c.name] for c in IDENTITIES.columns], schema=IDENTITIES.schema)
    return table, ids.filter(with_user)


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

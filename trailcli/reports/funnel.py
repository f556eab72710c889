"""Conversion funnels over the event log (`trail report funnel`): counts, timings, drop-outs.

Events are read once (queries/funnel_events.sql) with the bit mask of the steps each satisfies.
Ordered funnels with the window from the first step run as a chain of Polars `join_asof`s
(funnel_chain.py) over the step events DuckDB reads; when only counts are asked for (no --exclude, --breakdown or
--dropped-at) the chain reads the events straight from the scan, with no event ids and no
`_funnel_events` table, as a hand-written query would. Every other mode materializes
`_funnel_events` and runs the pure matcher of `funnel_match` over each unit's events. All give
`_funnel_units` (one chosen attempt per unit), which queries/funnel_counts.sql and
queries/funnel_dropped.sql turn into results.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailcli import sql
from trailcli.errors import UsageError
from trailcli.reports import event_names, funnel_chain, funnel_match, sessions, steps
from trailcli.reports.frames import fetch_arrow
from trailcli.reports.steps import Params, Step
from trailcli.store import views

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa

UNITS = {
    "visitor": "e.visitor_token",
    "visit": "e.visit_token",
    "user": "e.user_id",
    "session": "e.session_id",
}
ORDERS = funnel_match.ORDERS
WINDOW_FROM = funnel_match.WINDOW_FROM
MIN_STEPS, MAX_STEPS = 2, 20
CHUNK_ROWS = 200_000  # events turned into Python objects at a time by the pure matcher
OUTPUT_COLUMNS = [
    "step",
    "name",
    "reached",
    "dropoff",
    "conv_total",
    "conv_step",
    "median_seconds",
    "p90_seconds",
]
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
_VISIT_JOIN = (
    "LEFT JOIN (SELECT * FROM visits QUALIFY row_number() OVER "
    "(PARTITION BY visit_token ORDER BY started_at) = 1) AS v ON v.visit_token = e.visit_token"
)
_BOT_FILTER = (
    "AND NOT EXISTS (SELECT 1 FROM raw_visits AS b "
    "WHERE b.visit_token = e.visit_token AND b.device_type = 'Bot')"
)
_PEOPLE = "e.visitor_token, e.visit_token, e.user_id"
_NO_PEOPLE = (
    "CAST(NULL AS VARCHAR) AS visitor_token, CAST(NULL AS VARCHAR) AS visit_token, "
    "CAST(NULL AS VARCHAR) AS user_id"
)
_NO_EXCLUDED = (
    "(SELECT unit, first_time AS time, first_id AS event_id FROM _funnel_chosen WHERE false)"
)
_AMBIGUOUS_UNITS_LIST = "SELECT unit FROM _funnel_chosen_times WHERE ambiguous"
_AMBIGUOUS_UNITS = f"AND unit IN ({_AMBIGUOUS_UNITS_LIST})"


@dataclass(frozen=True)
class FunnelQuery:
    """What to count: the steps and every option of `trail report funnel`."""

    steps: tuple[Step, ...]
    unit: str = "visitor"
    order: str = "ordered"
    window: timedelta = timedelta(days=1)
    window_from: str = "first"
    start: datetime | None = None
    end: datetime | None = None
    exclude: tuple[Step, ...] = ()
    breakdown: str | None = None
    breakdown_limit: int = 10
    include_bots: bool = False
    session_timeout: timedelta | None = None

    def check(self) -> None:
        """Raise UsageError for a combination that cannot be counted."""
        if not MIN_STEPS <= len(self.steps) <= MAX_STEPS:
            raise UsageError(
                f"A funnel has {MIN_STEPS} to {MAX_STEPS} steps, not {len(self.steps)}.",
                "pass --step once per step, in order",
            )
        _one_of("--unit", self.unit, tuple(UNITS))
        _one_of("--order", self.order, ORDERS)
        _one_of("--window-from", self.window_from, WINDOW_FROM)
        if self.window <= timedelta(0):
            raise UsageError("The window must be positive.", "use e.g. --window 1d")
        if self.order == "any" and self.window_from == "prior":
            raise UsageError(
                "--window-from prior needs steps in order.",
                "use --order ordered or strict, or --window-from first with --order any",
            )
        if self.breakdown_limit < 1:
            raise UsageError(
                "--breakdown-limit must be at least 1.", "use e.g. --breakdown-limit 10"
            )
        if self.breakdown is not None:
            steps.breakdown_sql(self.breakdown, Params())

    @property
    def span(self) -> timedelta:
        """How long after the first step the last step may come (funnel_match.in_window over
        every step's window)."""
        if self.window_from == "prior":
            return self.window * (len(self.steps) - 1)
        return self.window

    @property
    def fast_path(self) -> bool:
        return self.order == "ordered" and self.window_from == "first"

    @property
    def needs_event_details(self) -> bool:
        """Whether counting needs each event's id and details (exclusions, breakdowns)."""
        return bool(self.exclude) or self.breakdown is not None


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{option} {value!r} is not known.", f"use one of {', '.join(allowed)}")


def fill(template: str, **slots: str) -> str:
    """Put fixed fragments into a query's {{slot}} markers; every marker must be filled."""
    text = template
    for name, fragment in slots.items():
        text = text.replace("{{" + name + "}}", fragment)
    left = re.findall(r"\{\{(\w+)\}\}", text)
    if left:
        raise ValueError(f"unfilled query slots: {left}")
    return text


def _mask_sql(query: FunnelQuery, params: Params) -> str:
    parts = [
        f"(CASE WHEN {steps.step_sql(step, params)} THEN {1 << k} ELSE 0 END)"
        for k, step in enumerate(query.steps)
    ]
    return "CAST(" + " + ".join(parts) + " AS BIGINT)"


def _events_sql(
    query: FunnelQuery,
    params: Params,
    people: bool = True,
    details: bool = True,
    units: str = "",
) -> str:
    """The statement that reads the funnel's events (queries/funnel_events.sql, filled).

    Without `people` the visitor, visit and user columns stay empty (cheaper to read); without
    `details` only unit, time and mask are read (for counts without exclusions or breakdowns),
    and events that satisfy no step are left for the reader (_chosen_times) to drop.
    `units` is a fixed fragment that narrows the units read, or empty.
    """
    needs_visit = any(s.needs_visit for s in (*query.steps, *query.exclude)) or (
        query.breakdown is not None and query.breakdown.startswith(steps.VISIT_PREFIX)
    )
    mask = _mask_sql(query, params)
    if details:
        extra = _details_sql(query, params, people)
        relevant = "" if query.order == "strict" else "AND (mask <> 0 OR excluded)"
    else:
        # the chain's reader (_chosen_times) drops the events of no step after materializing the
        # scan; a `mask <> 0` filter here would be pushed below the projection and evaluate every
        # step predicate twice
        extra, relevant = "", ""
    return fill(
        sql.load("funnel_events"),
        unit=UNITS[query.unit],
        mask=mask,
        details=extra,
        source=_source(query, people),
        visit_join=_VISIT_JOIN if needs_visit else "",
        bot_filter="" if query.include_bots else _BOT_FILTER,
        name_filter=_name_filter(query, params),
        relevant=relevant,
        units=units,
    )


def _details_sql(query: FunnelQuery, params: Params, people: bool) -> str:
    """The detail columns of funnel_events.sql: event id, excluded, breakdown and people."""
    excluded = " OR ".join(steps.step_sql(s, params) for s in query.exclude) or "false"
    breakdown = (
        steps.breakdown_sql(query.breakdown, params) if query.breakdown else "CAST(NULL AS VARCHAR)"
    )
    return (
        f",\n        e.event_id,\n        coalesce({excluded}, false) AS excluded,\n"
        f"        {breakdown} AS breakdown,\n        {_PEOPLE if people else _NO_PEOPLE}"
    )


def _source(query: FunnelQuery, people: bool) -> str:
    """The view to read: sessions need `session_events`; `raw_events` (no resolved user) is
    enough, and cheaper, when neither the unit nor the output needs the user."""
    if query.unit == "session":
        return "session_events"
    if query.unit == "user" or people:
        return "events"
    return "raw_events"


def _name_filter(query: FunnelQuery, params: Params) -> str:
    """`AND e.name IN (...)` when every step and exclusion names one event (no glob): it lets
    the scan skip other events early. Strict funnels read every event, so they get none."""
    named = (*query.steps, *query.exclude)
    if query.order == "strict" or any(s.name.is_glob for s in named):
        return ""
    names = sorted({s.name.value for s in named})
    return "AND e.name IN (" + ", ".join(params.bind(n) for n in names) + ")"


def _scan_bounds(query: FunnelQuery) -> dict[str, Any]:
    lo = query.start or EARLIEST
    hi = query.end + query.span if query.end else LATEST
    return {
        "scan_from": lo,
        "scan_to": hi,
        "date_from": lo.astimezone(UTC).date().isoformat(),
        "date_to": hi.astimezone(UTC).date().isoformat(),
    }


def _ordered_units(
    con: duckdb.DuckDBPyConnection,
    query: FunnelQuery,
    need_events: bool,
    events: str = "SELECT unit, time, mask, event_id, breakdown FROM _funnel_events",
    events_params: dict[str, Any] | None = None,
) -> None:
    """The fast path: `_funnel_units` by the `join_asof` chain of funnel_chain; units with equal-time steps
    (rare outside tests) are left for the pure matcher. `events` is the statement of the step
    events (unit, time, mask) with its bound values; `need_events` looks up the events of each
    chosen attempt in `_funnel_events` (for exclusions, breakdowns and drop-outs)."""
    _chosen_times(con, query, events, events_params or {})
    _units_from_chosen(con, query, need_events, "TABLE")


def _chosen_times(
    con: duckdb.DuckDBPyConnection, query: FunnelQuery, events: str, events_params: dict[str, Any]
) -> None:
    """`_funnel_chosen_times`: each unit's chosen attempt by the `join_asof` chain of
    funnel_chain over the step events of `events` (unit, time, mask; with a breakdown also
    event_id and breakdown, for the value of each chosen attempt's first step)."""
    import polars as pl

    columns = "unit, time, mask" + (", event_id, breakdown" if query.breakdown else "")
    with views.reading():
        table = con.sql(
            # materialized: a `mask <> 0` filter pushed into the scan would evaluate every step
            # predicate twice (in the filter and in the projection)
            f"WITH ev AS MATERIALIZED ({events}) SELECT {columns} FROM ev WHERE mask <> 0",
            params=events_params,
        ).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    chosen = funnel_chain.chosen_times(
        frame,
        len(query.steps),
        query.window,
        query.start or EARLIEST,
        query.end or LATEST,
    )
    con.register("_funnel_chosen_arrow", chosen.to_arrow())
    views.run(
        con,
        "CREATE OR REPLACE TEMP TABLE _funnel_chosen_times AS SELECT unit, level, "
        f"[{', '.join(f't{k}' for k in range(1, len(query.steps) + 1))}][1:level] AS times, "
        "ambiguous, breakdown FROM _funnel_chosen_arrow",
    )
    con.unregister("_funnel_chosen_arrow")


def _units_from_chosen(
    con: duckdb.DuckDBPyConnection, query: FunnelQuery, need_events: bool, kind: str
) -> None:
    """`_funnel_units` (a TABLE, or a VIEW when nothing is added to it and it is read once)
    from `_funnel_chosen_times`, with the events of each attempt when `need_events`."""
    if need_events:
        chosen = f"TABLE _funnel_chosen AS {sql.load('funnel_chosen_events')}"
    else:  # a reshaping of `_funnel_chosen_times` that funnel_units.sql reads once
        chosen = f"VIEW _funnel_chosen AS {sql.load('funnel_chosen_times')}"
    views.run(con, f"CREATE OR REPLACE TEMP {chosen}")
    excluded = (
        "(SELECT unit, time, event_id FROM _funnel_events WHERE excluded)"
        if query.exclude
        else _NO_EXCLUDED
    )
    units = fill(sql.load("funnel_units"), excluded_events=excluded)
    views.run(con, f"CREATE OR REPLACE TEMP {kind} _funnel_units AS {units}")


def _lean_ordered_units(
    con: duckdb.DuckDBPyConnection, query: FunnelQuery, scan: dict[str, Any]
) -> None:
    """The fast path for counts alone (with or without a breakdown): the chain reads unit, time
    and mask straight from the scan (no `_funnel_events`; with a breakdown, also each event's id
    and breakdown value, for the value of each chosen attempt's first step), and `_funnel_units`
    stays a view over its result; only the units with equal-time steps are read again, with their
    event ids, for the pure matcher."""
    params = Params()
    events = _events_sql(query, params, people=False, details=query.breakdown is not None)
    _chosen_times(con, query, events, {**params.values, **scan})
    ambiguous = views.run(con, "SELECT count(*) FROM _funnel_chosen_times WHERE ambiguous")
    if ambiguous.fetchone()[0] == 0:
        _units_from_chosen(con, query, False, "VIEW")
        return
    _units_from_chosen(con, query, False, "TABLE")
    params = Params()
    text = _events_sql(query, params, people=False, units=_AMBIGUOUS_UNITS)
    views.run(
        con, f"CREATE OR REPLACE TEMP TABLE _funnel_events AS {text}", {**params.values, **scan}
    )
    _matched_units(con, query, only=_AMBIGUOUS_UNITS_LIST)


def _matched_units(
    con: duckdb.DuckDBPyConnection, query: FunnelQuery, only: str | None = None
) -> None:
    """The pure matcher over each unit's events, into `_funnel_units`.

    With `only` (a fixed statement listing units), those units are added to the table;
    without it, every unit replaces it.
    """
    import pyarrow as pa

    subset = f"WHERE unit IN ({only})" if only else ""
    events = fetch_arrow(
        con,
        "SELECT unit, epoch_us(time) AS us, time, event_id, mask, excluded, breakdown "
        f"FROM _funnel_events {subset} ORDER BY unit, time, event_id",
    )
    schema = _units_schema()
    parts = [
        pa.Table.from_pylist(list(_match_rows(_columns(chunk), query)), schema=schema)
        for chunk in _unit_chunks(events, CHUNK_ROWS)
    ]
    rows = pa.concat_tables(parts) if parts else schema.empty_table()
    con.register("_funnel_units_arrow", rows)
    if only:
        views.run(con, "INSERT INTO _funnel_units SELECT * FROM _funnel_units_arrow")
    else:
        views.run(
            con, "CREATE OR REPLACE TEMP TABLE _funnel_units AS SELECT * FROM _funnel_units_arrow"
        )
    con.unregister("_funnel_units_arrow")


def _unit_chunks(events: pa.Table, rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Slices of the unit-sorted `events`, about `rows` long, each holding whole units, so only
    one slice at a time becomes Python objects."""
    units = events.column("unit")
    start = 0
    while start < len(events):
        stop = min(start + rows, len(events))
        last = units[stop - 1].as_py()
        while stop < len(events) and units[stop].as_py() == last:
            stop += 1
        yield events.slice(start, stop - start)
        start = stop


def _columns(chunk: pa.Table) -> dict[str, list[Any]]:
    return {name: chunk.column(name).to_pylist() for name in chunk.column_names}


def _units_schema() -> pa.Schema:
    """The columns of `_funnel_units`, as funnel_units.sql returns them."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("unit", pa.string()),
            ("level", pa.int64()),
            ("breakdown", pa.string()),
            ("times", pa.list_(ts)),
            ("ids", pa.list_(pa.string())),
            ("first_time", ts),
            ("first_id", pa.string()),
            ("last_time", ts),
            ("last_id", pa.string()),
            ("excluded", pa.bool_()),
        ]
    )


def _to_us(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _match_rows(cols: dict[str, list[Any]], query: FunnelQuery) -> Any:
    """One `_funnel_units` row per unit that starts an attempt in the range."""
    units, us = cols["unit"], cols["us"]
    window = query.window // timedelta(microseconds=1)
    lo, hi = _to_us(query.start), _to_us(query.end)
    start = 0
    while start < len(units):
        stop = start
        while stop < len(units) and units[stop] == units[start]:
            stop += 1
        found = funnel_match.match_unit(
            us[start:stop],
            cols["mask"][start:stop],
            len(query.steps),
            query.order,
            window,
            query.window_from,
            lo,
            hi,
        )
        if found is not None:
            at = [start + p for p in found.positions]
            yield {
                "unit": units[start],
                "level": found.level,
                "breakdown": cols["breakdown"][at[0]],
                "times": [cols["time"][p] for p in at],
                "ids": [cols["event_id"][p] for p in at],
                "first_time": cols["time"][at[0]],
                "first_id": cols["event_id"][at[0]],
                "last_time": cols["time"][at[-1]],
                "last_id": cols["event_id"][at[-1]],
                "excluded": funnel_match.excluded(
                    found,
                    cols["excluded"][start:stop],
                    us[start:stop],
                    len(query.steps),
                    query.order,
                    window,
                    query.window_from,
                ),
            }
        start = stop


def prepare(
    data_dir: Path,
    query: FunnelQuery,
    engine: str = "auto",
    need_events: bool = True,
    on_absent: event_names.OnAbsent | None = None,
) -> duckdb.DuckDBPyConnection:
    """A connection holding `_funnel_units` for `query`, and `_funnel_events` unless the lean
    fast path applies (ordered, window from the first step, no exclusions, breakdowns or
    `need_events`).

    `engine` "auto" takes the `join_asof` fast path where it applies; "match" forces the pure matcher.
    Without `need_events` the fast path may leave the event ids of `_funnel_units` empty.
    `on_absent` gets the steps and exclusions whose event does not occur (event_names.check).
    """
    query.check()
    con = views.connect(data_dir, need=("events",), start=query.start, end=query.end)
    given = [("--step", s) for s in query.steps] + [("--exclude", s) for s in query.exclude]
    scan_end = query.end + query.span if query.end is not None else None  # later steps' reach
    event_names.check(con, given, query.start, scan_end, on_absent)
    sessions.use_timeout(con, query.session_timeout)
    scan = _scan_bounds(query)
    fast = engine == "auto" and query.fast_path
    if fast and not need_events and not query.exclude:
        _lean_ordered_units(con, query, scan)
        return con
    params = Params()
    text = _events_sql(query, params, people=need_events)
    views.run(
        con,
        f"CREATE OR REPLACE TEMP TABLE _funnel_events AS {text}",
        {**params.values, **scan},
    )
    if fast:
        _ordered_units(con, query, need_events or query.needs_event_details)
        _matched_units(con, query, only=_AMBIGUOUS_UNITS_LIST)
    elif engine == "auto" and query.order == "strict":
        _strict_units(con, query)
    else:
        _matched_units(con, query)
    return con


def _strict_units(con: duckdb.DuckDBPyConnection, query: FunnelQuery) -> None:
    """`_funnel_units` of a strict funnel by funnel_chain.strict_units over `_funnel_events`."""
    import polars as pl

    with views.reading():
        table = con.sql(
            "SELECT unit, time, event_id, mask, excluded, breakdown FROM _funnel_events "
            "ORDER BY unit, time, event_id"
        ).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    units = funnel_chain.strict_units(
        frame,
        len(query.steps),
        query.window,
        query.window_from == "prior",
        query.start or EARLIEST,
        query.end or LATEST,
    )
    con.register("_funnel_units_arrow", units.to_arrow())
    views.run(
        con,
        "CREATE OR REPLACE TEMP TABLE _funnel_units AS "
        f"SELECT {', '.join(_units_schema().names)} FROM _funnel_units_arrow",
    )
    con.unregister("_funnel_units_arrow")


def funnel(
    data_dir: Path,
    query: FunnelQuery,
    engine: str = "auto",
    on_absent: event_names.OnAbsent | None = None,
) -> pl.DataFrame:
    """One row per step (per breakdown value when asked): reached, drop-off, conversion, timing."""
    import polars as pl

    con = prepare(data_dir, query, engine, need_events=False, on_absent=on_absent)
    params = {
        "steps": len(query.steps),
        "limit": query.breakdown_limit,
        "timed": query.order != "any",
        "by": query.breakdown is not None,
    }
    table = fetch_arrow(con, sql.load("funnel_counts"), params)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    names = pl.Series("name", step_labels(query))
    frame = frame.with_columns(name=names.gather(frame["step"] - 1))
    columns = OUTPUT_COLUMNS + (["breakdown"] if query.breakdown is not None else [])
    return frame.select(columns)


def step_labels(query: FunnelQuery) -> list[str]:
    """The `name` of each output row: the step as given, or under `--order any` (where row k
    counts the units that reached at least k of the steps, in any order) `≥ k steps`."""
    if query.order == "any":
        return [f"≥ {k} step{'s' if k > 1 else ''}" for k in range(1, len(query.steps) + 1)]
    return [s.text for s in query.steps]


def dropped_at(
    data_dir: Path,
    query: FunnelQuery,
    step: int,
    engine: str = "auto",
    on_absent: event_names.OnAbsent | None = None,
) -> pa.Table:
    """The units that reached `step` but not the next, with the event that reached it."""
    if not 1 <= step < len(query.steps):
        raise UsageError(
            f"--dropped-at {step} is not a step that can be dropped at.",
            f"use a step number from 1 to {len(query.steps) - 1}",
        )
    con = prepare(data_dir, query, engine, on_absent=on_absent)
    return fetch_arrow(con, sql.load("funnel_dropped"), {"level": step})


def with_bars(frame: pl.DataFrame, width: int = 20) -> pl.DataFrame:
    """The frame with a `bar` column drawing `reached` against the first step, for tables."""
    import polars as pl

    from trailcli.render import bar

    top = pl.col("reached").max()
    if "breakdown" in frame.columns:
        top = top.over("breakdown")
    tops = frame.with_columns(_top=top)["_top"]
    bars = [bar(r, t, width) for r, t in zip(frame["reached"], tops, strict=True)]
    return frame.with_columns(bar=pl.Series(bars, dtype=pl.String))

"""The ordered funnel's fast path (window from the first step) as a chain of Polars `join_asof`s.

Input: the step events of a funnel, one row per event with its unit, time and the bit mask of
the steps it satisfies (bit k-1 for step k). Each step-1 event in `[lo, hi)` starts an attempt;
each next step takes the earliest event of that step at or after the previous step's time,
kept while within the window of the first (`time <= t1 + window`: the closed window of
`funnel_match.in_window`). Each unit keeps its earliest attempt of the best level, as the times
of its steps. Where a step's time equals the previous step's, the (time, event_id) order and
the one-event-one-step rule need more than times: such units are flagged `ambiguous` and
matched again by `funnel_match` (funnel.py does that).

The result has the columns of `_funnel_chosen_times` (unit, level, times, ambiguous), which
queries/funnel_chosen_times.sql and funnel_chosen_events.sql read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

# 2^56 microseconds reach past the year 4000: `t1 - level * LEVEL_WEIGHT` orders attempts by the
# highest level first, then the earliest start
LEVEL_WEIGHT = 1 << 56


def unit_key() -> pl.Expr:
    """What the chain joins on first: a 64-bit hash of the unit (cheaper than its text)."""
    import polars as pl

    return pl.col("unit").hash()


def chosen_times(
    events: pl.DataFrame, steps: int, window: timedelta, lo: datetime, hi: datetime
) -> pl.DataFrame:
    """Each unit's chosen attempt: unit, level, t1 ... t<steps> (null past the level),
    ambiguous, and breakdown (when `events` has event_id and breakdown columns: the value of the
    attempt's first step; else null)."""
    import polars as pl

    extra: list[str] = [c for c in ("event_id", "breakdown") if c in events.columns]
    keyed = events.select("unit", "time", "mask", *extra, key=unit_key())
    found = _attempts(keyed, steps, window, lo, hi, "key", extra)
    if found is None:  # two units share a hash: join on the text itself
        found = _attempts(keyed, steps, window, lo, hi, "unit", extra)
        assert found is not None
    best = pl.col("t1").dt.epoch("us") - pl.col("level").cast(pl.Int64) * LEVEL_WEIGHT
    tied = found.filter(pl.col("tie"))["unit"].unique()
    # among the step-1 events of the chosen start time, the lowest event id gives the breakdown
    order = [best, *([pl.col("event_id")] if extra else [])]
    breakdown = pl.col("breakdown") if extra else pl.lit(None, dtype=pl.String)
    return (
        found.sort(order)
        .unique(subset="unit", keep="first")
        .select(
            "unit",
            "level",
            *(f"t{k}" for k in range(1, steps + 1)),
            ambiguous=pl.col("unit").is_in(tied.implode()),
            breakdown=breakdown,
        )
    )


def _attempts(
    keyed: pl.DataFrame,
    steps: int,
    window: timedelta,
    lo: datetime,
    hi: datetime,
    by: str,
    extra: list[str],
) -> pl.DataFrame | None:
    """Every attempt: unit, the `extra` columns of its first step, t1 ... t<steps>, level and
    `tie` (two steps at one time), joining on the column `by`; None when `by` (a hash) matched an
    event of another unit."""
    import polars as pl

    anchors = keyed.filter(
        (pl.col("mask") & 1 != 0) & (pl.col("time") >= lo) & (pl.col("time") < hi)
    ).select("unit", "key", *extra, t1="time")
    size = anchors.height
    times = [anchors["t1"]]
    tie = pl.Series("tie", [False] * size, dtype=pl.Boolean)
    live = anchors.select(
        pl.int_range(size, dtype=pl.UInt32).alias("idx"),
        "unit",
        "key",
        prev="t1",
        deadline=pl.col("t1") + window,
    )
    for k in range(2, steps + 1):
        reached = pl.Series(f"t{k}", [None] * size, dtype=times[0].dtype)
        if live.height == 0:
            times.append(reached)
            continue
        columns = ["key", "unit"] if by == "key" else ["unit"]
        nxt = (
            keyed.filter(pl.col("mask") & (1 << (k - 1)) != 0).select(*columns, t="time").sort("t")
        )
        hit = (
            live.sort("prev")
            .join_asof(
                nxt,
                left_on="prev",
                right_on="t",
                by=by,
                strategy="forward",
                check_sortedness=False,
                suffix="_hit",
            )
            .filter(pl.col("t").is_not_null() & (pl.col("t") <= pl.col("deadline")))
        )
        if by == "key" and (hit["unit"] != hit["unit_hit"]).any():
            return None
        times.append(reached.scatter(hit["idx"], hit["t"]))
        tied = hit.filter(pl.col("t") == pl.col("prev"))["idx"]
        if len(tied):
            tie = tie.scatter(tied, True)
        live = hit.select("idx", "unit", "key", "deadline", prev="t")
    carried = [anchors[c] for c in extra]
    return pl.DataFrame([anchors["unit"], *carried, *times, tie]).with_columns(
        level=pl.sum_horizontal(pl.col(f"t{k}").is_not_null() for k in range(1, steps + 1))
    )


def strict_units(
    events: pl.DataFrame,
    steps: int,
    window: timedelta,
    prior: bool,
    lo: datetime,
    hi: datetime,
) -> pl.DataFrame:
    """The strict funnel (each step the unit's very next event) over `events` sorted by unit,
    time and event_id (columns unit, time, event_id, mask, excluded, breakdown): one row per
    unit with an attempt starting in `[lo, hi)`, in the columns of `_funnel_units`.

    The same rules as funnel_match's `_strict_from` and `excluded`, by shifting the sorted rows:
    the chain from an anchor goes on while the next row is the same unit's, satisfies the next
    step and is within the window (of the anchor, or with `prior` of the previous step); the
    earliest anchor of the highest level is chosen; an attempt that stops short is excluded when
    the event that broke it (the next one, within the window) is an --exclude event.
    """
    import polars as pl

    group = (pl.col("unit") != pl.col("unit").shift(1)).fill_null(True).cum_sum()
    rows = events.with_columns(_group=group, _pos=pl.int_range(pl.len(), dtype=pl.UInt32))

    def ahead(name: str, j: int) -> pl.Expr:
        return pl.col(name).shift(-j)

    def fits(j: int) -> pl.Expr:
        since = ahead("time", j - 1) if prior else pl.col("time")
        return (ahead("_group", j) == pl.col("_group")) & (ahead("time", j) <= since + window)

    chained = pl.lit(True)
    level = pl.lit(1, dtype=pl.Int64)
    for j in range(1, steps):
        chained = chained & fits(j) & (ahead("mask", j) & (1 << j) != 0)
        level = level + chained.fill_null(False).cast(pl.Int64)
    anchors = (pl.col("mask") & 1 != 0) & (pl.col("time") >= lo) & (pl.col("time") < hi)
    # the event after a chain that stops short, when it is within the window, broke the chain
    broken = pl.lit(False)
    for j in range(1, steps):
        broken = (
            pl.when(level == j)
            .then((fits(j) & ahead("excluded", j)).fill_null(False))
            .otherwise(broken)
        )
    chosen = (
        rows.select("unit", "_pos", "time", "mask", level=level, excluded=broken)
        .filter(anchors)
        .sort(["level", "_pos"], descending=[True, False])
        .unique(subset="unit", keep="first")
        .sort("_pos")
    )
    # the times and ids of each chosen chain, gathered from the rows after its anchor
    last = max(rows.height - 1, 0)
    reach = [(pl.col("_pos") + j).clip(upper_bound=last) for j in range(steps)]
    times = [rows["time"].gather(chosen.select(r).to_series()) for r in reach]
    ids = [rows["event_id"].gather(chosen.select(r).to_series()) for r in reach]
    anchor_breakdown = rows["breakdown"].gather(chosen["_pos"])
    table = chosen.with_columns(
        *(t.alias(f"_t{j}") for j, t in enumerate(times)),
        *(i.alias(f"_i{j}") for j, i in enumerate(ids)),
        breakdown=anchor_breakdown,
    )
    head = pl.col("level")
    return table.select(
        "unit",
        "level",
        "breakdown",
        times=pl.concat_list(f"_t{j}" for j in range(steps)).list.head(head),
        ids=pl.concat_list(f"_i{j}" for j in range(steps)).list.head(head),
        first_time="time",
        first_id="_i0",
        last_time=pl.concat_list(f"_t{j}" for j in range(steps)).list.get(head - 1),
        last_id=pl.concat_list(f"_i{j}" for j in range(steps)).list.get(head - 1),
        excluded="excluded",
    )

"""`trail sample`: generate a seeded data set day by day and write it with its ground truth."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from trailcli.errors import UsageError
from trailcli.sample import presence, rows, traffic
from trailcli.sample.figures import Figures, iso
from trailcli.sample.traffic import DAY
from trailcli.sample.writer import BatchWriter
from trailcli.store import layout, tables

ALL_TABLES = ("visits", "events", "presence", "identities")
DEFAULT_VISITORS = 2000
MAX_DAYS = 3660
# typical persons online at the busiest hour per (visitors / days), once returning visitors have
# built up; the highest instant adds about 2 standard deviations (measured on generated data:
# a peak of 665 over 21 days at 14,000 visitors a day)
PEAK_PER_DAILY_VISITOR = 0.0425
PEAK_RAMP_DAYS = 3.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SampleOptions:
    """What to generate. Exactly one of visitors, events or peak_online sets the volume
    (visitors default to 2000 when none is given)."""

    data_dir: Path
    seed: int = 1
    end: datetime | None = None  # default: the last UTC midnight
    days: int = 7
    visitors: int | None = None
    events: int | None = None
    peak_online: int | None = None
    tables: tuple[str, ...] = ALL_TABLES
    data_dir_label: str | None = None  # how ground-truth commands name the data dir
    now: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SampleResult:
    rows: dict[str, int]
    visitors: int
    ground_truth: Path
    start: datetime
    end: datetime


def parse_tables(text: str | None) -> tuple[str, ...]:
    """A comma-separated subset of visits,events,presence,identities (all when empty)."""
    if not text:
        return ALL_TABLES
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in ALL_TABLES]
    if unknown or not names:
        raise UsageError(
            f"Unknown table {', '.join(unknown) or repr(text)} in --tables.",
            "use a comma-separated subset of visits,events,presence,identities",
        )
    return tuple(t for t in ALL_TABLES if t in names)


def last_midnight(now: datetime | None = None) -> datetime:
    current = (now or datetime.now(UTC)).astimezone(UTC)
    return current.replace(hour=0, minute=0, second=0, microsecond=0)


def _micros(at: datetime) -> int:
    return (at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def validate(opts: SampleOptions) -> None:
    """Raise UsageError for options that cannot produce a sample."""
    volume = [
        n
        for n, v in (
            ("--visitors", opts.visitors),
            ("--events", opts.events),
            ("--peak-online", opts.peak_online),
        )
        if v is not None
    ]
    if len(volume) > 1:
        raise UsageError(
            f"{' and '.join(volume)} both set the volume.",
            "give one of --visitors, --events or --peak-online",
        )
    for name, value in (
        ("--visitors", opts.visitors),
        ("--events", opts.events),
        ("--peak-online", opts.peak_online),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}.", "pass a positive count")
    if not 1 <= opts.days <= MAX_DAYS:
        raise UsageError(
            f"--days must be between 1 and {MAX_DAYS}, not {opts.days}.", "pass e.g. --days 7"
        )
    if opts.seed < 0:
        raise UsageError(f"--seed must be 0 or more, not {opts.seed}.", "pass e.g. --seed 1")
    existing = [t for t in opts.tables if tables.table_exists(opts.data_dir, t)]
    if existing:
        raise UsageError(
            f"{opts.data_dir} already holds the {', '.join(existing)} table(s); a sample is "
            "written into fresh tables only.",
            "pass an empty --data-dir, or remove the old sample first",
        )


def cohort_sizes(seed: int, visitors: int, days: int, range_start: int) -> np.ndarray:
    """First-visit counts per day: Saturdays and Sundays quieter, a little day-to-day noise."""
    rng = np.random.default_rng([seed, 1_000_017])
    by_weekday = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 0.75, 0.75])  # Monday first
    weekday = (range_start // DAY + np.arange(days) + 3) % 7  # 1970-01-01 was a Thursday
    weights = by_weekday[weekday] * rng.uniform(0.9, 1.1, days)
    return rng.multinomial(visitors, weights / weights.sum())


def events_per_visitor(days: int) -> float:
    """Mean stored events per visitor for a range of `days` (return visits past the end are cut)."""
    total_events = total_visitors = 0
    range_start = 0
    for day in sorted({int(d) for d in np.linspace(0, days - 1, min(days, 8))}):
        t = traffic.cohort(7, day, 3000, range_start, days, 0)
        total_events += len(t.events.time)
        total_visitors += 3000
    return total_events / total_visitors


def visitor_count(opts: SampleOptions) -> int:
    if opts.visitors is not None:
        return opts.visitors
    if opts.events is not None:
        return max(1, round(opts.events / events_per_visitor(opts.days)))
    if opts.peak_online is not None:
        ramp = 1 - math.exp(-opts.days / PEAK_RAMP_DAYS)  # fewer returning visitors in short ranges
        typical = (math.sqrt(1 + opts.peak_online) - 1) ** 2  # typical + 2 * sqrt(typical) = peak
        return max(1, round(typical / (PEAK_PER_DAILY_VISITOR * ramp) * opts.days))
    return DEFAULT_VISITORS


def generate(opts: SampleOptions, progress: Callable[[str], None] | None = None) -> SampleResult:
    """Generate the sample into `opts.data_dir` and write `ground_truth.json` next to it."""
    say = progress or (lambda _msg: None)
    validate(opts)
    end_dt = opts.end or last_midnight(opts.now)
    end = _micros(end_dt)
    range_start = end - opts.days * DAY
    n_visitors = visitor_count(opts)
    sizes = cohort_sizes(opts.seed, n_visitors, opts.days, range_start)
    plan = presence.plan(opts.seed, range_start, opts.days)
    writer = BatchWriter(opts.data_dir, opts.tables, plan, range_start, progress=say)
    figures = Figures(opts.tables, plan, range_start, opts.days, opts.seed)
    counts = dict.fromkeys(("visits", "events", "duplicates", "sessions"), 0)
    offset = 0
    daily = DailyCounts(range_start, opts.days)
    say(f"generating {n_visitors:,} visitors over {opts.days} days ending {iso(end)}")
    for day, size in enumerate(sizes.tolist()):
        t = traffic.cohort(opts.seed, day, size, range_start, opts.days, 100_000 + offset)
        _emit_cohort(opts, day, t, offset, plan, end, writer, figures, counts)
        daily.add(t)
        writer.close_before(range_start + (day + 1) * DAY)
        figures.settle(range_start + (day + 1) * DAY)
        say(daily.line(day, opts.tables))
        offset += size
    writer.close_before(None)
    figures.settle(None)
    generator = _generator_args(opts, end_dt)
    doc = figures.document(
        generator, {"visitors": n_visitors, **counts}, opts.data_dir_label or str(opts.data_dir)
    )
    path = _write_truth(opts.data_dir, doc)
    say(f"wrote {path}")
    return SampleResult(
        rows=dict(writer.written),
        visitors=n_visitors,
        ground_truth=path,
        start=end_dt - timedelta(days=opts.days),
        end=end_dt,
    )


class DailyCounts:
    """Visits and events per calendar day (UTC) of the range, by when they happened.

    A cohort's visitors come back on later days, so a cohort is not a day. Day d is complete
    once cohort d is generated: no later cohort has a visit or an event before its first day.
    """

    def __init__(self, range_start: int, days: int) -> None:
        self.range_start = range_start
        self.visits = np.zeros(days, np.int64)
        self.events = np.zeros(days, np.int64)

    def _add(self, counts: np.ndarray, times: np.ndarray) -> None:
        day = (np.asarray(times, np.int64) - self.range_start) // DAY
        inside = (day >= 0) & (day < len(counts))
        counts += np.bincount(day[inside], minlength=len(counts))

    def add(self, t: traffic.Traffic) -> None:
        self._add(self.visits, t.visits.start)
        self._add(self.events, t.events.time)

    def line(self, day: int, kinds: tuple[str, ...]) -> str:
        """The progress line of a completed day: what the tables hold for it."""
        date = iso(self.range_start + day * DAY)[:10]
        parts = [f"{self.visits[day]:,} visits" if "visits" in kinds else ""]
        parts.append(f"{self.events[day]:,} events" if "events" in kinds else "")
        held = ", ".join(p for p in parts if p) or "done"
        return f"{date} (day {day + 1}/{len(self.visits)}): {held}"


def _emit_cohort(
    opts: SampleOptions,
    day: int,
    t: traffic.Traffic,
    offset: int,
    plan: presence.Plan,
    end: int,
    writer: BatchWriter,
    figures: Figures,
    counts: dict[str, int],
) -> None:
    """Build the cohort's tables, hand them to the writer and its figures to the ground truth."""
    counts["visits"] += len(t.visits.start)
    counts["events"] += len(t.events.time)
    visits_table = None
    if "visits" in opts.tables:
        visits_table = rows.visits_table(opts.seed, day, t)
        writer.add("visits", visits_table)
        figures.add_sources(t, visits_table)
    if "events" in opts.tables:
        ids = rows.event_ids(opts.seed, day, len(t.events.time))
        events = rows.events_table(opts.seed, day, t, ids)
        counts["duplicates"] += events.num_rows - len(t.events.time)
        writer.add("events", events)
        if figures.has_funnel:
            figures.add_funnel(t, ids)
    if "identities" in opts.tables:
        writer.add("identities", rows.identities_table(t, end))
    if "presence" in opts.tables:
        sessions = presence.sessions(opts.seed, day, t, plan, end)
        anonymous = presence.anonymous_visits(opts.seed, day, len(t.visits.start))
        counts["sessions"] += len(sessions.start)
        writer.add("presence", rows.presence_table(t, sessions, anonymous))
        figures.add_presence(t, sessions, anonymous, offset, first_cohort=day == 0)


def _generator_args(opts: SampleOptions, end: datetime) -> dict[str, object]:
    args = asdict(opts)
    args.pop("now")
    args.pop("data_dir_label")
    args["data_dir"] = opts.data_dir_label or str(opts.data_dir)
    args["end"] = iso(_micros(end))
    args["tables"] = list(opts.tables)
    return args


def _write_truth(data_dir: Path, doc: dict) -> Path:
    path = layout.ground_truth_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path

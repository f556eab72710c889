"""Whether the tables hold data for a request: the one rule behind exit code 3 ("no data").

A command has no data for its request when every table it reads is missing, or when none of
them has a partition (a UTC day) overlapping the requested range `[start, end)`. An empty
result over data that covers the range is not "no data": it is an empty answer (exit 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trailcli.errors import NoDataError
from trailcli.store import layout

WIDEN_HINT = "widen --from/--to (or drop them to cover all the data)"
FIRST_RUN_HINT = "run 'trail collect' or 'trail sample' first, or pass --data-dir"
_JUST_BEFORE = timedelta(microseconds=1)


def overlaps(
    dates: Iterable[str], start: datetime | None, end: datetime | None, inclusive: bool = False
) -> bool:
    """True when some partition day in `dates` (YYYY-MM-DD, UTC) overlaps `[start, end)`
    (`[start, end]` when `inclusive`)."""
    lo = layout.day_of(start) if start is not None else None
    hi = layout.day_of(end if inclusive else end - _JUST_BEFORE) if end is not None else None
    return any((lo is None or d >= lo) and (hi is None or d <= hi) for d in dates)


def _label(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat() if moment is not None else "the start"


def require(
    data_dir: Path,
    dates: Mapping[str, Iterable[str] | None],
    start: datetime | None = None,
    end: datetime | None = None,
    inclusive: bool = False,
) -> None:
    """Raise NoDataError unless some table in `dates` (kind -> its partition days, None when the
    table is missing) has a partition overlapping `[start, end)` (`[start, end]` when
    `inclusive`: `trail online --at T` asks about rows at or before T).

    Without `start` and `end` any existing table will do, even an empty one (then the answer is
    simply empty).
    """
    present = {kind: sorted(days) for kind, days in dates.items() if days is not None}
    if not present:
        looked = ", ".join(str(layout.table_path(data_dir, k)) for k in dates)
        raise NoDataError(f"No trail data for this command: looked for {looked}.", FIRST_RUN_HINT)
    if start is None and end is None:
        return
    if any(overlaps(days, start, end, inclusive) for days in present.values()):
        return
    kinds = " or ".join(present)
    every_day = sorted({d for days in present.values() for d in days})
    if not every_day:
        held = "the tables hold no rows yet"
    elif every_day[0] == every_day[-1]:
        held = f"the data covers {every_day[0]} (UTC)"
    else:
        held = f"the data covers {every_day[0]} to {every_day[-1]} (UTC)"
    if start is None:
        when, hint = f"at or before {_label(end)}", "ask about a later time"
    elif end is None:
        when, hint = f"from {_label(start)} on", WIDEN_HINT
    else:
        when, hint = f"between {_label(start)} and {_label(end)}", WIDEN_HINT
    purged = _purged_note(data_dir, present, every_day[0] if every_day else None, end)
    if purged:
        held, hint = purged, "ask about a time on or after that date"
    raise NoDataError(f"No {kinds} rows {when}: {held}.", hint)


def purged_before(data_dir: Path) -> dict[str, str]:
    """Per kind, the first day kept by the latest purge that removed days (`trail purge`,
    store/retention.py); {} when none did."""
    try:
        data = json.loads(layout.retention_marker_path(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    kept = data.get("kept_from", {}) if isinstance(data, dict) else {}
    return {k: v for k, v in kept.items() if isinstance(v, str)}


def _purged_note(
    data_dir: Path, present: Mapping[str, list[str]], first: str | None, end: datetime | None
) -> str | None:
    """When the request ends before the first day a purge kept: the date the log now starts."""
    kept = [day for kind, day in purged_before(data_dir).items() if kind in present]
    if not kept or end is None or layout.day_of(end) >= max(kept):
        return None
    starts = first or max(kept)
    return f"the log now starts on {starts} (UTC); the days before {max(kept)} were purged"

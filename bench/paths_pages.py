"""`trail report pages` and `trail report paths` beside hand-written DuckDB window-function queries.

$view events are generated for `--events` events (visitors with sessions of a few page views, Zipf
page popularity). Both sides read the same `events` view and leave out bot visits; the baselines
sessionize with LAG and a running sum, then aggregate. Run: python bench/paths_pages.py [--events 10000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from trailcli.reports.pages import PagesQuery, pages_report
from trailcli.reports.paths import PathsQuery, paths_report
from trailcli.store import tables, views
from trailcli.store.maintenance import compact
from trailcli.store.schema import EVENTS

PAGES = 2000


def generate_events(n_events: int, seed: int = 11) -> pa.Table:
    """$view events of n/8 visitors; gaps mostly under a minute, sometimes over an hour."""
    rng = np.random.default_rng(seed)
    n_visitors = max(1, n_events // 8)
    visitors = np.sort(rng.integers(0, n_visitors, size=n_events))
    gaps = np.where(rng.random(n_events) < 0.15, 3600, rng.integers(5, 120, size=n_events))
    first = np.r_[True, visitors[1:] != visitors[:-1]]
    starts = rng.integers(0, 30 * 86400, size=n_visitors)
    seconds = np.cumsum(gaps)
    base = seconds[np.maximum.accumulate(np.where(first, np.arange(n_events), 0))]
    when = starts[visitors] + (seconds - base)
    pages = np.minimum(rng.zipf(1.2, size=n_events), PAGES)
    epoch = np.datetime64("2026-01-01T00:00:00", "us")
    page_text = np.array([f"/p/{i}" for i in range(PAGES + 1)], dtype=object)[pages]
    columns = {f.name: pa.nulls(n_events, f.type) for f in EVENTS.schema}
    columns["event_id"] = pa.array([f"e{i}" for i in range(n_events)])
    columns["visit_token"] = pa.array([f"v{v}" for v in visitors])
    columns["visitor_token"] = pa.array([f"p{v}" for v in visitors])
    columns["name"] = pa.array(np.full(n_events, "$view", dtype=object))
    columns["properties"] = pa.array(['{"page":"' + p + '"}' for p in page_text])
    columns["time"] = pa.array(epoch + (when * 1_000_000).astype("timedelta64[us]")).cast(
        pa.timestamp("us", tz="UTC")
    )
    return tables.with_date(EVENTS, pa.table(columns, schema=EVENTS.schema))


SESSIONIZED = """
WITH g AS (
    SELECT visitor_token, visit_token, time, event_id, name, page,
           CASE WHEN time - lag(time) OVER w < INTERVAL 30 MINUTE THEN 0 ELSE 1 END AS new_session
    FROM events WHERE visitor_token IS NOT NULL
    WINDOW w AS (PARTITION BY visitor_token ORDER BY time, event_id)
),
s AS (
    SELECT *, sum(new_session) OVER (PARTITION BY visitor_token ORDER BY time, event_id) AS sn
    FROM g
)
"""
PAGES_BASELINE = (
    SESSIONIZED
    + """
, v AS (
    SELECT s.* FROM s LEFT JOIN visits AS vi ON vi.visit_token = s.visit_token
    WHERE s.name = '$view' AND s.page IS NOT NULL AND vi.device_type IS DISTINCT FROM 'Bot'
),
ends AS (
    SELECT arg_min(page, (time, event_id)) AS entry, arg_max(page, (time, event_id)) AS exit
    FROM v GROUP BY visitor_token, sn
)
SELECT c.page, c.views, c.visitors, coalesce(en.n, 0) AS entries, coalesce(ex.n, 0) AS exits,
       coalesce(ex.n, 0) / c.views AS exit_rate
FROM (SELECT page, count(*) AS views, count(DISTINCT visitor_token) AS visitors
      FROM v GROUP BY page) AS c
LEFT JOIN (SELECT entry AS page, count(*) AS n FROM ends GROUP BY entry) AS en USING (page)
LEFT JOIN (SELECT exit AS page, count(*) AS n FROM ends GROUP BY exit) AS ex USING (page)
ORDER BY views DESC
"""
)
PATHS_BASELINE = (
    SESSIONIZED
    + """
, c AS (
    SELECT s.visitor_token, s.sn, s.time, s.event_id, s.page,
           lag(s.page) OVER (PARTITION BY s.visitor_token, s.sn ORDER BY s.time, s.event_id) AS prev
    FROM s LEFT JOIN visits AS vi ON vi.visit_token = s.visit_token
    WHERE s.name = '$view' AND s.page IS NOT NULL AND vi.device_type IS DISTINCT FROM 'Bot'
),
n AS (
    SELECT visitor_token, sn, page,
           row_number() OVER (PARTITION BY visitor_token, sn ORDER BY time, event_id) AS step,
           lead(page) OVER (PARTITION BY visitor_token, sn ORDER BY time, event_id) AS nxt
    FROM c WHERE prev IS DISTINCT FROM page
)
SELECT step, page, coalesce(nxt, '(exit)') AS nxt, count(*) AS sessions,
       count(DISTINCT visitor_token) AS visitors
FROM n WHERE step <= 5
GROUP BY step, page, coalesce(nxt, '(exit)')
QUALIFY row_number() OVER (PARTITION BY step ORDER BY count(*) DESC) <= 10
"""
)


def run_sql(data_dir: Path, text: str) -> int:
    return len(views.connect(data_dir, need=("events",)).execute(text).fetchall())


def best_of(fn, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - t0)
    return min(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--no-compact",
        action="store_true",
        help="read the raw bulk-written files (deduplicated at read time) instead of compacted days",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        tables.bulk_write(data_dir, "events", generate_events(args.events))
        if not args.no_compact:
            compact(data_dir, kinds=["events"])
        print(f"generated {args.events:,} $view events in {time.perf_counter() - t0:.1f} s")
        pairs = {
            "pages": (
                lambda: pages_report(data_dir, PagesQuery()).num_rows,
                lambda: run_sql(data_dir, PAGES_BASELINE),
            ),
            "paths": (
                lambda: paths_report(data_dir, PathsQuery()).num_rows,
                lambda: run_sql(data_dir, PATHS_BASELINE),
            ),
        }
        for name, (trail_fn, base_fn) in pairs.items():
            base_t, _ = best_of(base_fn, args.repeat)
            trail_t, _ = best_of(trail_fn, args.repeat)
            print(
                f"{name}: baseline {base_t:.2f} s, trail {trail_t:.2f} s, "
                f"ratio {trail_t / base_t:.2f}x (best of {args.repeat})"
            )


if __name__ == "__main__":
    main()

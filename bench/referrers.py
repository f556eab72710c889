"""`trail report referrers` beside a hand-written DuckDB group-by over referring_domain and utm_source.

Visits are generated for `--events` events (about four events per visit, so only the visits
table is written: the report reads visits only). Both sides read the same views and count visits
and distinct visitors per group. Run: python bench/referrers.py [--events 10000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from trailcli.reports.referrers import ReferrersQuery, referrers_report
from trailcli.store import tables, views
from trailcli.store.maintenance import compact
from trailcli.store.schema import VISITS

EVENTS_PER_VISIT = 4
SITE = "https://shop.example.com"
REFERRERS = [
    (None, 0.40),
    ("https://www.google.com/search?q=term{n}", 0.15),
    ("https://www.google.co.uk/", 0.05),
    ("https://www.bing.com/search?q=term{n}", 0.03),
    ("https://duckduckgo.com/", 0.02),
    ("https://t.co/{n}", 0.04),
    ("https://l.facebook.com/l.php?u={n}", 0.04),
    ("https://news.ycombinator.com/item?id={n}", 0.02),
    ("https://mail.google.com/mail/u/0/", 0.03),
    ("https://chatgpt.com/", 0.02),
    ("https://blog{b}.example.org/post-{n}", 0.10),
    ("https://shop.example.com/cart", 0.10),
]
LANDINGS = [
    ("/", 0.6),
    ("/p/{n}", 0.25),
    ("/?utm_source=Newsletter&utm_medium=email&utm_campaign=week{b}", 0.08),
    ("/p/{n}?gclid={n}", 0.05),
    ("/?fbclid={n}", 0.02),
]


def _pick(rng: np.random.Generator, pool: list, size: int) -> np.ndarray:
    weights = np.array([w for _, w in pool])
    return rng.choice(len(pool), size=size, p=weights / weights.sum())


def generate_visits(n_visits: int, seed: int = 7) -> pa.Table:
    """`n_visits` visits of n_visits/2.5 visitors with weighted referrers and landing pages."""
    rng = np.random.default_rng(seed)
    nums = rng.integers(0, 50_000, size=n_visits)
    blogs = rng.integers(0, 200, size=n_visits)
    ref_idx = _pick(rng, REFERRERS, n_visits)
    land_idx = _pick(rng, LANDINGS, n_visits)
    referrers = [
        None if REFERRERS[r][0] is None else REFERRERS[r][0].format(n=n, b=b)
        for r, n, b in zip(ref_idx, nums, blogs, strict=True)
    ]
    landings = [
        SITE + LANDINGS[i][0].format(n=n, b=b % 52)
        for i, n, b in zip(land_idx, nums, blogs, strict=True)
    ]
    start = np.datetime64("2026-01-01T00:00:00", "us")
    offsets = rng.integers(0, 30 * 86400 * 1_000_000, size=n_visits)
    visitors = rng.integers(0, max(1, int(n_visits / 2.5)), size=n_visits)
    devices = np.where(rng.random(n_visits) < 0.02, "Bot", "Desktop")
    columns = {f.name: pa.nulls(n_visits, f.type) for f in VISITS.schema}
    columns["visit_token"] = pa.array([f"v{i}" for i in range(n_visits)])
    columns["visitor_token"] = pa.array([f"p{v}" for v in visitors])
    columns["started_at"] = pa.array(start + offsets.astype("timedelta64[us]")).cast(
        pa.timestamp("us", tz="UTC")
    )
    columns["referrer"] = pa.array(referrers, pa.string())
    columns["referring_domain"] = pa.array(
        [None if r is None else r.split("/")[2] for r in referrers], pa.string()
    )
    columns["landing_page"] = pa.array(landings)
    columns["device_type"] = pa.array(devices)
    table = pa.table(columns, schema=VISITS.schema)
    return tables.with_date(VISITS, table)


BASELINE = """
SELECT referring_domain, utm_source, count(*) AS visits, count(DISTINCT visitor_token) AS visitors
FROM visits
WHERE device_type IS DISTINCT FROM 'Bot'
GROUP BY referring_domain, utm_source
ORDER BY visits DESC
"""


def baseline(data_dir: Path) -> int:
    con = views.connect(data_dir, need=("visits",))
    return len(con.execute(BASELINE).fetchall())


def trail_side(data_dir: Path) -> int:
    return referrers_report(data_dir, ReferrersQuery(by="source")).num_rows


def best_of(fn, data_dir: Path, repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = fn(data_dir)
        times.append(time.perf_counter() - t0)
    return min(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events the visits stand for")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--no-compact",
        action="store_true",
        help="read the raw bulk-written files (deduplicated at read time) instead of compacted days",
    )
    args = parser.parse_args()
    n_visits = args.events // EVENTS_PER_VISIT
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        tables.bulk_write(data_dir, "visits", generate_visits(n_visits))
        if not args.no_compact:
            compact(data_dir, kinds=["visits"])
        print(
            f"generated {n_visits:,} visits ({args.events:,} events) in {time.perf_counter() - t0:.1f} s"
        )
        base_t, base_rows = best_of(baseline, data_dir, args.repeat)
        trail_t, trail_rows = best_of(trail_side, data_dir, args.repeat)
        print(
            f"baseline group-by (referring_domain, utm_source): {base_t:.2f} s, {base_rows} groups"
        )
        print(
            f"trail report referrers --by source:             {trail_t:.2f} s, {trail_rows} sources"
        )
        print(f"ratio trail/baseline: {trail_t / base_t:.2f}x (best of {args.repeat})")


if __name__ == "__main__":
    main()

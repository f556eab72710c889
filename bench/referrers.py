"""`trail report referrers` beside a hand-written DuckDB group-by over referring_domain and utm_source.

Visits are generated for `--events` events (about four events per visit, so only the visits
table is written: the report reads visits only). The stored utm_* columns are filled from the
landing page as the collector fills them (`--no-stored-utm` leaves them empty, as for rows written
by other tools, so the report parses the landing pages), and so are the source facts
(referrer_kind, click_id, search_term; `--no-facts` leaves them empty, as in tables written before
they existed, so the report reads the URLs). Both sides read the same views and count visits and
distinct visitors per group.
Run: python bench/referrers.py [--events 10000000] [--repeat 2] [--no-compact] [--no-stored-utm]
  [--no-facts]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from trailcli.collector.ahoy_payload import UTM_FIELDS, utm_params
from trailcli.reports.referrers import ReferrersQuery, referrers_report
from trailcli.sources.referrer_facts import FACT_COLUMNS, source_facts
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


def stored_utm(landings: list[str]) -> dict[str, pa.Array]:
    """The utm_* columns the collector stores for these landing pages (no utm params sent)."""
    tags = {url: utm_params({}, url) for url in set(landings)}
    return {
        name: pa.array([tags[url][name] for url in landings], pa.string()) for name in UTM_FIELDS
    }


def stored_facts(referrers: list[str | None], landings: list[str]) -> dict[str, pa.Array]:
    """The source facts the collector stores: the referrer's from each distinct referrer, the
    click id from each distinct landing page (the same function, each URL once)."""
    by_referrer = {r: source_facts(r, None) for r in set(referrers)}
    by_landing = {url: source_facts(None, url) for url in set(landings)}
    from_landing = ("click_id", "landing_host")
    facts = {
        name: pa.array([by_referrer[r][name] for r in referrers], pa.string())
        for name in FACT_COLUMNS
        if name not in from_landing
    }
    for name in from_landing:
        facts[name] = pa.array([by_landing[url][name] for url in landings], pa.string())
    return facts


def generate_visits(
    n_visits: int, seed: int = 7, with_utm: bool = True, with_facts: bool = True
) -> pa.Table:
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
    if with_utm:
        columns.update(stored_utm(landings))
    if with_facts:
        columns.update(stored_facts(referrers, landings))
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


def alternating(data_dir: Path, repeat: int) -> dict[str, tuple[float, int]]:
    """Best time and row count of each side, the sides taking turns so load hits both alike."""
    times: dict[str, list[float]] = {"baseline": [], "trail": []}
    rows: dict[str, int] = {}
    for _ in range(repeat):
        for name, fn in (("baseline", baseline), ("trail", trail_side)):
            t0 = time.perf_counter()
            rows[name] = fn(data_dir)
            times[name].append(time.perf_counter() - t0)
    return {name: (min(ts), rows[name]) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events the visits stand for")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--no-compact",
        action="store_true",
        help="read the raw bulk-written files (deduplicated at read time) instead of compacted days",
    )
    parser.add_argument(
        "--no-stored-utm",
        action="store_true",
        help="leave the utm_* columns empty, so the report parses UTM tags from the landing pages",
    )
    parser.add_argument(
        "--no-facts",
        action="store_true",
        help="leave the source fact columns empty, so the report reads the referrer and landing URLs",
    )
    args = parser.parse_args()
    n_visits = args.events // EVENTS_PER_VISIT
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        visits = generate_visits(
            n_visits, with_utm=not args.no_stored_utm, with_facts=not args.no_facts
        )
        tables.bulk_write(data_dir, "visits", visits)
        if not args.no_compact:
            compact(data_dir, kinds=["visits"])
        print(
            f"generated {n_visits:,} visits ({args.events:,} events) in {time.perf_counter() - t0:.1f} s"
        )
        best = alternating(data_dir, args.repeat)
        (base_t, base_rows), (trail_t, trail_rows) = best["baseline"], best["trail"]
        print(
            f"baseline group-by (referring_domain, utm_source): {base_t:.2f} s, {base_rows} groups"
        )
        print(
            f"trail report referrers --by source:             {trail_t:.2f} s, {trail_rows} sources"
        )
        print(f"ratio trail/baseline: {trail_t / base_t:.2f}x (best of {args.repeat})")


if __name__ == "__main__":
    main()

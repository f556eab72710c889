"""Import speed: `trail import ahoy` from PostgreSQL beside COPY ... TO STDOUT into Parquet.

Starts its own PostgreSQL (as the tests do), fills Ahoy's tables with --events events over
--visits visits, then alternates rounds of
  A: the import into a fresh data dir (`import_ahoy`, the library call the command makes),
  B: the baseline: each table copied out with `COPY (SELECT ...) TO STDOUT (FORMAT csv)`, parsed
     by pyarrow and written as one zstd Parquet file per table,
and prints rows/s of both (visits + events) and their ratio per round and overall.
Run: python bench/import_ahoy.py [--events 1000000] [--visits 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ahoy_databases import PostgresServer, create_postgres_tables

from trailcli.importer.ahoy import AhoyImport, import_ahoy

AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
]


def fill(url: str, visits: int, events: int) -> None:
    """Ahoy-like rows: tens of distinct user agents, search referrers with 2,000 distinct
    queries, 500 product landing pages (some with UTM tags or a click id), users on a third of
    the visits; $view events with url/page/title and other names with small properties. Events
    belong to visits of their own time, as an app writes them."""
    import psycopg

    agents = "ARRAY[" + ", ".join("'" + a.replace("'", "''") + "'" for a in AGENTS) + "]"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ahoy_visits (visit_token, visitor_token, user_id, ip, user_agent, referrer, "
            "referring_domain, landing_page, browser, os, device_type, country, city, utm_source, "
            "utm_medium, platform, started_at) SELECT "
            "md5('v' || g), md5('w' || (g %% (%s / 3 + 1))), CASE WHEN g %% 3 = 0 THEN g %% 5000 END, "
            "'198.51.100.' || (g %% 250), "
            "replace((" + agents + ")[1 + g %% 4], '120.0', (100 + g %% 80) || '.0.' || (g %% 4)), "
            "(ARRAY[NULL, 'https://www.google.com/search?q=shoes+' || (g %% 2000), "
            "'https://m.facebook.com/', 'https://news.ycombinator.com/item?id=' || (g %% 50)])[1 + g %% 4], "
            "(ARRAY[NULL, 'www.google.com', 'm.facebook.com', 'news.ycombinator.com'])[1 + g %% 4], "
            "'https://www.shop.example/product/' || (g %% 500) || CASE WHEN g %% 7 = 0 THEN "
            "'?utm_source=newsletter&utm_medium=email' WHEN g %% 11 = 0 THEN '?gclid=' || g ELSE '' END, "
            "'Chrome', 'Mac', 'Desktop', 'Germany', 'Berlin', CASE WHEN g %% 7 = 0 THEN 'newsletter' END, "
            "CASE WHEN g %% 7 = 0 THEN 'email' END, 'Web', "
            "timestamp '2026-01-01' + g * (interval '30 days' / %s) FROM generate_series(1, %s) g",
            (visits, visits, visits),
        )
        conn.execute(
            "INSERT INTO ahoy_events (visit_id, user_id, name, properties, time) SELECT "
            "least(%s, 1 + (g::bigint * %s) / %s + g %% 3), CASE WHEN g %% 3 = 0 THEN g %% 5000 END, "
            "(ARRAY['$view', '$view', '$view', '$click', 'add_to_cart', 'checkout'])[1 + g %% 6], "
            "CASE WHEN g %% 6 < 3 THEN jsonb_build_object('url', 'https://www.shop.example/product/' "
            "|| (g %% 500), 'page', '/product/' || (g %% 500), 'title', 'Product ' || (g %% 500)) "
            "ELSE jsonb_build_object('sku', 'sku-' || (g %% 300), 'price', (g %% 100) + 0.99) END, "
            "timestamp '2026-01-01' + g * (interval '30 days' / %s) FROM generate_series(1, %s) g",
            (visits, visits, events, events, events),
        )
        conn.execute("VACUUM ANALYZE")
        distinct = conn.execute(
            "SELECT count(DISTINCT user_agent), count(DISTINCT referrer), count(DISTINCT landing_page) "
            "FROM ahoy_visits"
        ).fetchone()
        print(f"distinct user agents, referrers, landing pages: {distinct}")


def run_import(url: str, out: Path, batch_size: int) -> int:
    result = import_ahoy(out, AhoyImport(url, batch_size=batch_size))
    return sum(s.read for s in result.steps if s.table != "identities")


def run_copy(url: str, out: Path) -> int:
    """The baseline: every column of both tables, COPY'd out and written as Parquet."""
    import psycopg

    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for table in ("ahoy_visits", "ahoy_events"):
            chunks: list[bytes] = []
            with cur.copy(
                f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT (FORMAT csv, HEADER)"
            ) as copy:
                chunks.extend(bytes(c) for c in copy)
            parsed = pa_csv.read_csv(
                pa.BufferReader(b"".join(chunks)),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            )
            pq.write_table(parsed, out / f"{table}.parquet", compression="zstd")
            rows += parsed.num_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()

    print(f"load before: {os.getloadavg()}", flush=True)
    server = PostgresServer().start()
    work = Path(tempfile.mkdtemp(prefix="trail-bench-import-"))
    try:
        url = server.create_database("ahoy_bench")
        create_postgres_tables(url)
        started = time.monotonic()
        fill(url, args.visits, args.events)
        print(
            f"filled {args.visits:,} visits and {args.events:,} events in {time.monotonic() - started:.1f} s"
        )
        ratios, imports, copies = [], [], []
        for n in range(args.rounds):
            target = work / f"import-{n}"
            t = time.monotonic()
            rows = run_import(url, target, args.batch_size)
            a = rows / (time.monotonic() - t)
            shutil.rmtree(target)
            t = time.monotonic()
            rows_b = run_copy(url, work / f"copy-{n}")
            b = rows_b / (time.monotonic() - t)
            shutil.rmtree(work / f"copy-{n}")
            assert rows == rows_b == args.visits + args.events, (rows, rows_b)
            imports.append(a)
            copies.append(b)
            ratios.append(a / b)
            print(
                f"round {n + 1}: import {a:,.0f} rows/s, COPY to Parquet {b:,.0f} rows/s, ratio {a / b:.2f}",
                flush=True,
            )
        print(
            f"median: import {statistics.median(imports):,.0f} rows/s, COPY to Parquet "
            f"{statistics.median(copies):,.0f} rows/s, ratio {statistics.median(ratios):.2f} (target >= 0.5)"
        )
        print(f"load after: {os.getloadavg()}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

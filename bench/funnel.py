"""`trail report funnel` beside a hand-written DuckDB ASOF-join query and a Polars `join_asof`.

The 4-step ordered funnel of the sample ($view of a product page, add_to_cart, checkout,
purchase; 1-day window from the first step; visitors; bots left out) over data from
`trail sample --events N`, compacted as the collector does with closed days. Each contender
runs in its own process, so its peak RSS is its own; the time (wall and CPU) is the query
alone, best of --repeat alternating rounds; ratios are against the faster baseline.

--mode breakdown, exclude or strict adds `--breakdown visit.utm_source`, `--exclude '$view
page=/blog/*'` or `--order strict` and measures it against a hand-written Polars baseline of its
own that computes the same result (each unit's chosen attempt: highest level, earliest start).

Run: python bench/funnel.py [--events 10000000] [--repeat 2] [--data-dir DIR] [--mode MODE]
     python bench/funnel.py --compare /tmp/old   # also `trail` of another checkout, same rounds

For --compare (make the other checkout with `git worktree add /tmp/old <commit>`), the other
checkout's own bench/funnel.py runs its `trail` contender in its working directory with its
PYTHONPATH, alternating with the others.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STEPS = ("$view page=/product/*", "add_to_cart", "checkout", "purchase")
NAMES = ["$view", "add_to_cart", "checkout", "purchase"]
EXCLUDE = "$view page=/blog/*"  # --mode exclude: a blog page read between the first and last step
BREAKDOWN = "visit.utm_source"  # --mode breakdown
# the options of `trail report funnel` each mode adds; counts has both baselines, the other modes
# a Polars baseline of their own that computes the same result (the chosen attempt per unit)
MODES = {
    "counts": {},
    "breakdown": {"breakdown": BREAKDOWN},
    "exclude": {"exclude": EXCLUDE},
    "strict": {"order": "strict"},
}
BASELINES = {
    "counts": ("duckdb-asof", "polars-asof"),
    "breakdown": ("polars-breakdown",),
    "exclude": ("polars-exclude",),
    "strict": ("polars-strict",),
}
CONTENDERS = (
    "trail",
    "duckdb-asof",
    "polars-asof",
    "polars-breakdown",
    "polars-exclude",
    "polars-strict",
)

DUCKDB_ASOF = """
WITH bots AS (
    SELECT visit_token FROM read_parquet($visits) WHERE device_type = 'Bot'
),
e AS (
    SELECT visitor_token AS u, time AS t, name,
        json_extract_string(properties, '$.page') AS page
    FROM read_parquet($events)
    WHERE name IN ('$view', 'add_to_cart', 'checkout', 'purchase')
        AND visit_token NOT IN (SELECT visit_token FROM bots)
),
s1 AS (SELECT u, t AS t1 FROM e WHERE name = '$view' AND page LIKE '/product/%'),
s2 AS (SELECT u, t AS t2 FROM e WHERE name = 'add_to_cart'),
s3 AS (SELECT u, t AS t3 FROM e WHERE name = 'checkout'),
s4 AS (SELECT u, t AS t4 FROM e WHERE name = 'purchase'),
j2 AS (
    SELECT s1.u, t1, CASE WHEN t2 <= t1 + INTERVAL 1 DAY THEN t2 END AS t2
    FROM s1 ASOF LEFT JOIN s2 ON s1.u = s2.u AND s1.t1 <= s2.t2
),
j3 AS (
    SELECT j2.u, t1, t2, CASE WHEN t3 <= t1 + INTERVAL 1 DAY THEN t3 END AS t3
    FROM j2 ASOF LEFT JOIN s3 ON j2.u = s3.u AND j2.t2 <= s3.t3
),
j4 AS (
    SELECT j3.u, t1, t2, t3, CASE WHEN t4 <= t1 + INTERVAL 1 DAY THEN t4 END AS t4
    FROM j3 ASOF LEFT JOIN s4 ON j3.u = s4.u AND j3.t3 <= s4.t4
),
lvl AS (
    SELECT u, max(1 + (t2 IS NOT NULL)::INT + (t3 IS NOT NULL)::INT + (t4 IS NOT NULL)::INT) AS lvl
    FROM j4 GROUP BY u
)
SELECT [count(*) FILTER (WHERE lvl >= 1), count(*) FILTER (WHERE lvl >= 2),
    count(*) FILTER (WHERE lvl >= 3), count(*) FILTER (WHERE lvl >= 4)] FROM lvl
"""


def sample_dir(events: int, seed: int) -> Path:
    """The cached sample for this size, generated on first use."""
    from trailcli.sample.generator import SampleOptions, generate
    from trailcli.store.maintenance import compact

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"trail-bench-funnel-{events}-{seed}"
    if not (path / "ground_truth.json").exists():
        print(f"generating {events:,} events into {path} ...", file=sys.stderr)
        generate(
            SampleOptions(
                data_dir=path,
                seed=seed,
                days=30,
                events=events,
                end=datetime(2026, 3, 1, tzinfo=UTC),
                tables=("visits", "events", "identities"),
            )
        )
        # closed days are compacted (deduplicated, marked clean) as the collector does daily
        compact(path)
    return path


def run_trail(data_dir: Path, mode: str) -> Any:
    from trailcli.reports.funnel import FunnelQuery, funnel
    from trailcli.reports.steps import parse_steps

    options: dict[str, Any] = dict(MODES[mode])
    if "exclude" in options:
        options["exclude"] = tuple(parse_steps([options["exclude"]]))
    frame = funnel(data_dir, FunnelQuery(steps=tuple(parse_steps(list(STEPS))), **options))
    if mode == "breakdown":
        return _by_group(frame["breakdown"].to_list(), frame["reached"].to_list())
    return frame["reached"].to_list()


def _by_group(groups: list[Any], reached: list[int]) -> list[Any]:
    """[[group, reached at step 1, 2, ...], ...] sorted by group (None first)."""
    out: dict[Any, list[int]] = {}
    for group, count in zip(groups, reached, strict=True):
        out.setdefault(group, []).append(count)
    return sorted(([g, *r] for g, r in out.items()), key=lambda row: (row[0] is not None, row[0]))


def run_duckdb(data_dir: Path, mode: str) -> list[int]:
    import duckdb

    from trailcli.store import tables

    con = duckdb.connect()
    params = {
        "events": tables.file_list(data_dir, "events"),
        "visits": tables.file_list(data_dir, "visits"),
    }
    row = con.execute(DUCKDB_ASOF, params).fetchone()
    assert row is not None
    return list(row[0])


def run_polars(data_dir: Path, mode: str) -> list[int]:
    import polars as pl

    from trailcli.store import tables

    day = pl.duration(days=1)
    bots = (
        pl.scan_parquet(tables.file_list(data_dir, "visits"))
        .filter(pl.col("device_type") == "Bot")
        .select("visit_token")
    )
    events = (
        pl.scan_parquet(tables.file_list(data_dir, "events"))
        .filter(pl.col("name").is_in(NAMES))
        .join(bots, on="visit_token", how="anti")
        .select(
            u=pl.col("visitor_token"),
            t=pl.col("time"),
            name=pl.col("name"),
            page=pl.col("properties").str.json_path_match("$.page"),
        )
        .collect()
    )
    first = events.filter(
        (pl.col("name") == "$view") & pl.col("page").str.starts_with("/product/")
    ).select("u", t1="t", prev="t")
    reached = [first["u"].n_unique()]
    chain = first
    for name in ("add_to_cart", "checkout", "purchase"):
        nxt = events.filter(pl.col("name") == name).select("u", nt="t").sort("nt")
        chain = (
            chain.sort("prev")
            .join_asof(nxt, left_on="prev", right_on="nt", by="u", strategy="forward")
            .filter(pl.col("nt").is_not_null() & (pl.col("nt") <= pl.col("t1") + day))
            .select("u", "t1", prev="nt")
        )
        reached.append(chain["u"].n_unique())
    return reached


def _polars_events(data_dir: Path, names: list[str] | None) -> Any:
    """The events (of `names`, or all) of visits that are not bots: u, t, id, name, page, visit."""
    import polars as pl

    from trailcli.store import tables

    bots = (
        pl.scan_parquet(tables.file_list(data_dir, "visits"))
        .filter(pl.col("device_type") == "Bot")
        .select("visit_token")
    )
    events = pl.scan_parquet(tables.file_list(data_dir, "events"))
    if names is not None:
        events = events.filter(pl.col("name").is_in(names))
    return events.join(bots, on="visit_token", how="anti").select(
        u=pl.col("visitor_token"),
        t=pl.col("time"),
        id=pl.col("event_id"),
        name=pl.col("name"),
        page=pl.col("properties").str.json_path_match("$.page"),
        visit=pl.col("visit_token"),
    )


def _step_masks(frame: Any) -> Any:
    """Bit k-1 for step k of STEPS."""
    import polars as pl

    first = (pl.col("name") == "$view") & pl.col("page").str.starts_with("/product/")
    mask = first.cast(pl.Int64)
    for k, name in enumerate(NAMES[1:], start=1):
        mask = mask + (pl.col("name") == name).cast(pl.Int64) * (1 << k)
    return frame.with_columns(mask=mask)


def _chosen_ordered(events: Any) -> Any:
    """Each unit's chosen attempt of the ordered funnel (1-day window from the first step): the
    highest level, then the earliest start; u, level, t1, last (time of the last step), visit."""
    import polars as pl

    day = pl.duration(days=1)
    first = events.filter(pl.col("mask") & 1 != 0).select("u", "visit", t1="t")
    attempts = first.with_row_index("idx")
    level = pl.Series("level", [1] * attempts.height, dtype=pl.Int64)
    last = attempts["t1"]
    live = attempts.select("idx", "u", "t1", prev="t1")
    for k in range(1, len(NAMES)):
        nxt = events.filter(pl.col("mask") & (1 << k) != 0).select("u", nt="t").sort("nt")
        live = (
            live.sort("prev")
            .join_asof(nxt, left_on="prev", right_on="nt", by="u", strategy="forward")
            .filter(pl.col("nt").is_not_null() & (pl.col("nt") <= pl.col("t1") + day))
            .select("idx", "u", "t1", prev="nt")
        )
        level = level.scatter(live["idx"], k + 1)
        last = last.scatter(live["idx"], live["prev"])
    attempts = attempts.with_columns(level=level, last=last)
    return attempts.sort(["level", "t1"], descending=[True, False]).unique("u", keep="first")


def _reached(chosen: Any) -> list[int]:
    import polars as pl

    return [chosen.filter(pl.col("level") >= k).height for k in range(1, len(NAMES) + 1)]


def run_polars_breakdown(data_dir: Path, mode: str) -> list[Any]:
    """Reached per step and utm_source of the visit of the chosen attempt's first step."""
    import polars as pl

    from trailcli.store import tables

    events = _step_masks(_polars_events(data_dir, NAMES).collect())
    chosen = _chosen_ordered(events)
    visits = (
        pl.scan_parquet(tables.file_list(data_dir, "visits"))
        .select("visit_token", "utm_source", "started_at")
        .sort("started_at")
        .unique("visit_token", keep="first")
        .select(visit="visit_token", group="utm_source")
        .collect()
    )
    chosen = chosen.join(visits, on="visit", how="left")
    groups = sorted(chosen["group"].unique().to_list(), key=lambda g: (g is not None, g))
    return [[g, *_reached(chosen.filter(pl.col("group").eq_missing(g)))] for g in groups]


def run_polars_exclude(data_dir: Path, mode: str) -> list[int]:
    """The ordered funnel without the units whose chosen attempt has a blog page strictly between
    its first and last step."""
    import polars as pl

    events = _step_masks(_polars_events(data_dir, NAMES).collect())
    chosen = _chosen_ordered(events)
    excluded = events.filter(
        (pl.col("name") == "$view") & pl.col("page").str.starts_with("/blog/")
    ).select("u", x="t")
    hits = (
        chosen.filter(pl.col("level") > 1)
        .select("u", "t1", "last")
        .join(excluded, on="u")
        .filter((pl.col("x") > pl.col("t1")) & (pl.col("x") < pl.col("last")))
        .select("u")
        .unique()
    )
    return _reached(chosen.join(hits, on="u", how="anti"))


def run_polars_strict(data_dir: Path, mode: str) -> list[int]:
    """The strict funnel: each step the unit's very next event, within a day of the first."""
    import polars as pl

    events = _step_masks(_polars_events(data_dir, None).collect()).sort("u", "t", "id")
    day = pl.duration(days=1)
    ok = pl.lit(True)
    level = pl.lit(1, pl.Int64)
    for k in range(1, len(NAMES)):
        ok = (
            ok
            & (pl.col("u").shift(-k) == pl.col("u"))
            & (pl.col("mask").shift(-k) & (1 << k) != 0)
            & (pl.col("t").shift(-k) <= pl.col("t") + day)
        )
        level = level + ok.fill_null(False).cast(pl.Int64)
    chosen = (
        events.with_columns(level=level)
        .filter(pl.col("mask") & 1 != 0)
        .sort(["level", "t"], descending=[True, False])
        .unique("u", keep="first")
    )
    return _reached(chosen)


RUNNERS = {
    "trail": run_trail,
    "duckdb-asof": run_duckdb,
    "polars-asof": run_polars,
    "polars-breakdown": run_polars_breakdown,
    "polars-exclude": run_polars_exclude,
    "polars-strict": run_polars_strict,
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(name: str, data_dir: Path, mode: str) -> None:
    """Run one contender once and print {seconds, cpu, reached} as JSON."""
    started, cpu = time.perf_counter(), _cpu()
    reached = RUNNERS[name](data_dir, mode)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "cpu": _cpu() - cpu, "reached": reached}))


def measure(name: str, data_dir: Path, mode: str, checkout: Path | None = None) -> dict[str, Any]:
    """Run a contender in a child process (of `checkout`, if given); its time, result and peak
    RSS (bytes)."""
    script = Path(__file__).resolve() if checkout is None else checkout / "bench" / "funnel.py"
    env = None if checkout is None else {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.Popen(
        [sys.executable, str(script), "--child", name, "--data-dir", str(data_dir)]
        + (["--mode", mode] if mode != "counts" else []),
        stdout=subprocess.PIPE,
        text=True,
        cwd=checkout,
        env=env,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    result = json.loads(out)
    result["rss"] = usage.ru_maxrss * 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="sample size (full: 10M)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--data-dir", type=Path, help="use this data instead of a sample")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--compare", type=Path, help="also `trail` of this checkout")
    parser.add_argument(
        "--mode", choices=tuple(MODES), default="counts", help="counts, or with one option"
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data_dir, args.mode)
        return
    data_dir = (args.data_dir or sample_dir(args.events, args.seed)).resolve()
    results = {}
    contenders = ("trail", *BASELINES[args.mode])
    names = [*contenders, *(["trail@compare"] if args.compare else [])]
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(args.repeat):  # alternating rounds: a change in load hits every contender
        for name in contenders:
            rounds[name].append(measure(name, data_dir, args.mode))
        if args.compare:
            rounds["trail@compare"].append(
                measure("trail", data_dir, args.mode, args.compare.resolve())
            )
    for name, runs in rounds.items():
        results[name] = {
            "seconds": min(r["seconds"] for r in runs),
            "cpu": min(r["cpu"] for r in runs),
            "rss": max(r["rss"] for r in runs),
            "reached": runs[0]["reached"],
        }
    wall = min(results[b]["seconds"] for b in BASELINES[args.mode])
    cpu = min(results[b]["cpu"] for b in BASELINES[args.mode])
    print(
        f"data: {data_dir} (requested {args.events:,} events); mode {args.mode}; "
        f"best of {args.repeat}"
    )
    print(
        f"{'contender':<16} {'wall s':>7} {'ratio':>6} {'cpu s':>7} {'ratio':>6} "
        f"{'peak RSS':>9}  reached"
    )
    for name, r in results.items():
        print(
            f"{name:<16} {r['seconds']:>7.2f} {r['seconds'] / wall:>5.2f}x {r['cpu']:>7.2f} "
            f"{r['cpu'] / cpu:>5.2f}x {r['rss'] / 2**20:>7.0f}MB  {r['reached']}"
        )
    print("ratios are against the faster baseline of each column")
    if args.compare:
        this, that = results["trail"], results["trail@compare"]
        assert this["reached"] == that["reached"], "the checkouts disagree"
        print(
            f"trail here / trail at {args.compare}: wall {this['seconds'] / that['seconds']:.2f}, "
            f"cpu {this['cpu'] / that['cpu']:.2f}"
        )


if __name__ == "__main__":
    main()

"""Reads before and after `trail compact`: each command beside its baseline, same run, alternating.

For each lake given (`--lake LABEL=DIR`, e.g. the same sample once as written and once compacted),
every round runs each command once from this checkout and, with `--compare DIR`, once from that
checkout (another version of trail, e.g. `git archive <commit>` unpacked), in alternating order,
each a fresh process (imports included), so both sides see the same machine load. Beside
`trail online --at T`, the round also runs the plain full scan of the presence table in a fresh
process (`queries/online_full_scan.sql`: each client's latest transition at or before T), once
over the rows as stored and once through the deduplicating view. Prints the median per command
and side, and the ratios.

Run: python bench/uncompacted.py --lake dirty=/data/raw --lake compacted=/data/compacted \\
        --compare /tmp/base --rounds 3 --at 2026-07-12T19:08:56Z --command pages-1d ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
FUNNEL = ["--step", "$view page=/product/*", "--step", "add_to_cart", "--step", "checkout",
          "--step", "purchase"]  # fmt: skip

# name -> trail arguments; {at} is the instant of --at
COMMANDS = {
    "online-at": ["online", "--at", "{at}", "-f", "json"],
    "timeline-day": ["online", "timeline", "--from", "{day}", "--to", "{next_day}", "--every", "5m",
                     "-f", "json"],
    "pages-1d": ["report", "pages", "--from", "{from_1d}", "-f", "json"],  # -1d at the start
    "pages": ["report", "pages", "-f", "json"],
    "referrers": ["report", "referrers", "-f", "json"],
    "funnel": ["report", "funnel", *FUNNEL, "-f", "json"],
}  # fmt: skip

TRAIL = "from trailcli.cli import main; main()"
SCAN = """
import sys, json
from datetime import datetime
from trailcli.store.views import Lake
from trailcli import sql
lake = Lake(sys.argv[1], kinds=("presence",))
lake.bind("presence", as_stored=True)
text = sql.load("online_full_scan")
if sys.argv[3] == "stored":
    text = text.replace("FROM presence", "FROM presence_stored")
(row,) = lake.fetch_sql(text, {"at": datetime.fromisoformat(sys.argv[2])})
print(json.dumps(row["open_sessions"]))
"""


def run(args: list[str], checkout: Path) -> tuple[float, str]:
    """Seconds and stdout of `python -c ...` in a fresh process with `checkout` on the path."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=checkout, env=env
    )
    return time.perf_counter() - started, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", action="append", required=True, help="LABEL=DIR, repeatable")
    parser.add_argument("--compare", type=Path, help="another checkout to run beside this one")
    parser.add_argument("--command", action="append", choices=sorted(COMMANDS), required=True)
    parser.add_argument("--at", default="2026-07-12T19:08:56Z", help="the instant of online-at")
    parser.add_argument("--day", default="2026-10-31", help="the day of timeline-day")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-scans", action="store_true", help="online-at without the scans")
    args = parser.parse_args()
    lakes = dict(item.split("=", 1) for item in args.lake)
    day = args.day
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    from_1d = (datetime.now(UTC) - timedelta(days=1)).isoformat()  # the same for every run
    sides = {"this": HERE} | ({"compare": args.compare.resolve()} if args.compare else {})
    times: dict[tuple[str, str, str], list[float]] = {}
    answers: dict[tuple[str, str, str], str] = {}
    for round_no in range(args.rounds):
        for label, data_dir in lakes.items():
            for name in args.command:
                command = [
                    a.format(at=args.at, day=day, next_day=next_day, from_1d=from_1d)
                    for a in COMMANDS[name]
                ]
                trail_args = ["-c", TRAIL, *command, "--data-dir", data_dir]
                jobs = [(side, trail_args, checkout) for side, checkout in sides.items()]
                if name == "online-at" and not args.no_scans:
                    jobs += [
                        (f"scan-{how}", ["-c", SCAN, data_dir, args.at, how], HERE)
                        for how in ("stored", "view")
                    ]
                if round_no % 2:
                    jobs.reverse()  # alternate who goes first
                for side, argv, checkout in jobs:
                    spent, out = run(argv, checkout)
                    times.setdefault((label, name, side), []).append(spent)
                    answers.setdefault((label, name, side), out)
                print(f"round {round_no + 1}: {label} {name} done", file=sys.stderr)
    print("| lake | command | side | median s | runs | vs this |")
    print("|---|---|---|---|---|---|")
    for (label, name, side), runs in times.items():
        mine = statistics.median(times[(label, name, "this")])
        median = statistics.median(runs)
        print(
            f"| {label} | {name} | {side} | {median:.2f} | "
            f"{', '.join(f'{r:.2f}' for r in runs)} | {median / mine:.2f}x |"
        )
    for (label, name, side), out in answers.items():
        if side == "compare" and json.loads(out) != json.loads(answers[(label, name, "this")]):
            print(f"DIFFERENT ANSWERS: {label} {name}", file=sys.stderr)
    for name in args.command:  # the same answer on every lake
        seen = {json.dumps(json.loads(answers[(label, name, "this")])) for label in lakes}
        if len(seen) > 1:
            print(f"lakes answer {name} differently", file=sys.stderr)


if __name__ == "__main__":
    main()

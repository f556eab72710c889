"""`trail forget`: erase every row of a person for good, list past erasures (docs/privacy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from trailcli.cli.common import DEFAULT_DATA_DIR, DataDir, FormatOpt, cli_errors, emit, warn
from trailcli.errors import UsageError
from trailcli.render import Format

REPORT_COLUMNS = [
    "table",
    "rows",
    "files_rewritten",
    "bytes_rewritten",
    "files_written",
    "bytes_written",
    "files_deleted",
]
LOG_COLUMNS = [
    "at",
    "selectors",
    "visitors",
    "visits",
    "visits_rows",
    "events_rows",
    "presence_rows",
    "identities_rows",
    "wal_records",
    "files_rewritten",
    "bytes_rewritten",
    "seconds",
]


def forget(
    *,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    visitor: Annotated[
        list[str] | None,
        typer.Option(
            "--visitor", help="Forget this visitor token and all its visits (repeatable)."
        ),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option(
            "--user",
            help="Forget this user id, every visitor bound to it and their visits (repeatable).",
        ),
    ] = None,
    visit: Annotated[
        list[str] | None,
        typer.Option("--visit", help="Forget this one visit (repeatable)."),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Selectors one a line: visitor:TOKEN, user:ID or visit:TOKEN (# comments).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the rows per table; change nothing.")
    ] = False,
    log: Annotated[
        bool,
        typer.Option("--log", help="List the past erasures (the audit log) instead."),
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Erase every row of a person from every table, WAL and snapshot, for good."""
    with cli_errors():
        selectors = _selectors(visitor, user, visit, from_file)
        if log:
            if selectors or dry_run:
                raise UsageError(
                    "--log lists past erasures; it takes no selector or --dry-run.",
                    "run 'trail forget --log' on its own",
                )
            _print_log(data_dir, fmt)
            return
        # (other modes of forgetting, such as masking old addresses, branch off here)
        _forget(data_dir, selectors, dry_run, fmt)


def _selectors(
    visitors: list[str] | None,
    users: list[str] | None,
    visits: list[str] | None,
    from_file: Path | None,
) -> list[Any]:
    from trailcli.store.forget import check_selector, read_selectors

    given = [("visitor", v) for v in visitors or []]
    given += [("user", v) for v in users or []]
    given += [("visit", v) for v in visits or []]
    selectors = [check_selector(kind, value, f" (--{kind})") for kind, value in given]
    if from_file is not None:
        selectors += read_selectors(from_file)
    return list(dict.fromkeys(selectors))


def _forget(data_dir: Path, selectors: list[Any], dry_run: bool, fmt: Format) -> None:
    from trailcli.presence.forgotten import counts_now, rebuild_after_erasure
    from trailcli.store.forget import forget as run_forget

    counts: dict[str, Any] = {}

    def under_lock(stage: str) -> None:  # the counts the snapshots are fingerprinted with
        counts[stage] = counts_now(data_dir)

    report = run_forget(data_dir, selectors, dry_run=dry_run, progress=warn, under_lock=under_lock)
    rows = [
        {
            "table": kind,
            "rows": t.rows_matched,
            "files_rewritten": t.files_matched,
            "bytes_rewritten": t.bytes_replaced,
            "files_written": t.files_written,
            "bytes_written": t.bytes_written,
            "files_deleted": t.files_deleted,
        }
        for kind, t in report.tables.items()
    ]
    rows.append(
        {"table": "wal", "rows": report.wal_records, "files_rewritten": report.wal_segments}
    )
    person = report.person
    what = (
        f"{len(selectors)} selector(s): {len(person.visitor_tokens)} visitor(s), "
        f"{len(person.visit_tokens)} visit(s), {len(person.user_ids)} user id(s)"
    )
    if dry_run:
        warn(f"dry run, nothing changed: {what}")
    else:
        patched, deleted, built = rebuild_after_erasure(
            data_dir, person.values(), counts.get("before"), counts.get("after"), progress=warn
        )
        warn(
            f"forgot {what} in {report.seconds:.1f}s; presence snapshots: {patched} patched, "
            f"{deleted} deleted, {len(built)} built again; an audit entry was written"
        )
        if report.damaged_segments:
            warn(
                f"Warning: {len(report.damaged_segments)} damaged WAL segment(s) set aside under "
                "_wal/<node>/damaged/ were not searched (their damaged bytes cannot be read); "
                "check them with 'trail wal check' and delete them: "
                + ", ".join(report.damaged_segments)
            )
        if report.ground_truth_removed:
            warn("removed the sample's ground_truth.json: it named the person")
        if report.running_nodes:
            warn(
                f"running node(s) {', '.join(report.running_nodes)}: their WAL drops the "
                "person's records at its next commit"
            )
    emit(rows, fmt, columns=REPORT_COLUMNS)


def _print_log(data_dir: Path, fmt: Format) -> None:
    from trailcli.store.erasure import read_audit

    rows = []
    for entry in read_audit(data_dir):
        counts = entry.get("rows", {})
        rows.append(
            {
                "at": entry.get("at"),
                "selectors": " ".join(
                    f"{s['kind']}:{s['hash']}" for s in entry.get("selectors", [])
                ),
                "visitors": entry.get("visitors"),
                "visits": entry.get("visits"),
                **{
                    f"{k}_rows": counts.get(k, 0)
                    for k in ("visits", "events", "presence", "identities")
                },
                "wal_records": entry.get("wal_records", 0),
                "files_rewritten": entry.get("files_rewritten", 0),
                "bytes_rewritten": entry.get("bytes_rewritten", 0),
                "seconds": entry.get("seconds"),
            }
        )
    emit(rows, fmt, columns=LOG_COLUMNS)

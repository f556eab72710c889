"""Forgetting a person: every row of theirs out of every table and WAL, for good, and onto the
erasure list so nothing of theirs lands later (docs/privacy.md).

`expand` turns selectors into the tokens and ids to erase (a user id takes every visitor bound to
it and all their visits; a visitor takes all its visits); `forget` adds those to the erasure list,
drops their rows from the WAL segments no running node holds, rewrites the tables' files that
hold them (`erase.rewrite_files`), and writes the audit entry. Presence snapshots are rebuilt by
the caller (the presence layer), as after compaction.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trailcli.errors import NoDataError, UsageError
from trailcli.store import erase, erasure, layout, tables, wal
from trailcli.store.schema import KINDS
from trailcli.store.writable import require_writable

SELECTOR_KINDS = {"visitor": "visitor_token", "user": "user_id", "visit": "visit_token"}
MAX_SELECTOR = 512

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Selector:
    """Who to forget: a visitor token, a user id or a visit token."""

    kind: str  # one of SELECTOR_KINDS
    value: str


def check_selector(kind: str, value: str, where: str = "") -> Selector:
    if kind not in SELECTOR_KINDS:
        raise UsageError(
            f"Unknown selector kind {kind!r}{where}.", "use visitor:TOKEN, user:ID or visit:TOKEN"
        )
    value = value.strip()
    if not value or len(value) > MAX_SELECTOR or any(ord(c) < 32 for c in value):
        raise UsageError(
            f"Invalid {kind} selector{where}: it must be 1-{MAX_SELECTOR} printable characters.",
            "give the token or id exactly as stored",
        )
    return Selector(kind, value)


def read_selectors(path: Path) -> list[Selector]:
    """Selectors from a file, one a line as `visitor:TOKEN`, `user:ID` or `visit:TOKEN`; blank
    lines and lines starting with # are skipped. Raises UsageError naming a bad line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read the selectors file {path}: {exc}.") from exc
    selectors = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        if not sep:
            raise UsageError(
                f"Line {n} of {path} is not a selector: {line[:80]!r}.",
                "write one selector a line: visitor:TOKEN, user:ID or visit:TOKEN",
            )
        selectors.append(check_selector(kind.strip(), value, f" on line {n} of {path}"))
    return selectors


@dataclass
class Person:
    """The tokens and ids whose rows are erased."""

    visitor_tokens: set[str] = field(default_factory=set)
    visit_tokens: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)

    def values(self) -> dict[str, set[str]]:
        return {
            "visitor_token": self.visitor_tokens,
            "visit_token": self.visit_tokens,
            "user_id": self.user_ids,
        }

    def match_sql(self) -> tuple[str, dict[str, Any]]:
        """A DuckDB predicate over a table's files matching this person's rows, and its params."""
        clauses, params = [], {}
        for column, values in self.values().items():
            if values:
                params[column] = sorted(values)
                clauses.append(f"list_contains(${column}, {column})")
        return " OR ".join(clauses) or "false", params

    def record_matches(self, record: dict[str, Any]) -> bool:
        return any(record.get(c) in v for c, v in self.values().items() if v)


LOCATE_ORDER = ("visits", "identities", "events", "presence")  # small tables first


def _seed(selectors: Iterable[Selector]) -> Person:
    person = Person()
    for s in selectors:
        {"visitor": person.visitor_tokens, "visit": person.visit_tokens, "user": person.user_ids}[
            s.kind
        ].add(s.value)
    return person


def _absorb(person: Person, rows: list[tuple[Any, ...]]) -> bool:
    """Take in what matching rows (path, visitor, visit, user, count) tell about the person: a
    row of one of their user ids names one of their visitors; a row of one of their visitors or
    user ids names one of their visits. Whether the person grew."""
    grew, changed = False, True
    while changed:
        changed = False
        for _, visitor, visit, user, _ in rows:
            if user in person.user_ids and visitor and visitor not in person.visitor_tokens:
                person.visitor_tokens.add(visitor)
                changed = True
            ours = visitor in person.visitor_tokens or user in person.user_ids
            if ours and visit and visit not in person.visit_tokens:
                person.visit_tokens.add(visit)
                changed = True
        grew = grew or changed
    return grew


def locate(
    data_dir: Path, selectors: Iterable[Selector]
) -> tuple[Person, dict[str, dict[str, int]]]:
    """The person the selectors name, and their rows per current file of each table.

    A user id takes every visitor token bound to it (in any table) and their visits; a visitor
    token takes its visits; a visit token only itself. Each table is read once with what is
    known of the person so far, and again only when a later table taught more.
    """
    person = _seed(selectors)
    found: dict[str, list[tuple[Any, ...]]] = {}
    pending = list(LOCATE_ORDER)
    while pending:
        kind = pending.pop(0)
        match_sql, params = person.match_sql()
        found[kind] = erase.find_matches(data_dir, kind, match_sql, params, _COLUMNS)
        if _absorb(person, found[kind]):
            pending += [k for k in LOCATE_ORDER if k in found and k not in pending]
    files: dict[str, dict[str, int]] = {}
    for kind, rows in found.items():
        per_file = files.setdefault(kind, {})
        for path, *_, count in rows:
            per_file[path] = per_file.get(path, 0) + count
    return person, files


_COLUMNS = ("visitor_token", "visit_token", "user_id")


def expand(data_dir: Path, selectors: Iterable[Selector]) -> Person:
    """The person the selectors name (see `locate`)."""
    return locate(data_dir, selectors)[0]


@dataclass
class ForgetReport:
    """What `forget` found and did: per table, and in the WAL segments it could reach."""

    selectors: list[Selector]
    person: Person
    dry_run: bool
    tables: dict[str, erase.TableRewrite] = field(default_factory=dict)
    wal_records: int = 0
    wal_segments: int = 0
    running_nodes: list[str] = field(default_factory=list)  # their WALs drop it on commit
    ground_truth_removed: bool = False
    damaged_segments: list[str] = field(default_factory=list)  # set aside: left to the operator
    seconds: float = 0.0

    @property
    def rows(self) -> dict[str, int]:
        return {k: t.rows_matched for k, t in self.tables.items()}


def forget(
    data_dir: Path,
    selectors: list[Selector],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    under_lock: Callable[[str], None] | None = None,
) -> ForgetReport:
    """Erase every row of the people `selectors` name, or count them (`dry_run`).

    Under the exclusive erasure lock: adds them to the erasure list, drops their records from
    the WAL segments of nodes not running, rewrites each table's files that hold their rows and
    deletes the replaced files at once, then appends the audit entry. `under_lock` is called,
    still under the lock, with "before" just before the tables are rewritten and "after" just
    after (the presence layer reads the row counts its snapshots are fingerprinted with). Raises
    UsageError without selectors, NoDataError when the data dir has no tables and no WAL.
    """
    started = time.monotonic()
    say = progress or (lambda _m: None)
    if not selectors:
        raise UsageError(
            "Nothing to forget.", "give --visitor, --user or --visit, or --from-file (repeatable)"
        )
    if not any(tables.table_exists(data_dir, k) for k in KINDS) and not _wal_dirs(data_dir):
        raise NoDataError(
            f"No trail tables in {data_dir}.", "pass the --data-dir the collector writes to"
        )
    if not dry_run:
        require_writable(data_dir)
    report = ForgetReport(selectors, Person(), dry_run)

    def waiting() -> None:
        say("waiting for a running commit, compaction or import to finish")

    with erase.erasure_lock(data_dir, shared=False, waiting=waiting):
        say("looking for the person's rows")
        person, found = locate(data_dir, selectors)
        report.person = person
        if not dry_run:
            erasure.add(data_dir, person.values())
        _forget_in_wal(data_dir, person, report, dry_run)
        match_sql, params = person.match_sql()
        if under_lock is not None and not dry_run:
            under_lock("before")
        for kind in KINDS:
            done = erase.rewrite_files(
                data_dir,
                kind,
                match_sql,
                params,
                dry_run=dry_run,
                operation="forget",
                matched=found.get(kind, {}),
            )
            report.tables[kind] = done
            if done.rows_matched and not dry_run:
                say(
                    f"{kind}: {done.rows_matched} row(s) in {done.files_matched} file(s) "
                    f"({done.bytes_replaced} bytes) rewritten into {done.files_written} file(s)"
                )
        if under_lock is not None and not dry_run:
            under_lock("after")
        report.ground_truth_removed = _forget_ground_truth(data_dir, person, dry_run)
        report.seconds = time.monotonic() - started
        if not dry_run:
            erasure.append_audit(data_dir, audit_entry(data_dir, report))
    return report


def audit_entry(data_dir: Path, report: ForgetReport) -> dict[str, Any]:
    """The audit record of an erasure: when, which selector kinds with their keyed hashes, rows
    per table and what was rewritten; never a token or id itself."""
    key = erasure.salt(data_dir, create=True) or ""
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "selectors": [
            {"kind": s.kind, "hash": erasure.keyed_hash(key, s.value)} for s in report.selectors
        ],
        "visitors": len(report.person.visitor_tokens),
        "visits": len(report.person.visit_tokens),
        "rows": report.rows,
        "wal_records": report.wal_records,
        "files_rewritten": sum(t.files_matched for t in report.tables.values()),
        "bytes_rewritten": sum(t.bytes_replaced for t in report.tables.values()),
        "seconds": round(report.seconds, 3),
    }


def _forget_ground_truth(data_dir: Path, person: Person, dry_run: bool) -> bool:
    """`trail sample`'s answer key names people: once it names an erased one it goes (it no
    longer describes the data either)."""
    path = layout.ground_truth_path(data_dir)
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    if not any(v in text for values in person.values().values() for v in values):
        return False
    if not dry_run:
        path.unlink(missing_ok=True)
    return True


# -- the WAL ---------------------------------------------------------------------------------


def _wal_dirs(data_dir: Path) -> list[Path]:
    root = layout.wal_root(data_dir)
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _forget_in_wal(data_dir: Path, person: Person, report: ForgetReport, dry_run: bool) -> None:
    """Drop the person's records from the segments (and rejected-record files) of each node
    whose WAL no running writer holds; a running node drops them when it commits (it reads the
    erasure list first)."""
    for node_dir in _wal_dirs(data_dir):
        fd = os.open(node_dir / wal.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                report.running_nodes.append(node_dir.name)
                continue
            for number in wal.segment_numbers(node_dir):
                dropped = _filter_segment(wal.segment_path(node_dir, number), person, dry_run)
                report.wal_records += dropped
                report.wal_segments += bool(dropped)
            for rejected in sorted(node_dir.glob("rejected-*.ndjson")):
                report.wal_records += _filter_lines(rejected, person, dry_run)
            report.damaged_segments += [str(p) for p in sorted(node_dir.glob("damaged/*.wal"))]
        finally:
            os.close(fd)


def _filter_segment(path: Path, person: Person, dry_run: bool) -> int:
    """Rewrite a closed segment without the person's records (atomically); how many it held."""
    contents = wal.read_segment(path)
    frames, dropped = [], 0
    for kind, chunks in contents.chunks.items():
        for chunk in chunks:
            records = [wal.decode_record(line) for line in chunk.split(b"\n")]
            kept = [r for r in records if not person.record_matches(r)]
            dropped += len(records) - len(kept)
            if kept:
                frames.append(wal.encode_frame(kind, kept))
    if dropped and not dry_run:
        _replace(path, wal.MAGIC + b"".join(frames))
    return dropped


def _filter_lines(path: Path, person: Person, dry_run: bool) -> int:
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if not person.record_matches(_loads(line))]
    if len(kept) != len(lines) and not dry_run:
        _replace(path, b"".join(kept))
    return len(lines) - len(kept)


def _loads(line: bytes) -> dict[str, Any]:
    try:
        record = wal.decode_record(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".erasing")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

"""`trail import ahoy`: Ahoy's visits and events from PostgreSQL or MySQL into trail's tables.

Rows are read in batches by increasing id and each batch is one Delta commit that also records
the batch's last source id as the application transaction (`trail-import:ahoy:<database>/<table>`,
version = that id). A later run starts after the recorded id and a commit never repeats one, so
an interrupted import resumes where it stopped and a second run adds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trailcli.errors import TrailError, UsageError
from trailcli.importer import ahoy_schema
from trailcli.importer.ahoy_schema import TablePlan
from trailcli.importer.source_url import POSTGRES, DatabaseURL, parse_database_url
from trailcli.store import erase, erasure, layout, tables

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_BATCH = 50_000
_TABLE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$")


class Source(Protocol):
    """A source database (PostgresSource, MySQLSource)."""

    dialect: str

    def columns(self, table: str) -> dict[str, str] | None: ...
    def max_id(self, table: str) -> int | None: ...
    def visits_batch(
        self, plan: TablePlan, after: int, since: datetime | None, limit: int
    ) -> pa.Table: ...
    def events_batch(
        self, plan: TablePlan, visits: TablePlan, after: int, since: datetime | None, limit: int
    ) -> pa.Table: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class AhoyImport:
    """What to import: the database, Ahoy's table names, the earliest time, the batch size."""

    database: str
    visits_table: str = "ahoy_visits"
    events_table: str = "ahoy_events"
    since: datetime | None = None
    batch_size: int = DEFAULT_BATCH


@dataclass
class Step:
    """How far the import of one source table into one trail table has come."""

    source_table: str
    table: str
    first_id: int  # the watermark it started after
    max_id: int | None  # the table's largest id when it started
    last_id: int = 0
    read: int = 0
    written: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    def row(self) -> dict[str, Any]:
        return {
            "source_table": self.source_table,
            "table": self.table,
            "rows_read": self.read,
            "rows_written": self.written,
            "rows_skipped": self.skipped,
            "watermark": self.last_id,
        }


Progress = Callable[[Step], None]


@dataclass
class ImportResult:
    steps: list[Step]
    notes: list[str]

    def rows(self) -> list[dict[str, Any]]:
        return [s.row() for s in self.steps]


def watermark_app(database: str, table: str) -> str:
    """The application-transaction id that records how far `table` was imported."""
    return f"trail-import:ahoy:{database}/{table}"


def event_id_prefix(database: str, table: str) -> str:
    """Imported events are keyed `<prefix><source id>`: the same row always has the same key."""
    return f"ahoy:{database}/{table}:"


def import_ahoy(
    data_dir: Path, request: AhoyImport, progress: Progress | None = None
) -> ImportResult:
    """Import (or resume importing) Ahoy's visits, their users and events into `data_dir`."""
    url = parse_database_url(request.database)
    for option, name in (
        ("--visits-table", request.visits_table),
        ("--events-table", request.events_table),
    ):
        if not _TABLE_NAME.match(name):
            raise UsageError(
                f"Invalid table name {name!r} for {option}.", "use NAME or SCHEMA.NAME"
            )
    if request.batch_size < 1:
        raise UsageError("The batch size must be at least 1.", "e.g. --batch-size 50000")
    report = progress or (lambda _step: None)
    with _import_lock(data_dir), _open(url) as source:
        visits = ahoy_schema.check_table(
            source.dialect, request.visits_table, source.columns(request.visits_table),
            ahoy_schema.VISIT_COLUMNS, "--visits-table",
        )  # fmt: skip
        events = ahoy_schema.check_table(
            source.dialect, request.events_table, source.columns(request.events_table),
            ahoy_schema.EVENT_COLUMNS, "--events-table",
        )  # fmt: skip
        notes = []
        if events.others:
            notes.append(f"{events.table}: columns not imported: {', '.join(events.others)}")
        steps = _import_visits(data_dir, source, url, visits, request, report)
        steps.append(_import_events(data_dir, source, url, events, visits, request, report))
    for step in steps:
        if step.skipped and step.table != "identities":
            what = "a visit token or start time" if step.table == "visits" else "a time"
            notes.append(f"{step.source_table}: skipped {step.skipped} rows without {what}")
    return ImportResult(steps, notes)


@contextlib.contextmanager
def _open(url: DatabaseURL) -> Iterator[Source]:
    source: Source
    if url.dialect == POSTGRES:
        from trailcli.importer.postgres import PostgresSource

        source = PostgresSource(url)
    else:
        from trailcli.importer.mysql import MySQLSource

        source = MySQLSource(url)
    try:
        yield source
    finally:
        source.close()


@contextlib.contextmanager
def _import_lock(data_dir: Path) -> Iterator[None]:
    path = layout.import_lock_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise TrailError(
                f"Another 'trail import' is writing to {data_dir} (pid {holder}).",
                "wait for it to finish; a second run afterwards imports only what is new",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _import_visits(
    data_dir: Path,
    source: Source,
    url: DatabaseURL,
    plan: TablePlan,
    request: AhoyImport,
    report: Progress,
) -> list[Step]:
    """Visits and their identity rows; the identities of a batch are committed first, so after
    an interruption between the two commits the visits' watermark is the lower one."""
    import pyarrow.compute as pc

    from trailcli.importer.convert import VisitConverter

    app = watermark_app(url.database, plan.table)
    done = tables.transaction_version(data_dir, "visits", app) or 0
    bound = tables.transaction_version(data_dir, "identities", app) or 0
    max_id = source.max_id(plan.table)
    visits = Step(plan.table, "visits", done, max_id, last_id=done)
    identities = Step(plan.table, "identities", bound, max_id, last_id=max(done, bound))
    converter = VisitConverter()

    def fetch(after: int) -> pa.Table:
        return source.visits_batch(plan, after, request.since, request.batch_size)

    with contextlib.closing(_batches(fetch, done)) as batches:
        for batch, last in batches:
            visit_rows, identity_rows, source_ids = converter.convert(batch)
            fresh = identity_rows.filter(pc.greater(source_ids, bound))
            identities.written += _commit(data_dir, "identities", fresh, app, last)
            visits.written += _commit(data_dir, "visits", visit_rows, app, last)
            visits.read += batch.num_rows
            identities.read += batch.num_rows
            visits.skipped += batch.num_rows - visit_rows.num_rows
            visits.last_id = identities.last_id = last
            report(visits)
    return [visits, identities]


def _import_events(
    data_dir: Path,
    source: Source,
    url: DatabaseURL,
    plan: TablePlan,
    visits: TablePlan,
    request: AhoyImport,
    report: Progress,
) -> Step:
    from trailcli.importer.convert import EventConverter
    from trailcli.store.schema import EVENTS

    app = watermark_app(url.database, plan.table)
    done = tables.transaction_version(data_dir, "events", app) or 0
    step = Step(plan.table, "events", done, source.max_id(plan.table), last_id=done)
    converter = EventConverter(event_id_prefix(url.database, plan.table))

    def fetch(after: int) -> pa.Table:
        return source.events_batch(plan, visits, after, request.since, request.batch_size)

    with contextlib.closing(_batches(fetch, done)) as batches, contextlib.closing(converter):
        for batch, last in batches:
            events = converter.convert(batch)
            step.written += _commit(data_dir, "events", tables.with_date(EVENTS, events), app, last)
            step.read += batch.num_rows
            step.skipped += batch.num_rows - events.num_rows
            step.last_id = last
            report(step)
    return step


def _batches(fetch: Callable[[int], pa.Table], after: int) -> Generator[tuple[pa.Table, int]]:
    """(batch, its last id) for each batch after id `after`, in order; the next batch is read
    (the database and the driver working) while the caller converts and commits this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="trail-import-read") as pool:
        pending = pool.submit(fetch, after)
        while (batch := pending.result()).num_rows:
            last = _last_id(batch)
            pending = pool.submit(fetch, last)
            yield batch, last


def _last_id(batch: pa.Table) -> int:
    import pyarrow.compute as pc

    return int(pc.max(batch.column("id")).as_py())


def _commit(data_dir: Path, kind: str, table: pa.Table | None, app: str, version: int) -> int:
    """Append `table` as the transaction (`app`, `version`) unless that is done; rows written.
    Rows of people erased from the data dir are dropped (docs/privacy.md)."""
    if table is None or table.num_rows == 0:
        return 0
    with erase.erasure_lock(data_dir, shared=True):
        table = erasure.load(data_dir).drop_from(table)
        if table.num_rows == 0:
            return 0
        return table.num_rows if tables.append_once(data_dir, kind, table, app, version) else 0

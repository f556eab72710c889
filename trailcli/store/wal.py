"""The node's write-ahead log: durable appends with group commit, committed to the Delta tables."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fcntl
import json
import logging
import math
import os
import re
import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from trailcli.errors import DiskFull, TrailError, UsageError
from trailcli.store import erase, erasure, layout, tables
from trailcli.store.disk import DiskState, QuietLog, free_bytes, full_reason, is_disk_full
from trailcli.store.group_commit import DurableListener, LoopCommits, SyncThread
from trailcli.store.schema import KINDS
from trailcli.store.wal_scan import HEADER as _FRAME
from trailcli.store.wal_scan import LEGACY_MAGIC as LEGACY_MAGIC
from trailcli.store.wal_scan import MAGIC as MAGIC
from trailcli.store.wal_scan import MAX_FRAME as MAX_FRAME
from trailcli.store.wal_scan import SegmentScan, scan_segment, set_aside

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("trail.store.wal")

LOCK_FILE = "LOCK"
# free space a full disk must have again (once the WAL is committed) before writes are accepted
DISK_HEADROOM = 16 * 1024 * 1024
_SEGMENT = re.compile(r"^(\d{12})\.wal$")


def segment_path(wal_dir: Path, number: int) -> Path:
    return wal_dir / f"{number:012d}.wal"


def segment_numbers(wal_dir: Path) -> list[int]:
    """The numbers of the segment files in `wal_dir`, oldest first."""
    if not wal_dir.is_dir():
        return []
    found = (_SEGMENT.match(p.name) for p in wal_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# the fallback for what orjson refuses (lone surrogates, integers beyond 64 bits); both write
# datetimes as ISO-8601 and never a raw newline
_RECORD_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))


def encode_record(record: Any) -> bytes:
    """One record as a line of JSON (no newline inside)."""
    try:
        return orjson.dumps(record, default=_json_default)
    except TypeError:
        return _RECORD_ENCODER.encode(record).encode()


def encode_frame(kind: str, records: list[dict[str, Any]]) -> bytes:
    """One WAL frame: length and CRC-32 header, then the kind and the records, one per line.

    The records are newline-delimited JSON, so a commit parses a segment's records straight into
    Arrow (in C++, without building a Python object per record or holding the GIL).
    """
    dumps = orjson.dumps
    try:
        lines = [dumps(r, default=_json_default) for r in records]
    except TypeError:
        lines = [encode_record(r) for r in records]
    payload = b"\n".join([kind.encode(), *lines])
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_record(line: bytes) -> Any:
    """A record's JSON: orjson, or the standard parser for lines only it could write (lone
    surrogates, integers beyond 64 bits)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


@dataclass
class SegmentContents:
    """What a segment file holds: by kind, its records as chunks of newline-delimited JSON; how
    many frames, how many bytes of torn tail were dropped, and any damage (see `wal_scan`)."""

    chunks: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    frames: int = 0
    dropped_bytes: int = 0
    scan: SegmentScan | None = None

    def ndjson(self, kind: str) -> bytes:
        """The kind's records, one JSON object per line (b"" when it has none)."""
        return b"\n".join(self.chunks.get(kind, ()))

    @property
    def damaged(self) -> bool:
        return self.scan is not None and self.scan.damaged

    def records(self) -> int:
        return sum(chunk.count(b"\n") + 1 for chunks in self.chunks.values() for chunk in chunks)


def read_segment(path: Path) -> SegmentContents:
    """Every intact frame of a segment, also those after damage (reading resynchronises on the
    next intact frame); a torn tail is dropped.

    Segments written by earlier versions (`TRAILWAL1`) are read too, their records re-encoded
    one per line.
    """
    scan = scan_segment(path.read_bytes())
    out = SegmentContents(frames=len(scan.frames), dropped_bytes=scan.torn_bytes, scan=scan)
    for body in scan.frames:
        kind, records = _legacy_frame(body) if scan.legacy else _frame(body)
        if records:
            out.chunks[kind].append(records)
    return out


def _frame(body: bytes) -> tuple[str, bytes]:
    kind, _, records = body.partition(b"\n")
    return kind.decode(), records


def _legacy_frame(body: bytes) -> tuple[str, bytes]:
    frame = decode_record(body)
    return frame["k"], b"\n".join(encode_record(r) for r in frame["r"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_table(kind: str, ndjson: bytes) -> tuple[pa.Table | None, list[dict[str, Any]]]:
    """A segment's records of `kind` (newline-delimited JSON) as Arrow, and the records its
    table cannot hold.

    Arrow's JSON reader takes the usual records; what it refuses (epoch-second times, objects
    in JSON columns, a lone surrogate) is converted record by record, as `to_arrow` converts.
    """
    try:
        return tables.from_ndjson(kind, ndjson), []
    except Exception:
        rows = [decode_record(line) for line in ndjson.split(b"\n")]
    try:
        return tables.to_arrow(kind, rows), []
    except Exception:
        good, bad = _split_storable(kind, rows)
    return (tables.to_arrow(kind, good) if good else None), bad


def _split_storable(
    kind: str, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows `to_arrow` can convert, and those it cannot."""
    good, bad = [], []
    for row in rows:
        try:
            tables.to_arrow(kind, [row])
            good.append(row)
        except Exception:
            bad.append(row)
    return good, bad


def _sync_data(fd: int) -> None:
    """Make the appended bytes durable: fdatasync (which also syncs the grown file size, as
    needed to read them back) where the platform has it, else fsync."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class _Segment:
    """The open segment: its file descriptor, its size and how many rows it holds."""

    number: int
    fd: int
    size: int
    rows: int = 0
    first_append: float | None = None


class LogWriter:
    """Appends records durably to one node's WAL and commits them to the tables in the background.

    `append` (threads) and `append_async` (the event loop) return once the records are synced;
    one sync thread syncs for every writer, so appends that arrive while a sync runs share the
    next one (group commit, `trailcli.store.group_commit`). Every `flush_interval` seconds or
    `flush_rows` rows the open segment is closed and committed to each kind's Delta table as the
    application transaction (node id, segment number), then deleted.

    A full disk (see `trailcli.store.disk`): from the first write or commit that finds no space
    until the WAL is committed and `disk_headroom` bytes are free again, every write is refused
    with DiskFull (nothing of it acknowledged); the committer keeps retrying meanwhile.
    """

    def __init__(
        self,
        data_dir: Path,
        node_id: str,
        flush_interval: float,
        flush_rows: int,
        disk_headroom: int = DISK_HEADROOM,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.node_id = layout.check_node_id(node_id)
        self.wal_dir = layout.wal_dir(self.data_dir, node_id)
        self.flush_interval = flush_interval
        self.flush_rows = flush_rows
        self.disk_headroom = disk_headroom
        self.disk = DiskState()
        self._refusals_log = QuietLog()
        self._commit_errors_log = QuietLog()
        self._lock_fd: int | None = None
        self._write_lock = threading.Lock()  # guards the open segment and its counters
        self._sync_lock = threading.Lock()  # one sync or segment rotation at a time
        self._synced_cond = threading.Condition()  # guards _synced and _broken
        self._commit_lock = threading.Lock()  # one commit at a time
        self._written = 0  # bytes appended over the writer's life, all segments
        self._synced = 0  # of which synced
        self._segment: _Segment | None = None
        self._closed_segments: list[_Segment] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._committer: threading.Thread | None = None
        self._syncer: SyncThread | None = None
        self._listeners: list[DurableListener] = []
        self._loop_commits: LoopCommits | None = None
        self._closed = False
        self._records_written: dict[str, int] = {k: 0 for k in KINDS}
        self._unsynced_records: dict[str, int] = {k: 0 for k in KINDS}  # written, not synced
        self._commits = 0
        self._fsyncs = 0
        self._last_commit_seconds = 0.0
        self._last_error: str | None = None
        self._broken: str | None = None  # set when an fsync failed: nothing more is acknowledged
        self._broken_full = False  # ... for lack of space

    # -- opening and recovery -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        data_dir: Path,
        node_id: str,
        *,
        flush_interval: float = 2.0,
        flush_rows: int = 50_000,
        disk_headroom: int = DISK_HEADROOM,
    ) -> LogWriter:
        """Lock the node's WAL, commit what it still holds (exactly once), start the committer."""
        if flush_interval <= 0 or flush_rows <= 0 or disk_headroom < 0:
            raise UsageError(
                f"Invalid WAL settings: flush interval {flush_interval}s, {flush_rows} rows, "
                f"disk headroom {disk_headroom} bytes.",
                "use a positive flush interval and row count, and a headroom of 0 or more",
            )
        writer = cls(data_dir, node_id, flush_interval, flush_rows, disk_headroom)
        writer._lock()
        try:
            last = writer._recover()
            writer._segment = writer._new_segment(last + 1)
            writer._configure_tables()
        except BaseException as exc:
            writer._unlock()
            if is_disk_full(exc):
                raise writer._full_at_start(exc) from None
            raise
        writer._committer = threading.Thread(
            target=writer._commit_loop, name=f"trail-wal-{node_id}", daemon=True
        )
        writer._committer.start()
        return writer

    def _full_at_start(self, exc: BaseException) -> DiskFull:
        held = segment_numbers(self.wal_dir)
        kept = f"; its {len(held)} segment(s) stay in {self.wal_dir}" if held else ""
        return DiskFull(
            f"The disk holding {self.data_dir} is full: cannot start the WAL of node "
            f"{self.node_id!r} ({full_reason(exc)}){kept}.",
            "free space on that disk and start again: the WAL is committed first, nothing is lost",
        )

    def _lock(self) -> None:
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.wal_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TrailError(
                f"The WAL of node {self.node_id!r} at {self.wal_dir} is in use by another "
                f"writer (pid {holder}).",
                "stop the other 'trail collect' for this node, or give this one its own --node-id",
            ) from None
        mine = f"{os.getpid()}\n".encode()
        try:  # over the previous holder's pid (its block is reused: this works on a full disk)
            os.pwrite(fd, mine.ljust(os.fstat(fd).st_size), 0)
            os.ftruncate(fd, len(mine))
        except OSError as exc:
            if not is_disk_full(exc):
                os.close(fd)
                raise
            # the pid only names the holder in another writer's error; the lock itself holds
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> int:
        """Commit every segment left in the WAL, oldest first; returns the last segment number used."""
        last = max(
            (tables.transaction_version(self.data_dir, k, self.node_id) or 0 for k in KINDS),
            default=0,
        )
        for number in segment_numbers(self.wal_dir):
            self._commit_segment(number)
            last = max(last, number)
        return last

    def _configure_tables(self) -> None:
        """Bring tables made before TABLE_CONFIG existed onto it (checkpoints, log retention)."""
        for kind in KINDS:
            try:
                tables.ensure_config(self.data_dir, kind)
            except Exception as exc:  # e.g. another node altering it at the same moment
                log.warning("could not set the table properties of %s: %s", kind, exc)

    # -- appending ------------------------------------------------------------------------

    def _new_segment(self, number: int) -> _Segment:
        """Create the next segment file, its header synced; on failure (a full disk) no file of
        it is left behind."""
        path = segment_path(self.wal_dir, number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            _write_all(fd, MAGIC)
            os.fsync(fd)
            _fsync_dir(self.wal_dir)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return _Segment(number=number, fd=fd, size=len(MAGIC))

    def append(self, kind: str, records: list[dict[str, Any]]) -> None:
        """Write `records` of `kind` to the WAL; returns once they are fsynced. Thread-safe."""
        position = self.write(kind, records)
        if position:
            self.wait_durable(position)

    def write(self, kind: str, records: list[dict[str, Any]]) -> int:
        """Write `records` of `kind` to the open segment without waiting for the sync.

        Returns the WAL position that `wait_durable` must reach before the records may be
        acknowledged (0 for no records). Raises UsageError, writing nothing, when a record
        cannot be stored. Thread-safe.
        """
        if kind not in KINDS:
            raise UsageError(f"Unknown log kind {kind!r}.", f"use one of {', '.join(KINDS)}")
        if not records:
            return 0
        try:
            tables.check_records(kind, records)
        except ValueError as exc:
            raise UsageError(
                f"Cannot store these {kind} records: {exc}",
                "give each column the type docs/data-model.md lists (times as datetimes or ISO-8601)",
            ) from exc
        try:
            frame = encode_frame(kind, records)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"Cannot write these {kind} records to the WAL: {exc}") from exc
        if len(frame) > MAX_FRAME:
            raise UsageError(
                f"{len(records)} {kind} records make a {len(frame)}-byte WAL frame.",
                f"append at most {MAX_FRAME} bytes at a time",
            )
        with self._write_lock:
            self._check_usable()
            seg = self._segment
            assert seg is not None
            failed = self._write_frame(seg, frame)
            if failed is None:
                seg.size += len(frame)
                seg.rows += len(records)
                seg.first_append = seg.first_append or time.monotonic()
                self._written += len(frame)
                self._unsynced_records[kind] += len(records)
            position = self._written
            full = seg.rows >= self.flush_rows
        if failed is not None:
            raise self._refused(failed == "began")
        if full:
            self._wake.set()
        return position

    def _write_frame(self, seg: _Segment, frame: bytes) -> str | None:
        """Under the write lock: append the frame, unless the disk is full (then the write is
        refused and counted). None when written; else "refused", or "began" when this write
        found the disk full; raises TrailError for a failure that is not a full disk."""
        if self.disk.full:
            self.disk.refuse()
            return "refused"
        try:
            _write_all(seg.fd, frame)
        except OSError as exc:
            os.ftruncate(seg.fd, seg.size)  # no partial frame before later ones
            if not is_disk_full(exc):
                raise TrailError(
                    f"Cannot write to the WAL at {self.wal_dir}: {exc}",
                    "fix the folder's permissions; nothing was acknowledged",
                ) from exc
            began = self.disk.note_full(full_reason(exc))
            self.disk.refuse()
            return "began" if began else "refused"
        return None

    def _refused(self, began: bool) -> DiskFull:
        """The error a refused write raises (outside the write lock): the episode's first line
        if it began it, else a line about refusals at most every LOG_EVERY seconds."""
        if began:
            self._log_episode_start()
        else:
            count = self._refusals_log.due()
            if count is not None:
                log.warning(
                    "refused %d write(s) to the WAL of node %s since the last report: the disk "
                    "holding it is full (%s); nothing of them was acknowledged",
                    count,
                    self.node_id,
                    self.disk.reason,
                )
        return DiskFull(
            f"The disk holding the WAL of node {self.node_id!r} is full; nothing was stored.",
            "free space on that disk; writes are accepted again once the WAL is committed",
            retry_after=self.retry_after,
        )

    @property
    def retry_after(self) -> int:
        """Seconds until the next commit attempt: when asking again may succeed."""
        return max(1, math.ceil(self.flush_interval))

    def wait_durable(self, position: int) -> None:
        """Block until the WAL is synced up to `position` (from `write`). Raises TrailError when
        the sync failed. Thread-safe."""
        self.request_sync(position)
        with self._synced_cond:
            while self._synced < position:
                if self._broken:
                    self._check_usable()
                self._synced_cond.wait()

    def request_sync(self, position: int) -> None:
        """Ask the sync thread to sync up to `position`. Thread-safe."""
        syncer = self._syncer
        if syncer is None:
            with self._write_lock:
                self._check_usable()
                if self._syncer is None:
                    self._syncer = SyncThread(
                        self._sync_to, self._tell_synced, f"trail-wal-sync-{self.node_id}"
                    )
                syncer = self._syncer
        syncer.follow(position)

    def append_async(self, kind: str, records: list[dict[str, Any]]) -> asyncio.Future[None]:
        """Queue `records` of `kind` for the event loop's group commit; the future is done once
        they are durable (or has the exception the WAL raised for them). Must be called on the
        loop; the listeners hear of the records once durable.

        A plain function, not a coroutine: the caller awaits the future itself, one coroutine
        frame less to suspend and resume per request.
        """
        commits = self._loop_commits
        if commits is None:
            commits = self._loop_commits = LoopCommits(
                self, asyncio.get_running_loop(), self._listeners
            )
        return commits.append(kind, records)

    def subscribe(self, listener: DurableListener) -> None:
        """Tell `listener` about the records `append_async` made durable, on the loop."""
        self._listeners.append(listener)

    async def drain(self) -> None:
        """Wait until every record queued with `append_async` is written and synced."""
        if self._loop_commits is not None:
            await self._loop_commits.drain()

    def _check_usable(self) -> None:
        if self._closed or self._segment is None:
            raise TrailError(f"The WAL writer of node {self.node_id!r} is closed.")
        if self._broken:
            error = DiskFull if self._broken_full else TrailError
            raise error(
                f"The WAL of node {self.node_id!r} failed to sync ({self._broken}); "
                "no further records are accepted.",
                "restart 'trail collect': it recovers every record the WAL still holds",
            )

    def _sync_to(self, position: int) -> int:
        """On the sync thread: make the WAL durable up to `position` at least (one sync covers
        everything written so far, and the records written with it count as durable); the
        position synced."""
        with self._sync_lock:  # a rotation may have synced it meanwhile
            if self._broken:
                self._check_usable()  # never a sync after a failed one (see below)
            with self._write_lock:
                target, covered = self._written, self._take_unsynced()
                fd = self._segment.fd if self._segment and self._synced < target else -1
            try:
                if fd >= 0:
                    _sync_data(fd)
            except Exception as exc:
                # after a failed fsync the kernel may have dropped the pages: a retry could
                # report success for data that is gone, so this writer acknowledges nothing more
                with self._synced_cond:
                    self._broken = str(exc)
                    self._broken_full = is_disk_full(exc)
                    self._synced_cond.notify_all()
                self._check_usable()
            self._count_durable(covered)
            with self._synced_cond:
                if fd >= 0:
                    self._synced = max(self._synced, target)
                    self._fsyncs += 1
                synced = self._synced
                self._synced_cond.notify_all()
        return synced

    def _take_unsynced(self) -> dict[str, int]:
        """The records written since the last sync, by kind (under the write lock, with the
        position they end at); the sync that covers that position makes them durable."""
        taken = dict(self._unsynced_records)
        for kind in taken:
            self._unsynced_records[kind] = 0
        return taken

    def _count_durable(self, records: dict[str, int]) -> None:
        with self._write_lock:
            for kind, count in records.items():
                self._records_written[kind] += count

    def _tell_synced(self, position: int, error: Exception | None) -> None:
        """On the sync thread: hand the synced position to the loop's group commit."""
        commits = self._loop_commits
        if commits is not None:
            commits.synced_threadsafe(position, error)

    def _rotate(self) -> None:
        """Close the open segment (fsynced) and start the next one, if the open one has records."""
        with self._sync_lock:
            with self._write_lock:
                seg = self._segment
                if seg is None or seg.rows == 0:
                    return
            # the next segment is created and the full one synced outside the write lock, so
            # appends (made on the event loop) never wait for these fsyncs
            fresh = None if self._closed else self._new_segment(seg.number + 1)
            with self._write_lock:
                self._segment = fresh
                written, covered = self._written, self._take_unsynced()
            os.fsync(seg.fd)
            os.close(seg.fd)
            self._count_durable(covered)
            with self._synced_cond:
                self._synced = max(self._synced, written)
                self._synced_cond.notify_all()
            with self._write_lock:
                self._closed_segments.append(seg)

    # -- committing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Commit everything appended so far to the tables now; after a full disk, accept
        writes again if the disk has room."""
        with self._commit_lock:
            self._rotate()
            self._commit_closed()
        if self.disk.full:
            self._end_episode()

    def _commit_closed(self) -> None:
        while self._closed_segments:
            self._commit_segment(self._closed_segments[0].number)
            with self._write_lock:
                self._closed_segments.pop(0)

    def _commit_segment(self, number: int) -> None:
        """Commit a closed segment file to the tables, one transaction per kind, then delete it.

        Kinds whose table already holds this segment (an earlier run committed it and stopped
        before deleting the file) are skipped. Live commits and recovery share this path.
        """
        path = segment_path(self.wal_dir, number)
        contents = read_segment(path)
        if contents.dropped_bytes:
            log.warning(
                "WAL segment %s: dropped a torn tail of %d bytes (never acknowledged)",
                path,
                contents.dropped_bytes,
            )
        started = time.monotonic()
        # an erasure's list and rewrite happen wholly before or wholly after this commit
        with erase.erasure_lock(self.data_dir, shared=True):
            erased = erasure.load(self.data_dir)
            for kind in KINDS:
                ndjson = contents.ndjson(kind)
                table = self._convert(kind, ndjson, number, erased) if ndjson else None
                table = None if table is None else erased.drop_from(table)
                if (
                    table is not None
                    and table.num_rows
                    and tables.append_once(self.data_dir, kind, table, self.node_id, number)
                ):
                    self._commits += 1
        self._last_commit_seconds = time.monotonic() - started
        if contents.scan is not None and contents.scan.damaged:
            set_aside(path, contents.scan, contents.records())  # never deleted: kept for a look
            _fsync_dir(self.wal_dir)
        else:
            self._delete_segment(path)

    def _convert(
        self, kind: str, ndjson: bytes, number: int, erased: erasure.Erased
    ) -> pa.Table | None:
        """The records as Arrow. Records the table cannot hold are set aside in a rejected file,
        so one bad record never blocks the WAL (append checks records; this is the last guard);
        those of erased people are dropped."""
        table, bad = segment_table(kind, ndjson)
        bad = [r for r in bad if not (isinstance(r, dict) and erased.record_erased(r))]
        if bad:
            rejected = self.wal_dir / f"rejected-{number:012d}-{kind}.ndjson"
            rejected.write_text("".join(json.dumps(r, default=str) + "\n" for r in bad))
            log.error(
                "WAL segment %d: %d %s record(s) cannot be stored; kept in %s",
                number,
                len(bad),
                kind,
                rejected,
            )
        return table

    def _delete_segment(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_dir(self.wal_dir)

    def _commit_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._commit_round()

    def _commit_round(self) -> None:
        """One round of the committer: commit what the WAL holds. On a full disk the commit is
        tried only once there is room again (until then it could only fail); the episode ends
        once everything is committed with room to spare (`flush`)."""
        if self.disk.full and not self._room():
            self._still_full()
            return
        try:
            self.flush()
        except Exception as exc:  # keep the segment; the next round retries it
            self._last_error = str(exc)
            if not is_disk_full(exc):
                log.warning("WAL commit of node %s failed, will retry: %s", self.node_id, exc)
            elif self.disk.note_full(full_reason(exc)):
                self._log_episode_start()
            else:
                self._still_full()
            return
        self._last_error = None

    def _room(self) -> bool:
        """Whether the disk has `disk_headroom` bytes free (True when that cannot be told)."""
        free = free_bytes(self.wal_dir)
        return free is None or free >= self.disk_headroom

    def _log_episode_start(self) -> None:
        self._refusals_log.mark()
        self._commit_errors_log.mark()
        log.error(
            "the disk holding %s is full (%s): refusing writes (answered 'retry later') until "
            "the WAL of node %s is committed and %d bytes are free; nothing acknowledged is lost",
            self.data_dir,
            self.disk.reason,
            self.node_id,
            self.disk_headroom,
        )

    def _still_full(self) -> None:
        count = self._commit_errors_log.due()
        if count is None:
            return
        with self._write_lock:
            held = sum(s.rows for s in [*self._closed_segments, self._segment] if s is not None)
        log.warning(
            "the disk holding %s is still full (%s; %s bytes free, %d wanted): %d record(s) wait "
            "in the WAL of node %s, %d write(s) refused so far",
            self.data_dir,
            self.disk.reason,
            free_bytes(self.wal_dir),
            self.disk_headroom,
            held,
            self.node_id,
            self.disk.refused,
        )

    def _end_episode(self) -> None:
        """The WAL is committed: accept writes again once the disk has the headroom."""
        if not self._room():
            self._still_full()
            return
        ended = self.disk.note_drained()
        if ended is None:
            return
        self._refusals_log.reset()
        self._commit_errors_log.reset()
        log.warning(
            "disk space is back: the WAL of node %s is committed; accepting writes again after "
            "%.1fs (%d write(s) refused)",
            self.node_id,
            ended[0],
            ended[1],
        )

    # -- closing and stats ----------------------------------------------------------------

    def close(self) -> None:
        """Stop the committer, commit everything, release the lock. Records stay in the WAL on error."""
        if self._lock_fd is None:
            return
        self._stop.set()
        self._wake.set()
        if self._committer is not None:
            self._committer.join()
        try:
            with self._commit_lock:
                with self._write_lock:
                    self._closed = True
                self._rotate()
                self._drop_empty_segment()
                if self._closed_segments and self.disk.full and not self._room():
                    # committing could only fail: leave the WAL as it is for the next start
                    raise self._full_at_close(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
                self._commit_closed()
        except DiskFull:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                raise self._full_at_close(exc) from None
            raise
        finally:
            if self._syncer is not None:
                self._syncer.stop()  # after the rotation synced everything
            self._unlock()

    def _full_at_close(self, exc: BaseException) -> DiskFull:
        with self._write_lock:
            held = [*self._closed_segments, *([self._segment] if self._segment else [])]
        records = sum(s.rows for s in held)
        files = ", ".join(segment_path(self.wal_dir, s.number).name for s in held if s.rows)
        return DiskFull(
            f"The disk holding {self.data_dir} is full ({full_reason(exc)}): {records} record(s) of "
            f"node {self.node_id!r} stay in its WAL ({files or 'no segment'} in {self.wal_dir}), "
            "not yet in the tables.",
            "free space on that disk and start 'trail collect' again: it commits them first, "
            "nothing is lost",
        )

    def _drop_empty_segment(self) -> None:
        with self._write_lock:
            seg, self._segment = self._segment, None
        if seg is not None:
            os.close(seg.fd)
            self._delete_segment(segment_path(self.wal_dir, seg.number))

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics: WAL size and age, records written by kind, commits, fsyncs."""
        with self._write_lock:
            pending = [*self._closed_segments, *([self._segment] if self._segment else [])]
            wal_bytes = sum(s.size for s in pending if s.rows)
            firsts = [s.first_append for s in pending if s.first_append is not None]
            records = dict(self._records_written)
        return {
            "wal_bytes": wal_bytes,
            "wal_lag_seconds": time.monotonic() - min(firsts) if firsts else 0.0,
            "records_written": records,
            "commits": self._commits,
            "last_commit_seconds": self._last_commit_seconds,
            "fsyncs": self._fsyncs,
            "last_error": self._last_error,
            "disk_full": self.disk.full,
            "disk_full_seconds": self.disk.full_for(),
            "disk_full_episodes": self.disk.episodes,
            "writes_refused": self.disk.refused_total,
        }

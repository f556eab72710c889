"""A full disk, the pure parts: telling ENOSPC apart, the refuse-until-drained state, quiet logs;
and the writer's behaviour around them (failures injected here; a real full disk is in
tests/test_collector_disk_full.py)."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
from pathlib import Path

import pytest
from test_store_wal import event_ids

from trailcli.errors import DiskFull, TrailError, UsageError
from trailcli.store import layout, wal
from trailcli.store.disk import DiskState, QuietLog, full_reason, is_disk_full
from trailcli.store.wal import LogWriter

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(event_id: str) -> dict[str, object]:
    return {"event_id": event_id, "visit_token": "v", "name": "$view", "time": T0,
            "received_at": T0}  # fmt: skip


# --- telling a full disk apart ---------------------------------------------------------------


def test_a_full_disk_is_told_by_errno_by_the_delta_writers_words_and_through_causes() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    delta = Exception(
        "Failed to parse parquet: External: Generic LocalFileSystem error: Unable to copy data "
        "to file: No space left on device (os error 28)"
    )
    assert is_disk_full(delta)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("commit failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert is_disk_full(DiskFull("full"))


def test_the_reason_is_said_in_a_few_words() -> None:
    delta = Exception("Generic LocalFileSystem error: No space left on device (os error 28)")
    assert full_reason(delta) == "No space left on device"
    assert full_reason(OSError(errno.EDQUOT, "Disk quota exceeded")) == "Disk quota exceeded"
    try:
        raise RuntimeError("commit") from OSError(errno.ENOSPC, "No space left on device")
    except RuntimeError as exc:
        assert full_reason(exc) == "No space left on device"


def test_other_failures_are_not_a_full_disk() -> None:
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))
    assert not is_disk_full(ValueError("no space for this value in column x"))
    assert not is_disk_full(None)
    loop = RuntimeError("a")
    loop.__context__ = RuntimeError("b")
    loop.__context__.__context__ = loop  # a cycle ends the walk
    assert not is_disk_full(loop)


# --- quiet logs --------------------------------------------------------------------------------


def test_a_quiet_log_reports_the_first_occurrence_then_once_a_period_with_the_count() -> None:
    clock = Clock()
    quiet = QuietLog(period=10.0, clock=clock)
    assert quiet.due() == 1
    for _ in range(499):
        clock.now += 0.01
        assert quiet.due() is None
    clock.now = 110.0
    assert quiet.due() == 500  # 499 unreported and this one
    assert quiet.due() is None
    assert quiet.reset() == 1
    assert quiet.due() == 1  # afresh: at once
    clock.now += 60.0
    quiet.mark()  # a line said it just now (the episode's first)
    assert quiet.due() is None
    clock.now += 10.0
    assert quiet.due() == 2


def test_a_quiet_log_gives_one_line_per_period_for_a_steady_stream() -> None:
    clock = Clock()
    quiet = QuietLog(period=10.0, clock=clock)
    lines = []
    for _ in range(6000):  # 60 s at 100 a second
        clock.now += 0.01
        count = quiet.due()
        if count is not None:
            lines.append(count)
    assert 6 <= len(lines) <= 7
    assert sum(lines) == 6000 - quiet.reset()


# --- the state ---------------------------------------------------------------------------------


def test_the_disk_state_refuses_from_the_first_full_write_until_drained() -> None:
    clock = Clock()
    state = DiskState(clock=clock)
    assert not state.full and state.full_for() == 0.0 and state.note_drained() is None
    assert state.note_full("No space left on device")
    clock.now += 3.0
    assert not state.note_full("again")  # the same episode
    assert state.full and state.reason == "No space left on device" and state.full_for() == 3.0
    for _ in range(4):
        state.refuse()
    clock.now += 2.0
    assert state.note_drained() == (5.0, 4)
    assert not state.full and state.episodes == 1
    assert state.note_full("No space left on device")
    state.refuse()
    assert state.note_drained() == (0.0, 1)
    assert state.episodes == 2 and state.refused_total == 5


# --- the writer --------------------------------------------------------------------------------


def open_writer(data_dir: Path, **kw: int) -> LogWriter:
    return LogWriter.open(data_dir, "n1", flush_interval=3600, **kw)


def full_writes(monkeypatch: pytest.MonkeyPatch, min_size: int = 0) -> None:
    """Writes of `min_size` bytes or more (to files) fail as on a full disk."""
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if len(data) >= min_size:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(wal.os, "write", write)


def test_the_writer_refuses_while_full_and_accepts_again_once_committed(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writer = open_writer(data_dir, disk_headroom=0)
    writer.append("events", [event("before")])
    full_writes(monkeypatch)
    with caplog.at_level(logging.WARNING, "trail.store.wal"):
        for i in range(50):
            with pytest.raises(DiskFull) as err:
                writer.append("events", [event(f"lost-{i}")])
    assert err.value.retry_after == 3600
    monkeypatch.undo()
    with pytest.raises(DiskFull):  # space is back, but the WAL is not committed yet
        writer.append("events", [event("early")])
    stats = writer.stats()
    assert stats["disk_full"] and stats["writes_refused"] == 51 and stats["disk_full_episodes"] == 1
    # one line as the episode begins; the next is due LOG_EVERY seconds later, with a count
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "is full (No space left on device): refusing writes" in caplog.records[0].getMessage()
    writer.flush()
    assert not writer.stats()["disk_full"]
    writer.append("events", [event("after")])
    writer.close()
    assert sorted(event_ids(data_dir)) == ["after", "before"]


def test_the_writer_keeps_refusing_until_the_headroom_is_free(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir, disk_headroom=1 << 62)  # more than any disk has
    full_writes(monkeypatch)
    with pytest.raises(DiskFull):
        writer.append("events", [event("lost")])
    monkeypatch.undo()
    writer.flush()  # nothing to commit, and no room: still full
    with pytest.raises(DiskFull):
        writer.append("events", [event("refused")])
    writer.disk_headroom = 0
    writer.flush()
    writer.append("events", [event("after")])
    writer.close()


def test_a_segment_that_cannot_be_started_leaves_no_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir)
    writer.append("events", [event("kept")])
    wal_dir = layout.wal_dir(data_dir, "n1")
    before = sorted(p.name for p in wal_dir.iterdir())
    full_writes(monkeypatch)  # the next segment's header cannot be written
    with pytest.raises(OSError):
        writer.flush()
    assert sorted(p.name for p in wal_dir.iterdir()) == before
    assert all(p.stat().st_size > 0 for p in wal_dir.glob("*.wal"))
    monkeypatch.undo()
    writer.close()


def test_closing_on_a_full_disk_keeps_the_wal_and_says_so(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir)
    writer.append("events", [event("a"), event("b")])

    def no_room(*args: object, **kw: object) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(wal.tables, "append_once", no_room)
    with pytest.raises(DiskFull) as err:
        writer.close()
    assert "2 record(s)" in err.value.message and "000000000001.wal" in err.value.message
    assert err.value.hint and "nothing is lost" in err.value.hint
    wal_dir = layout.wal_dir(data_dir, "n1")
    assert [p.name for p in wal_dir.glob("*.wal")] == ["000000000001.wal"]
    monkeypatch.undo()
    with open_writer(data_dir):  # the next start commits them
        pass
    assert sorted(event_ids(data_dir)) == ["a", "b"]
    assert list(wal_dir.glob("*.wal")) == []


def test_without_room_neither_the_committer_nor_close_tries_to_commit(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir, disk_headroom=1 << 62)  # more than any disk has
    writer.append("events", [event("a")])
    full_writes(monkeypatch, min_size=64)  # frames fail; a segment header would not
    with pytest.raises(DiskFull):
        writer.append("events", [event("refused")])
    tried: list[object] = []
    monkeypatch.setattr(wal.tables, "append_once", lambda *a, **k: tried.append(a))
    writer._commit_round()  # the committer's round: no room, so no attempt
    with pytest.raises(DiskFull, match="1 record"):
        writer.close()
    assert tried == []
    monkeypatch.undo()
    with open_writer(data_dir):
        pass
    assert event_ids(data_dir) == ["a"]


def test_starting_on_a_full_disk_is_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full_writes(monkeypatch)
    with pytest.raises(DiskFull, match="is full: cannot start") as err:
        open_writer(data_dir)
    assert err.value.hint and "start again" in err.value.hint
    assert list(layout.wal_dir(data_dir, "n1").glob("*.wal")) == []


def test_a_bad_headroom_is_a_usage_error(data_dir: Path) -> None:
    with pytest.raises(UsageError, match="headroom"):
        open_writer(data_dir, disk_headroom=-1)


def test_other_write_failures_are_not_called_a_full_disk(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_writer(data_dir)

    def denied(fd: int, data: bytes) -> int:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(wal.os, "write", denied)
    with pytest.raises(TrailError) as err:
        writer.append("events", [event("x")])
    assert not isinstance(err.value, DiskFull)
    monkeypatch.undo()
    writer.append("events", [event("y")])  # not refused: the disk is not full
    writer.close()

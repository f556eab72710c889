"""`trail wal check`: what each WAL segment holds, read without starting the collector."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from trailcli.store import layout, wal

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def frame(event_id: str) -> bytes:
    record = {"event_id": event_id, "name": "$view", "time": T0, "received_at": T0}
    return wal.encode_frame("events", [record, {**record, "event_id": event_id + "-b"}])


def test_check_tells_intact_torn_and_damaged_segments_apart(run_cli, data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "web-1")
    wal_dir.mkdir(parents=True)
    frames = [frame(f"e{i}") for i in range(4)]
    wal.segment_path(wal_dir, 1).write_bytes(wal.MAGIC + b"".join(frames))
    wal.segment_path(wal_dir, 2).write_bytes(wal.MAGIC + frames[0] + frames[1][:-10])
    damaged = bytearray(wal.MAGIC + b"".join(frames))
    start = len(wal.MAGIC) + len(frames[0])
    damaged[start + 30] ^= 0x10
    wal.segment_path(wal_dir, 3).write_bytes(bytes(damaged))

    result = run_cli("wal", "check", "--data-dir", data_dir, "--format", "json")

    assert result.exit_code == 1
    rows = {Path(r["segment"]).name: r for r in json.loads(result.stdout)}
    assert rows["000000000001.wal"] | {"segment": None} == {
        "node_id": "web-1", "segment": None, "status": "ok", "bytes": 10 + sum(map(len, frames)),
        "frames": 4, "records": 8, "damaged_ranges": [], "lost_frames": 0, "torn_bytes": 0,
    }  # fmt: skip
    assert (rows["000000000002.wal"]["status"], rows["000000000002.wal"]["frames"]) == (
        "torn_tail",
        1,
    )
    assert rows["000000000002.wal"]["torn_bytes"] == len(frames[1]) - 10
    third = rows["000000000003.wal"]
    assert third["status"] == "damaged" and third["frames"] == 3 and third["lost_frames"] == 1
    assert third["damaged_ranges"] == [f"{start}-{start + len(frames[1])}"]
    assert "Error: 1 damaged WAL segment(s): _wal/web-1/000000000003.wal." in result.stderr
    assert "Hint: start 'trail collect' for that node" in result.stderr


def test_check_after_recovery_reports_the_set_aside_file(run_cli, data_dir: Path) -> None:
    wal_dir = layout.wal_dir(data_dir, "n1")
    wal_dir.mkdir(parents=True)
    damaged = bytearray(wal.MAGIC + frame("a") + frame("b"))
    damaged[2] ^= 0xFF
    wal.segment_path(wal_dir, 7).write_bytes(bytes(damaged))
    wal.LogWriter.open(data_dir, "n1").close()

    result = run_cli("wal", "check", "--data-dir", data_dir, "--format", "json")

    (row,) = json.loads(result.stdout)
    assert row["segment"] == "_wal/n1/damaged/000000000007.wal"
    assert (row["status"], row["frames"], row["lost_frames"]) == ("damaged", 2, 0)
    assert result.exit_code == 1
    assert "their intact frames are committed" in result.stderr


def test_a_clean_wal_exits_0_and_a_missing_one_3(run_cli, data_dir: Path) -> None:
    missing = run_cli("wal", "check", "--data-dir", data_dir)
    assert missing.exit_code == 3 and "No write-ahead log under" in missing.stderr
    wal.LogWriter.open(data_dir, "n1").close()  # a clean stop leaves an empty WAL
    clean = run_cli("wal", "check", "--data-dir", data_dir, "--node-id", "n1", "--format", "csv")
    assert clean.exit_code == 0
    assert clean.stdout.splitlines() == [
        "node_id,segment,status,bytes,frames,records,damaged_ranges,lost_frames,torn_bytes"
    ]
    bad = run_cli("wal", "check", "--data-dir", data_dir, "--node-id", "../x")
    assert bad.exit_code == 2

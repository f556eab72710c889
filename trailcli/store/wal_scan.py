"""Reading WAL segment files frame by frame: intact frames, a torn tail, and damage to synced frames.

A segment is a 10-byte header (`TRAILWAL2\\n`, or `TRAILWAL1\\n` for the previous format) and
then frames: a 4-byte little-endian payload length, the payload's 4-byte CRC-32, the payload.

Two kinds of bad bytes are told apart:

- a **torn tail**: the end of the file holds the start of a frame that was being written when the
  process or machine stopped (its length runs past the end of the file, or the end is zero-filled
  blocks the file system had allocated but not written). That write was never synced, so nothing
  in it was acknowledged;
- **damage**: bytes that do not check out anywhere else (a flipped byte in a synced frame, in a
  frame's length, in the segment header). Reading resynchronises on the next intact frame, so
  everything after the damage is still recovered; the damaged range and an estimate of the frames
  it held are reported.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("trail.store.wal")

DAMAGED_DIR = (
    "damaged"  # beside the segments: damaged segments, kept once their intact frames are in
)
MAGIC = b"TRAILWAL2\n"
LEGACY_MAGIC = b"TRAILWAL1\n"  # frames of one JSON object {"k": kind, "r": [records]}
HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
MAX_FRAME = 256 * 1024 * 1024
# How the payload of a frame starts: the kind's name on its own line (or, in the previous format,
# the JSON object's "k" key). Resynchronising after damage looks only where these occur.
_PAYLOAD_START = re.compile(rb"(?:visits|events|presence|identities)\n")
_LEGACY_PAYLOAD_START = re.compile(rb'\{\s*"k"\s*:')


@dataclass(frozen=True)
class Damage:
    """Bytes [start, end) of a segment that hold no readable frame, and about how many frames
    they held (at least one; the count follows the length fields where they still make sense)."""

    start: int
    end: int
    lost_frames: int

    def describe(self) -> str:
        return f"bytes {self.start}-{self.end}"


@dataclass
class SegmentScan:
    """What a segment's bytes hold: its intact frames (raw payloads, in order), whether it is in
    the previous format, its damage, and the size of a torn tail."""

    size: int
    legacy: bool = False
    frames: list[bytes] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    torn_bytes: int = 0
    recovered_after_damage: int = 0  # intact frames found by resynchronising

    @property
    def damaged(self) -> bool:
        return bool(self.damage)

    @property
    def lost_frames(self) -> int:
        return sum(d.lost_frames for d in self.damage)

    def describe_damage(self) -> str:
        """`bytes 10-120, bytes 4000-4093`: the damaged ranges, for messages."""
        return ", ".join(d.describe() for d in self.damage)


def scan_segment(data: bytes) -> SegmentScan:
    """Every intact frame of a segment, resynchronising after damage; never raises on bad bytes."""
    scan = SegmentScan(size=len(data))
    if len(data) < len(MAGIC):
        # created but its header not (fully) written: a torn start, or garbage
        if MAGIC.startswith(data) or LEGACY_MAGIC.startswith(data) or not data.strip(b"\0"):
            scan.torn_bytes = len(data)
        else:
            scan.damage.append(Damage(0, len(data), 0))
        return scan
    header = data[: len(MAGIC)]
    if header in (MAGIC, LEGACY_MAGIC):
        scan.legacy = header == LEGACY_MAGIC
        _read_frames(data, scan)
        return scan
    # a damaged header: read the frames behind it in whichever format recovers more of them
    readings = []
    for legacy in (False, True):
        reading = SegmentScan(size=len(data), legacy=legacy, damage=[Damage(0, len(MAGIC), 0)])
        _read_frames(data, reading)
        readings.append(reading)
    return max(readings, key=_frames_in_its_format)


def _frames_in_its_format(scan: SegmentScan) -> int:
    pattern = _LEGACY_PAYLOAD_START if scan.legacy else _PAYLOAD_START
    return sum(1 for payload in scan.frames if pattern.match(payload))


def _intact_at(data: bytes, pos: int) -> bool:
    """Whether a whole frame with a matching CRC starts at `pos`."""
    if pos < 0 or pos + HEADER.size > len(data):
        return False
    length, crc = HEADER.unpack_from(data, pos)
    end = pos + HEADER.size + length
    if length == 0 or length > MAX_FRAME or end > len(data):
        return False
    return zlib.crc32(data[pos + HEADER.size : end]) == crc


def _read_frames(data: bytes, scan: SegmentScan) -> None:
    pos = len(MAGIC)
    resynced = False
    while pos < len(data):
        if _intact_at(data, pos):
            length = HEADER.unpack_from(data, pos)[0]
            scan.frames.append(data[pos + HEADER.size : pos + HEADER.size + length])
            scan.recovered_after_damage += resynced
            pos += HEADER.size + length
            continue
        following = _next_intact(data, pos + 1, scan.legacy)
        end = len(data) if following is None else following
        salvaged = _frame_with_bad_length(data, pos, end)
        if salvaged is not None:
            scan.frames.append(salvaged)
            scan.damage.append(Damage(pos, pos + HEADER.size, 0))
        else:
            torn_from = _torn_tail(data, pos) if following is None else None
            if torn_from is not None:
                scan.torn_bytes = len(data) - torn_from
                if torn_from > pos:
                    scan.damage.append(Damage(pos, torn_from, _frames_in(data, pos, torn_from)))
                return
            scan.damage.append(Damage(pos, end, _frames_in(data, pos, end)))
        resynced = True
        pos = end


def _next_intact(data: bytes, start: int, legacy: bool) -> int | None:
    """The offset of the first intact frame at or after `start`, found where a payload can begin."""
    pattern = _LEGACY_PAYLOAD_START if legacy else _PAYLOAD_START
    for match in pattern.finditer(data, start + HEADER.size):
        candidate = match.start() - HEADER.size
        if _intact_at(data, candidate):
            return candidate
    return None


def _torn_tail(data: bytes, pos: int) -> int | None:
    """Where the unfinished last write begins, if the bytes from `pos` (which hold no intact
    frame) end in one: a frame that runs past the end of the file, or one that runs into the
    zero-filled blocks a crash can leave. None when they are damage to the end."""
    if len(data) - pos < HEADER.size:
        return pos
    length = HEADER.unpack_from(data, pos)[0]
    if pos + HEADER.size + length > len(data):
        return pos
    written = len(data.rstrip(b"\0"))
    if written == len(data):
        return None
    if pos + HEADER.size + length >= written:
        return pos
    return written


def _frame_with_bad_length(data: bytes, pos: int, end: int) -> bytes | None:
    """The payload of a frame whose length field is damaged but whose CRC still matches the bytes
    up to the next intact frame (or the end of the file)."""
    if end - pos <= HEADER.size:
        return None
    crc = HEADER.unpack_from(data, pos)[1]
    payload = data[pos + HEADER.size : end]
    return payload if zlib.crc32(payload) == crc else None


def _frames_in(data: bytes, start: int, end: int) -> int:
    """About how many frames a damaged range held: follow the length fields while they fit."""
    count = 0
    pos = start
    while pos + HEADER.size <= end:
        length = HEADER.unpack_from(data, pos)[0]
        count += 1
        if length == 0 or pos + HEADER.size + length > end:
            break
        pos += HEADER.size + length
    return max(count, 1)


def damage_report(path: Path, scan: SegmentScan, records: int) -> str:
    """One line naming a damaged segment, the damaged byte ranges, and what was recovered and lost."""
    return (
        f"WAL segment {path} is damaged at {scan.describe_damage()} of {scan.size}: "
        f"recovered {len(scan.frames)} intact frame(s) ({records} records, "
        f"{scan.recovered_after_damage} of the frames after the damage), "
        f"lost about {scan.lost_frames} frame(s)"
    )


def set_aside(path: Path, scan: SegmentScan, records: int) -> Path:
    """Move a damaged segment (its intact frames already committed) into `damaged/` beside it and
    log an error saying what it held; returns where it went."""
    folder = path.parent / DAMAGED_DIR
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    copy = 1
    while target.exists():  # a number reused after a segment with nothing committed was set aside
        target = folder / f"{path.stem}.{copy}{path.suffix}"
        copy += 1
    os.replace(path, target)
    log.error("%s; moved to %s", damage_report(path, scan, records), target)
    return target


# --- `trail wal check` ---------------------------------------------------------------------------

CHECK_COLUMNS = ["node_id", "segment", "status", "bytes", "frames", "records", "damaged_ranges",
                 "lost_frames", "torn_bytes"]  # fmt: skip


def check_wal(data_dir: Path, node_id: str | None = None) -> list[dict[str, object]]:
    """One row per WAL segment of every node (or one), set-aside damaged ones included, saying
    what reading it finds: `ok`, `torn_tail` (dropped: never acknowledged) or `damaged`. Reads
    only; safe beside a running collector (a segment it commits meanwhile is skipped)."""
    from trailcli.errors import NoDataError
    from trailcli.store import layout

    root = layout.wal_root(data_dir)
    nodes = [layout.wal_dir(data_dir, layout.check_node_id(node_id))] if node_id else []
    if not node_id and root.is_dir():
        nodes = sorted(p for p in root.iterdir() if p.is_dir())
    if not nodes or not any(n.is_dir() for n in nodes):
        raise NoDataError(
            f"No write-ahead log under {root}"
            + (f" for node {node_id!r}" if node_id else "")
            + ".",
            "pass the --data-dir (and --node-id) that 'trail collect' writes to",
        )
    rows = []
    for folder in nodes:
        files = sorted(folder.glob("*.wal")) + sorted((folder / DAMAGED_DIR).glob("*.wal"))
        for path in files:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # committed and deleted by a running collector meanwhile
            rows.append(_check_row(data_dir, folder.name, path, scan_segment(data)))
    return rows


def _check_row(data_dir: Path, node: str, path: Path, scan: SegmentScan) -> dict[str, object]:
    status = "damaged" if scan.damaged else "torn_tail" if scan.torn_bytes else "ok"
    return {
        "node_id": node,
        "segment": str(path.relative_to(data_dir)),
        "status": status,
        "bytes": scan.size,
        "frames": len(scan.frames),
        "records": sum(_records_in(payload, scan.legacy) for payload in scan.frames),
        "damaged_ranges": [f"{d.start}-{d.end}" for d in scan.damage],
        "lost_frames": scan.lost_frames,
        "torn_bytes": scan.torn_bytes,
    }


def _records_in(payload: bytes, legacy: bool) -> int:
    if not legacy:
        return payload.count(b"\n")
    import json

    try:
        return len(json.loads(payload)["r"])
    except (ValueError, KeyError, TypeError):
        return 0


def damage_error(rows: list[dict[str, object]]) -> Exception | None:
    """The error `trail wal check` ends with when a segment is damaged (None when none is)."""
    from trailcli.errors import CorruptDataError

    damaged = [str(r["segment"]) for r in rows if r["status"] == "damaged"]
    if not damaged:
        return None
    pending = [s for s in damaged if f"/{DAMAGED_DIR}/" not in s]
    hint = (
        "start 'trail collect' for that node: it commits every intact frame and moves the file "
        f"to {DAMAGED_DIR}/"
        if pending
        else f"their intact frames are committed; keep the files in {DAMAGED_DIR}/ for a look, "
        "or delete them"
    )
    return CorruptDataError(f"{len(damaged)} damaged WAL segment(s): {', '.join(damaged)}.", hint)

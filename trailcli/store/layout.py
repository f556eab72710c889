"""Where each thing lives under a data dir, and how a table's files name their partition and
whether compaction wrote them. Nothing else in trail builds or parses these paths."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trailcli.errors import UsageError

NODE_ID_FILE = "node_id"
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARTITION = "date"  # the partition column: the UTC date (YYYY-MM-DD) of the kind's time column
# Files written by compaction, and only those, are named so: a partition whose current files all
# are is clean (deduplicated), and any later append makes it dirty again.
CLEAN_PREFIX = "trail-clean-"


def table_path(data_dir: Path, kind: str) -> Path:
    return Path(data_dir) / kind


def wal_root(data_dir: Path) -> Path:
    return Path(data_dir) / "_wal"


def wal_dir(data_dir: Path, node_id: str) -> Path:
    return wal_root(data_dir) / node_id


def snapshot_dir(data_dir: Path, name: str = "presence") -> Path:
    return Path(data_dir) / "_snapshots" / name


def import_lock_path(data_dir: Path) -> Path:
    """Held by `trail import` while it writes, so two imports never run at once."""
    return Path(data_dir) / "_import" / "LOCK"


def ground_truth_path(data_dir: Path) -> Path:
    return Path(data_dir) / "ground_truth.json"


def check_node_id(node_id: str) -> str:
    if not _NODE_ID.match(node_id):
        raise UsageError(
            f"Invalid node id {node_id!r}.",
            "use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return node_id


def resolve_node_id(data_dir: Path, given: str | None = None) -> str:
    """The node id: `given` (flag or TRAIL_NODE_ID), else one created once and kept in the data dir."""
    if given:
        return check_node_id(given)
    path = Path(data_dir) / NODE_ID_FILE
    if path.exists():
        return check_node_id(path.read_text().strip())
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    node_id = "node-" + uuid.uuid4().hex[:12]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(node_id + "\n")
    os.replace(tmp, path)
    return path.read_text().strip()


# -- partitions and clean marks ------------------------------------------------------------------


def partition_dir(day: str) -> str:
    """The folder of a partition within its table (`date=YYYY-MM-DD`)."""
    return f"{PARTITION}={day}"


def partition_of(path: str) -> str | None:
    """The partition date of a table file (a path relative to the table or absolute)."""
    parent = os.path.basename(os.path.dirname(path))
    prefix = PARTITION + "="
    return parent.removeprefix(prefix) if parent.startswith(prefix) else None


def clean_file_name(unique: str) -> str:
    """The name of a file compaction writes."""
    return f"{CLEAN_PREFIX}{unique}.zstd.parquet"


def is_clean_file(path: str) -> bool:
    """Whether `path` (a table file, relative or absolute) was written by compaction."""
    return os.path.basename(path).startswith(CLEAN_PREFIX)


def clean_dates_of(files: Iterable[str]) -> set[str]:
    """The dates whose files, among `files` (one table's current file list), are all clean."""
    clean: dict[str, bool] = {}
    for path in files:
        day = partition_of(path)
        if day is not None:
            clean[day] = clean.get(day, True) and is_clean_file(path)
    return {day for day, ok in clean.items() if ok}


@dataclass(frozen=True)
class Days:
    """An inclusive span of partition dates (None: unbounded on that side)."""

    first: str | None = None
    last: str | None = None

    @classmethod
    def covering(cls, start: datetime | None, end: datetime | None) -> Days:
        """The partitions that can hold times in `[start, end)`."""
        last = None if end is None else day_of(end - timedelta(microseconds=1))
        return cls(None if start is None else day_of(start), last)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, str) and (
            (self.first is None or self.first <= day) and (self.last is None or day <= self.last)
        )


def day_of(moment: datetime) -> str:
    """The partition date of an instant (its UTC date)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def erasure_dir(data_dir: Path) -> Path:
    """The erasure list, its salt, the audit log and the erasure lock (docs/privacy.md)."""
    return Path(data_dir) / "_erasure"

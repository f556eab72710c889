"""Where each thing lives under a data dir. Nothing else in trail builds these paths."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from trailcli.errors import UsageError

NODE_ID_FILE = "node_id"
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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

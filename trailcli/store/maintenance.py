"""Compaction, clean-partition marks and vacuum of the Delta tables."""

from __future__ import annotations

from pathlib import Path


def clean_dates(data_dir: Path, kind: str) -> set[str]:
    """Partitions (dates) of `kind` that compaction has deduplicated and marked clean."""
    return set()

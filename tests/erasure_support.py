"""Looking for bytes under a data dir: raw, and inside every Parquet file decoded."""

from __future__ import annotations

from pathlib import Path


def files_holding(data_dir: Path, needles: list[str]) -> list[str]:
    """The files under `data_dir` whose raw bytes, or whose decoded Parquet values, hold a needle."""
    import pyarrow.parquet as pq

    found = []
    raw = [n.encode() for n in needles]
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(n in data for n in raw):
            found.append(str(path.relative_to(data_dir)))
            continue
        if data[:4] == b"PAR1":
            text = str(pq.read_table(path).to_pylist())
            text += str(pq.read_metadata(path).to_dict())
            if any(n in text for n in needles):
                found.append(f"{path.relative_to(data_dir)} (decoded)")
    return found

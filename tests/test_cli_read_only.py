"""Every command on a read-only data dir: writers end with Error/Hint and exit 1, readers work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TRAIL = [sys.executable, "-c", "from trailcli.cli import main; main()"]


def _can_bind_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("ro") / "trail-data"
    done = subprocess.run([*TRAIL, "sample", "--data-dir", str(data), "--days", "2",
                           "--visitors", "40", "--end", "2026-03-03"], capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture(scope="module")
def read_only(sample_dir: Path) -> Iterator[list[str]]:
    """A command prefix under which `sample_dir` is read-only: a read-only bind mount in a mount
    namespace for root (whom permissions do not stop), else the write bits taken away."""
    if _can_bind_mount():
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        yield ["unshare", "-m", "sh", "-c", script, str(sample_dir)]
        return
    if os.geteuid() == 0:
        pytest.skip("needs unshare -m (mount namespaces) when run as root")
    subprocess.run(["chmod", "-R", "a-w", str(sample_dir)], check=True)
    yield []
    subprocess.run(["chmod", "-R", "u+w", str(sample_dir)], check=True)


def run(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *TRAIL, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        ["compact"],
        ["compact", "--kind", "events", "--older-than", "2026-03-10"],
        ["collect", "--port", "0", "--node-id", "n1", "--no-compact"],
        ["collect", "--port", "0", "--no-compact"],  # the node id would be kept in the data dir
    ],
)
def test_writers_end_with_a_clear_error(
    read_only: list[str], sample_dir: Path, args: list[str]
) -> None:
    done = run(read_only, *args, "--data-dir", str(sample_dir))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"Error: Cannot write to the data dir {sample_dir}" in done.stderr
    assert "Hint: " in done.stderr


def test_sample_into_a_read_only_parent_ends_with_a_clear_error(
    read_only: list[str], sample_dir: Path
) -> None:
    target = sample_dir / "fresh"
    done = run(read_only, "sample", "--data-dir", str(target), "--days", "1", "--visitors", "5")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"Error: Cannot write to the data dir {target}" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["sql", "SELECT count(*) AS n FROM events"],
        ["online", "--at", "2026-03-02T12:00"],
        ["report", "pages", "--limit", "3"],
        ["report", "funnel", "--step", "$view", "--step", "add_to_cart"],
        ["replay", "--visitor", "nobody"],
    ],
)
def test_readers_work_on_a_read_only_data_dir(
    read_only: list[str], sample_dir: Path, args: list[str]
) -> None:
    done = run(read_only, *args, "--data-dir", str(sample_dir), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[")

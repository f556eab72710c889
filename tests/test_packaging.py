"""A built, non-editable wheel carries the SQL files and finds them through importlib.resources."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_installed_wheel_finds_its_queries(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            wheels,
            ROOT,
        ],
        check=True,
    )
    (wheel,) = wheels.glob("trailcli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("trailcli/queries/")}
    expected = {f"trailcli/queries/{p.name}" for p in (ROOT / "queries").glob("*.sql")}
    assert expected and expected <= shipped
    lists = {
        f"trailcli/sources/referrer_lists/matomo/{name}"
        for name in ("SearchEngines.yml", "Socials.yml", "AIAssistants.yml", "LICENSE")
    }
    with zipfile.ZipFile(wheel) as archive:
        assert lists <= set(archive.namelist())  # the referrer lists with their licence
    static = ROOT / "trailcli/collector/dashboard/static"
    page_files = {f"trailcli/{p.relative_to(ROOT / 'trailcli')}" for p in static.rglob("*.*")}
    with zipfile.ZipFile(wheel) as archive:
        assert page_files and page_files <= set(archive.namelist()), "dashboard files in the wheel"

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel],
        check=True,
    )
    probe = (
        "import trailcli, trailcli.sql as s;"
        "print(trailcli.__file__);"
        "print(s.queries_dir());"
        "print(len(s.load('view_events')) > 0, len(s.names()));"
        "from trailcli.collector.dashboard.pages import load_static;"
        "print(sorted(load_static()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1].startswith(str(target))
    assert out[2] == f"True {len(expected)}"
    assert "index.html" in out[3] and "js/main.js" in out[3]

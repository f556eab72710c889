"""`trail collect` turns its flags into Settings (the server runner is replaced) and maps errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trailcli.cli import collect as collect_cmd


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    monkeypatch.setattr(collect_cmd, "start", seen.append)
    for key in ("TRAIL_PORT", "TRAIL_SECRET", "TRAIL_CONFIG", "TRAIL_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    return seen


def test_flags_become_settings(run_cli, captured: list[Any], tmp_path: Path) -> None:
    result = run_cli(
        "collect", "--port", "0", "--data-dir", tmp_path, "--allow-origin", "https://a.test",
        "--allow-origin", "https://b.test", "--cookies", "none", "--visit-duration", "2h",
        "--track-bots", "--trust-proxy", "--mask-ips", "--no-compact", "--no-access-log",
        "--timeout", "30s", "--transport-grace", "5s", "--open-publish",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [s] = captured
    assert s.port == 0 and s.data_dir == tmp_path
    assert s.allow_origins == ("https://a.test", "https://b.test")
    assert s.cookieless and s.visit_duration == 7200
    assert s.track_bots and s.trust_proxy and s.mask_ips
    assert not s.compact and not s.access_log
    assert (s.bayeux_timeout, s.transport_grace, s.open_publish) == (30.0, 5.0, True)


def test_grace_is_a_deprecated_name_of_transport_grace(run_cli, captured: list[Any]) -> None:
    result = run_cli("collect", "--grace", "7s")
    assert result.exit_code == 0, result.output
    assert captured[0].transport_grace == 7.0
    assert "--grace is deprecated" in result.stderr and "--transport-grace" in result.stderr


def test_env_and_config(run_cli, captured: list[Any], tmp_path: Path) -> None:
    config = tmp_path / "trail.toml"
    config.write_text("[collect]\nport = 7000\nmax_events_per_request = 3\n")
    result = run_cli("collect", "--config", config, env={"TRAIL_PORT": "8000"})
    assert result.exit_code == 0, result.output
    [s] = captured
    assert (s.port, s.max_events_per_request) == (8000, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--visit-duration", "soon"), "Invalid value 'soon' for visit_duration"),
        (("--cookies", "maybe"), "Invalid cookie mode"),
        (("--config", "/nonexistent/trail.toml"), "not found"),
    ],
)
def test_bad_options_exit_2(
    run_cli, captured: list[Any], args: tuple[str, ...], message: str
) -> None:
    result = run_cli("collect", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert captured == []


def test_no_dashboard_flag(run_cli, captured: list[Any], tmp_path: Path) -> None:
    result = run_cli("collect", "--no-dashboard", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    [s] = captured
    assert s.dashboard is False


def test_the_daemon_gets_the_reports_for_the_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    from trailcli.cli.dashboard_reports import ReportsForDashboard
    from trailcli.collector import daemon
    from trailcli.collector.settings import Settings

    calls: list[tuple[Any, Any, Any]] = []
    monkeypatch.setattr(
        daemon,
        "run",
        lambda settings, reports=None, purge=None: calls.append((settings, reports, purge)),
    )
    collect_cmd.start(Settings())
    [(settings, reports, purge)] = calls
    assert settings == Settings() and isinstance(reports, ReportsForDashboard)
    assert purge is None  # no retention: no day is ever deleted
    collect_cmd.start(Settings(retention=400 * 86400.0))
    assert calls[-1][2] is not None

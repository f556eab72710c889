"""Settings: flags > TRAIL_* environment > TOML file > defaults; secrets; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailcli.collector.settings import Settings, load_settings
from trailcli.errors import UsageError


def test_defaults() -> None:
    s = load_settings({}, {})
    assert (s.host, s.port, s.data_dir) == ("127.0.0.1", 9292, Path("./trail-data"))
    assert s.max_content_length == 8192
    assert s.max_events_per_request == 10
    assert s.visit_duration == 4 * 3600
    assert s.cookies == "js" and not s.cookieless
    assert s.secret is None and s.allow_origins == ()


def test_precedence_flags_env_file_defaults(tmp_path: Path) -> None:
    config = tmp_path / "trail.toml"
    config.write_text(
        '[collect]\nport = 7000\nhost = "0.0.0.0"\nvisit-duration = "30m"\nmask_ips = true\n'
        'allow-origin = ["https://a.test"]\n\n[report]\nsomething = 1\n'
    )
    env = {"TRAIL_PORT": "8000", "TRAIL_ALLOW_ORIGIN": "https://b.test, https://c.test"}
    s = load_settings({"port": 9000, "track_bots": None}, env, config)
    assert s.port == 9000  # flag
    assert s.allow_origins == ("https://b.test", "https://c.test")  # env over file
    assert s.host == "0.0.0.0"  # file
    assert s.visit_duration == 1800
    assert s.mask_ips is True
    assert s.track_bots is False  # default
    assert load_settings({}, env, config).port == 8000
    assert load_settings({}, {}, config).port == 7000


def test_config_from_trail_config_env(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 1234\n")
    assert load_settings({}, {"TRAIL_CONFIG": str(config)}).port == 1234


def test_env_types() -> None:
    env = {
        "TRAIL_TRACK_BOTS": "yes",
        "TRAIL_MAX_CONTENT_LENGTH": "100",
        "TRAIL_TRANSPORT_GRACE": "20s",
        "TRAIL_FLUSH_INTERVAL": "1.5",
        "TRAIL_GEOIP": "/x.mmdb",
        "TRAIL_HOST": "",
    }
    s = load_settings({}, env)
    assert s.track_bots is True
    assert s.max_content_length == 100
    assert s.transport_grace == 20.0
    assert s.flush_interval == 1.5
    assert s.geoip == Path("/x.mmdb")
    assert s.host == "127.0.0.1"


def test_the_old_name_of_the_transport_grace_still_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_settings({}, {"TRAIL_GRACE": "20s"}).transport_grace == 20.0
    config = tmp_path / "c.toml"
    config.write_text('grace = "3s"\n')
    assert load_settings({}, {}, config).transport_grace == 3.0
    assert (
        load_settings({}, {"TRAIL_TRANSPORT_GRACE": "4s", "TRAIL_GRACE": "20s"}).transport_grace
        == 4.0
    )
    assert "'grace' is deprecated" in caplog.text


def test_secret_sources(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    assert load_settings({}, {"TRAIL_SECRET": "from-env"}).secret == "from-env"
    assert (
        load_settings({"secret_file": secret_file}, {"TRAIL_SECRET": "env"}).secret == "from-file"
    )
    assert load_settings({}, {"TRAIL_SECRET_FILE": str(secret_file)}).secret == "from-file"
    assert load_settings({}, {"TRAIL_API_TOKEN": "t"}).api_token == "t"
    redacted = load_settings({}, {"TRAIL_SECRET": "x", "TRAIL_API_TOKEN": "y"}).redacted()
    assert (redacted["secret"], redacted["api_token"]) == ("***", "***")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRAIL_PORT": "eighty"}, "Invalid value 'eighty' for port in $TRAIL_PORT"),
        ({"TRAIL_TRACK_BOTS": "maybe"}, "for track_bots"),
        ({"TRAIL_VISIT_DURATION": "4 hours"}, "for visit_duration"),
        ({"TRAIL_COOKIES": "false"}, "Invalid cookie mode"),
        ({"TRAIL_MAX_EVENTS_PER_REQUEST": "0"}, "Invalid max_events_per_request"),
    ],
)
def test_bad_values_are_usage_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("$", r"\$")):
        load_settings({}, env)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = [", "not valid TOML"),
        ("nope = 1", "Unknown option 'nope'"),
        ('secret = "x"', "must not hold 'secret'"),
        ('port = "x"', "Invalid value 'x' for port"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "trail.toml"
    config.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_settings({}, {}, config)


def test_missing_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        load_settings({}, {}, tmp_path / "none.toml")
    with pytest.raises(UsageError, match="Cannot read secret file"):
        load_settings({"secret_file": tmp_path / "none"}, {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        load_settings({"secret_file": empty}, {})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_readme_config_file_is_complete_and_loads(tmp_path: Path) -> None:
    import dataclasses
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### trail collect", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block, "README's trail collect section shows a trail.toml"
    text = block.group(1)
    keys = set(re.findall(r"^#? ?([a-z-]+) = ", text, re.M))
    expected = {
        "allow-origin" if f.name == "allow_origins" else f.name.replace("_", "-")
        for f in dataclasses.fields(Settings)
        if f.name not in ("secret", "api_token")
    }
    assert expected - keys == set(), "options missing from the README config file"
    config = tmp_path / "trail.toml"
    config.write_text(text)
    loaded = load_settings({}, {}, config)
    assert (
        dataclasses.replace(loaded, allow_origins=(), data_dir=Path("./trail-data")) == Settings()
    )

"""`trail report referrers` on the command line: options, formats and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "referrer_db"


@pytest.fixture
def site(data_dir: Path, write_rows) -> Path:
    write_rows(
        "visits",
        [
            {
                "visit_token": "1",
                "visitor_token": "A",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": "https://shop.example.com/",
                "referrer": "https://chirp.it/x",
            },
            {
                "visit_token": "2",
                "visitor_token": "B",
                "started_at": "2026-01-02T10:00:00Z",
                "landing_page": "https://shop.example.com/",
                "referrer": "https://blog.example.com/",
            },
            {
                "visit_token": "3",
                "visitor_token": "B",
                "started_at": "2026-01-03T10:00:00Z",
                "landing_page": "https://shop.example.com/",
                "referrer": "https://www.google.com/",
            },
        ],
    )
    write_rows(
        "events",
        [
            {
                "event_id": "e",
                "visit_token": "3",
                "visitor_token": "B",
                "name": "signup",
                "time": "2026-01-03T10:01:00Z",
            }
        ],
    )
    return data_dir


def _json(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_default_by_source(run_cli, site: Path) -> None:
    rows = _json(run_cli("report", "referrers", "--data-dir", site, "-f", "json"))
    assert {r["source"]: r["visits"] for r in rows} == {
        "chirp.it": 1,
        "blog.example.com": 1,
        "Google": 1,
    }
    assert set(rows[0]) == {"source", "visits", "visitors", "share"}


def test_site_host_referrer_db_goal_and_range(run_cli, site: Path) -> None:
    rows = _json(
        run_cli(
            "report",
            "referrers",
            "--data-dir",
            site,
            "-f",
            "json",
            "--by",
            "channel",
            "--site-host",
            "example.com",
            "--referrer-db",
            DATA / "Socials.yml",
            "--goal",
            "signup",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-04",
        )
    )
    assert {r["channel"]: (r["visits"], r["conversions"]) for r in rows} == {
        "Organic Social": (1, 0),
        "Direct": (1, 0),
        "Organic Search": (1, 1),
    }


def test_csv_and_limit(run_cli, site: Path) -> None:
    result = run_cli("report", "referrers", "--data-dir", site, "-f", "csv", "--limit", "1")
    assert result.stdout.splitlines()[0] == "source,visits,visitors,share"
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--by", "planet"],
        ["--goal", "=x"],
        ["--referrer-db", "/no/such.yml"],
        ["--from", "2026-02-01", "--to", "2026-01-01"],
        ["--limit", "0"],
    ],
)
def test_usage_errors_exit_2(run_cli, site: Path, args) -> None:
    result = run_cli("report", "referrers", "--data-dir", site, *args)
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""


def test_missing_data_exits_3(run_cli, tmp_path: Path) -> None:
    assert run_cli("report", "referrers", "--data-dir", tmp_path / "x").exit_code == 3


SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.mark.skipif(
    not (SAMPLE / "ground_truth.json").exists(),
    reason="sample_data/ground_truth.json not built yet",
)
def test_visits_per_source_match_the_sample_ground_truth(run_cli) -> None:
    import shlex

    truth = json.loads((SAMPLE / "ground_truth.json").read_text())["visits_by_source"]
    args = shlex.split(truth["command"])[1:]
    args[args.index("--data-dir") + 1] = str(SAMPLE)
    rows = _json(run_cli(*args))
    assert {r["source"]: r["visits"] for r in rows} == truth["visits"]


def test_a_misspelt_goal_is_named_on_stderr(run_cli, site: Path) -> None:
    args = ("report", "referrers", "--goal", "sigup", "--data-dir", site, "-f", "json")
    result = run_cli(*args)
    rows = _json(result)
    assert {r["conversions"] for r in rows} == {0}
    assert (
        result.stderr == "Warning: --goal: no event 'sigup' in the data; did you mean 'signup'?\n"
    )
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 2 and strict.stdout == ""
    assert run_cli(*args[:3], "signup", *args[4:], "--strict").exit_code == 0


def test_a_goal_without_an_events_table_is_a_warning(run_cli, tmp_path: Path, write_rows) -> None:
    from trailcli.store import tables

    data = tmp_path / "visits-only"
    tables.bulk_write(
        data,
        "visits",
        tables.to_arrow("visits", [{"visit_token": "1", "started_at": "2026-01-01T10:00:00Z"}]),
    )
    result = run_cli("report", "referrers", "--goal", "signup", "--data-dir", data, "-f", "json")
    assert _json(result)[0]["conversions"] == 0
    assert "no event 'signup'" in result.stderr


def test_shipped_matomo_list_by_name(run_cli, data_dir: Path, write_rows) -> None:
    landing = "https://shop.example.com/"
    write_rows(
        "visits",
        [
            {"visit_token": "1", "visitor_token": "A", "started_at": "2026-01-01T10:00:00Z",
             "landing_page": landing, "referrer": "https://go.mail.ru/search?q=%EF%F0%E8%E2"},
            {"visit_token": "2", "visitor_token": "B", "started_at": "2026-01-01T11:00:00Z",
             "landing_page": landing, "referrer": "https://www.google.co.uk/imgres?q=boots"},
        ],
    )  # fmt: skip
    args = ("report", "referrers", "--data-dir", data_dir, "-f", "json")
    rows = _json(run_cli(*args, "--referrer-db", "matomo"))
    assert {r["source"] for r in rows} == {"Mailru", "Google Images"}
    terms = _json(run_cli(*args, "--by", "term", "--referrer-db", "matomo"))
    assert {r["term"] for r in terms} == {"прив", "boots"}
    # without the list, go.mail.ru is an unknown host and Google Images is Google
    assert {r["source"] for r in _json(run_cli(*args))} == {"go.mail.ru", "Google"}
    refused = run_cli(*args, "--referrer-db", "snowplow")
    assert refused.exit_code == 2 and "curl -LO" in refused.stderr


def test_snowplow_paid_networks_are_paid_channels(run_cli, data_dir: Path, write_rows) -> None:
    write_rows(
        "visits",
        [
            {"visit_token": "1", "visitor_token": "A", "started_at": "2026-01-01T10:00:00Z",
             "landing_page": "https://shop.example.com/",
             "referrer": "https://click.bannerworks.example/c"},
        ],
    )  # fmt: skip
    args = ("report", "referrers", "--data-dir", data_dir, "-f", "json", "--by")
    db = ("--referrer-db", DATA / "referers.yml")
    assert _json(run_cli(*args, "medium", *db))[0]["medium"] == "paid"
    assert _json(run_cli(*args, "channel", *db))[0]["channel"] == "Display"

"""`trail report funnel` on the command line: formats, options, errors and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _events(unit: str, names: str, gap_minutes: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{unit}-{i}",
            "visit_token": f"visit-{unit}",
            "visitor_token": unit,
            "name": name,
            "properties": json.dumps({"page": "/product/1"}) if name == "$view" else None,
            "time": T0 + timedelta(minutes=gap_minutes * i),
            "received_at": T0,
        }
        for i, name in enumerate(names.split())
    ]


@pytest.fixture
def shop(data_dir: Path, write_rows: Callable[..., None]) -> Path:
    write_rows(
        "events",
        _events("a", "$view add_to_cart purchase")
        + _events("b", "$view add_to_cart")
        + _events("c", "$view")
        + _events("d", "$view add_to_cart purchase", gap_minutes=120),
    )
    return data_dir


STEPS = ["--step", "$view page=/product/*", "--step", "add_to_cart", "--step", "purchase"]


def test_json_output(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("report", "funnel", *STEPS, "--data-dir", shop, "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["reached"] for r in rows] == [4, 3, 2]
    assert rows[0]["name"] == "$view page=/product/*"
    assert set(rows[0]) == {
        "step",
        "name",
        "reached",
        "dropoff",
        "conv_total",
        "conv_step",
        "median_seconds",
        "p90_seconds",
    }


def test_table_draws_a_bar_per_step(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("report", "funnel", *STEPS, "--data-dir", shop)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "bar" in lines[0]
    bars = [line.count("█") for line in lines[2:]]
    assert bars[0] == 20 and bars[0] > bars[1] > bars[2] > 0


def test_window_option(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report", "funnel", *STEPS, "--window", "1h", "--data-dir", shop, "--format", "csv"
    )
    assert result.exit_code == 0, result.stderr
    reached = [line.split(",")[2] for line in result.stdout.splitlines()[1:]]
    assert reached == ["4", "2", "1"]  # d's steps are two hours apart


def test_dropped_at_as_csv(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report", "funnel", *STEPS, "--dropped-at", "2", "--data-dir", shop, "--format", "csv"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "visitor_token,visit_token,user_id,reached_at"
    assert lines[1].startswith("b,visit-b,,2026-03-01T10:10:00+00:00")
    assert len(lines) == 2


def test_times_print_in_tz(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report",
        "funnel",
        *STEPS,
        "--dropped-at",
        "1",
        "--data-dir",
        shop,
        "--format",
        "ndjson",
        "--tz",
        "Europe/Paris",
    )
    assert json.loads(result.stdout)["reached_at"] == "2026-03-01T11:00:00+01:00"


def test_every_option_is_accepted(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report",
        "funnel",
        *STEPS,
        "--unit",
        "session",
        "--order",
        "strict",
        "--window",
        "2h",
        "--window-from",
        "prior",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-02",
        "--exclude",
        "refund",
        "--breakdown",
        "visit.device_type",
        "--breakdown-limit",
        "3",
        "--include-bots",
        "--session-timeout",
        "3h",
        "--data-dir",
        shop,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["reached"] for r in rows] == [4, 3, 2]
    assert {r["breakdown"] for r in rows} == {None}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--step", "a"], "2 to 20 steps"),
        (["--step", "a", "--step", "b c~d"], "c~d"),
        (["--step", "a", "--step", "b", "--window", "soon"], "duration"),
        (["--step", "a", "--step", "b", "--order", "any", "--window-from", "prior"], "prior"),
        (["--step", "a", "--step", "b", "--dropped-at", "2"], "dropped-at"),
        (["--step", "a", "--step", "b", "--from", "tomorrowish"], "time"),
    ],
)
def test_usage_errors_exit_2(
    shop: Path, run_cli: Callable[..., Any], args: list[str], needle: str
) -> None:
    result = run_cli("report", "funnel", *args, "--data-dir", shop)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert result.stdout == ""


def test_bad_enum_value_exits_2(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report", "funnel", "--step", "a", "--step", "b", "--unit", "x", "--data-dir", shop
    )
    assert result.exit_code == 2


def test_no_data_exits_3(data_dir: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("report", "funnel", "--step", "a", "--step", "b", "--data-dir", data_dir)
    assert result.exit_code == 3
    assert "trail sample" in result.stderr


def test_range_outside_the_data_exits_3(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report", "funnel", *STEPS, "--from", "2025-01-01", "--to", "2025-02-01", "--data-dir", shop
    )
    assert result.exit_code == 3


def test_committed_sample_matches_its_ground_truth(run_cli: Callable[..., Any]) -> None:
    """The exact command stored in sample_data/ground_truth.json gives its figures."""
    import shlex

    root = Path(__file__).resolve().parent.parent
    truth = json.loads((root / "sample_data" / "ground_truth.json").read_text())["funnel"]
    args = shlex.split(truth["command"])
    assert args[:3] == ["trail", "report", "funnel"]
    args[args.index("--data-dir") + 1] = str(root / "sample_data")
    result = run_cli(*args[1:])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == truth["steps"]
    assert [r["reached"] for r in rows] == truth["reached"]


def test_table_with_breakdown_draws_bars_per_group(
    data_dir: Path, write_rows: Callable[..., None], run_cli: Callable[..., Any]
) -> None:
    rows = _events("a", "$view add_to_cart") + _events("b", "$view") + _events("c", "$view")
    for row in rows:
        row["properties"] = json.dumps({"page": "/product/1", "plan": row["visitor_token"] < "b"})
    write_rows("events", rows)
    result = run_cli(
        "report",
        "funnel",
        "--step",
        "$view",
        "--step",
        "add_to_cart",
        "--breakdown",
        "plan",
        "--data-dir",
        data_dir,
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()[2:]
    # group "false" (2 visitors) first, then "true" (1); each group's first step is a full bar
    assert [("false" in line, "true" in line) for line in lines] == [(True, False)] * 2 + [
        (False, True)
    ] * 2
    assert [line.count("█") for line in lines] == [20, 0, 20, 20]


def test_a_misspelt_step_is_named_on_stderr_with_the_closest_names(
    shop: Path, run_cli: Callable[..., Any]
) -> None:
    args = ("report", "funnel", "--step", "purchse", "--step", "add_to_cart", "--data-dir", shop)
    range_args = ("--from", "2026-03-01", "--to", "2026-03-02", "--format", "json")
    result = run_cli(*args, *range_args)
    assert result.exit_code == 0
    assert [r["reached"] for r in json.loads(result.stdout)] == [0, 0]  # the output is unchanged
    assert result.stderr == (
        "Warning: --step: no event 'purchse' between 2026-03-01T00:00:00+00:00 and "
        "2026-03-02T00:00:00+00:00; did you mean 'purchase'?\n"
    )
    strict = run_cli(*args, *range_args, "--strict")
    assert strict.exit_code == 2 and strict.stdout == ""
    assert "no event 'purchse'" in strict.stderr and "Hint:" in strict.stderr


def test_exclusions_and_globs_are_checked_too(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "report", "funnel", "--step", "$view", "--step", "purch*", "--step", "chekout*",
        "--exclude", "refnd", "--exclude", "Purchase", "--data-dir", shop, "--tz", "Europe/Paris",
    )  # fmt: skip
    assert result.exit_code == 0
    warnings = result.stderr.splitlines()
    assert warnings == [
        "Warning: --step: no event matching 'chekout*' in the data",
        "Warning: --exclude: no event 'refnd' in the data",
        "Warning: --exclude: no event 'Purchase' in the data; did you mean 'purchase'?",
    ]


def test_a_valid_name_that_has_not_happened_is_only_a_warning(
    shop: Path, run_cli: Callable[..., Any]
) -> None:
    args = ("report", "funnel", *STEPS, "--step", "refund", "--data-dir", shop, "-f", "csv")
    result = run_cli(*args)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].startswith("4,refund,0,")
    assert result.stderr == "Warning: --step: no event 'refund' in the data\n"
    assert run_cli(*args, "--strict").exit_code == 2


def test_known_names_print_no_warning(shop: Path, run_cli: Callable[..., Any]) -> None:
    result = run_cli("report", "funnel", *STEPS, "--strict", "--data-dir", shop)
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    ("step", "operator"),
    [
        ("purchase order_value>>100", ">>"),
        ("purchase order_value >> 100", ">>"),
        ("purchase plan==pro", "=="),
        ("purchase total<>5", "<>"),
    ],
)
def test_a_doubled_operator_is_a_usage_error_that_underlines_it(
    shop: Path, run_cli: Callable[..., Any], step: str, operator: str
) -> None:
    underlined = " " * step.index(operator) + "^^"
    result = run_cli("report", "funnel", "--step", "$view", "--step", step, "--data-dir", shop)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert f"{operator!r} is not an operator" in lines[0]
    assert lines[1:3] == [f"  {step}", f"  {underlined}"]


def test_a_quoted_value_may_start_with_an_operator(shop: Path, run_cli: Callable[..., Any]) -> None:
    step = "purchase note='>>x'"
    result = run_cli("report", "funnel", "--step", "$view", "--step", step, "--data-dir", shop)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_any_order_rows_are_labelled_by_how_many_steps(
    shop: Path, run_cli: Callable[..., Any], fmt: str
) -> None:
    # c only viewed; b viewed and added; a and d did all three: 4 reached >= 1 step, 3 >= 2, 2 >= 3
    args = ("report", "funnel", "--order", "any", "--step", "purchase", "--step", "add_to_cart")
    result = run_cli(*args, "--step", "$view", "--data-dir", shop, "--window", "1w", "-f", fmt)
    assert result.exit_code == 0, result.stderr
    labels = ["≥ 1 step", "≥ 2 steps", "≥ 3 steps"]
    if fmt == "json":
        rows = json.loads(result.stdout)
        assert [(r["name"], r["reached"]) for r in rows] == list(
            zip(labels, [4, 3, 2], strict=True)
        )
    elif fmt == "csv":
        assert [line.split(",")[1] for line in result.stdout.splitlines()[1:]] == labels
    else:
        body = result.stdout.splitlines()[2:]
        assert [label in line for label, line in zip(labels, body, strict=True)] == [True] * 3
    help_text = run_cli("report", "funnel", "--help").stdout
    assert "at least k" in " ".join(help_text.split())

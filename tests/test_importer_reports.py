"""Reports on imported Ahoy data equal the same figures computed by SQL on the source database.

The reference queries run on PostgreSQL and MariaDB themselves, over Ahoy's own tables; the
reports run with `--include-bots`, since the source has no notion of trail's bot detection.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

pytestmark = pytest.mark.slow

FUNNEL_STEPS = ("$view", "add_to_cart", "checkout")


def _interval_day(dialect: str) -> str:
    return "interval '1 day'" if dialect == "postgresql" else "INTERVAL 1 DAY"


def funnel_sql(dialect: str, unit: str) -> str:
    """Units reaching each of FUNNEL_STEPS in order, every step within a day of the first."""
    text = "text" if dialect == "postgresql" else "CHAR"
    unit_sql = {
        "visitor": "v.visitor_token",
        "user": f"COALESCE(CAST(v.user_id AS {text}), CAST(e.user_id AS {text}))",
    }[unit]
    day = _interval_day(dialect)
    a, b, c = FUNNEL_STEPS
    return f"""
    WITH ev AS (
        SELECT {unit_sql} AS unit, e.name, e.time
        FROM ahoy_events e LEFT JOIN ahoy_visits v ON v.id = e.visit_id
    ),
    s1 AS (SELECT unit, time AS t1 FROM ev WHERE name = '{a}' AND unit IS NOT NULL),
    s2 AS (
        SELECT s1.unit, s1.t1, x.time AS t2 FROM s1
        JOIN ev x ON x.unit = s1.unit AND x.name = '{b}' AND x.time >= s1.t1 AND x.time <= s1.t1 + {day}
    ),
    s3 AS (
        SELECT s2.unit FROM s2
        JOIN ev y ON y.unit = s2.unit AND y.name = '{c}' AND y.time >= s2.t2 AND y.time <= s2.t1 + {day}
    )
    SELECT (SELECT count(DISTINCT unit) FROM s1), (SELECT count(DISTINCT unit) FROM s2),
           (SELECT count(DISTINCT unit) FROM s3)
    """


def referrers_sql(dialect: str) -> str:
    """Visits and visitors per source: UTM source (column, else the landing page's; one that
    names a known source, Mastodon in this data, is that source), click id, the site itself or
    no referrer, the two known networks the data uses, else the host."""
    if dialect == "postgresql":
        landing_utm = "substring(landing_page from '[?&]utm_source=([^&#]*)')"
        host = "regexp_replace(referring_domain, '^www[.]', '')"
    else:
        landing_utm = (
            "NULLIF(REGEXP_REPLACE(REGEXP_SUBSTR(landing_page, '[?&]utm_source=[^&#]*'), "
            "'^[?&]utm_source=', ''), '')"
        )
        host = "REGEXP_REPLACE(referring_domain, '^www[.]', '')"
    return f"""
    SELECT source, count(*) AS visits, count(DISTINCT visitor_token) AS visitors FROM (
        SELECT visitor_token, CASE
            WHEN lower(COALESCE(NULLIF(utm_source, ''), {landing_utm})) = 'mastodon' THEN 'Mastodon'
            WHEN COALESCE(NULLIF(utm_source, ''), {landing_utm}) IS NOT NULL
                THEN lower(COALESCE(NULLIF(utm_source, ''), {landing_utm}))
            WHEN landing_page LIKE '%gclid=%' THEN 'Google'
            WHEN COALESCE(referring_domain, '') = '' THEN '(direct)'
            WHEN {host} = 'shop.example' THEN '(direct)'
            WHEN referring_domain LIKE '%google.%' THEN 'Google'
            WHEN referring_domain LIKE '%facebook.com' THEN 'Facebook'
            ELSE {host}
        END AS source
        FROM ahoy_visits
    ) s GROUP BY source
    """


def replay_sql(dialect: str) -> str:
    """A user's visits, their bindings and the events resolved to them (the visit's user, else
    the event's), as (time, kind, visit_token, name, properties)."""
    text = "text" if dialect == "postgresql" else "CHAR"
    return f"""
    SELECT started_at, 'visit', visit_token, NULL, NULL FROM ahoy_visits WHERE user_id = %s
    UNION ALL
    SELECT started_at, 'identify', visit_token, CAST(user_id AS {text}), NULL
    FROM ahoy_visits WHERE user_id = %s
    UNION ALL
    SELECT e.time, 'event', v.visit_token, e.name, CAST(e.properties AS {text})
    FROM ahoy_events e LEFT JOIN ahoy_visits v ON v.id = e.visit_id
    WHERE COALESCE(v.user_id, e.user_id) = %s
    """


def query(
    dialect: str, url: str, sql: str, params: tuple[Any, ...] | None = None
) -> list[tuple[Any, ...]]:
    if dialect == "postgresql":
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    import pymysql

    from trailcli.importer.source_url import parse_database_url

    parsed = parse_database_url(url)
    conn = pymysql.connect(
        host=parsed.host, port=parsed.port, user=parsed.user, password="", database=parsed.database,
        charset="utf8mb4", init_command="SET time_zone = '+00:00'",
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


@pytest.fixture(params=["postgresql", "mysql"])
def imported(request: pytest.FixtureRequest) -> tuple[str, str, Any]:
    """(dialect, source URL, data dir) of the main import on each database."""
    if request.param == "postgresql":
        url, _data, data_dir, _result, _ = request.getfixturevalue("ahoy_pg_main")
    else:
        url, _data, data_dir, _result = request.getfixturevalue("ahoy_maria_main")
    return request.param, url, data_dir


def _json(run_cli: Any, *args: Any) -> Any:
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("unit", ["visitor", "user"])
def test_funnel_equals_sql_on_the_source(imported: Any, run_cli: Any, unit: str) -> None:
    dialect, url, data_dir = imported
    steps = [a for s in FUNNEL_STEPS for a in ("--step", s)]
    rows = _json(run_cli, "report", "funnel", *steps, "--unit", unit, "--window", "1d",
                 "--include-bots", "--data-dir", data_dir)  # fmt: skip
    [expected] = query(dialect, url, funnel_sql(dialect, unit))
    assert [r["reached"] for r in rows] == list(expected)
    assert expected[2] > 0  # the data has conversions to compare


def test_referrers_equal_sql_on_the_source(imported: Any, run_cli: Any) -> None:
    dialect, url, data_dir = imported
    rows = _json(run_cli, "report", "referrers", "--include-bots", "--data-dir", data_dir)
    got = {r["source"]: (r["visits"], r["visitors"]) for r in rows}
    expected = {s: (int(v), int(u)) for s, v, u in query(dialect, url, referrers_sql(dialect))}
    assert got == expected
    assert {"Google", "Facebook", "(direct)", "newsletter", "Mastodon", "blog.example.org"} <= set(
        got
    )


@pytest.mark.parametrize("user", [3, 5, 7, 11])
def test_replay_equals_sql_on_the_source(imported: Any, run_cli: Any, user: int) -> None:
    dialect, url, data_dir = imported
    rows = _json(run_cli, "replay", "--user", str(user), "--data-dir", data_dir)
    got = sorted(
        (
            datetime.fromisoformat(r["time"]),
            r["kind"],
            r["visit_token"] or "",
            r["name"] if r["kind"] != "visit" else "",
            json.dumps(r["detail"], sort_keys=True) if r["kind"] == "event" else "",
        )
        for r in rows
    )
    expected = sorted(
        (
            t.replace(tzinfo=UTC),
            kind,
            token or "",
            (name or "").replace("\x00", "\ufffd"),
            json.dumps(json.loads(props) if props else {}, sort_keys=True)
            if kind == "event"
            else "",
        )
        for t, kind, token, name, props in query(dialect, url, replay_sql(dialect), (user,) * 3)
    )
    assert got == expected
    assert any(k == "event" for _t, k, *_ in expected)

"""Every SQL file says what it returns and declares exactly the $params it binds."""

import pytest

from trailcli import sql

NAMES = sql.names()


def test_there_are_queries() -> None:
    assert "view_events" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_header_declares_exactly_the_bound_params(name: str) -> None:
    text = sql.load(name)
    assert "-- returns:" in text, f"{name}.sql has no '-- returns:' header"
    assert "-- params:" in text, f"{name}.sql has no '-- params:' header"
    assert sql.declared_params(text) == sql.bound_params(text), name


def test_param_scanner() -> None:
    text = "-- params: $since, $until\nSELECT * FROM events WHERE time >= $since AND time < $until -- $x"
    assert sql.declared_params(text) == {"since", "until"}
    assert sql.bound_params(text) == {"since", "until"}
    assert sql.declared_params("-- params: none\nSELECT 1") == set()
    assert sql.bound_params("SELECT '$view' AS name, $$x$$") == set()


def test_param_scanner_skips_comments_with_quotes() -> None:
    text = "-- the visit's first binding\nSELECT $a, 'it''s $b' /* $c */ -- $d\nFROM t WHERE x = $e"
    assert sql.bound_params(text) == {"a", "e"}

"""Enrichment: client IP behind proxies, masking, user agents (cached, bots), GeoIP from an .mmdb."""

from __future__ import annotations

from pathlib import Path

import pytest
from collector_support import BROWSER_UA, make_settings, stored, write_mmdb

from trailcli.collector import enrich
from trailcli.collector.app import create_app
from trailcli.errors import UsageError

LONDON = {
    "country": {"names": {"en": "United Kingdom"}, "iso_code": "GB"},
    "subdivisions": [{"names": {"en": "England"}}],
    "city": {"names": {"en": "London"}},
    "location": {"latitude": 51.5142, "longitude": -0.0931},
}


@pytest.mark.parametrize(
    ("remote", "xff", "trust", "ip"),
    [
        ("10.0.0.5", "81.2.69.160", False, "10.0.0.5"),
        ("10.0.0.5", "81.2.69.160", True, "81.2.69.160"),
        ("10.0.0.5", "8.8.8.8, 81.2.69.160, 10.0.0.2", True, "81.2.69.160"),
        ("10.0.0.5", "192.168.1.4, 10.0.0.2", True, "192.168.1.4"),
        ("10.0.0.5", "junk, 81.2.69.161", True, "81.2.69.161"),
        ("10.0.0.5", "junk", True, "10.0.0.5"),
        ("::ffff:1.2.3.4", None, False, "1.2.3.4"),
        (None, None, False, None),
        ("10.0.0.5", "[2001:db8::1]", True, "2001:db8::1"),
    ],
)
def test_client_ip(remote: str | None, xff: str | None, trust: bool, ip: str | None) -> None:
    assert enrich.client_ip(remote, xff, trust) == ip


@pytest.mark.parametrize(
    ("ip", "masked"),
    [
        ("1.2.3.4", "1.2.3.0"),
        ("127.0.0.1", "127.0.0.0"),
        ("2001:4860:4860::8844", "2001:4860:4860::"),
        ("not-an-ip", "not-an-ip"),
        (None, None),
    ],
)
def test_mask_ip(ip: str | None, masked: str | None) -> None:
    assert enrich.mask_ip(ip) == masked


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (BROWSER_UA, ("Firefox", "Mac OS X", "Desktop", False)),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            ("Mobile Safari", "iOS", "Mobile", False),
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
            ("Mobile Safari", "iOS", "Tablet", False),
        ),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", ("Googlebot", None, "Bot", True)),
        ("", (None, None, "Bot", True)),
        ("Wget/1.21", ("Wget", None, "Bot", True)),
    ],
)
def test_parse_user_agent(ua: str, expected: tuple[object, ...]) -> None:
    d = enrich.parse_user_agent(ua)
    assert (d.browser, d.os, d.device_type, d.is_bot) == expected


def test_user_agent_cache_is_bounded_and_hits() -> None:
    cache = enrich.UserAgentCache(maxsize=2)
    for ua in (BROWSER_UA, BROWSER_UA, "a/1", "b/1", "c/1"):
        cache.parse(ua)
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 4)


def test_geoip_lookup(tmp_path: Path) -> None:
    geo = enrich.GeoIP(write_mmdb(tmp_path / "g.mmdb", {"81.2.69.0/24": LONDON}))
    assert geo.lookup("81.2.69.160") == {
        "country": "United Kingdom",
        "region": "England",
        "city": "London",
        "latitude": 51.5142,
        "longitude": -0.0931,
    }
    assert geo.lookup("8.8.8.8") == dict.fromkeys(enrich.GEO_FIELDS)
    assert geo.lookup("bogus") == dict.fromkeys(enrich.GEO_FIELDS)


def test_geoip_bad_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(UsageError, match="Cannot open GeoIP database"):
        enrich.GeoIP(bad)


async def test_visits_get_geo_fields(aiohttp_client, data_dir: Path, tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "g.mmdb", {"81.2.69.0/24": LONDON})
    app = create_app(make_settings(data_dir, geoip=db, trust_proxy=True, mask_ips=True))
    client = await aiohttp_client(app)
    resp = await client.post(
        "/ahoy/visits",
        json={"visit_token": "v", "visitor_token": "u"},
        headers={"User-Agent": BROWSER_UA, "X-Forwarded-For": "81.2.69.160"},
    )
    assert resp.status == 200
    await client.close()
    [visit] = stored(data_dir, "visits")
    assert visit["ip"] == "81.2.69.0"
    assert (visit["country"], visit["region"], visit["city"]) == (
        "United Kingdom",
        "England",
        "London",
    )
    assert (visit["latitude"], visit["longitude"]) == (51.5142, -0.0931)

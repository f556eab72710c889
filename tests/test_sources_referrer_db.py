"""Loading referrer lists: the package's own data and community files (--referrer-db)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailcli.errors import UsageError
from trailcli.reports.referrers import classify_url
from trailcli.sources.referrer_db import builtin_db, load_db, load_file

DATA = Path(__file__).parent / "data" / "referrer_db"
SITE = "https://shop.example.com/"


def _att(db, referrer: str, landing: str = SITE):
    got = classify_url(landing, referrer, db=db)
    return got.source, got.medium, got.term, got.channel


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("SearchEngines.yml", "matomo-search"),
        ("Socials.yml", "matomo-list"),
        ("AIAssistants.yml", "matomo-list"),
        ("referers.yml", "snowplow"),
        ("trail_sources.json", "trail"),
    ],
)
def test_each_format_is_recognised(name: str, kind: str) -> None:
    assert load_file(builtin_db(), DATA / name) == kind


def test_matomo_search_engines() -> None:
    db = load_db([DATA / "SearchEngines.yml"])
    assert _att(db, "https://acmesearch.com/?query=red+shoes") == (
        "Acme Search",
        "search",
        "red shoes",
        "Organic Search",
    )
    assert _att(db, "https://www.acmesearch.co.uk/?query=x")[:3] == ("Acme Search", "search", "x")
    assert _att(db, "https://de.acme-find.net/?query=y")[:3] == ("Acme Search", "search", "y")
    assert _att(db, "https://acme.example/find/?k=z")[:3] == ("Acme Search", "search", "z")
    assert _att(db, "https://acme.example/other")[0] == "acme.example"


def test_matomo_socials_and_ai_assistants() -> None:
    db = load_db([DATA / "Socials.yml", DATA / "AIAssistants.yml"])
    assert _att(db, "https://chirp.it/x") == ("Chirper", "social", None, "Organic Social")
    assert _att(db, "https://oraclebot.ai/") == ("Oracle Bot", "chatbot", None, "AI Assistants")


def test_snowplow_referers() -> None:
    db = load_db([DATA / "referers.yml"])
    assert _att(db, "https://finder.example/web?s=lamp") == (
        "Finder",
        "search",
        "lamp",
        "Organic Search",
    )
    assert _att(db, "https://finder.example/images/1?q=cat")[:3] == (
        "Finder Images",
        "search",
        "cat",
    )
    assert _att(db, "https://mail.postbox.example/inbox") == ("Postbox", "email", None, "Email")
    assert _att(db, "https://help.finder.example/") == ("Help Desk", "referral", None, "Referral")
    # a loaded list wins over the package's own entry for the same host
    assert _att(db, "https://tweets.example/")[0] == "Twitter"
    assert _att(db, "https://t.co/x")[0] == "Twitter"


def test_trail_json_adds_sources_and_click_ids() -> None:
    db = load_db([DATA / "trail_sources.json"])
    assert _att(db, "https://wiki.corp.example/page")[:2] == ("Intranet Wiki", "referral")
    assert _att(db, "", landing=SITE + "?acme_clid=9")[:2] == ("Acme Ads", "cpc")


def test_builtin_entries_remain_after_loading() -> None:
    db = load_db([DATA / "Socials.yml"])
    assert _att(db, "https://www.google.com/search?q=a")[0] == "Google"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("broken.yml", "not valid YAML"),
        ("unknown_shape.yml", "not a referrer list"),
        ("missing.yml", "Cannot read"),
    ],
)
def test_bad_files_are_usage_errors(name: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_db([DATA / name])

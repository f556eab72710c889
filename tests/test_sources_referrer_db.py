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


def test_snowplow_paid_section_is_paid_not_search() -> None:
    db = load_db([DATA / "referers.yml"])
    # an ad network named like a known search engine: medium paid, channel Paid Search
    assert _att(db, "https://ads.finder.example/click?x=1") == (
        "Finder",
        "paid",
        None,
        "Paid Search",
    )
    # any other ad network: medium paid, channel Display
    assert _att(db, "https://click.bannerworks.example/") == (
        "Bannerworks",
        "paid",
        None,
        "Display",
    )
    # the engine's own hosts keep their search medium, and utm_source=finder still names it
    assert _att(db, "https://finder.example/web?s=lamp")[1:] == ("search", "lamp", "Organic Search")
    got = classify_url(SITE + "?utm_source=finder&utm_medium=organic", None, db=db)
    assert (got.source, got.channel) == ("Finder", "Organic Search")


MATOMO = load_db(["matomo"])


@pytest.mark.parametrize(
    ("referrer", "source"),
    [
        # google.{}/imgres: every TLD, two-label ones included
        ("https://www.google.com/imgres?imgurl=x", "Google Images"),
        ("https://www.google.co.uk/imgres?imgurl=x", "Google Images"),
        ("https://www.google.de/imgres?imgurl=x", "Google Images"),
        ("https://www.google.com.br/imgres?imgurl=x", "Google Images"),
        ("https://images.google.fr/", "Google Images"),
        ("https://www.google.co.jp/search?q=x", "Google"),
        ("https://www.google.de/cse?q=x", "Google Custom Search"),
        # {}.bing.com/images/search: a subdomain placeholder and a path
        ("https://de.bing.com/images/search?q=x", "Bing Images"),
        # images.{}.ask.com: a country-code label in the middle
        ("https://images.de.ask.com/web?q=x", "Ask"),
    ],
)
def test_matomo_placeholders_match_the_way_matomo_expands_them(referrer: str, source: str) -> None:
    assert _att(MATOMO, referrer)[0] == source


def test_matomo_placeholder_path_rules_feed_the_sql_host_filter() -> None:
    import re

    from trailcli.reports.referrers import _path_host_regex

    pattern = re.compile(_path_host_regex(MATOMO.paths)[4:], re.IGNORECASE)
    for authority in ("www.google.co.uk", "google.de", "de.bing.com", "www.google.com.br:443"):
        assert pattern.search(authority), authority
    assert not pattern.search("example.org")


@pytest.mark.parametrize(
    ("referrer", "term"),
    [
        # Baidu in GB2312, Mail.ru in windows-1251, Excite Japan in Shift_JIS, Toppreise in Latin-1
        ("https://www.baidu.com/s?wd=%D6%D0%CE%C4", "中文"),
        ("https://go.mail.ru/search?q=%EF%F0%E8%E2%E5%F2", "привет"),
        ("https://www.excite.co.jp/search?search=%93%FA%96%7B", "日本"),
        ("https://www.toppreise.ch/?search=k%FChlschrank", "kühlschrank"),
        # Yahoo! Japan in EUC-JP
        ("https://search.yahoo.co.jp/search?p=%C6%FC%CB%DC", "日本"),
        # UTF-8 stays UTF-8 even where other charsets are declared
        ("https://www.baidu.com/s?wd=%E4%B8%AD%E6%96%87", "中文"),
    ],
)
def test_matomo_charsets_decode_search_terms(referrer: str, term: str) -> None:
    assert _att(MATOMO, referrer)[2] == term


def test_the_package_list_reads_gb2312_from_baidu() -> None:
    assert _att(builtin_db(), "https://www.baidu.com/s?wd=%D6%D0%CE%C4")[2] == "中文"


@pytest.mark.parametrize(
    ("referrer", "term"),
    [
        ("https://www.google.com/#q=trail+shoes", "trail shoes"),
        ("https://www.google.com/webhp?hl=en#hl=en&q=red%20boots", "red boots"),
        ("https://www.google.com/search?q=from+query#q=from+fragment", "from query"),
        ("https://www.google.com/#section", None),
    ],
)
def test_keywords_in_the_fragment_are_read(referrer: str, term: str | None) -> None:
    assert _att(builtin_db(), referrer)[2] == term


def test_named_lists() -> None:
    from importlib.resources import files

    from trailcli.sources.referrer_db import list_files

    shipped = [p.name for p in list_files("matomo")]
    assert shipped == ["SearchEngines.yml", "Socials.yml", "AIAssistants.yml"]
    folder = files("trailcli.sources") / "referrer_lists" / "matomo"
    assert "CC0 1.0 Universal" in (folder / "LICENSE").read_text()
    with pytest.raises(UsageError, match="not shipped") as caught:
        list_files("snowplow")
    assert "referers-latest.yaml" in (caught.value.hint or "")
    assert _att(MATOMO, "https://www.discord.com/channels/1")[:2] == ("Discord", "social")

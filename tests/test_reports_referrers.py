"""Source attribution of visits: every rule of docs/reports.md (Referrers), one case per row."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from trailcli.collector.ahoy_payload import referring_domain, utm_params
from trailcli.reports.referrers import (
    DIMENSIONS,
    Classifier,
    ReferrersQuery,
    _stored_key,
    channel_for,
    classify_url,
    referrers_report,
    utm_of,
)
from trailcli.sources.referrer_db import load_db
from trailcli.sources.referrer_facts import source_facts

SITE = "https://shop.example.com"
DB = load_db()

# (landing page, referrer, expected (source, medium, term, channel))
CASES = [
    # search engines, terms, country domains and subdomains
    (
        f"{SITE}/",
        "https://www.google.com/search?q=duckdb+funnel",
        ("Google", "search", "duckdb funnel", "Organic Search"),
    ),
    (f"{SITE}/", "https://www.google.co.uk/", ("Google", "search", None, "Organic Search")),
    (f"{SITE}/", "https://www.google.de/url?q=x&sa=t", ("Google", "search", "x", "Organic Search")),
    (
        f"{SITE}/",
        "https://google.com.br/search?q=caf%C3%A9",
        ("Google", "search", "café", "Organic Search"),
    ),
    (f"{SITE}/", "https://news.google.fr/", ("Google", "search", None, "Organic Search")),
    (
        f"{SITE}/",
        "https://www.google.co.jp/search?hl=ja&q=%E6%97%85",
        ("Google", "search", "旅", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://www.bing.com/search?q=trail+analytics",
        ("Bing", "search", "trail analytics", "Organic Search"),
    ),
    (f"{SITE}/", "https://cn.bing.com/search?q=x", ("Bing", "search", "x", "Organic Search")),
    (
        f"{SITE}/",
        "https://duckduckgo.com/?q=privacy",
        ("DuckDuckGo", "search", "privacy", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://search.yahoo.com/search?p=shoes",
        ("Yahoo", "search", "shoes", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://uk.search.yahoo.com/search?p=boots",
        ("Yahoo", "search", "boots", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://yandex.ru/search/?text=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82",
        ("Yandex", "search", "привет", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://yandex.com.tr/search/?text=kedi",
        ("Yandex", "search", "kedi", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://www.baidu.com/s?wd=%E4%BD%A0%E5%A5%BD",
        ("Baidu", "search", "你好", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://www.ecosia.org/search?q=trees",
        ("Ecosia", "search", "trees", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://search.brave.com/search?q=brave",
        ("Brave", "search", "brave", "Organic Search"),
    ),
    (f"{SITE}/", "https://www.google.com/search?q=", ("Google", "search", None, "Organic Search")),
    (
        f"{SITE}/",
        "HTTPS://WWW.GOOGLE.COM:443/search?q=Upper",
        ("Google", "search", "Upper", "Organic Search"),
    ),
    # social networks
    (f"{SITE}/", "https://t.co/abc", ("Twitter", "social", None, "Organic Social")),
    (
        f"{SITE}/",
        "https://twitter.com/someone/status/1",
        ("Twitter", "social", None, "Organic Social"),
    ),
    (f"{SITE}/", "https://x.com/someone", ("Twitter", "social", None, "Organic Social")),
    (f"{SITE}/", "https://www.facebook.com/", ("Facebook", "social", None, "Organic Social")),
    (
        f"{SITE}/",
        "https://m.facebook.com/story.php",
        ("Facebook", "social", None, "Organic Social"),
    ),
    (
        f"{SITE}/",
        "https://l.facebook.com/l.php?u=x",
        ("Facebook", "social", None, "Organic Social"),
    ),
    (f"{SITE}/", "https://www.linkedin.com/feed/", ("LinkedIn", "social", None, "Organic Social")),
    (f"{SITE}/", "https://lnkd.in/abc", ("LinkedIn", "social", None, "Organic Social")),
    (f"{SITE}/", "https://old.reddit.com/r/python/", ("Reddit", "social", None, "Organic Social")),
    (f"{SITE}/", "https://www.instagram.com/", ("Instagram", "social", None, "Organic Social")),
    (
        f"{SITE}/",
        "https://news.ycombinator.com/item?id=1",
        ("Hacker News", "social", None, "Organic Social"),
    ),
    (f"{SITE}/", "https://www.youtube.com/watch?v=x", ("YouTube", "video", None, "Organic Video")),
    # webmail
    (f"{SITE}/", "https://mail.google.com/mail/u/0/", ("Gmail", "email", None, "Email")),
    (f"{SITE}/", "https://outlook.live.com/mail/0/inbox", ("Outlook", "email", None, "Email")),
    (f"{SITE}/", "https://mail.yahoo.com/d/folders/1", ("Yahoo Mail", "email", None, "Email")),
    (f"{SITE}/", "https://mail.yandex.ru/", ("Yandex Mail", "email", None, "Email")),
    # AI assistants
    (f"{SITE}/", "https://chatgpt.com/", ("ChatGPT", "chatbot", None, "AI Assistants")),
    (f"{SITE}/", "https://chat.openai.com/c/123", ("ChatGPT", "chatbot", None, "AI Assistants")),
    (
        f"{SITE}/",
        "https://www.perplexity.ai/search?q=x",
        ("Perplexity", "chatbot", None, "AI Assistants"),
    ),
    (f"{SITE}/", "https://gemini.google.com/app", ("Gemini", "chatbot", None, "AI Assistants")),
    (f"{SITE}/", "https://claude.ai/chat/1", ("Claude", "chatbot", None, "AI Assistants")),
    # Android apps
    (f"{SITE}/", "android-app://com.google.android.gm/", ("Gmail", "email", None, "Email")),
    (
        f"{SITE}/",
        "android-app://com.google.android.googlequicksearchbox/",
        ("Google", "search", None, "Organic Search"),
    ),
    (
        f"{SITE}/",
        "android-app://org.example.reader/",
        ("android-app://org.example.reader", "referral", None, "Referral"),
    ),
    # other hosts: the host without www.
    (
        f"{SITE}/",
        "https://blog.example.org/post",
        ("blog.example.org", "referral", None, "Referral"),
    ),
    (f"{SITE}/", "https://www.example.net/a?b=c", ("example.net", "referral", None, "Referral")),
    (
        f"{SITE}/",
        "http://Partner.Example.COM:8080/x",
        ("partner.example.com", "referral", None, "Referral"),
    ),
    (
        f"{SITE}/",
        "https://google.evil.com/search?q=x",
        ("google.evil.com", "referral", None, "Referral"),
    ),
    (f"{SITE}/", "https://notgoogle.com/", ("notgoogle.com", "referral", None, "Referral")),
    # no referrer, malformed and non-HTTP referrers: direct
    (f"{SITE}/", None, ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "not a url", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "http://", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "http://[::1", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "ftp://files.example.org/x", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "file:///home/me/page.html", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "chrome://newtab/", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "about:blank", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/", "javascript:void(0)", ("(direct)", "(none)", None, "Direct")),
    # the site's own hosts count as no referrer
    (f"{SITE}/p", "https://shop.example.com/cart", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/p", "https://www.shop.example.com/", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/p", "https://SHOP.example.com:443/", ("(direct)", "(none)", None, "Direct")),
    (f"{SITE}/p", "https://eu.shop.example.com/", ("(direct)", "(none)", None, "Direct")),
    # UTM tags win: utm_source lower-cased as given, or the name of the known source it names
    (
        f"{SITE}/?utm_source=Newsletter&utm_medium=email",
        None,
        ("newsletter", "email", None, "Email"),
    ),
    (
        f"{SITE}/?utm_source=ig&utm_medium=paid",
        "https://www.facebook.com/",
        ("Instagram", "paid", None, "Paid Social"),
    ),
    (
        f"{SITE}/?utm_source=google&utm_medium=cpc&utm_term=shoes",
        "https://www.google.com/",
        ("Google", "cpc", "shoes", "Paid Search"),
    ),
    (
        f"{SITE}/?utm_source=google&utm_medium=organic",
        None,
        ("Google", "organic", None, "Organic Search"),
    ),
    (
        f"{SITE}/?utm_source=partner",
        "https://blog.example.org/",
        ("partner", "(not set)", None, "Unassigned"),
    ),
    (
        f"{SITE}/?utm_source=partner&utm_medium=affiliate",
        None,
        ("partner", "affiliate", None, "Affiliates"),
    ),
    (f"{SITE}/?utm_source=site&utm_medium=banner", None, ("site", "banner", None, "Display")),
    (f"{SITE}/?utm_source=chatgpt.com", None, ("ChatGPT", "(not set)", None, "AI Assistants")),
    (f"{SITE}/?utm_source=sms&utm_medium=text", None, ("sms", "text", None, "SMS")),
    (
        f"{SITE}/?utm_source=x&utm_campaign=cross-network-q1&utm_medium=cpc",
        None,
        ("Twitter", "cpc", None, "Cross-network"),
    ),
    (
        f"{SITE}/?utm_source=fb&utm_medium=social",
        None,
        ("Facebook", "social", None, "Organic Social"),
    ),
    (f"{SITE}/?utm_source=FaceBook", None, ("Facebook", "(not set)", None, "Organic Social")),
    (f"{SITE}/?utm_source=l.facebook.com", None, ("Facebook", "(not set)", None, "Organic Social")),
    (f"{SITE}/?utm_source=www.google.co.uk", None, ("Google", "(not set)", None, "Organic Search")),
    (
        f"{SITE}/?utm_source=Facebook+Group",
        None,
        ("facebook group", "(not set)", None, "Unassigned"),
    ),
    (
        f"{SITE}/?utm_source=newsletter&gclid=abc",
        None,
        ("newsletter", "(not set)", None, "Unassigned"),
    ),
    # path rules (google.com/shopping): the host, www. and any subdomain; whole path segments only
    (
        f"{SITE}/",
        "https://www.google.com/shopping?q=boots",
        ("Google Shopping", "shopping", None, "Organic Shopping"),
    ),
    (
        f"{SITE}/",
        "https://m.google.com/shopping/product/1",
        ("Google Shopping", "shopping", None, "Organic Shopping"),
    ),
    (
        f"{SITE}/",
        "https://eu.m.google.com:443/shopping",
        ("Google Shopping", "shopping", None, "Organic Shopping"),
    ),
    (
        f"{SITE}/",
        "https://www.google.com/shoppingcart",
        ("Google", "search", None, "Organic Search"),
    ),
    (f"{SITE}/", "https://notgoogle.com/shopping", ("notgoogle.com", "referral", None, "Referral")),
    # click ids: that network, medium cpc, paid channel
    (f"{SITE}/?gclid=abc", "https://www.google.com/", ("Google", "cpc", None, "Paid Search")),
    (f"{SITE}/?gclid=abc", None, ("Google", "cpc", None, "Paid Search")),
    (f"{SITE}/?a=1&msclkid=xyz", "https://www.bing.com/", ("Bing", "cpc", None, "Paid Search")),
    (f"{SITE}/p?fbclid=IwAR0", "https://l.facebook.com/", ("Facebook", "cpc", None, "Paid Social")),
    (f"{SITE}/p?gclid=", "https://www.google.com/", ("Google", "search", None, "Organic Search")),
    # a keyword carried only in the fragment; a term in the engine's declared charset (GB2312)
    (
        f"{SITE}/",
        "https://www.google.com/#q=trail+shoes",
        ("Google", "search", "trail shoes", "Organic Search"),
    ),
    (
        f"{SITE}/",
        "https://www.baidu.com/s?ie=gb2312&wd=%D6%D0%CE%C4",
        ("Baidu", "search", "中文", "Organic Search"),
    ),
]


@pytest.mark.parametrize(("landing", "referrer", "expected"), CASES)
def test_classify(landing: str, referrer: str | None, expected: tuple) -> None:
    got = classify_url(landing, referrer, db=DB)
    assert (got.source, got.medium, got.term, got.channel) == expected


def test_the_table_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


def test_stored_utm_columns_win_over_landing_tags() -> None:
    got = classify_url(f"{SITE}/?utm_source=a", None, db=DB, utm={"utm_source": "Stored"})
    assert got.source == "stored"


def test_explicit_site_hosts_replace_the_landing_host() -> None:
    ref = "https://blog.example.com/x"
    assert classify_url(f"{SITE}/", ref, db=DB).source == "blog.example.com"
    inside = classify_url(f"{SITE}/", ref, site_hosts=["example.com"], db=DB)
    assert inside.source == "(direct)"


@pytest.mark.parametrize(
    ("source", "medium", "campaign", "category", "channel"),
    [
        ("(direct)", "(none)", None, None, "Direct"),
        ("amazon", "cpc", None, "shopping", "Paid Shopping"),
        ("x", "cpc", "summer-shopping", None, "Paid Shopping"),
        ("youtube", "cpv", None, "video", "Paid Video"),
        ("x", "ppc", None, None, "Paid Other"),
        ("amazon", "referral", None, "shopping", "Organic Shopping"),
        ("x", "social", None, None, "Organic Social"),
        ("x", "audio", None, None, "Audio"),
        ("x", "push", None, None, "Mobile Push Notifications"),
        ("x", "link", None, None, "Referral"),
        ("e-mail", "x", None, None, "Email"),
    ],
)
def test_channel_rules(source, medium, campaign, category, channel) -> None:
    assert channel_for(source, medium, campaign, category) == channel


def _collected(landing: str, referrer: str | None) -> dict:
    """The URL-derived columns the collector stores for a visit (no utm params sent)."""
    return {
        "referring_domain": referring_domain(referrer),
        **utm_params({}, landing),
        **source_facts(referrer, landing),
    }


def _visits(cases: list[tuple[str, str | None, tuple]], facts: str = "none") -> list[dict]:
    """Visits of the cases; `facts`: none (rows from before the stored facts), all, or mixed."""
    return [
        {
            "visit_token": f"v{i}",
            "visitor_token": f"p{i % 7}",
            "started_at": f"2026-01-0{1 + i % 3}T10:00:00+00:00",
            "landing_page": landing,
            "referrer": referrer,
            "device_type": "Desktop",
            **(
                _collected(landing, referrer)
                if facts == "all" or i % 2 * (facts == "mixed")
                else {}
            ),
        }
        for i, (landing, referrer, _) in enumerate(cases)
    ]


@pytest.mark.parametrize(("landing", "referrer", "expected"), CASES)
def test_stored_facts_classify_as_the_urls_do(landing: str, referrer: str | None, expected) -> None:
    """A key built from the stored columns (what the report groups) gives the case's attribution."""
    stored = {**_collected(landing, referrer), "utm_term": utm_of(landing).get("utm_term")}
    key = _stored_key(stored)
    got = Classifier(DB, ["shop.example.com"]).classify(key)
    assert (got.source, got.medium, got.term, got.channel) == expected


@pytest.mark.parametrize("facts", ["none", "all", "mixed"])
@pytest.mark.parametrize("by", ["source", "medium", "channel", "term"])
def test_report_in_duckdb_agrees_with_the_python_classifier(
    data_dir: Path, write_rows, by, facts
) -> None:
    """The SQL path (distinct keys classified in Python, joined back) equals per-visit classify,
    whether the rows carry stored source facts or only their URLs."""
    write_rows("visits", _visits(CASES, facts))
    report = referrers_report(data_dir, ReferrersQuery(by=by, site_hosts=("shop.example.com",)))
    got = dict(zip(report.column(by).to_pylist(), report.column("visits").to_pylist(), strict=True))
    want: Counter[str] = Counter()
    for landing, referrer, _ in CASES:
        att = classify_url(landing, referrer, site_hosts=["shop.example.com"], db=DB)
        if by == "term":
            paid_or_search = att.channel in ("Organic Search", "Paid Search")
            want[att.term or ("(not provided)" if paid_or_search else "(not set)")] += 1
        else:
            want[getattr(att, by)] += 1
    assert got == dict(want)


def test_report_counts_visitors_share_and_sorts(data_dir: Path, write_rows) -> None:
    write_rows(
        "visits",
        [
            {
                "visit_token": "a1",
                "visitor_token": "A",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": f"{SITE}/",
                "referrer": "https://t.co/x",
            },
            {
                "visit_token": "a2",
                "visitor_token": "A",
                "started_at": "2026-01-02T10:00:00Z",
                "landing_page": f"{SITE}/",
                "referrer": "https://t.co/y",
            },
            {
                "visit_token": "b1",
                "visitor_token": "B",
                "started_at": "2026-01-02T11:00:00Z",
                "landing_page": f"{SITE}/",
                "referrer": None,
            },
            {
                "visit_token": "c1",
                "visitor_token": "C",
                "started_at": "2026-01-03T11:00:00Z",
                "landing_page": f"{SITE}/",
                "referrer": "https://crawler.example/",
                "device_type": "Bot",
            },
        ],
    )
    rows = referrers_report(data_dir, ReferrersQuery()).to_pylist()
    assert rows == [
        {"source": "Twitter", "visits": 2, "visitors": 1, "share": 2 / 3},
        {"source": "(direct)", "visits": 1, "visitors": 1, "share": 1 / 3},
    ]
    with_bots = referrers_report(data_dir, ReferrersQuery(include_bots=True)).to_pylist()
    assert {r["source"] for r in with_bots} == {"Twitter", "(direct)", "crawler.example"}
    from datetime import UTC, datetime

    ranged = referrers_report(
        data_dir, ReferrersQuery(start=datetime(2026, 1, 2, tzinfo=UTC), limit=1)
    ).to_pylist()
    assert ranged == [{"source": "(direct)", "visits": 1, "visitors": 1, "share": 0.5}]


def test_goal_adds_conversions(data_dir: Path, write_rows) -> None:
    write_rows(
        "visits",
        [
            {
                "visit_token": f"v{i}",
                "visitor_token": f"p{i}",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": f"{SITE}/?utm_source={'a' if i < 3 else 'b'}",
                "device_type": "Mobile",
            }
            for i in range(5)
        ],
    )
    write_rows(
        "events",
        [
            {
                "event_id": "e1",
                "visit_token": "v0",
                "visitor_token": "p0",
                "name": "purchase",
                "properties": {"total": 30},
                "time": "2026-01-01T10:05:00Z",
            },
            {
                "event_id": "e2",
                "visit_token": "v0",
                "visitor_token": "p0",
                "name": "purchase",
                "properties": {"total": 5},
                "time": "2026-01-01T10:06:00Z",
            },
            {
                "event_id": "e3",
                "visit_token": "v3",
                "visitor_token": "p3",
                "name": "purchase",
                "properties": {"total": 5},
                "time": "2026-01-01T10:05:00Z",
            },
        ],
    )
    rows = referrers_report(data_dir, ReferrersQuery(goal="purchase")).to_pylist()
    assert [(r["source"], r["conversions"], r["conversion_rate"]) for r in rows] == [
        ("a", 1, 1 / 3),
        ("b", 1, 0.5),
    ]
    big = referrers_report(data_dir, ReferrersQuery(goal="purchase total>=10")).to_pylist()
    assert [(r["source"], r["conversions"]) for r in big] == [("a", 1), ("b", 0)]
    mobile = referrers_report(
        data_dir, ReferrersQuery(goal="purchase visit.device_type=Desktop")
    ).to_pylist()
    assert [r["conversions"] for r in mobile] == [0, 0]


@pytest.mark.parametrize("by", ["domain", "campaign", "landing_page"])
def test_other_dimensions(data_dir: Path, write_rows, by) -> None:
    write_rows(
        "visits",
        [
            {
                "visit_token": "1",
                "visitor_token": "A",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": f"{SITE}/a?utm_source=n&utm_campaign=spring",
                "referrer": None,
            },
            {
                "visit_token": "2",
                "visitor_token": "B",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": f"{SITE}/b",
                "referrer": "https://www.google.com/",
            },
            {
                "visit_token": "3",
                "visitor_token": "C",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": SITE,
                "referrer": "https://www.google.com/",
            },
        ],
    )
    rows = referrers_report(data_dir, ReferrersQuery(by=by)).to_pylist()
    got = {r[by]: r["visits"] for r in rows}
    assert (
        got
        == {
            "domain": {"google.com": 2, "(none)": 1},
            "campaign": {"(not set)": 2, "spring": 1},
            "landing_page": {"/a": 1, "/b": 1, "/": 1},
        }[by]
    )


def test_visitors_count_once_per_value_across_keys_and_every_landing_host_is_the_site(
    data_dir: Path, write_rows
) -> None:
    """Two keys that give one source share their visitor; the site is every landing host."""
    shop, blog = "https://shop.example.com", "https://blog.example.com"
    visits = [
        ("a1", "A", f"{shop}/", "https://www.google.com/search?q=x"),
        ("a2", "A", f"{shop}/p", "https://www.google.co.uk/"),
        ("b1", "B", f"{blog}/", f"{shop}/cart"),
        ("a3", "A", f"{blog}/", None),
    ]
    write_rows(
        "visits",
        [
            {
                "visit_token": token,
                "visitor_token": visitor,
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": landing,
                "referrer": referrer,
            }
            for token, visitor, landing, referrer in visits
        ],
    )
    rows = referrers_report(data_dir, ReferrersQuery()).to_pylist()
    got = {r["source"]: (r["visits"], r["visitors"]) for r in rows}
    assert got == {"Google": (2, 1), "(direct)": (2, 2)}


def test_the_report_reads_the_stored_facts_of_a_row_that_has_them(
    data_dir: Path, write_rows
) -> None:
    google = "https://www.google.com/search?q=boots"
    row = {"visitor_token": "A", "started_at": "2026-01-01T10:00:00Z", "landing_page": f"{SITE}/"}
    write_rows(
        "visits",
        [
            {**row, "visit_token": "1", "referrer": google, "referring_domain": "www.google.com"},
            {**row, "visit_token": "2", "referrer": google, "referrer_kind": "none"},
        ],
    )
    rows = referrers_report(data_dir, ReferrersQuery(by="source")).to_pylist()
    assert {r["source"]: r["visits"] for r in rows} == {"Google": 1, "(direct)": 1}


def test_a_referrer_db_click_id_the_stored_facts_lack_is_read_from_the_landing_page(
    data_dir: Path, write_rows, tmp_path: Path
) -> None:
    landing = f"{SITE}/?newclid=1"
    write_rows(
        "visits",
        [
            {
                "visit_token": "1",
                "visitor_token": "A",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": landing,
                **_collected(landing, None),
            }
        ],
    )
    extra = tmp_path / "clicks.json"
    extra.write_text('{"sources": [], "click_ids": {"newclid": "Bing"}}')
    plain = referrers_report(data_dir, ReferrersQuery()).to_pylist()
    with_db = referrers_report(data_dir, ReferrersQuery(referrer_db=(extra,))).to_pylist()
    assert [r["source"] for r in plain] == ["(direct)"]
    assert [r["source"] for r in with_db] == ["Bing"]


def test_a_path_rule_from_a_referrer_db_covers_subdomains(
    data_dir: Path, write_rows, tmp_path: Path
) -> None:
    extra = tmp_path / "docs.json"
    extra.write_text(
        '{"sources": [{"name": "Example Docs", "medium": "referral", '
        '"domains": ["example.net/docs"]}]}'
    )
    referrers = ["https://eu.example.net/docs/a", "https://example.net/blog", None]
    write_rows(
        "visits",
        [
            {
                "visit_token": str(i),
                "visitor_token": "A",
                "started_at": "2026-01-01T10:00:00Z",
                "landing_page": f"{SITE}/",
                "referrer": ref,
                **_collected(f"{SITE}/", ref),
            }
            for i, ref in enumerate(referrers)
        ],
    )
    rows = referrers_report(data_dir, ReferrersQuery(referrer_db=(extra,))).to_pylist()
    assert {r["source"]: r["visits"] for r in rows} == {
        "Example Docs": 1,
        "example.net": 1,
        "(direct)": 1,
    }


def _report_rows(data_dir: Path, query: ReferrersQuery) -> list[dict]:
    return referrers_report(data_dir, query).to_pylist()


@pytest.mark.parametrize("by", DIMENSIONS)
def test_stored_facts_and_urls_give_the_same_report(tmp_path: Path, by: str) -> None:
    """Every option over visits with stored facts equals the report over the same visits
    stored without them (read from the URLs)."""
    from trailcli.store import tables

    dirs = {}
    for facts in ("all", "none"):
        dirs[facts] = tmp_path / facts
        dirs[facts].mkdir()
        tables.bulk_write(dirs[facts], "visits", tables.to_arrow("visits", _visits(CASES, facts)))
        purchase = {"name": "purchase", "time": "2026-01-01T10:05:00Z"}
        events = [
            {**purchase, "event_id": f"e{i}", "visit_token": f"v{i}"} for i in range(0, 60, 4)
        ]
        tables.bulk_write(dirs[facts], "events", tables.to_arrow("events", events))
    queries = [
        ReferrersQuery(by=by),
        ReferrersQuery(by=by, goal="purchase"),
        ReferrersQuery(by=by, site_hosts=("example.com",), limit=5),
        ReferrersQuery(by=by, include_bots=True, start=None, end=None),
    ]
    for query in queries:
        assert _report_rows(dirs["all"], query) == _report_rows(dirs["none"], query)

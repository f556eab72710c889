"""Where visits come from: source, medium, term and channel of each visit, and the referrers report."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from trailcli import sql
from trailcli.errors import TrailError, UsageError
from trailcli.reports import event_names
from trailcli.reports.frames import fetch_arrow
from trailcli.reports.steps import parse_step
from trailcli.sources.referrer_db import ReferrerDB, builtin_db, host_regex, load_db
from trailcli.sources.referrer_facts import (
    REFERRER_SCHEMES,
    SCHEME_OF_KIND,
    click_id_of,
    is_usable_host,
    normalise_host,
    referrer_fragment,
    search_term,
    split_referrer,
)

DIRECT = "(direct)"
NONE = "(none)"
NOT_SET = "(not set)"
NOT_PROVIDED = "(not provided)"
DIMENSIONS = ("source", "medium", "channel", "domain", "term", "campaign", "landing_page")

_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_DISPLAY_MEDIUM = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIUM = frozenset({"social", "social-network", "social-media", "sm", "social network"})
_EMAIL = re.compile(r"^(email|e-mail|e_mail|e mail)$")
_SHOPPING_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")


@dataclass(frozen=True)
class Attribution:
    """What one visit is attributed to. `term`/`campaign` are None when there is none."""

    source: str
    medium: str
    channel: str
    term: str | None = None
    campaign: str | None = None
    domain: str | None = None  # the referrer host without www., None without an outside referrer


def is_site_host(host: str, site_hosts: Iterable[str]) -> bool:
    """True when `host` is one of the site's hosts or a subdomain of one."""
    return any(host == h or host.endswith("." + h) for h in site_hosts if h)


def channel_for(source: str, medium: str, campaign: str | None, category: str | None) -> str:
    """The GA4-style default channel group (docs/reports.md lists the rules in this order)."""
    medium = (medium or "").lower()
    campaign = (campaign or "").lower()
    source_l = source.lower()
    paid = bool(_PAID_MEDIUM.match(medium))
    shopping = category == "shopping" or bool(_SHOPPING_CAMPAIGN.match(campaign))
    if source == DIRECT and medium in ("", NONE, NOT_SET):
        return "Direct"
    if "cross-network" in campaign:
        return "Cross-network"
    if paid:
        if shopping:
            return "Paid Shopping"
        by_category = {"search": "Paid Search", "social": "Paid Social", "video": "Paid Video"}
        if category in by_category:
            return by_category[category]
    if medium in _DISPLAY_MEDIUM or category == "display":
        return "Display"
    if paid:
        return "Paid Other"
    if shopping:
        return "Organic Shopping"
    if category == "social" or medium in _SOCIAL_MEDIUM:
        return "Organic Social"
    if category == "video" or "video" in medium:
        return "Organic Video"
    if category == "chatbot" or medium in ("ai", "chatbot"):
        return "AI Assistants"
    if category == "search" or medium == "organic":
        return "Organic Search"
    if category == "email" or _EMAIL.match(source_l) or _EMAIL.match(medium):
        return "Email"
    if medium == "affiliate":
        return "Affiliates"
    if medium in ("referral", "app", "link"):
        return "Referral"
    if medium == "audio":
        return "Audio"
    if source_l == "sms" or medium == "sms":
        return "SMS"
    if medium.endswith("push") or "mobile" in medium or "notification" in medium:
        return "Mobile Push Notifications"
    return "Unassigned"


@dataclass(frozen=True)
class VisitKey:
    """The parts of a visit that decide its attribution (what the SQL hands to Python)."""

    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    click_id: str = ""
    ref_scheme: str = ""
    ref_host: str = ""
    ref_path: str = ""
    ref_query: str = ""  # the referrer's query, then `#` and its fragment when it has one
    search_term: str = ""  # the stored term; used when ref_query is not given


class Classifier:
    """Attributes visits with a referrer database and the site's own hosts."""

    def __init__(self, db: ReferrerDB, site_hosts: Iterable[str]) -> None:
        self.db = db
        self.site_hosts = tuple(normalise_host(h) for h in site_hosts if normalise_host(h))

    def classify(self, key: VisitKey) -> Attribution:
        """Attribution of one visit: UTM tags, then click id, then referrer, else direct."""
        campaign = key.utm_campaign or None
        if key.utm_source:
            # a tag naming a known source (`google`, `fb`, `l.facebook.com`) takes that source's
            # display name, so it counts with the visits that source's referrer brings
            source = key.utm_source.strip().lower()
            known = self.db.lookup_alias(source)
            source = known.name if known is not None else source
            medium = key.utm_medium.strip().lower() or NOT_SET
            channel = channel_for(
                source, medium, campaign, known.channel_category if known else None
            )
            return Attribution(source, medium, channel, key.utm_term or None, campaign)
        if key.click_id:
            network = self.db.click_ids.get(key.click_id.lower())
            if network is not None:
                channel = channel_for(network.name, "cpc", campaign, network.channel_category)
                return Attribution(network.name, "cpc", channel, key.utm_term or None, campaign)
        return self._from_referrer(key, campaign)

    def _from_referrer(self, key: VisitKey, campaign: str | None) -> Attribution:
        scheme = key.ref_scheme.strip().lower()
        host = normalise_host(key.ref_host)
        if scheme not in REFERRER_SCHEMES or not is_usable_host(host):
            return Attribution(DIRECT, NONE, "Direct", campaign=campaign)
        if scheme == "android-app":
            known = self.db.apps.get(host)
            if known is None:
                return Attribution(
                    f"android-app://{host}", "referral", "Referral", None, campaign, host
                )
            channel = channel_for(known.name, known.medium, campaign, known.channel_category)
            return Attribution(known.name, known.medium, channel, None, campaign, host)
        if is_site_host(host, self.site_hosts):
            return Attribution(DIRECT, NONE, "Direct", campaign=campaign)
        known = self.db.lookup_host(host, key.ref_path)
        if known is None:
            return Attribution(host, "referral", "Referral", None, campaign, host)
        query, _, fragment = key.ref_query.partition("#")
        term = search_term(known, query, fragment) if key.ref_query else key.search_term or None
        channel = channel_for(known.name, known.medium, campaign, known.channel_category)
        return Attribution(known.name, known.medium, channel, term, campaign, host)


def utm_of(landing_page: str | None) -> dict[str, str]:
    """The utm_* tags of a landing page URL, as given."""
    try:
        query = urlsplit(landing_page or "").query
    except ValueError:
        return {}
    return {k.lower(): v for k, v in reversed(parse_qsl(query)) if k.lower().startswith("utm_")}


def classify_url(
    landing_page: str | None,
    referrer: str | None,
    site_hosts: Iterable[str] | None = None,
    db: ReferrerDB | None = None,
    utm: dict[str, str | None] | None = None,
) -> Attribution:
    """Attribution of one visit from its URLs (the reference implementation of the SQL path).

    `utm` holds stored utm_* columns, which win over tags parsed from the landing page; without
    `site_hosts` the landing page's host is the site.
    """
    database = db or load_db()
    tags = utm_of(landing_page)
    tags.update({k: v for k, v in (utm or {}).items() if v})
    scheme, host, path, query = split_referrer(referrer)
    fragment = referrer_fragment(referrer)
    if site_hosts is None:
        site_hosts = [split_referrer(landing_page)[1]]
    key = VisitKey(
        utm_source=tags.get("utm_source") or "",
        utm_medium=tags.get("utm_medium") or "",
        utm_campaign=tags.get("utm_campaign") or "",
        utm_term=tags.get("utm_term") or "",
        click_id=click_id_of(landing_page, database.click_ids),
        ref_scheme=scheme,
        ref_host=host,
        ref_path=path,
        ref_query=f"{query}#{fragment}" if fragment else query,
    )
    return Classifier(database, site_hosts).classify(key)


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferrersQuery:
    by: str = "source"
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    site_hosts: tuple[str, ...] = ()
    goal: str | None = None
    include_bots: bool = False
    referrer_db: tuple[Path, ...] = ()


def _dimension_value(att: Attribution, by: str, landing_path: str) -> str:
    if by == "landing_page":
        return landing_path or "/"
    if by == "domain":
        return att.domain or NONE
    if by == "campaign":
        return att.campaign or NOT_SET
    if by == "term":
        if att.term:
            return att.term
        return NOT_PROVIDED if att.channel in ("Organic Search", "Paid Search") else NOT_SET
    return str(getattr(att, by))


def _classify_keys(
    hashes: Any,
    keys: list[VisitKey],
    landing_paths: list[str],
    landing_hosts: list[str],
    query: ReferrersQuery,
    db: ReferrerDB,
) -> tuple[Any, Any]:
    """Arrow tables (key_hash, dim_id) for each distinct key and (dim_id, dim) for each value.

    Without `query.site_hosts` the site is every host in `landing_hosts`.
    """
    import pyarrow as pa

    if len(set(hashes.to_pylist())) != len(keys):
        raise TrailError(
            "Two different referrer keys share one hash; the report cannot tell them apart.",
            "run the report over a narrower --from/--to",
        )
    site_hosts = query.site_hosts or tuple(h for h in landing_hosts if h)
    classifier = Classifier(db, site_hosts)
    ids: dict[str, int] = {}
    dim_ids = []
    for key, landing_path in zip(keys, landing_paths, strict=True):
        dim = _dimension_value(classifier.classify(key), query.by, landing_path)
        dim_ids.append(ids.setdefault(dim, len(ids)))
    key_table = pa.table({"key_hash": hashes, "dim_id": pa.array(dim_ids, pa.int32())})
    dim_table = pa.table(
        {"dim_id": pa.array(list(ids.values()), pa.int32()), "dim": pa.array(list(ids))}
    )
    return key_table, dim_table


def _stored_key(row: dict[str, Any]) -> VisitKey:
    """The classifier's key for a row of referrers_stored_keys (text trimmed as the URL path does)."""
    kind = row["referrer_kind"]

    def text(name: str) -> str:
        return (row[name] or "").strip()

    return VisitKey(
        utm_source=text("utm_source").lower(),
        utm_medium=text("utm_medium"),
        utm_campaign=text("utm_campaign"),
        utm_term=text("utm_term"),
        click_id=row["click_id"] or "",
        ref_scheme=SCHEME_OF_KIND.get(kind, ""),
        ref_host=(row["referring_domain"] or "") if kind in SCHEME_OF_KIND else "",
        ref_path=row["referrer_path_rule"] or "",
        search_term=row["search_term"] or "",
    )


def _goal_visits_sql(goal: str | None) -> tuple[str, dict[str, Any]]:
    """The statement listing visits with the goal event (none without a goal), with its params."""
    if not goal:
        return sql.load("referrers_goal_empty"), {}
    from trailcli.reports.steps import Params, parse_step, step_sql

    step = parse_step(goal)
    params = Params("g")
    predicate = step_sql(step, params, event="e", visit="gv")
    join = "LEFT JOIN visits AS gv ON gv.visit_token = e.visit_token " if step.needs_visit else ""
    statement = f"SELECT DISTINCT e.visit_token FROM events AS e {join}WHERE {predicate}"
    return statement, params.values


GOAL_FRAGMENT = "(visit_token IN (SELECT visit_token FROM _goal_visits))"


def _click_regex(click_ids: Iterable[str]) -> str:
    """A case-insensitive regex whose group 1 is the first known click id with a value."""
    names = "|".join(re.escape(c) for c in sorted(click_ids, key=lambda c: (-len(c), c)))
    return f"(?i)[?&]({names})=[^&#]"


def _path_host_regex(hosts: Iterable[str]) -> str:
    """A regex matching a referrer authority on one of `hosts` or a subdomain of one ('' for no
    hosts); a `*` in a host stands for what Matomo's `{}` does (referrer_db.host_regex). It may
    match more than the rules need (a port, user info): the classifier decides."""
    if not hosts:
        return ""
    names = "|".join(host_regex(h) for h in sorted(hosts))
    return f"(?i)(^|[.@])({names})\\.?(:[0-9]*)?$"


def _stored_facts_suffice(query: ReferrersQuery, db: ReferrerDB) -> bool:
    """True when the stored source facts hold all the report needs: they were made with the
    package's own list, so a --referrer-db list with more click ids, path rules, or (for --by
    term) search parameters needs the URLs, and so does --by landing_page."""
    if query.by == "landing_page" or (query.by == "term" and query.referrer_db):
        return False
    builtin = builtin_db()
    rules = {(h, p) for h, entries in db.paths.items() for p, _ in entries}
    builtin_rules = {(h, p) for h, entries in builtin.paths.items() for p, _ in entries}
    return set(db.click_ids) <= set(builtin.click_ids) and rules <= builtin_rules


def _query_params(query: ReferrersQuery) -> dict[str, Any]:
    return {
        "since": query.start,
        "until": query.end,
        "include_bots": query.include_bots,
        "with_query": query.by == "term",
    }


def _with_goal(statement: str, goal: str | None) -> str:
    """The statement as is with a goal; without one the goal test is the constant false."""
    return statement if goal else statement.replace(GOAL_FRAGMENT, "false")


def _report_from_stored_facts(con: Any, query: ReferrersQuery, db: ReferrerDB) -> Any | None:
    """The report from the stored source facts only; None when some visit in range has none
    (stored before they existed)."""
    import pyarrow.compute as pc

    found = fetch_arrow(con, sql.load("referrers_stored_keys"), _query_params(query))
    is_key = pc.equal(found.column("kind"), "key")
    key_rows = found.filter(is_key)
    keys = key_rows.to_pylist()
    if any(r["referrer_kind"] is None for r in keys):
        return None
    hosts = found.filter(pc.invert(is_key)).column("landing_host").to_pylist()
    key_table, dim_table = _classify_keys(
        key_rows.column("key_hash"),
        [_stored_key(r) for r in keys],
        [""] * len(keys),
        hosts,
        query,
        db,
    )
    con.register("_ref_keys", key_table)
    con.register("_ref_dims", dim_table)
    statement = _with_goal(sql.load("referrers_stored_by_dimension"), query.goal)
    return _report_rows(con, statement, _query_params(query), query.limit)


def _report_from_urls(con: Any, query: ReferrersQuery, db: ReferrerDB) -> Any:
    """The report with the source parts worked out from the URLs where a row has no stored facts
    (and everywhere the stored facts do not suffice)."""
    facts_suffice = _stored_facts_suffice(query, db)
    params = {
        **_query_params(query),
        "with_landing_path": query.by == "landing_page",
        "with_landing_host": not query.site_hosts,
        "click_re": _click_regex(db.click_ids),
        "path_re": _path_host_regex(db.paths),
        "click_from_url": not facts_suffice,
        "query_from_url": query.by == "term" and bool(query.referrer_db),
    }
    from trailcli.store import views

    groups_sql = _with_goal(sql.load("referrers_groups"), query.goal)
    views.run(con, f"CREATE TEMP TABLE _ref_groups AS {groups_sql}", params)
    found = fetch_arrow(con, sql.load("referrers_keys"))
    hosts = fetch_arrow(con, sql.load("referrers_landing_hosts"))
    fields = VisitKey.__dataclass_fields__
    rows = found.to_pylist()
    key_table, dim_table = _classify_keys(
        found.column("key_hash"),
        [VisitKey(**{f: r[f] for f in fields}) for r in rows],
        [r["landing_path"] for r in rows],
        hosts.column(0).to_pylist(),
        query,
        db,
    )
    con.register("_ref_keys", key_table)
    con.register("_ref_dims", dim_table)
    return _report_rows(con, sql.load("referrers_by_dimension"), {}, query.limit)


def _report_rows(con: Any, grouped_sql: str, params: dict[str, Any], limit: int | None) -> Any:
    """The report's rows from a statement giving (dim_id, visits, visitors, conversions)."""
    from trailcli.store import views

    views.run(con, f"CREATE TEMP TABLE _ref_grouped AS {grouped_sql}", params)
    return fetch_arrow(con, sql.load("referrers_rows"), {"limit": limit})


def referrers_report(
    data_dir: Path, query: ReferrersQuery, on_absent: event_names.OnAbsent | None = None
) -> Any:
    """Visits, visitors and share per value of `query.by` (and goal conversions), as Arrow.

    Rows are ordered by visits (most first), then by the dimension value. Visits with stored
    source facts are grouped by those short columns; the URLs are read only when some visit in
    range has none or the facts do not suffice (_stored_facts_suffice). `on_absent` gets the
    goal when no event in the range has its name (event_names.check).
    """
    if query.by == "day":
        return _by_day(data_dir, query, on_absent)
    if query.by not in DIMENSIONS:
        raise UsageError(
            f"Unknown --by {query.by!r}.", f"use one of {', '.join(DIMENSIONS)} or day"
        )
    from trailcli.store import views
    from trailcli.store.layout import Days

    db = load_db(query.referrer_db)
    goal_statement, goal_params = _goal_visits_sql(query.goal)
    # visits are partitioned by `started_at`, the column the range filters: only its days are read
    days = Days.covering(query.start, query.end)
    con = views.connect(
        data_dir,
        need=("visits",),
        start=query.start,
        end=query.end,
        dates={"visits": days},
        read=("visits", "identities", *(("events",) if query.goal else ())),  # no goal: no events
    )
    if query.goal:
        goal = [("--goal", parse_step(query.goal))]
        event_names.check(con, goal, query.start, query.end, on_absent)
    views.run(con, f"CREATE TEMP TABLE _goal_visits AS {goal_statement}", goal_params)
    result = None
    if _stored_facts_suffice(query, db):
        result = _report_from_stored_facts(con, query, db)
    if result is None:
        result = _report_from_urls(con, query, db)
    result = result.rename_columns([query.by, *result.column_names[1:]])
    if not query.goal:
        result = result.drop_columns(["conversions", "conversion_rate"])
    return result


def _by_day(data_dir: Path, query: ReferrersQuery, on_absent: event_names.OnAbsent | None) -> Any:
    """Visits, visitors and share per UTC day (and goal conversions); purged days from the
    figures kept for them (without a goal, bots left out)."""
    import pyarrow as pa

    from trailcli.reports.daily import merged_by_day
    from trailcli.store import views
    from trailcli.store.layout import Days

    def raw() -> list[dict[str, Any]]:
        days = Days.covering(query.start, query.end)
        con = views.connect(
            data_dir, need=("visits",), start=query.start, end=query.end, dates={"visits": days}
        )
        if query.goal:
            goal = [("--goal", parse_step(query.goal))]
            event_names.check(con, goal, query.start, query.end, on_absent)
        goal_statement, goal_params = _goal_visits_sql(query.goal)
        views.run(con, f"CREATE TEMP TABLE _goal_visits AS {goal_statement}", goal_params)
        params = {"since": query.start, "until": query.end, "include_bots": query.include_bots}
        return list(fetch_arrow(con, sql.load("referrers_by_day"), params).to_pylist())

    def from_kept(k: dict[str, Any]) -> dict[str, Any] | None:
        if k["visits"] is None:
            return None
        return {"day": k["date"], "visits": k["visits"], "visitors": k["visitors"]}

    counted_as_kept = not query.include_bots and not query.goal
    rows = merged_by_day(
        data_dir, "visits", query.start, query.end, raw, from_kept, counted_as_kept
    )
    total = sum(r["visits"] for r in rows)
    for r in rows:
        r["share"] = r["visits"] / total if total else None
        if query.goal:
            r["conversion_rate"] = r["conversions"] / r["visits"] if r["visits"] else None
    fields = [("day", pa.string()), ("visits", pa.int64()), ("visitors", pa.int64())]
    fields.append(("share", pa.float64()))
    if query.goal:
        fields += [("conversions", pa.int64()), ("conversion_rate", pa.float64())]
    return pa.Table.from_pylist(rows[: query.limit], schema=pa.schema(fields))

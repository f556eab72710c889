"""Arrow tables of the four log kinds from a cohort's numeric traffic and client sessions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trailcli.sample import catalog
from trailcli.sample.ids import arrow_strings, numeric_strings, prefix, uuid4s
from trailcli.sample.presence import OFFLINE_REASONS, Sessions
from trailcli.sample.traffic import (
    DAY,
    DUPLICATE_SHARE,
    EVENT_NAMES,
    LATE_SHARE,
    MINUTE,
    SECOND,
    VIEW,
    Traffic,
    all_agents,
)
from trailcli.sources.referrer_facts import FACT_COLUMNS, source_facts
from trailcli.store.schema import KINDS

TS = pa.timestamp("us", tz="UTC")
SOURCES = ("api", "user_token")


def times(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.int64()).cast(TS)


def _nulls(n: int, type_: pa.DataType = pa.string()) -> pa.Array:
    return pa.nulls(n, type=type_)


def _pool(values: Sequence[str | None]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _finish(kind: str, columns: dict[str, pa.Array]) -> pa.Table:
    """The kind's stored table: missing columns null, plus the UTC `date` partition column."""
    k = KINDS[kind]
    n = len(next(iter(columns.values())))
    arrays = [columns.get(f.name, _nulls(n, f.type)) for f in k.schema]
    arrays.append(utc_dates(columns[k.time_column]))
    return pa.Table.from_arrays(arrays, schema=k.table_schema)


def utc_dates(stamps: pa.Array) -> pa.Array:
    """`YYYY-MM-DD` of each timestamp, looked up per day (formatting each row is slow)."""
    days = np.floor_divide(stamps.cast(pa.int64()).to_numpy(), DAY)
    if not len(days):
        return pa.array([], pa.string())
    first = int(days.min())
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    names = [
        (epoch + timedelta(days=first + i)).date().isoformat()
        for i in range(int(days.max()) - first + 1)
    ]
    return pa.array(names, pa.string()).take(pa.array(days - first))


@cache
def referrer_pool() -> pa.Array:
    """Referrer URL per (referrer, search term) pair: index ref * n_terms + term."""
    return _pool(
        [
            catalog.search_referrer(ref, term)
            for ref in catalog.REFERRERS
            for term in catalog.SEARCH_TERMS
        ]
    )


@cache
def source_fact_pools() -> dict[str, pa.Array]:
    """The stored source facts per (referrer, search term) pair, same index as referrer_pool(),
    worked out from the URLs by the collector's own function (a click id gets a stand-in value)."""
    facts = [
        source_facts(
            catalog.search_referrer(ref, term),
            f"{catalog.SITE}/?{ref.query}{'Cj0K' if ref.click_id else ''}",
        )
        for ref in catalog.REFERRERS
        for term in catalog.SEARCH_TERMS
    ]
    return {name: _pool([f[name] for f in facts]) for name in FACT_COLUMNS}


@cache
def landing_pool() -> pa.Array:
    """Landing URL (click id value not yet appended) per (page, referrer): page * n_refs + ref."""
    pages = catalog.pages()
    return _pool(
        [
            catalog.SITE + path + (f"?{ref.query}" if ref.query else "")
            for path in pages.paths
            for ref in catalog.REFERRERS
        ]
    )


def landing_pages(traffic: Traffic) -> pa.Array:
    """Each visit's absolute landing URL, with a click id value where its referrer has one."""
    v = traffic.visits
    n_refs = len(catalog.REFERRERS)
    base = landing_pool().take(pa.array(v.landing * n_refs + v.referrer))
    has_click = np.array([r.click_id is not None for r in catalog.REFERRERS])[v.referrer]
    value = arrow_strings(prefix(v.token, 8))
    click = pc.if_else(pa.array(has_click), pc.binary_join_element_wise("Cj0K", value, ""), "")
    return pc.binary_join_element_wise(base, click, "")


def visits_table(seed: int, day_index: int, traffic: Traffic) -> pa.Table:
    """One row per visit: tokens, device parsed from the user agent, place, referrer and UTM tags
    of the landing page, the user when logged in from the start."""
    rng = np.random.default_rng([seed, day_index, 10])
    v, who = traffic.visits, traffic.visitors
    n = len(v.start)
    visitor_tokens = arrow_strings(who.token).take(pa.array(v.visitor))
    agent_idx = pa.array(who.agent[v.visitor])
    agents = all_agents()
    place_idx = pa.array(who.place[v.visitor])
    refs = pa.array(v.referrer)
    ref_terms = pa.array(v.referrer * len(catalog.SEARCH_TERMS) + v.term)
    user = who.user[v.visitor]
    screen_w, screen_h, has_screen = _screens(
        rng, [agents[i].device_type for i in range(len(agents))], who.agent[v.visitor]
    )
    utm = {key: _pool([catalog.utm_params(r).get(key) for r in catalog.REFERRERS]) for key in _UTM}
    columns = {
        "visit_token": arrow_strings(v.token),
        "visitor_token": visitor_tokens,
        "user_id": numeric_strings(user, v.login_mode != 1),
        "started_at": times(v.start),
        "ip": _ip_pool().take(pa.array(who.ip[v.visitor])),
        "user_agent": _pool([a.ua for a in agents]).take(agent_idx),
        "referrer": referrer_pool().take(ref_terms),
        "referring_domain": _pool([catalog.host(r) for r in catalog.REFERRERS]).take(refs),
        **{name: pool.take(ref_terms) for name, pool in source_fact_pools().items()},
        "landing_page": landing_pages(traffic),
        "browser": _pool([a.browser for a in agents]).take(agent_idx),
        "os": _pool([a.os for a in agents]).take(agent_idx),
        "device_type": _pool([a.device_type for a in agents]).take(agent_idx),
        "country": _pool([p[0] for p in catalog.PLACES]).take(place_idx),
        "region": _pool([p[1] for p in catalog.PLACES]).take(place_idx),
        "city": _pool([p[2] for p in catalog.PLACES]).take(place_idx),
        "latitude": pa.array([p[3] for p in catalog.PLACES], pa.float64()).take(place_idx),
        "longitude": pa.array([p[4] for p in catalog.PLACES], pa.float64()).take(place_idx),
        **{key: col.take(refs) for key, col in utm.items()},
        "platform": _constant("Web", n),
        "os_version": _pool([a.os_version for a in agents]).take(agent_idx),
        "screen_width": pa.array(screen_w, pa.int32(), mask=~has_screen),
        "screen_height": pa.array(screen_h, pa.int32(), mask=~has_screen),
    }
    return _finish("visits", columns)


_UTM = ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")


def _screens(
    rng: np.random.Generator, device_types: list[str], agent: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen width and height by device type, and where there is a screen at all."""
    width = np.zeros(len(agent), np.int32)
    height = np.zeros(len(agent), np.int32)
    pick = rng.integers(0, 12, len(agent))
    device = np.array(device_types)[agent]
    for name, sizes in catalog.SCREENS.items():
        mine = device == name
        chosen = np.array(sizes, np.int32)[pick[mine] % len(sizes)]
        width[mine], height[mine] = chosen[:, 0], chosen[:, 1]
    return width, height, np.isin(device, list(catalog.SCREENS))


@cache
def _ip_pool() -> pa.Array:
    nets = ("192.0.2", "198.51.100", "203.0.113")
    return _pool([f"{net}.{host}" for net in nets for host in range(1, 255)])


@cache
def _event_property_pools() -> tuple[pa.Array, pa.Array]:
    """JSON properties of a view of each page, and of each (product, funnel event) pair."""
    pages = catalog.pages()
    views = _pool(
        [catalog.view_properties(p, t) for p, t in zip(pages.paths, pages.titles, strict=True)]
    )
    tails: list[str | None] = []
    for product, page in enumerate(pages.page_of_product):
        slug = pages.paths[page].removeprefix("/product/")
        price = int(pages.price_cents[product]) / 100
        tails += [
            None,
            json.dumps({"product_id": slug, "price": price, "quantity": 1}, separators=(",", ":")),
            json.dumps({"cart_value": price, "currency": "EUR"}, separators=(",", ":")),
            json.dumps(
                {"order_value": price, "currency": "EUR", "product_id": slug}, separators=(",", ":")
            ),
        ]
    return views, _pool(tails)


def event_ids(seed: int, day_index: int, n: int) -> np.ndarray:
    """The cohort's event ids (UUID-4), drawn from their own stream."""
    return uuid4s(np.random.default_rng([seed, day_index, 11]), n)


def events_table(seed: int, day_index: int, traffic: Traffic, ids: np.ndarray) -> pa.Table:
    """Events with late arrivals and duplicates (same event_id and time, later received_at)."""
    rng = np.random.default_rng([seed, day_index, 12])
    e, v, who = traffic.events, traffic.visits, traffic.visitors
    n = len(e.time)
    visit = pa.array(e.visit)
    props = _event_properties(traffic)
    user = who.user[v.visitor[e.visit]]
    login = v.login_at[e.visit]
    delay = rng.uniform(0.05, 2.0, n) * SECOND
    late = rng.random(n) < LATE_SHARE
    delay = np.where(late, rng.uniform(1, 360, n) * MINUTE, delay).astype(np.int64)
    table = _finish(
        "events",
        {
            "event_id": arrow_strings(ids),
            "visit_token": arrow_strings(v.token).take(visit),
            "visitor_token": arrow_strings(who.token).take(pa.array(v.visitor[e.visit])),
            "user_id": numeric_strings(user, (login < 0) | (e.time < login)),
            "name": _pool(list(EVENT_NAMES)).take(pa.array(e.kind)),
            "properties": props,
            "time": times(e.time),
            "received_at": times(e.time + delay),
        },
    )
    dup = np.flatnonzero(rng.random(n) < DUPLICATE_SHARE)
    resent = table.take(pa.array(dup))
    later = (rng.uniform(1, 600, len(dup)) * SECOND).astype(np.int64)
    received = times(e.time[dup] + delay[dup] + later)
    resent = resent.set_column(
        resent.schema.get_field_index("received_at"), "received_at", received
    )
    return pa.concat_tables([table, resent])


def _event_properties(traffic: Traffic) -> pa.Array:
    """Each event's JSON properties: a page's view, a product's cart/checkout/purchase, or the
    landing view with its full URL (query included), all taken from one pool in one pass."""
    e, v = traffic.events, traffic.visits
    pages = catalog.pages()
    views, tails = _event_property_pools()
    url = landing_pages(traffic)
    path = _pool(pages.paths).take(pa.array(v.landing))
    title = _pool(pages.titles).take(pa.array(v.landing))
    landing = pc.binary_join_element_wise(
        '{"url":"', url, '","page":"', path, '","title":"', title, '"}', ""
    )
    pool = pa.concat_arrays([views, tails, landing])
    index = np.where(e.kind == VIEW, e.page, len(views) + np.maximum(e.product, 0) * 4 + e.kind)
    index = np.where(e.first_of_visit, len(views) + len(tails) + e.visit, index)
    return pool.take(pa.array(index))


def identities_table(traffic: Traffic, end: int) -> pa.Table:
    v, who = traffic.visits, traffic.visitors
    rows = np.flatnonzero((v.login_at >= 0) & (v.login_at < end))
    idx = pa.array(rows)
    return _finish(
        "identities",
        {
            "time": times(v.login_at[rows]),
            "visit_token": arrow_strings(v.token).take(idx),
            "visitor_token": arrow_strings(who.token).take(pa.array(v.visitor[rows])),
            "user_id": numeric_strings(who.user[v.visitor[rows]]),
            "source": _pool(list(SOURCES)).take(pa.array(v.login_source[rows])),
            "node_id": _pool(list(catalog.NODES)).take(pa.array(v.identity_node[rows])),
        },
    )


def presence_table(traffic: Traffic, s: Sessions, anonymous: np.ndarray) -> pa.Table:
    """Online, subscribe and offline rows of each session (no seq yet: the writer numbers them)."""
    v, who = traffic.visits, traffic.visitors
    login = v.login_at[s.visit]
    user = np.where((login >= 0) & (login <= s.start), who.user[v.visitor[s.visit]], -1)
    anon = anonymous[s.visit]
    visit_tokens = arrow_strings(v.token).take(pa.array(s.visit))
    visitor_tokens = arrow_strings(who.token).take(pa.array(v.visitor[s.visit]))
    missing = pa.array(anon)
    no_text = pa.scalar(None, pa.string())
    common = {
        "node_id": _pool(list(catalog.NODES)).take(pa.array(s.node)),
        "client_id": arrow_strings(s.client),
        "visit_token": pc.if_else(missing, no_text, visit_tokens),
        "visitor_token": pc.if_else(missing, no_text, visitor_tokens),
        "user_id": numeric_strings(user, (user < 0) | anon),
    }
    n = len(s.start)
    reasons = _pool(list(OFFLINE_REASONS)).take(pa.array(np.maximum(s.reason, 0)))
    online = {"time": s.start, "transition": "online", "reason": _constant("handshake", n)}
    subscribe = {
        "time": s.sub_at,
        "transition": "subscribe",
        "channel": _constant(catalog.CHANNEL, n),
    }
    offline = {"time": s.off, "transition": "offline", "reason": reasons, "detected_at": s.detected}
    parts = [
        _presence_rows(common, online, np.ones(n, bool)),
        _presence_rows(common, subscribe, s.sub_at >= 0),
        _presence_rows(common, offline, s.off >= 0),
    ]
    return pa.concat_tables(parts)


def _constant(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, np.int64)))


def _presence_rows(
    common: dict[str, pa.Array], own: dict[str, object], mask: np.ndarray
) -> pa.Table:
    """One presence row per session where `mask` holds: shared columns plus this transition's."""
    rows = pa.array(np.flatnonzero(mask))
    n = len(rows)
    at = np.asarray(own["time"])[mask]
    detected = np.asarray(own.get("detected_at", own["time"]))[mask]
    columns = {name: col.take(rows) for name, col in common.items()}
    for name in ("reason", "channel"):
        col = own.get(name)
        if isinstance(col, pa.Array):
            columns[name] = col.take(rows)
    columns.update(
        time=times(at),
        seq=pa.array(np.zeros(n, np.int64)),
        transition=_constant(str(own["transition"]), n),
        detected_at=times(detected),
    )
    return _finish("presence", columns)


def heartbeat_table(node: str, beats: np.ndarray) -> pa.Table:
    n = len(beats)
    return _finish(
        "presence",
        {
            "time": times(beats),
            "seq": pa.array(np.zeros(n, np.int64)),
            "node_id": _constant(node, n),
            "transition": _constant("heartbeat", n),
            "detected_at": times(beats),
        },
    )

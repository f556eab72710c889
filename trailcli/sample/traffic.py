"""Numeric traffic of one cohort of visitors: their visits and events, drawn with numpy.

A cohort is every visitor whose first visit falls on one day; their later visits follow within
`RETURN_WINDOW_DAYS`. Times are integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trailcli.sample import catalog

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
RETURN_WINDOW_DAYS = 14

HUMAN, BOT, SCRIPT = 0, 1, 2
VIEW, ADD_TO_CART, CHECKOUT, PURCHASE = 0, 1, 2, 3
EVENT_NAMES = ("$view", "add_to_cart", "checkout", "purchase")
LOGIN_NONE, LOGIN_AT_START, LOGIN_MID_VISIT = 0, 1, 2
SOURCE_API, SOURCE_USER_TOKEN = 0, 1

BOT_SHARE = 0.03
SCRIPT_SHARE = 0.005
REGISTERED_SHARE = 0.3
LATE_SHARE = 0.01
DUPLICATE_SHARE = 0.005
ZIPF_S = 1.1
PRODUCT_VIEW_SHARE = 0.15  # share of views that land on a product page by browsing

# diurnal rhythm: weight of each UTC hour, peaking mid-afternoon
HOUR_WEIGHTS = 1 + 0.8 * np.sin(2 * np.pi * (np.arange(24) - 9) / 24)
HOUR_P = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()


@dataclass
class Visitors:
    token: np.ndarray  # S36
    kind: np.ndarray  # HUMAN, BOT, SCRIPT
    agent: np.ndarray  # index into `all_agents()`
    place: np.ndarray
    ip: np.ndarray  # int64 host number inside the documentation ranges
    user: np.ndarray  # int64 user number, -1 for never registered


@dataclass
class Visits:
    visitor: np.ndarray
    start: np.ndarray  # µs
    token: np.ndarray  # S36
    referrer: np.ndarray  # index into catalog.REFERRERS
    term: np.ndarray  # index into catalog.SEARCH_TERMS
    landing: np.ndarray  # page index of the first view
    login_mode: np.ndarray
    login_at: np.ndarray  # µs, -1 when the visit never logs in
    login_source: np.ndarray
    identity_node: np.ndarray
    last_activity: np.ndarray  # µs of the visit's last event (even past the range end)


@dataclass
class Events:
    visit: np.ndarray
    time: np.ndarray  # µs
    kind: np.ndarray  # VIEW .. PURCHASE
    page: np.ndarray  # page index for views, -1 otherwise
    product: np.ndarray  # product index for cart/checkout/purchase, -1 for views
    first_of_visit: np.ndarray  # bool: the landing view


@dataclass
class Traffic:
    visitors: Visitors
    visits: Visits
    events: Events  # only events with time < range end


def all_agents() -> tuple[catalog.Agent, ...]:
    humans, bots, script = catalog.agents()
    return (*humans, *bots, script)


def zipf_cdf(n: int, s: float = ZIPF_S) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """`n` indices drawn from the distribution with cumulative weights `cdf`."""
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microseconds into a UTC day, following the diurnal rhythm."""
    hours = rng.choice(24, size=n, p=HOUR_P)
    return hours * HOUR + (rng.random(n) * HOUR).astype(np.int64)


def group_starts(counts: np.ndarray) -> np.ndarray:
    """Where each consecutive group of the given sizes starts."""
    return (np.cumsum(counts) - counts).astype(np.int64)


def position_in_group(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... within each consecutive group of the given sizes."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(group_starts(counts), counts)


def make_visitors(rng: np.random.Generator, n: int, user_base: int) -> Visitors:
    humans, bots, _ = catalog.agents()
    u = rng.random(n)
    kind = np.where(u < BOT_SHARE, BOT, np.where(u < BOT_SHARE + SCRIPT_SHARE, SCRIPT, HUMAN))
    human_cdf = np.cumsum([a.weight for a in humans]) / sum(a.weight for a in humans)
    bot_cdf = np.cumsum([a.weight for a in bots]) / sum(a.weight for a in bots)
    agent = np.where(
        kind == HUMAN,
        draw(rng, human_cdf, n),
        np.where(kind == BOT, len(humans) + draw(rng, bot_cdf, n), len(humans) + len(bots)),
    )
    place_w = np.array([p[5] for p in catalog.PLACES], dtype=np.float64)
    place = draw(rng, np.cumsum(place_w) / place_w.sum(), n)
    registered = (kind == HUMAN) & (rng.random(n) < REGISTERED_SHARE)
    user = np.where(registered, user_base + np.arange(n), -1)
    ip = rng.integers(0, 3 * 254, size=n)
    from trailcli.sample.ids import uuid4s

    return Visitors(uuid4s(rng, n), kind, agent, place, ip, user)


def visit_counts(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Visits per visitor: mean about 2.7 for people, fewer for bots and scripts."""
    n = len(kind)
    human = rng.geometric(0.6, n) + rng.geometric(0.5, n) - 1
    return np.where(kind == HUMAN, human, rng.geometric(0.7, n))


def make_visits(
    rng: np.random.Generator,
    visitors: Visitors,
    day_index: int,
    range_start: int,
    days: int,
) -> tuple[Visits, np.ndarray]:
    """Every visit of the cohort inside the range; also returns each visit's visitor kind."""
    counts = visit_counts(rng, visitors.kind)
    visitor = np.repeat(np.arange(len(counts)), counts)
    k = position_in_group(counts)
    tod = time_of_day(rng, len(visitor))
    gap_days = rng.geometric(0.4, len(visitor)) - 1
    prev_tod = np.concatenate(([0], tod[:-1]))
    gap_days = np.where((k > 0) & (gap_days == 0) & (tod < prev_tod + HOUR), 1, gap_days)
    gap_days[k == 0] = 0
    cum = np.cumsum(gap_days)
    day_rel = cum - np.repeat(cum[group_starts(counts)], counts)
    keep = (day_rel <= RETURN_WINDOW_DAYS) & (day_index + day_rel < days)
    visitor, k, tod, day_rel = visitor[keep], k[keep], tod[keep], day_rel[keep]
    start = range_start + (day_index + day_rel) * DAY + tod
    n = len(visitor)
    vkind = visitors.kind[visitor]
    from trailcli.sample.ids import uuid4s

    token = uuid4s(rng, n)
    ref = draw(rng, np.cumsum(catalog.referrer_weights()), n)
    ref = np.where(vkind == HUMAN, ref, 0)  # crawlers and scripts come without a referrer
    term = rng.integers(0, len(catalog.SEARCH_TERMS), n)
    registered = visitors.user[visitor] >= 0
    u = rng.random(n)
    login_mode = np.where(
        ~registered, LOGIN_NONE, np.where(u < 0.45, LOGIN_AT_START, np.where(u < 0.8, 2, 0))
    )
    login_source = np.where(
        login_mode == LOGIN_AT_START, SOURCE_API, (rng.random(n) < 0.6).astype(np.int64)
    )
    visits = Visits(
        visitor=visitor,
        start=start,
        token=token,
        referrer=ref,
        term=term,
        landing=np.zeros(n, dtype=np.int64),
        login_mode=login_mode,
        login_at=np.full(n, -1, dtype=np.int64),
        login_source=login_source,
        identity_node=rng.integers(0, len(catalog.NODES), n),
        last_activity=start.copy(),
    )
    return visits, vkind


def _funnel_tails(
    rng: np.random.Generator, vkind: np.ndarray, returning: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per visit: whether a product view opens a funnel, the first tail kind, the tail length."""
    n = len(vkind)
    human = vkind == HUMAN
    product = human & (rng.random(n) < 0.35)
    resume = human & ~product & returning & (rng.random(n) < 0.06)
    add = product & (rng.random(n) < 0.30)
    checkout = (add & (rng.random(n) < 0.55)) | resume
    purchase = checkout & (rng.random(n) < 0.65)
    tail = add.astype(np.int64) + checkout + purchase
    first_kind = np.where(resume, CHECKOUT, ADD_TO_CART)
    return product, first_kind, tail


def make_events(
    rng: np.random.Generator, visits: Visits, vkind: np.ndarray, returning: np.ndarray, end: int
) -> Events:
    """The events of each visit (views with a funnel tail after one product view)."""
    pages = catalog.pages()
    n_visits = len(vkind)
    views = np.where(vkind == BOT, rng.geometric(0.1, n_visits), rng.geometric(0.25, n_visits))
    product, first_kind, tail = _funnel_tails(rng, vkind, returning)
    anchor = (rng.random(n_visits) * views).astype(np.int64)  # the view the tail follows
    counts = views + tail
    visit = np.repeat(np.arange(n_visits), counts)
    pos = position_in_group(counts)
    a = anchor[visit]
    in_tail = (pos > a) & (pos <= a + tail[visit])
    kind = np.where(in_tail, first_kind[visit] + (pos - a - 1), VIEW)
    n = len(visit)
    others = np.flatnonzero(pages.product_of_page < 0)
    browse = others[draw(rng, zipf_cdf(len(others)), n)]
    product_view = pages.page_of_product[draw(rng, zipf_cdf(len(pages.page_of_product)), n)]
    page = np.where(rng.random(n) < PRODUCT_VIEW_SHARE, product_view, browse)
    visit_product = draw(rng, zipf_cdf(len(pages.page_of_product)), n_visits)
    forced = (pos == a) & product[visit]
    page = np.where(forced, pages.page_of_product[visit_product[visit]], page)
    page = np.where(kind == VIEW, page, -1)
    product_idx = np.where(kind == VIEW, -1, visit_product[visit])
    bot_gap = (rng.uniform(0.5, 3.0, n) * SECOND).astype(np.int64)
    human_gap = np.clip(rng.lognormal(np.log(30), 1.0, n), 0.2, 1500) * SECOND
    gap = np.where(vkind[visit] == HUMAN, human_gap.astype(np.int64), bot_gap)
    gap[pos == 0] = 0
    cum = np.cumsum(gap)
    time = visits.start[visit] + cum - np.repeat(cum[group_starts(counts)], counts)
    visits.landing[:] = page[group_starts(counts)]
    visits.last_activity[:] = time[np.cumsum(counts) - 1]
    _logins(rng, visits, counts, time)
    keep = time < end
    return Events(
        visit=visit[keep],
        time=time[keep],
        kind=kind[keep],
        page=page[keep],
        product=product_idx[keep],
        first_of_visit=(pos == 0)[keep],
    )


def _logins(rng: np.random.Generator, visits: Visits, counts: np.ndarray, time: np.ndarray) -> None:
    """Set each logging-in visit's login time: at its start, or just before a later event."""
    starts = group_starts(counts)
    mid_pos = 1 + (rng.random(len(counts)) * np.maximum(counts - 1, 1)).astype(np.int64)
    mid_pos = np.minimum(mid_pos, counts - 1)
    before = (rng.uniform(0.2, 5.0, len(counts)) * SECOND).astype(np.int64)
    mid_at = np.maximum(time[starts + mid_pos] - before, visits.start)
    visits.login_at[:] = np.where(
        visits.login_mode == LOGIN_AT_START,
        visits.start,
        np.where(visits.login_mode == LOGIN_MID_VISIT, mid_at, -1),
    )


def cohort(
    seed: int, day_index: int, n_visitors: int, range_start: int, days: int, user_base: int
) -> Traffic:
    """Visitors whose first visit is on day `day_index`, their visits and events (numeric)."""
    rng = np.random.default_rng([seed, day_index, 0])
    visitors = make_visitors(rng, n_visitors, user_base)
    visits, vkind = make_visits(rng, visitors, day_index, range_start, days)
    returning = position_in_group(np.bincount(visits.visitor, minlength=n_visitors)) > 0
    end = range_start + days * DAY
    events = make_events(rng, visits, vkind, returning, end)
    return Traffic(visitors, visits, events)

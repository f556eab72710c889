"""The fixed vocabularies the sample generator draws from: pages, referrers, user agents, places."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote_plus

import numpy as np

SITE_HOST = "shop.example.com"
SITE = f"https://{SITE_HOST}"
CHANNEL = "/live/updates"
NODES = ("web-1", "web-2", "web-3")

_CATEGORIES = (
    "shoes", "jackets", "backpacks", "tents", "socks", "headlamps", "bottles", "gloves",
    "hats", "trousers", "shirts", "poles", "maps", "stoves", "sleeping-bags", "watches",
)  # fmt: skip
_ADJECTIVES = (
    "alpine", "trail", "summit", "coastal", "forest", "urban", "desert", "glacier",
    "canyon", "prairie", "ridge", "river", "storm", "sunrise", "midnight", "meadow",
)  # fmt: skip
_BLOG_WORDS = (
    "guide", "review", "tips", "checklist", "story", "how-to", "packing", "weekend",
)  # fmt: skip
SEARCH_TERMS = (
    "trail running shoes", "waterproof jacket", "lightweight tent", "hiking socks",
    "best headlamp 2026", "merino base layer", "ultralight backpack", "camping stove",
    "gore-tex boots sale", "kids rain jacket", "sleeping bag -10", "trekking poles",
)  # fmt: skip


@dataclass(frozen=True)
class Pages:
    """The site's pages. Index order is popularity rank (0 = most viewed)."""

    paths: list[str]
    titles: list[str]
    product_of_page: np.ndarray  # page index -> product index, -1 for non-product pages
    page_of_product: np.ndarray  # product index -> page index
    price_cents: np.ndarray  # product index -> price


def _title(path: str) -> str:
    if path == "/":
        return "Shop - Outdoor gear"
    words = path.strip("/").split("/")[-1].replace("-", " ")
    return f"{words.title()} - Shop"


@cache
def pages(n_products: int = 1200, n_posts: int = 240) -> Pages:
    """The page catalogue, the same for every seed; popularity order is a fixed shuffle."""
    rng = np.random.default_rng(20260101)
    fixed = ["/", "/products", "/cart", "/checkout", "/search", "/about", "/contact", "/login"]
    categories = [f"/category/{c}" for c in _CATEGORIES]
    products = [
        f"/product/{_ADJECTIVES[i % 16]}-{_CATEGORIES[(i // 16) % 16]}-{i:04d}"
        for i in range(n_products)
    ]
    posts = [
        f"/blog/{_ADJECTIVES[i % 16]}-{_BLOG_WORDS[(i // 16) % 8]}-{i:03d}" for i in range(n_posts)
    ]
    rest = categories + products + posts
    order = rng.permutation(len(rest))
    paths = fixed[:2] + [rest[i] for i in order[:40]] + fixed[2:] + [rest[i] for i in order[40:]]
    product_of_page = np.full(len(paths), -1, dtype=np.int64)
    page_of_product = np.empty(n_products, dtype=np.int64)
    n = 0
    for i, p in enumerate(paths):
        if p.startswith("/product/"):
            product_of_page[i] = n
            page_of_product[n] = i
            n += 1
    prices = rng.integers(9, 400, size=n_products) * 100 + 99
    return Pages(paths, [_title(p) for p in paths], product_of_page, page_of_product, prices)


@dataclass(frozen=True)
class Referrer:
    """One way a visit can arrive: referrer URL prefix, landing query, and its weight."""

    key: str
    weight: float
    referrer: str | None  # URL; a search term is appended when `search_param` is set
    search_param: str | None = None
    query: str = ""  # landing-page query string (without '?'); a click id value is appended
    click_id: str | None = None  # name of the click id parameter, when the landing page has one


REFERRERS: tuple[Referrer, ...] = (
    Referrer("direct", 30, None),
    Referrer("google", 12, "https://www.google.com/search?", "q"),
    Referrer("google-de", 3, "https://www.google.de/search?", "q"),
    Referrer("google-uk", 3, "https://www.google.co.uk/search?", "q"),
    Referrer("bing", 4, "https://www.bing.com/search?", "q"),
    Referrer("duckduckgo", 2, "https://duckduckgo.com/?", "q"),
    Referrer("yahoo", 1, "https://search.yahoo.com/search?", "q"),
    Referrer("yandex", 1, "https://yandex.ru/search/?", "text"),
    Referrer("baidu", 0.5, "https://www.baidu.com/s?", "wd"),
    Referrer("facebook", 2, "https://www.facebook.com/"),
    Referrer("facebook-m", 1.5, "https://m.facebook.com/"),
    Referrer("facebook-l", 1, "https://l.facebook.com/l.php"),
    Referrer("t.co", 1, "https://t.co/"),
    Referrer("x.com", 0.5, "https://x.com/"),
    Referrer("twitter", 0.3, "https://twitter.com/"),
    Referrer("linkedin", 0.7, "https://www.linkedin.com/"),
    Referrer("lnkd.in", 0.3, "https://lnkd.in/"),
    Referrer("reddit", 1, "https://www.reddit.com/r/hiking/"),
    Referrer("instagram", 0.8, "https://www.instagram.com/"),
    Referrer("gmail", 1, "https://mail.google.com/"),
    Referrer("outlook", 0.7, "https://outlook.live.com/"),
    Referrer("chatgpt", 1.2, "https://chatgpt.com/"),
    Referrer("perplexity", 0.6, "https://www.perplexity.ai/"),
    Referrer("newsletter-site", 1, "https://outdoor-weekly.example.org/issue/12"),
    Referrer("blog", 2, "https://www.gearblog.net/2026/best-trail-shoes"),
    Referrer("forum", 1.5, "https://forum.hikers.org/t/boots/123"),
    Referrer("internal", 3, f"{SITE}/products"),
    Referrer(
        "utm-newsletter",
        3,
        None,
        query="utm_source=Newsletter&utm_medium=email&utm_campaign=winter_sale",
    ),
    Referrer(
        "utm-newsletter-gmail",
        1,
        "https://mail.google.com/",
        query="utm_source=newsletter&utm_medium=email&utm_campaign=winter_sale&utm_content=hero",
    ),
    Referrer(
        "utm-facebook-ads",
        2,
        "https://l.facebook.com/l.php",
        query="utm_source=facebook&utm_medium=cpc&utm_campaign=retargeting",
    ),
    Referrer(
        "utm-google-ads",
        2,
        "https://www.google.com/",
        query="utm_source=Google&utm_medium=cpc&utm_campaign=brand&utm_term=trail+shoes&gclid=",
        click_id="gclid",
    ),
    Referrer(
        "utm-partner",
        1,
        None,
        query="utm_source=partner_blog&utm_medium=referral&utm_campaign=spring",
    ),
    Referrer("gclid", 3, "https://www.google.com/", query="gclid=", click_id="gclid"),
    Referrer("gclid-app", 1, None, query="gclid=", click_id="gclid"),
    Referrer("msclkid", 1, None, query="msclkid=", click_id="msclkid"),
    Referrer("fbclid", 1.5, "https://l.facebook.com/l.php", query="fbclid=", click_id="fbclid"),
    Referrer("fbclid-app", 1, None, query="fbclid=", click_id="fbclid"),
)


def referrer_weights() -> np.ndarray:
    w = np.array([r.weight for r in REFERRERS], dtype=np.float64)
    return w / w.sum()


def search_referrer(ref: Referrer, term: str) -> str | None:
    """The referrer URL of `ref` carrying `term` as its search query (when it is a search)."""
    if ref.referrer is None or ref.search_param is None:
        return ref.referrer
    return f"{ref.referrer}{ref.search_param}={quote_plus(term)}"


def host(ref: Referrer) -> str | None:
    """The host of the referrer URL (the visit's `referring_domain`), None for no referrer."""
    return None if ref.referrer is None else ref.referrer.split("/")[2]


def utm_params(ref: Referrer) -> dict[str, str]:
    """The utm_* parameters on the landing page of a visit arriving through `ref`."""
    out: dict[str, str] = {}
    for part in ref.query.split("&"):
        key, _, value = part.partition("=")
        if key.startswith("utm_") and value:
            out[key] = value.replace("+", " ")
    return out


@dataclass(frozen=True)
class Agent:
    """A user agent string and what the `user-agents` parser makes of it."""

    ua: str
    weight: float
    browser: str
    os: str
    os_version: str | None
    device_type: str


_HUMAN_UAS = (
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    (10, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    (8, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"),
    (2, "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (1, "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    (16, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    (12, "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36"),
    (4, "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"),
    (4, "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    (1, "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
)  # fmt: skip
_BOT_UAS = (
    (40, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (20, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (10, "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)"),
    (15, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    (5, "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)"),
    (10, "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"),
)  # fmt: skip
SCRIPT_UA = "curl/8.5.0"


def _device_type(parsed: object) -> str:
    if getattr(parsed, "is_bot", False):
        return "Bot"
    if getattr(parsed, "is_tablet", False):
        return "Tablet"
    if getattr(parsed, "is_mobile", False):
        return "Mobile"
    if getattr(parsed, "is_pc", False):
        return "Desktop"
    return "Other"


def _agent(weight: float, ua: str) -> Agent:
    import user_agents

    parsed = user_agents.parse(ua)
    return Agent(
        ua=ua,
        weight=weight,
        browser=parsed.browser.family,
        os=parsed.os.family,
        os_version=parsed.os.version_string or None,
        device_type=_device_type(parsed),
    )


@cache
def agents() -> tuple[tuple[Agent, ...], tuple[Agent, ...], Agent]:
    """(human agents, bot agents, the script agent), parsed once by `user-agents`."""
    humans = tuple(_agent(w, ua) for w, ua in _HUMAN_UAS)
    bots = tuple(_agent(w, ua) for w, ua in _BOT_UAS)
    return humans, bots, _agent(1, SCRIPT_UA)


SCREENS = {
    "Desktop": ((1920, 1080), (1536, 864), (2560, 1440), (1440, 900)),
    "Mobile": ((390, 844), (412, 915), (393, 873)),
    "Tablet": ((820, 1180), (800, 1280)),
}

PLACES = (
    # country, region, city, latitude, longitude, weight
    ("US", "California", "San Francisco", 37.7749, -122.4194, 10),
    ("US", "New York", "New York", 40.7128, -74.006, 10),
    ("DE", "Berlin", "Berlin", 52.52, 13.405, 8),
    ("DE", "Bavaria", "Munich", 48.1351, 11.582, 5),
    ("GB", "England", "London", 51.5074, -0.1278, 9),
    ("FR", "Ile-de-France", "Paris", 48.8566, 2.3522, 7),
    ("NL", "North Holland", "Amsterdam", 52.3676, 4.9041, 4),
    ("SE", "Stockholm", "Stockholm", 59.3293, 18.0686, 3),
    ("JP", "Tokyo", "Tokyo", 35.6762, 139.6503, 4),
    ("BR", "Sao Paulo", "Sao Paulo", -23.5505, -46.6333, 3),
    ("IN", "Karnataka", "Bengaluru", 12.9716, 77.5946, 4),
    ("AU", "New South Wales", "Sydney", -33.8688, 151.2093, 2),
    ("CA", "Ontario", "Toronto", 43.6532, -79.3832, 3),
)


def view_properties(path: str, title: str, query: str = "") -> str:
    """The JSON properties of a `$view` of `path` (ahoy.js sends url, page and title)."""
    url = f"{SITE}{path}" + (f"?{query}" if query else "")
    return json.dumps({"url": url, "page": path, "title": title}, separators=(",", ":"))

"""What a visit's referrer and landing page say about its source, worked out once per visit.

The collector and `trail sample` store these facts beside `referring_domain` so the referrers
report groups short columns instead of reading the long URLs; the report works them out the
same way for rows stored before the columns existed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from urllib.parse import parse_qsl, unquote_plus, unquote_to_bytes, urlsplit

from trailcli.sources.referrer_db import ReferrerDB, Source, builtin_db

FACT_COLUMNS = ("referrer_kind", "referrer_path_rule", "search_term", "click_id", "landing_host")
# referrer_kind values: what kind of referrer the visit has (never null in a row that has facts)
NO_REFERRER = "none"  # no referrer at all
WEB = "web"  # an http(s) URL with a usable host
APP = "app"  # an android-app://<app id> referrer
OTHER = "other"  # anything else: malformed, hostless, or another scheme (counts as direct)
SCHEME_OF_KIND = {WEB: "https", APP: "android-app"}
REFERRER_SCHEMES = ("http", "https", "android-app")
MAX_TERM = 255
MAX_HOST = 255

_HOST_OK = re.compile(r"^[a-z0-9._-]+$")


def normalise_host(host: str | None) -> str:
    """Lower case, no port, no trailing dot, no leading `www.`; '' when there is no host."""
    text = re.split(r"[?#]", (host or "").strip().lower(), maxsplit=1)[0]
    text = text.rsplit("@", 1)[-1]
    if text.startswith("["):
        return ""
    text = text.split(":", 1)[0].rstrip(".")
    return text.removeprefix("www.")


def is_usable_host(host: str) -> bool:
    """True for a normalised host a referrer can be attributed to."""
    return bool(host) and bool(_HOST_OK.match(host))


def split_referrer(referrer: str | None) -> tuple[str, str, str, str]:
    """(scheme, host, path, query) of a referrer URL; empty parts when it does not parse."""
    text = (referrer or "").strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError:
        return "", "", "", ""
    return parts.scheme.lower(), host, parts.path, parts.query


def kind_of(scheme: str, host: str) -> str:
    """The referrer kind of a referrer with this scheme and (raw) host; NO_REFERRER only when
    both are empty."""
    scheme = scheme.strip().lower()
    if not scheme and not host:
        return NO_REFERRER
    if scheme not in REFERRER_SCHEMES or not is_usable_host(normalise_host(host)):
        return OTHER
    return APP if scheme == "android-app" else WEB


def search_term(source: Source, query: str, fragment: str = "") -> str | None:
    """The first of the engine's term parameters present in the referrer's query, else in its
    fragment (`google.com/#q=...`), decoded: as UTF-8, else in the first of the engine's
    declared charsets that fits (Matomo's `charsets`)."""
    if not source.params:
        return None
    for part in (query, fragment):
        values = _parameters(part, source.charsets) if part else {}
        for param in source.params:
            term = values.get(param, "").strip()
            if term:
                return term
    return None


# Charset labels as browsers read them (the WHATWG Encoding Standard's supersets)
_CHARSET_LABELS = {"gb2312": "gbk", "iso-8859-1": "cp1252", "latin1": "cp1252"}


def _parameters(text: str, charsets: tuple[str, ...]) -> dict[str, str]:
    """The `name=value` pairs of a query or fragment, the first of each name kept."""
    values: dict[str, str] = {}
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        if sep:
            raw = unquote_to_bytes(value.replace("+", " "))
            values.setdefault(unquote_plus(name), _decode(raw, charsets))
    return values


def _decode(raw: bytes, charsets: tuple[str, ...]) -> str:
    for charset in ("utf-8", *charsets):
        label = charset.strip().lower()
        try:
            return raw.decode(_CHARSET_LABELS.get(label, label))
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("utf-8", errors="replace")


def referrer_fragment(referrer: str | None) -> str:
    """The fragment of a referrer URL (after `#`), '' when it has none or does not parse."""
    try:
        return urlsplit((referrer or "").strip()).fragment
    except ValueError:
        return ""


def click_id_of(landing_page: str | None, known: Iterable[str]) -> str:
    """The first known click-id parameter present with a value on the landing page ('' when none)."""
    try:
        query = urlsplit(landing_page or "").query
    except ValueError:
        return ""
    names = {k.lower() for k, v in parse_qsl(query, keep_blank_values=True) if v}
    return next((c for c in known if c in names), "")


@cache
def _builtin() -> ReferrerDB:
    return builtin_db()


def source_facts(
    referrer: str | None, landing_page: str | None, db: ReferrerDB | None = None
) -> dict[str, str | None]:
    """The stored source facts of a visit: `referrer_kind`, `referrer_path_rule` (the path prefix
    of the known-source rule the referrer matched, such as /shopping for google.com/shopping),
    `search_term` (from a known engine's query), `click_id` (the known click-id parameter on the
    landing page, lower case) and `landing_host` (the landing page's host, lower case).

    `db` defaults to the package's own list, which is what the collector and `trail sample` use.
    """
    database = db if db is not None else _builtin()
    scheme, host, path, query = split_referrer(referrer)
    if not scheme and not host and (referrer or "").strip():
        scheme = OTHER  # text that is not a URL is still a referrer, just not a usable one
    kind = kind_of(scheme, host)
    term = rule = None
    if kind == WEB:
        known, rule = database.lookup_host_rule(normalise_host(host), path)
        fragment = referrer_fragment(referrer) if "#" in (referrer or "") else ""
        term = search_term(known, query, fragment) if known is not None else None
    return {
        "referrer_kind": kind,
        "referrer_path_rule": rule,
        "search_term": term[:MAX_TERM] if term else None,
        "click_id": click_id_of(landing_page, database.click_ids) or None,
        "landing_host": split_referrer(landing_page)[1][:MAX_HOST] or None,
    }

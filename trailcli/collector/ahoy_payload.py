"""Pure Ahoy request parsing: params and bodies into tokens, event lists, visit and event records."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from trailcli.sources.referrer_facts import source_facts

AHOY_NAMESPACE = uuid.UUID("a82ae811-5011-45ab-a728-569df7499c5f")
TOKEN_MAX = 64
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9-]")
_TOKEN = re.compile(r"[A-Za-z0-9-]{1,64}")
_SURROGATE = re.compile("[\ud800-\udfff]")
MISSING_TOKENS = ("null", "undefined")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
TEXT_FIELDS = ("landing_page", "referrer", "platform", "app_version", "os_version")
INT32_MAX = 2**31 - 1
MAX_TEXT = 4096
MAX_EVENT_ID = 128
# params that are never copied into a visit's `extra`: known columns, transport and secrets
NOT_EXTRA = frozenset(
    (
        "visit_token",
        "visitor_token",
        "js",
        "screen_width",
        "screen_height",
        "user_token",
        "user_id",
        "authenticity_token",
        "_csrf",
        "csrf_token",
        *TEXT_FIELDS,
        *UTM_FIELDS,
    )
)


class InvalidParameters(ValueError):
    """The events are not a list of objects: Ahoy answers 400 `Invalid parameters` and stores nothing."""


# --- values -------------------------------------------------------------------------------------


def clean_text(value: str) -> str:
    """`value` as valid UTF-8 text: lone surrogates and NUL replaced."""
    if value.isascii():
        return value if "\x00" not in value else value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value.replace("\x00", "\ufffd")


def clean_json(value: Any) -> Any:
    """A JSON value with every string (keys included) made valid UTF-8; types are kept."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# orjson turns integers beyond 64 bits into floats; text with such a digit run goes to the
# standard parser, which keeps them exact
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19  # a run of 19 digits, as the translation above writes it


def loads(text: str | bytes) -> Any:
    """Strict JSON (no NaN/Infinity); ValueError for anything unparsable or too deeply nested.

    orjson parses the common case; what it refuses (lone surrogate escapes, deep nesting) or
    would change (long integers) is left to the standard parser, so results never differ.
    """
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if _LONG_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return _DECODER.decode(text.decode("utf-8") if isinstance(text, bytes) else text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps(value: Any) -> str:
    """Compact JSON text of a cleaned value (what `properties` and `extra` store)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits, lone surrogates: the standard encoder below
        pass
    text = _ENCODER.encode(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800-style escape
        text = _ENCODER.encode(clean_json(value))
    return text


def text_or_none(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A scalar as text (at most `limit` characters); None for missing, empty, objects and lists."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = clean_text(str(value))[:limit]
    return text or None


def int32_or_none(value: Any) -> int | None:
    """A JSON number or numeric string as an int32 (None if it is not one)."""
    if isinstance(value, bool):
        return None
    try:
        number = int(float(value)) if isinstance(value, (str, float)) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -INT32_MAX - 1 <= number <= INT32_MAX else None


def truthy(value: Any) -> bool:
    """Ruby truthiness of a param: present and not false/null (the string "false" is truthy)."""
    return value is not None and value is not False


# --- tokens -------------------------------------------------------------------------------------


def sanitize_token(value: Any) -> str | None:
    """Keep `[A-Za-z0-9-]`, at most 64 characters; missing, empty, `null`, `undefined` give None."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value if value not in MISSING_TOKENS else None  # the common case: already clean
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    token = _NOT_TOKEN.sub("", str(value))[:TOKEN_MAX]
    if not token or token in MISSING_TOKENS:
        return None
    return token


@dataclass(frozen=True)
class Tokens:
    visit: str | None
    visitor: str | None


def resolve_tokens(params: Mapping[str, Any], headers: Mapping[str, str]) -> Tokens:
    """`Ahoy-Visit`/`Ahoy-Visitor` headers win over the `visit_token`/`visitor_token` params."""
    visit = sanitize_token(headers.get("Ahoy-Visit")) or sanitize_token(params.get("visit_token"))
    visitor = sanitize_token(headers.get("Ahoy-Visitor")) or sanitize_token(
        params.get("visitor_token")
    )
    return Tokens(visit, visitor)


def anonymity_visitor_token(masked_ip: str | None, user_agent: str | None) -> str:
    """Ahoy's cookie-less visitor token: uuid5(namespace, `visitor/<masked ip>/<user agent>`)."""
    return str(uuid.uuid5(AHOY_NAMESPACE, f"visitor/{masked_ip or ''}/{user_agent or ''}"))


# --- params -------------------------------------------------------------------------------------

_BRACKETS = re.compile(r"\[([^\]]*)\]")


def nest_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Rack-style nesting of form pairs: `properties[k]=v` gives `{"properties": {"k": "v"}}`.

    `a[]=x` appends to a list; `events[][name]=x` builds a list of objects. Conflicting shapes
    keep the first value.
    """
    out: dict[str, Any] = {}
    for key, value in pairs:
        if "[" not in key:  # the usual flat field
            if key:
                out.setdefault(key, value)
            continue
        head, _, rest = key.partition("[")
        if not head:
            continue
        path = [head, *_BRACKETS.findall("[" + rest)] if rest else [head]
        _assign(out, path, value)
    return out


def _assign(node: dict[str, Any], path: list[str], value: str) -> None:
    for i, part in enumerate(path[:-1]):
        following = path[i + 1]
        if part == "":
            return  # list in the middle handled below; unsupported deeper shapes are ignored
        if following == "":
            child = node.setdefault(part, [])
            if not isinstance(child, list):
                return
            _append_to_list(child, path[i + 2 :], value)
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child
    last = path[-1]
    if last:
        node.setdefault(last, value)


def _append_to_list(items: list[Any], rest: list[str], value: str) -> None:
    if not rest:
        items.append(value)
        return
    key = rest[0]
    if not key:
        return
    if not items or not isinstance(items[-1], dict) or key in items[-1]:
        items.append({})
    target = items[-1]
    if len(rest) == 1:
        target[key] = value
    else:
        _assign(target, rest, value)


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventList:
    """The events a request carries: at most the limit, plus what was dropped silently."""

    events: list[dict[str, Any]]
    over_limit: int = 0
    bad_json: bool = False


def event_list(params: Mapping[str, Any], raw_body: bytes, limit: int) -> EventList:
    """Resolve the events as Ahoy does: `name` param, then `events`, `events_json`, the raw body.

    Raises InvalidParameters when the result is not a list or one of the first `limit` items is
    not an object. Unparsable JSON gives an empty list (Ahoy answers 200 and stores nothing).
    """
    if "name" in params:
        found: Any = [dict(params)]
    elif "events" in params:
        found = params["events"]
    else:
        source = params.get("events_json") if "events_json" in params else raw_body
        if not isinstance(source, (str, bytes)):
            raise InvalidParameters("events_json must be a string")
        try:
            found = loads(source)
        except (ValueError, UnicodeDecodeError):
            return EventList([], bad_json=True)
    if not isinstance(found, list):
        raise InvalidParameters("events must be a list")
    kept = found[:limit]
    if not all(isinstance(e, dict) for e in kept):
        raise InvalidParameters("every event must be an object")
    return EventList(kept, over_limit=max(0, len(found) - limit))


def parse_time(value: Any) -> datetime | None:
    """An event time from ISO-8601 text or epoch seconds (number or numeric text); None if neither."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                return parse_time(float(text))
            except ValueError:
                return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if isinstance(value, (int, float)):
        try:
            if not math.isfinite(value):
                return None
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def trusted_time(
    value: Any, now: datetime, window: float | timedelta, not_before: datetime | None = None
) -> datetime:
    """The client time when within [now − window, now], else `now`; never before `not_before`.

    `window` in seconds, or as a timedelta (cheaper when the caller has one at hand).
    """
    parsed = parse_time(value)
    if not isinstance(window, timedelta):
        window = timedelta(seconds=window)
    if parsed is None or not (now - window <= parsed <= now):
        parsed = now
    if not_before is not None and parsed < not_before:
        parsed = not_before
    return parsed


def event_record(
    event: Mapping[str, Any],
    *,
    visit_token: str | None,
    visitor_token: str | None,
    user_id: str | None,
    time: datetime,
    received_at: datetime,
    new_id: Callable[[], str],
    client_id: str | None = None,
) -> dict[str, Any]:
    """One events row; `properties` keeps its JSON types (an object unless the client sent other).

    `client_id` is `event_id(event)` when the caller has it already.
    """
    properties = event.get("properties")
    given = client_id or event_id(event)
    return {
        "event_id": given or new_id(),
        "visit_token": visit_token,
        "visitor_token": visitor_token,
        "user_id": user_id,
        "name": text_or_none(event.get("name"), 1024),
        "properties": dumps({} if properties is None else properties),
        "time": time,
        "received_at": received_at,
    }


def event_id(event: Mapping[str, Any]) -> str | None:
    """The client's event id (for de-duplication), as text of at most 128 characters."""
    return text_or_none(event.get("id"), MAX_EVENT_ID)


# --- visits -------------------------------------------------------------------------------------


def utm_params(params: Mapping[str, Any], landing_page: str | None) -> dict[str, str | None]:
    """`utm_*` from the params, else the first value in the landing page's query."""
    query: dict[str, list[str]] = {}
    if landing_page:
        try:
            query = parse_qs(urlsplit(landing_page).query)
        except ValueError:
            query = {}
    out: dict[str, str | None] = {}
    for name in UTM_FIELDS:
        given = text_or_none(params.get(name), 255)
        from_page = query.get(name, [None])[0]
        out[name] = given or text_or_none(from_page, 255)
    return out


def referring_domain(referrer: str | None) -> str | None:
    """The referrer's host (at most 255 characters), None when it has none."""
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).hostname
    except ValueError:
        return None
    return host[:255] if host else None


def visit_extra(params: Mapping[str, Any], skip: Iterable[str] = ()) -> str | None:
    """Unknown visit params as JSON text (never tokens or secrets); None when there are none."""
    ignored = NOT_EXTRA.union(skip)
    extra = {k: v for k, v in params.items() if k not in ignored}
    return dumps(extra) if extra else None


def visit_record(
    params: Mapping[str, Any],
    *,
    visit_token: str,
    visitor_token: str | None,
    user_id: str | None,
    started_at: datetime,
    skip_extra: Iterable[str] = (),
) -> dict[str, Any]:
    """The visit row's fields that come from the request params (enrichment adds the rest)."""
    record: dict[str, Any] = {
        "visit_token": visit_token,
        "visitor_token": visitor_token,
        "user_id": user_id,
        "started_at": started_at,
        "screen_width": int32_or_none(params.get("screen_width")),
        "screen_height": int32_or_none(params.get("screen_height")),
        "extra": visit_extra(params, skip_extra),
    }
    for name in TEXT_FIELDS:
        record[name] = text_or_none(params.get(name))
    record["referring_domain"] = referring_domain(record["referrer"])
    record.update(source_facts(record["referrer"], record["landing_page"]))
    record.update(utm_params(params, record["landing_page"]))
    return record


# --- bodies -------------------------------------------------------------------------------------

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


def multipart_pairs(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The (name, value) fields of a multipart/form-data body; file parts and junk are skipped."""
    match = _BOUNDARY.search(content_type)
    if not match:
        return []
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1", "replace")
    pairs: list[tuple[str, str]] = []
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = _field_name(head)
        if name is None:
            continue
        value = value[:-2] if value.endswith(b"\r\n") else value
        pairs.append((_utf8(name), _utf8(value)))
    return pairs


_BEACON_PART = b'\r\nContent-Disposition: form-data; name="'
_BEACON_FIELDS = frozenset((b"visit_token", b"visitor_token", b"events_json"))
_BEACON_ENDS = (b"--\r\n", b"--")
_delimiters: dict[str, bytes | None] = {}


def beacon_params(content_type: str, body: bytes) -> dict[str, str] | None:
    """The fields of a plain ahoy.js beacon, read with a few byte operations; None when the body
    is anything else, for `request_params` to read.

    A plain beacon is multipart/form-data whose parts are each one of `visit_token`,
    `visitor_token` and `events_json`, once, with only the standard part header, and nothing
    before the first boundary or after the last. Where this returns fields, they equal
    `request_params((), content_type, body)`.
    """
    delimiter = _beacon_delimiter(content_type)
    if delimiter is None:
        return None
    parts = body.split(delimiter)
    if len(parts) < 3 or parts[0] or parts[-1] not in _BEACON_ENDS:
        return None
    params: dict[str, str] = {}
    start = len(_BEACON_PART)
    for part in parts[1:-1]:
        end = part.find(b'"\r\n\r\n', start)
        if end < 0 or not part.startswith(_BEACON_PART) or not part.endswith(b"\r\n"):
            return None
        name = part[start:end]
        if name not in _BEACON_FIELDS:
            return None
        key = name.decode()
        if key in params:
            return None
        params[key] = _utf8(part[end + 5 : -2])
    return params


def _beacon_delimiter(content_type: str) -> bytes | None:
    """The part delimiter of a multipart content type (memoised; clients send a few), else None."""
    try:
        return _delimiters[content_type]
    except KeyError:
        pass
    delimiter = None
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        match = _BOUNDARY.search(content_type)
        if match:
            delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1", "replace")
    if len(_delimiters) < 1024:
        _delimiters[content_type] = delimiter
    return delimiter


def _field_name(head: bytes) -> bytes | None:
    """The `name` of a form-data part's headers; None for file parts and parts without one."""
    start = head.find(b' name="')
    if start < 0 or b"filename=" in head:
        found = _FIELD_NAME.search(head)
        if found is None or b"filename=" in head.lower():
            return None
        return found.group(1)
    end = head.find(b'"', start + 7)
    return head[start + 7 : end] if end >= 0 else None


def _utf8(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")  # decoding leaves no lone surrogates
    return text if b"\x00" not in raw else text.replace("\x00", "\ufffd")


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """The fields of an application/x-www-form-urlencoded body."""
    from urllib.parse import parse_qsl

    text = body.decode("utf-8", "replace")
    return [(clean_text(k), clean_text(v)) for k, v in parse_qsl(text, keep_blank_values=True)]


def request_params(
    query: Iterable[tuple[str, str]], content_type: str, body: bytes
) -> dict[str, Any]:
    """Query and body params merged (the body wins): JSON objects, forms and multipart alike.

    A body that is JSON but not an object (a legacy bare array) adds no params; the event
    resolution reads it from the raw body.
    """
    params = nest_params((clean_text(k), clean_text(v)) for k, v in query)
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "multipart/form-data":
        params.update(nest_params(multipart_pairs(content_type, body)))
    elif mime == "application/x-www-form-urlencoded":
        params.update(nest_params(form_pairs(body)))
    elif body.strip():
        try:
            decoded = loads(body)
        except (ValueError, UnicodeDecodeError):
            decoded = None
        if isinstance(decoded, dict):
            params.update(clean_json(decoded))
    return params

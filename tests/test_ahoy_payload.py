"""Pure Ahoy parsing: tokens, params in every body form, event resolution, times, visit fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailcli.collector import ahoy_payload as p

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "token"),
    [
        ("abc-DEF-123", "abc-DEF-123"),
        ("badtoken\udcff", "badtoken"),
        ("a b/c;d", "abcd"),
        ("x" * 70, "x" * 64),
        ("null", None),
        ("undefined", None),
        ("", None),
        ("   ", None),
        (None, None),
        (True, None),
        ({"a": 1}, None),
        (12345, "12345"),
    ],
)
def test_sanitize_token(raw: object, token: str | None) -> None:
    assert p.sanitize_token(raw) == token


def test_headers_win_over_params() -> None:
    params = {"visit_token": "pv", "visitor_token": "pu"}
    assert p.resolve_tokens(params, {"Ahoy-Visit": "hv"}) == p.Tokens("hv", "pu")
    assert p.resolve_tokens(params, {"Ahoy-Visit": "!!"}) == p.Tokens("pv", "pu")


def test_nest_params_rack_style() -> None:
    pairs = [
        ("name", "x"),
        ("properties[a]", "1"),
        ("properties[b][c]", "2"),
        ("tags[]", "t1"),
        ("tags[]", "t2"),
        ("events[][name]", "e1"),
        ("events[][id]", "i1"),
        ("events[][name]", "e2"),
        ("name", "second value ignored"),
        ("[bad", "skipped"),
    ]
    assert p.nest_params(pairs) == {
        "name": "x",
        "properties": {"a": "1", "b": {"c": "2"}},
        "tags": ["t1", "t2"],
        "events": [{"name": "e1", "id": "i1"}, {"name": "e2"}],
    }


def test_multipart_pairs() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="visit_token"\r\n\r\nv1\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="events_json"\r\n\r\n'
        b'[{"name":"a\\r\\nb"}]\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="x.txt"\r\n\r\nfile\r\n'
        b"--XyZ--\r\n"
    )
    assert p.multipart_pairs("multipart/form-data; boundary=XyZ", body) == [
        ("visit_token", "v1"),
        ("events_json", '[{"name":"a\\r\\nb"}]'),
    ]
    assert p.multipart_pairs('multipart/form-data; boundary="XyZ"', body)[0] == (
        "visit_token",
        "v1",
    )
    assert p.multipart_pairs("multipart/form-data", body) == []


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": 1, "b": [true]}', {"q": "1", "a": 1, "b": [True]}),
        ("application/json; charset=utf-8", b"[1, 2]", {"q": "1"}),
        ("application/json", b"{bad", {"q": "1"}),
        (
            "application/x-www-form-urlencoded",
            b"a=1&q=2&p%5Bk%5D=v",
            {"q": "2", "a": "1", "p": {"k": "v"}},
        ),
        ("text/plain", b'{"a": "x"}', {"q": "1", "a": "x"}),
        ("", b"", {"q": "1"}),
        ("application/json", b'{"a": NaN}', {"q": "1"}),
    ],
)
def test_request_params(content_type: str, body: bytes, expected: dict[str, object]) -> None:
    assert p.request_params([("q", "1")], content_type, body) == expected


def test_event_list_resolution_order() -> None:
    one = {"name": "legacy", "properties": {"a": "1"}}
    assert p.event_list(one, b"", 10).events == [one]
    assert p.event_list({"events": [{"name": "x"}]}, b"", 10).events == [{"name": "x"}]
    assert p.event_list({"events_json": '[{"name": "j"}]'}, b"[]", 10).events == [{"name": "j"}]
    assert p.event_list({}, b'[{"name": "raw"}]', 10).events == [{"name": "raw"}]


@pytest.mark.parametrize("bad", ["null", "[null]", "{}", '"s"', '[{"a":1}, 2]', "5"])
def test_event_list_rejects_non_lists_of_objects(bad: str) -> None:
    with pytest.raises(p.InvalidParameters):
        p.event_list({"events_json": bad}, b"", 10)


def test_event_list_bad_json_and_limit() -> None:
    assert p.event_list({"events_json": "bad"}, b"", 10) == p.EventList([], bad_json=True)
    assert p.event_list({}, b"", 10) == p.EventList([], bad_json=True)
    found = p.event_list({"events": [{"n": i} for i in range(12)]}, b"", 10)
    assert len(found.events) == 10
    assert found.over_limit == 2
    # only the first `limit` items must be objects (as Ahoy checks)
    assert len(p.event_list({"events": [{}] * 10 + [7]}, b"", 10).events) == 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1772366400.5, datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("1772366400", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("2026-03-01T13:00:00+01:00", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("2026-03-01 12:00:00", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("soon", None),
        (True, None),
        (float("nan"), None),
        (1e300, None),
        ([1], None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    assert p.parse_time(value) == expected


def test_trusted_time_window_and_visit_start() -> None:
    ok = NOW - timedelta(seconds=59)
    assert p.trusted_time(ok.timestamp(), NOW, 60) == ok
    assert p.trusted_time((NOW - timedelta(seconds=60)).timestamp(), NOW, 60) == NOW - timedelta(
        seconds=60
    )
    assert p.trusted_time((NOW - timedelta(seconds=61)).timestamp(), NOW, 60) == NOW
    assert p.trusted_time((NOW + timedelta(seconds=1)).timestamp(), NOW, 60) == NOW
    assert p.trusted_time(None, NOW, 60) == NOW
    start = NOW - timedelta(seconds=10)
    assert p.trusted_time(ok.timestamp(), NOW, 60, not_before=start) == start


def test_event_record_keeps_types_and_makes_ids() -> None:
    record = p.event_record(
        {"name": "n", "properties": {"a": 1, "b": [True, None]}},
        visit_token="v",
        visitor_token="u",
        user_id=None,
        time=NOW,
        received_at=NOW,
        new_id=lambda: "generated",
    )
    assert record["event_id"] == "generated"
    assert json.loads(record["properties"]) == {"a": 1, "b": [True, None]}
    bare = p.event_record(
        {"id": 7}, visit_token="v", visitor_token=None, user_id=None, time=NOW,
        received_at=NOW, new_id=lambda: "x",
    )  # fmt: skip
    assert (bare["event_id"], bare["name"], bare["properties"]) == ("7", None, "{}")


def test_visit_record_fields() -> None:
    params = {
        "landing_page": "https://a.test/?utm_source=q&utm_source=second&utm_term=t",
        "utm_term": "given",
        "referrer": "http://www.example.com",
        "screen_width": "1024",
        "screen_height": 1e12,
        "app_version": 3,
        "platform": {"x": 1},
        "custom": [1, 2],
        "user_token": "secret.abc",
        "authenticity_token": "csrf",
    }
    record = p.visit_record(
        params, visit_token="v", visitor_token="u", user_id=None, started_at=NOW
    )
    assert record["utm_source"] == "q"
    assert record["utm_term"] == "given"
    assert record["referring_domain"] == "www.example.com"
    assert (record["screen_width"], record["screen_height"]) == (1024, None)
    assert record["app_version"] == "3"
    assert record["platform"] is None
    assert json.loads(record["extra"]) == {"custom": [1, 2]}
    assert (record["referrer_kind"], record["click_id"], record["search_term"]) == (
        "web",
        None,
        None,
    )


def test_visit_record_stores_the_source_facts_of_its_urls() -> None:
    params = {
        "landing_page": "https://a.test/p?gclid=abc",
        "referrer": "https://www.google.co.uk/search?q=trail+shoes",
    }
    record = p.visit_record(
        params, visit_token="v", visitor_token="u", user_id=None, started_at=NOW
    )
    assert record["referrer_kind"] == "web"
    assert record["click_id"] == "gclid"
    assert record["search_term"] == "trail shoes"
    bare = p.visit_record({}, visit_token="v", visitor_token="u", user_id=None, started_at=NOW)
    assert (bare["referrer_kind"], bare["click_id"], bare["search_term"]) == ("none", None, None)


@pytest.mark.parametrize(
    ("referrer", "domain"),
    [
        ("http://www.example.com", "www.example.com"),
        ("not a url", None),
        ("http://[bad", None),
        (None, None),
    ],
)
def test_referring_domain(referrer: str | None, domain: str | None) -> None:
    assert p.referring_domain(referrer) == domain


def test_clean_text_and_json() -> None:
    assert p.clean_text("a\udc80b\x00") == "a\ufffdb\ufffd"
    assert p.dumps({"k\udc80": ["\ud800"]}) == '{"k\ufffd":["\ufffd"]}'
    with pytest.raises(ValueError):
        p.loads("[" * 100_000 + "]" * 100_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    content_type=st.sampled_from(
        [
            "application/json",
            "multipart/form-data; boundary=b",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
            "multipart/form-data",
        ]
    ),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    query=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=4),
)
def test_fuzzed_bodies_parse_or_fail_cleanly(content_type: str, body: bytes, query: list) -> None:
    params = p.request_params(query, content_type, body)
    assert isinstance(params, dict)
    try:
        found = p.event_list(params, body, 10)
    except p.InvalidParameters:
        return
    for event in found.events:
        record = p.event_record(
            event, visit_token="v", visitor_token=None, user_id=None, time=NOW,
            received_at=NOW, new_id=lambda: "x",
        )  # fmt: skip
        record["properties"].encode("utf-8")
        json.loads(record["properties"])


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_json_codec_agrees_with_the_standard_library(value: object) -> None:
    # long integers stay exact and lone surrogates are repaired, as with the json module alone
    text = json.dumps(value)
    assert p.loads(text) == json.loads(text)
    assert p.loads(text.encode("utf-8", "surrogatepass")) == json.loads(text)
    assert json.loads(p.dumps(value)) == json.loads(_stdlib_dumps(value))


def _stdlib_dumps(value: object) -> str:
    """What `dumps` wrote with the json module alone: surrogates repaired only when present."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(p.clean_json(value), ensure_ascii=False)
    return text


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "{", "[1,]", "\ufeff[1]"])
def test_loads_stays_strict(text: str) -> None:
    with pytest.raises(ValueError):
        p.loads(text)


BEACON_NAMES = ["visit_token", "visitor_token", "events_json", "name", "events[]", "a b", 'x"y']
PART_HEADS = [
    'Content-Disposition: form-data; name="{}"',
    'content-disposition: form-data; name="{}"',
    'Content-Disposition: form-data; name="{}"; filename="f.txt"',
    'Content-Disposition: form-data; name="{}"\r\nContent-Type: text/plain',
    'Content-Disposition: form-data;  name="{}"',
]
part_values = (
    st.binary(max_size=40)
    | st.sampled_from([b"v-1", b"null", b"\x00", b"\xff\xfe", b"a\r\n\r\nb", b"--B7", b""])
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
)


@st.composite
def multipart_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    boundary = draw(st.sampled_from(["B7", "----trailbenchboundary7d3a", "x y"]))
    content_type = draw(
        st.sampled_from(
            [
                "multipart/form-data; boundary={}",
                'multipart/form-data; boundary="{}"',
                "Multipart/Form-Data; charset=utf-8; boundary={}",
                "multipart/mixed; boundary={}",
                "multipart/form-data",
            ]
        )
    ).format(boundary)
    delimiter = b"--" + boundary.encode()
    if draw(st.booleans()):  # shaped like an ahoy.js beacon, values still arbitrary
        names = draw(st.permutations(BEACON_NAMES[:3]))[: draw(st.integers(1, 3))]
        body = b"".join(
            delimiter + b"\r\n" + PART_HEADS[0].format(name).encode() + b"\r\n\r\n"
            + draw(part_values) + b"\r\n"
            for name in names
        )  # fmt: skip
        return content_type, body + delimiter + draw(st.sampled_from([b"--\r\n", b"--"]))
    body = draw(st.sampled_from([b"", b"preamble\r\n"]))
    for _ in range(draw(st.integers(0, 4))):
        head = draw(st.sampled_from(PART_HEADS)).format(draw(st.sampled_from(BEACON_NAMES)))
        ending = draw(st.sampled_from([b"\r\n", b"\r\n", b""]))
        body += delimiter + b"\r\n" + head.encode() + b"\r\n\r\n" + draw(part_values) + ending
    body += delimiter + draw(st.sampled_from([b"--\r\n", b"--", b"--\r\nepilogue", b""]))
    return content_type, body


@settings(max_examples=600, deadline=None)
@given(multipart_bodies())
def test_beacon_fast_path_agrees_with_the_general_parser(case: tuple[str, bytes]) -> None:
    content_type, body = case
    fast = p.beacon_params(content_type, body)
    if fast is not None:
        assert fast == p.request_params((), content_type, body)


def test_beacon_fast_path_takes_ahoy_js_beacons() -> None:
    events = json.dumps([{"name": "$view", "properties": {"n": 1}, "time": 1.5, "id": "e1"}])
    body = (
        b'--B7\r\nContent-Disposition: form-data; name="visit_token"\r\n\r\nv-1\r\n'
        b'--B7\r\nContent-Disposition: form-data; name="visitor_token"\r\n\r\nw-1\r\n'
        b'--B7\r\nContent-Disposition: form-data; name="events_json"\r\n\r\n'
        + events.encode()
        + b"\r\n--B7--\r\n"
    )
    content_type = "multipart/form-data; boundary=B7"
    fast = p.beacon_params(content_type, body)
    assert fast == {"visit_token": "v-1", "visitor_token": "w-1", "events_json": events}
    assert fast == p.request_params((), content_type, body)
    # anything unusual is left to the general parser
    assert p.beacon_params(content_type, body.replace(b"visitor_token", b"user_token")) is None
    assert p.beacon_params("application/json", body) is None

"""Parse step expressions (`NAME key OP value ...`) and turn them into bound SQL predicates.

Syntax (docs/reports.md, Funnels): an event name, then filters `key OP value` with OP one of
`= != > >= < <=`. `*` matches any run of characters in an unquoted name or `=`/`!=` value;
quotes group text with spaces and make it literal. A bare key is an event property (`a.b` is
the nested property `b` of `a`), `visit.KEY` a visit column.
Numbers compare as numbers when both sides are numeric (`<`, `>` with a number never match text);
`!=` also holds when the key is absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from trailcli.errors import UsageError
from trailcli.store.schema import VISITS

OPERATORS = ("=", "!=", ">", ">=", "<", "<=")
STEP_FORMS = (
    "NAME [key OP value ...] with OP one of = != > >= < <=, e.g. "
    "'$view page=/product/*' or 'purchase total>=10 visit.utm_source=newsletter'; "
    "quote text with spaces"
)
VISIT_PREFIX = "visit."
# Visit columns a step or a breakdown may name; `extra` is free-form JSON and stays out.
VISIT_COLUMNS: frozenset[str] = frozenset(n for n in VISITS.column_names if n != "extra")
NUMERIC_VISIT_COLUMNS = frozenset({"latitude", "longitude", "screen_width", "screen_height"})

_KEY = re.compile(r"^[A-Za-z_$][\w$-]*(\.[A-Za-z_$][\w$-]*)*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_OP_AT = re.compile(r"!=|>=|<=|=|>|<")
_OP_CHARS = frozenset("=!<>")


@dataclass(frozen=True)
class Text:
    """A piece of user text: its characters and whether `*` in it is a glob."""

    value: str
    glob: bool

    @property
    def is_glob(self) -> bool:
        return self.glob and "*" in self.value


@dataclass(frozen=True)
class Filter:
    key: str  # a property path (`total`, `a.b`) or `visit.<column>`
    op: str
    value: Text

    @property
    def visit_column(self) -> str | None:
        """The visit column this filter reads, or None for an event property."""
        return self.key[len(VISIT_PREFIX) :] if self.key.startswith(VISIT_PREFIX) else None

    @property
    def number(self) -> float | None:
        """The value as a number when it is written as one (and not a glob)."""
        if self.value.is_glob or not _NUMBER.match(self.value.value):
            return None
        return float(self.value.value)


@dataclass(frozen=True)
class Step:
    """One parsed step: the text as given, the event name and its filters."""

    text: str
    name: Text
    filters: tuple[Filter, ...] = ()

    @property
    def needs_visit(self) -> bool:
        return any(f.visit_column for f in self.filters)


@dataclass
class _Token:
    text: str  # with quotes removed
    start: int
    end: int
    literal: str  # the token as written, quotes included
    quoted_spans: list[tuple[int, int]] = field(default_factory=list)  # spans in `text`
    positions: list[int] = field(default_factory=list)  # where each char of `text` was written

    def quoted(self, index: int) -> bool:
        return any(a <= index < b for a, b in self.quoted_spans)


def _tokens(text: str) -> list[_Token]:
    """Split on spaces outside quotes; quotes (single or double) group and are removed."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        chars: list[str] = []
        positions: list[int] = []
        spans: list[tuple[int, int]] = []
        while i < n and not text[i].isspace():
            if text[i] in "'\"":
                j = text.find(text[i], i + 1)
                if j < 0:
                    raise _bad(text, i, n, "this quote is never closed")
                spans.append((len(chars), len(chars) + j - i - 1))
                chars.extend(text[i + 1 : j])
                positions.extend(range(i + 1, j))
                i = j + 1
            else:
                chars.append(text[i])
                positions.append(i)
                i += 1
        tokens.append(_Token("".join(chars), start, i, text[start:i], spans, positions))
    return tokens


def _bad(text: str, start: int, end: int, why: str) -> UsageError:
    """A usage error that quotes the step and underlines the bad token."""
    marker = " " * start + "^" * max(1, end - start)
    return UsageError(
        f"Cannot read the step {text!r}: {why}.\n  {text}\n  {marker}", f"write {STEP_FORMS}"
    )


def _text(token: _Token, lo: int, hi: int) -> Text:
    """The characters token.text[lo:hi] as Text; a glob only when no quoted part is inside."""
    quoted = any(a < hi and b > lo for a, b in token.quoted_spans)
    return Text(token.text[lo:hi], glob=not quoted)


def _operator_outside_quotes(token: _Token) -> re.Match[str] | None:
    for match in _OP_AT.finditer(token.text):
        if not token.quoted(match.start()):
            return match
    return None


def _reject_doubled_operator(text: str, token: _Token, op_start: int, at: int) -> None:
    """A usage error when operator characters run on past the operator that ends at `at`
    (`>>`, `==`, `=>`, `<>`): such a value would be compared as text and never match. The
    underline covers the whole run, from `op_start`. A quoted value (`note=">>"`) is text."""
    end = at
    while end < len(token.text) and token.text[end] in _OP_CHARS and not token.quoted(end):
        end += 1
    if end == at:
        return
    written = token.text[op_start:end]
    raise _bad(
        text,
        token.positions[op_start],
        token.positions[end - 1] + 1,
        f"{written!r} is not an operator (use one of {' '.join(OPERATORS)}; quote a value "
        "that starts with one of = ! < >)",
    )


def _filter(text: str, key_tok: _Token, key: str, op: str, value: Text, end: int) -> Filter:
    if not _KEY.match(key):
        raise _bad(text, key_tok.start, end, f"{key!r} is not a property name or visit.COLUMN")
    if key.startswith(VISIT_PREFIX) and key[len(VISIT_PREFIX) :] not in VISIT_COLUMNS:
        raise _bad(
            text,
            key_tok.start,
            end,
            f"{key!r} is not a visit field (known: {', '.join(sorted(VISIT_COLUMNS))})",
        )
    if value.value == "":
        raise _bad(text, key_tok.start, end, "the filter has no value")
    if value.is_glob and op not in ("=", "!="):
        raise _bad(text, key_tok.start, end, f"'*' patterns work with = and !=, not {op}")
    return Filter(key, op, value)


def _filters(text: str, tokens: list[_Token]) -> list[Filter]:
    """Read `key OP value` filters; the operator may stand apart (`total >= 10`)."""
    out: list[Filter] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        match = _operator_outside_quotes(tok)
        if match is None:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            nxt_op = _operator_outside_quotes(nxt) if nxt else None
            if nxt is None or nxt_op is None or nxt_op.start() != 0:
                raise _bad(
                    text, tok.start, tok.end, f"{tok.literal!r} is not a filter (key OP value)"
                )
            value_tok, lo = nxt, nxt_op.end()
            _reject_doubled_operator(text, nxt, nxt_op.start(), lo)
            if lo == len(nxt.text):  # `key >= value` in three words
                if i + 2 >= len(tokens):
                    raise _bad(text, tok.start, nxt.end, "the filter has no value")
                value_tok, lo = tokens[i + 2], 0
                _reject_doubled_operator(text, value_tok, 0, 0)
            value = _text(value_tok, lo, len(value_tok.text))
            out.append(_filter(text, tok, tok.text, nxt_op.group(), value, value_tok.end))
            i += 2 if value_tok is nxt else 3
            continue
        key, op = tok.text[: match.start()], match.group()
        if key == "":
            raise _bad(text, tok.start, tok.end, f"{tok.literal!r} has no key before {op}")
        _reject_doubled_operator(text, tok, match.start(), match.end())
        if match.end() == len(tok.text):  # `key= value`
            if i + 1 >= len(tokens):
                raise _bad(text, tok.start, tok.end, "the filter has no value")
            value_tok = tokens[i + 1]
            _reject_doubled_operator(text, value_tok, 0, 0)
            value = _text(value_tok, 0, len(value_tok.text))
            out.append(_filter(text, tok, key, op, value, value_tok.end))
            i += 2
            continue
        out.append(_filter(text, tok, key, op, _text(tok, match.end(), len(tok.text)), tok.end))
        i += 1
    return out


def parse_step(text: str) -> Step:
    """Parse one step expression; a UsageError points at the token that does not parse."""
    tokens = _tokens(text)
    if not tokens:
        raise UsageError(f"The step {text!r} is empty.", f"write {STEP_FORMS}")
    head = tokens[0]
    if _operator_outside_quotes(head) is not None:
        raise _bad(text, head.start, head.end, "a step starts with an event name, not a filter")
    name = _text(head, 0, len(head.text))
    return Step(text, name, tuple(_filters(text, tokens[1:])))


def parse_steps(texts: list[str]) -> list[Step]:
    return [parse_step(t) for t in texts]


def glob_to_like(pattern: str) -> str:
    """A `*` glob as a LIKE pattern with escape character `\\`."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def property_path(key: str) -> str:
    """The JSON path of a (possibly nested) property key, e.g. `a.b` -> `$."a"."b"`."""
    return "$" + "".join(f'."{part}"' for part in key.split("."))


class Params:
    """Collects bound values under generated names (`$p0`, `$p1`, ...) for one statement."""

    def __init__(self, prefix: str = "p") -> None:
        self.prefix = prefix
        self.values: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def _compare(expr: str, op: str, value: Text, params: Params, numeric_column: bool) -> str:
    """`expr OP value` with bound values: a glob as LIKE, numbers as numbers where both are."""
    if value.is_glob:
        like = f"{expr} LIKE {params.bind(glob_to_like(value.value))} ESCAPE '\\'"
        return f"({expr} IS NULL OR NOT ({like}))" if op == "!=" else f"coalesce({like}, false)"
    sql_op = "<>" if op == "!=" else op
    number = float(value.value) if _NUMBER.match(value.value) else None
    if numeric_column:
        if number is None:
            cmp = f"CAST({expr} AS VARCHAR) {sql_op} {params.bind(value.value)}"
        else:
            cmp = f"{expr} {sql_op} {params.bind(number)}"
    elif number is None:
        cmp = f"{expr} {sql_op} {params.bind(value.value)}"
    else:
        # a numeric value orders only numbers; = and != fall back to the text
        as_num = f"TRY_CAST({expr} AS DOUBLE)"
        text_cmp = f"{expr} {sql_op} {params.bind(value.value)}" if op in ("=", "!=") else "false"
        cmp = (
            f"CASE WHEN {as_num} IS NOT NULL THEN {as_num} {sql_op} {params.bind(number)} "
            f"ELSE {text_cmp} END"
        )
    return f"({expr} IS NULL OR {cmp})" if op == "!=" else f"coalesce({cmp}, false)"


def field_sql(key: str, params: Params, event: str = "e", visit: str = "v") -> str:
    """The SQL expression of a bare property key or `visit.COLUMN` (allow-listed)."""
    if key.startswith(VISIT_PREFIX):
        column = key[len(VISIT_PREFIX) :]
        if column not in VISIT_COLUMNS:
            raise UsageError(
                f"{key!r} is not a visit field.",
                f"use one of {', '.join('visit.' + c for c in sorted(VISIT_COLUMNS))}",
            )
        return f"{visit}.{column}"
    if not _KEY.match(key):
        raise UsageError(f"{key!r} is not a property name.", "use a name like plan or cart.total")
    return f"json_extract_string({event}.properties, {params.bind(property_path(key))})"


def filter_sql(flt: Filter, params: Params, event: str = "e", visit: str = "v") -> str:
    column = flt.visit_column
    expr = field_sql(flt.key, params, event, visit)
    return _compare(expr, flt.op, flt.value, params, column in NUMERIC_VISIT_COLUMNS)


def step_sql(step: Step, params: Params, event: str = "e", visit: str = "v") -> str:
    """A boolean SQL predicate for `step` over events alias `event` joined to visits alias `visit`.

    Every value is bound through `params`; only allow-listed column names enter the text.
    """
    if step.name.is_glob:
        name = f"{event}.name LIKE {params.bind(glob_to_like(step.name.value))} ESCAPE '\\'"
    else:
        name = f"{event}.name = {params.bind(step.name.value)}"
    parts = [name] + [filter_sql(f, params, event, visit) for f in step.filters]
    return "(" + " AND ".join(parts) + ")"


def breakdown_sql(key: str, params: Params, event: str = "e", visit: str = "v") -> str:
    """The breakdown value of an event: a visit column or a property, as text."""
    return f"CAST({field_sql(key, params, event, visit)} AS VARCHAR)"

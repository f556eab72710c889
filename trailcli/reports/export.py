"""`trail export`: every stored row of one person, for an access request (docs/privacy.md).

The person is found as `trail forget` finds them (a user id takes every visitor bound to it and
their visits; a visitor token its visits), so an export and a later erasure cover the same rows.
Each row carries the fields a person would recognise: the page of a view, and the source,
device and country of the visit it belongs to.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trailcli import sql
from trailcli.errors import NoDataError
from trailcli.store import forget, views
from trailcli.store.schema import KINDS

TABLES = ("visits", "events", "presence", "identities")
JSON_COLUMNS = ("properties", "extra")


@dataclass
class Export:
    """A person's rows by table, each in time order."""

    person: forget.Person
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.rows.items()}

    def merged(self) -> Iterator[dict[str, Any]]:
        """Every row with its `table`, all tables in one time order."""
        tagged = [
            (row[KINDS[kind].time_column], n, kind, row)
            for kind, rows in self.rows.items()
            for n, row in enumerate(rows)
        ]
        order = {k: i for i, k in enumerate(TABLES)}
        for _, _, kind, row in sorted(tagged, key=lambda t: (t[0], order[t[2]], t[1])):
            yield {"table": kind, **row}


def export(data_dir: Path, selectors: list[forget.Selector]) -> Export:
    """The stored rows of the person the selectors name. Raises NoDataError when the data dir
    has no tables, or when nothing of that person is stored."""
    from trailcli.reports.frames import fetch_arrow
    from trailcli.reports.referrers import classify_url
    from trailcli.sources.referrer_db import load_db

    person = forget.expand(data_dir, selectors)
    con = views.connect(data_dir)
    params = {
        "visitors": sorted(person.visitor_tokens),
        "visits": sorted(person.visit_tokens),
        "users": sorted(person.user_ids),
    }
    out = Export(person)
    for kind in TABLES:
        out.rows[kind] = [
            _plain(r) for r in fetch_arrow(con, sql.load(f"export_{kind}"), params).to_pylist()
        ]
    if not any(out.rows.values()):
        raise NoDataError(
            "Nothing is stored for that person.",
            "check the token or id (trail sql can list them); nothing was written",
        )
    facts: dict[str, dict[str, Any]] = {}
    db = load_db() if out.rows["visits"] else None
    for visit in out.rows["visits"]:
        utm = {k: visit.get(k) for k in _UTM}
        att = classify_url(visit.get("landing_page"), visit.get("referrer"), db=db, utm=utm)
        visit.update(source=att.source, medium=att.medium, channel=att.channel)
        visit["device"] = visit.get("device_type")
        facts[visit["visit_token"]] = {
            "source": visit["source"],
            "device": visit["device"],
            "country": visit.get("country"),
        }
    for kind in ("events", "presence", "identities"):
        for row in out.rows[kind]:
            row.update(facts.get(row.get("visit_token") or "", _NO_FACTS))
    return out


_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term")
_NO_FACTS = {"source": None, "device": None, "country": None}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_COLUMNS:
        text = row.get(column)
        if isinstance(text, str):
            with contextlib.suppress(ValueError):
                row[column] = json.loads(text)
    return row


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, default=_default, ensure_ascii=False) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def write_ndjson(result: Export, out: io.TextIOBase | Any) -> None:
    """Every row, one JSON object a line, all tables in one time order (`table` names each)."""
    for row in result.merged():
        out.write(_line(row))


def write_zip(result: Export, path: Path) -> None:
    """A zip of one newline-delimited JSON file per table (`visits.ndjson`, ...), in time order."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for kind in TABLES:
            archive.writestr(f"{kind}.ndjson", "".join(_line(r) for r in result.rows[kind]))

"""The page's live model (static/js/model.js) run in Node: snapshots, frames and their numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

MODEL = (
    Path(__file__).resolve().parents[1] / "trailcli/collector/dashboard/static/js/model.js"
).as_uri()
NODE = shutil.which("node")
COLUMNS = ["person", "user_id", "visitor_token", "visit_token", "online_since", "clients",
           "last_page", "views", "source", "device_type"]  # fmt: skip

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")


def run(steps: list[list[Any]]) -> list[Any]:
    """Apply `steps` ([method, argument]) to a new LiveModel; after each, the persons it holds."""
    script = f"""
import {{ LiveModel }} from {json.dumps(MODEL)};
const model = new LiveModel();
const out = [];
for (const [method, argument] of {json.dumps(steps)}) {{
  const result = model[method](argument);
  const persons = Object.fromEntries([...model.persons.values()].map((r) => [r.person,
    {{page: r.last_page ?? null, views: r.views ?? null, source: r.source ?? null,
      device: r.device_type ?? null, clients: r.clients ?? null}}]));
  out.push({{result, n: model.n, persons, events: model.events.map((e) => e.n)}});
}}
console.log(JSON.stringify(out));
"""
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    result: list[Any] = json.loads(done.stdout)
    return result


def snapshot(n: int, persons: list[list[Any]], epoch: str = "e1", events: Any = ()) -> list[Any]:
    return ["loadSnapshot", {"epoch": epoch, "n": n, "columns": COLUMNS, "persons": persons,
                             "events": list(events)}]  # fmt: skip


def person(key: str, visit: str, page: str | None = None, views: int | None = None) -> list[Any]:
    return [key, None, key, visit, "2026-03-01T12:00:00+00:00", 1, page, views, None, "Desktop"]


def frame(
    first: int, last: int, presence: Any = (), events: Any = (), visits: Any = None
) -> list[Any]:
    return ["applyFrame", {"from": first, "n": last, "presence": list(presence),
                           "events": list(events), "skipped": 0, "visits": visits or {}}]  # fmt: skip


def change(n: int, kind: str, key: str, visit: str, page: str | None = None) -> dict[str, Any]:
    return {"n": n, "type": kind, "person": key, "user_id": None, "visitor_token": key,
            "visit_token": visit, "time": "2026-03-01T12:00:05+00:00", "page": page, "clients": 1}  # fmt: skip


def event(n: int, key: str) -> dict[str, Any]:
    return {
        "n": n,
        "name": "x",
        "person": key,
        "visitor_token": key,
        "time": "2026-03-01T12:00:06Z",
    }


def test_frames_after_a_snapshot_apply_once_and_in_order() -> None:
    steps = [
        snapshot(5, [person("a", "va", "/", 1)], events=[event(4, "a")]),
        frame(3, 6, presence=[change(4, "join", "a", "va"), change(6, "join", "b", "vb")]),
        frame(
            6, 8, presence=[change(7, "leave", "a", "va")], events=[event(5, "a"), event(8, "b")]
        ),
        frame(8, 9, visits={"vb": {"views": 3, "source": "news", "device_type": "Mobile"}}),
    ]
    out = run(steps)
    assert out[1]["persons"].keys() == {"a", "b"}  # message 4 was in the snapshot already
    assert out[2]["persons"].keys() == {"b"} and out[2]["events"] == [4, 8]
    assert out[3]["persons"]["b"] == {"page": None, "views": 3, "source": "news",
                                      "device": "Mobile", "clients": 1}  # fmt: skip


def test_a_gap_is_refused_so_the_page_reloads() -> None:
    out = run([snapshot(5, []), frame(7, 9, presence=[change(9, "join", "a", "va")])])
    assert out[1]["result"] is False and out[1]["persons"] == {} and out[1]["n"] == 5


def test_an_older_snapshot_is_brought_forward_with_the_kept_frames() -> None:
    steps = [
        snapshot(1, []),
        frame(1, 2, presence=[change(2, "join", "a", "va")]),
        frame(2, 3, presence=[change(3, "join", "b", "vb")], visits={"va": {"views": 2}}),
        snapshot(2, [person("a", "va", "/x", 1)]),  # fetched before frame 3 arrived
    ]
    out = run(steps)
    assert out[3]["result"] is True and out[3]["n"] == 3
    assert out[3]["persons"].keys() == {"a", "b"} and out[3]["persons"]["a"]["views"] == 2


def test_a_snapshot_older_than_the_kept_frames_is_not_used() -> None:
    frames = [
        frame(i, i + 1, presence=[change(i + 1, "join", f"p{i}", f"v{i}")]) for i in range(130)
    ]
    out = run([snapshot(0, []), *frames, snapshot(1, [])])
    assert out[-1]["result"] is False and len(out[-1]["persons"]) == 130


def test_a_snapshot_of_another_run_replaces_everything() -> None:
    steps = [
        snapshot(50, [person("a", "va")], events=[event(50, "a")]),
        snapshot(2, [person("b", "vb")], epoch="e2", events=[event(1, "b")]),
        frame(2, 3, presence=[change(3, "leave", "b", "vb")]),
    ]
    out = run(steps)
    assert out[1]["persons"].keys() == {"b"} and out[1]["events"] == [1] and out[1]["n"] == 2
    assert out[2]["persons"] == {}


def test_frame_news_does_not_overwrite_a_newer_snapshot() -> None:
    steps = [
        snapshot(1, [person("a", "va", "/", None)]),
        frame(1, 2, visits={"va": {"views": 2, "page": "/p2", "person": "a"}}),
        snapshot(3, [person("a", "va", "/p3", 3)]),
    ]
    out = run(steps)
    assert out[1]["persons"]["a"]["views"] == 2 and out[1]["persons"]["a"]["page"] == "/p2"
    assert out[2]["persons"]["a"]["views"] == 3 and out[2]["persons"]["a"]["page"] == "/p3"


def test_a_view_of_a_user_found_through_their_visitor_token_moves_their_page() -> None:
    row = ["42", "42", "vis-42", "va", "2026-03-01T12:00:00+00:00", 2, "/", 1, None, None]
    steps = [
        snapshot(1, [row]),
        frame(
            1,
            2,
            visits={
                "other-visit": {"page": "/cart", "person": "vis-42", "time": "2026-03-01T12:01:00Z"}
            },
        ),
    ]
    out = run(steps)
    assert out[1]["persons"]["42"]["page"] == "/cart"
    assert out[1]["persons"]["42"]["views"] == 1  # the count is the row's own visit's

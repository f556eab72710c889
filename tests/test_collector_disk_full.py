"""A real full disk under `trail collect`: 503 with Retry-After, /health degraded, a few log lines,
recovery under load once space is freed, SIGTERM keeping the WAL; nothing acknowledged lost.

The data dir is a small tmpfs. Unprivileged, it is mounted in a user and mount namespace of its
own (`unshare --user --map-root-user --mount`), held open by a `sleep` so that it outlives each
collector: the collectors run in it through `nsenter`, and this process reaches its files through
`/proc/<holder>/root`. As root without user namespaces, the tmpfs is mounted directly.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from collector_support import BROWSER_UA, Daemon, make_settings, stored

from trailcli.collector.app import create_app
from trailcli.collector.keys import WRITER

DISK_BYTES = 8 * 1024 * 1024
HEADROOM = 1024 * 1024


@dataclass
class SmallDisk:
    mount_point: Path  # the data dir, as the collector sees it
    path: Path  # the same, as this process sees it
    prefix: tuple[str, ...]  # runs a command where the tmpfs is mounted

    def fill(self, name: str = "filler") -> int:
        """Write a file until the disk is full; its size."""
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written, chunk = 0, b"\0" * (1 << 20)
        try:
            while chunk:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    chunk = chunk[: len(chunk) // 2]  # fill the last pages too
        finally:
            os.close(fd)
        return written

    def free(self, name: str = "filler") -> None:
        (self.path / name).unlink()


def _in_namespace(mount_point: Path) -> tuple[subprocess.Popen[str] | None, str]:
    """A `sleep` holding a user and mount namespace with a tmpfs at `mount_point`, or the reason
    there is none."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return None, "unshare or nsenter (util-linux) is missing"
    script = 'mount -t tmpfs -o size="$1" trail-test-disk "$0" && echo ready && exec sleep 600'
    unshare = ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c", script]
    holder = subprocess.Popen(
        [*unshare, str(mount_point), str(DISK_BYTES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    if holder.stdout.readline().strip() == "ready":
        return holder, ""
    holder.wait(10)
    reason = holder.stderr.read().strip() if holder.stderr else ""
    return None, reason or f"unshare exited with {holder.returncode}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    holder, reason = _in_namespace(mount_point)
    if holder is not None:
        try:
            yield SmallDisk(
                mount_point,
                Path(f"/proc/{holder.pid}/root{mount_point}"),
                ("nsenter", "--preserve-credentials", "-t", str(holder.pid), "-U", "-m", "--"),
            )
        finally:
            holder.kill()
            holder.wait(10)
        return
    if os.geteuid() != 0:
        pytest.skip(f"cannot mount a small tmpfs: no user namespace ({reason}) and not root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "trail-test-disk", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {reason}; as root: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(mount_point, mount_point, ())
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def collector(disk: SmallDisk, flush_interval: str) -> Daemon:
    env = {"TRAIL_FLUSH_INTERVAL": flush_interval, "TRAIL_DISK_HEADROOM": str(HEADROOM)}
    return Daemon(disk.mount_point, "--no-access-log", env=env, prefix=disk.prefix)


@dataclass
class Answer:
    status: int
    retry_after: str | None
    body: bytes


def call(port: int, method: str, path: str, body: object = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        headers = {"User-Agent": BROWSER_UA, "Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheader("Retry-After"), resp.read())
    finally:
        conn.close()


def post_event(port: int, event_id: str) -> Answer:
    body = {"visit_token": "disk-visit", "visitor_token": "disk-visitor",
            "events": [{"name": "tick", "id": event_id, "time": time.time(),
                        "properties": {"pad": "x" * 200}}]}  # fmt: skip
    return call(port, "POST", "/ahoy/events", body)


class Beacons:
    """Sends events and keeps what was acknowledged (200) and refused (503) apart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.acked: list[str] = []
        self.refused: list[Answer] = []
        self.refused_ids: list[str] = []
        self.other: list[int] = []
        self.lock = threading.Lock()

    def send(self) -> Answer:
        event_id = str(uuid.uuid4())
        answer = post_event(self.port, event_id)
        with self.lock:
            if answer.status == 200:
                self.acked.append(event_id)
            elif answer.status == 503:
                self.refused.append(answer)
                self.refused_ids.append(event_id)
            else:
                self.other.append(answer.status)
        return answer

    def until_refused(self, most: int = 200) -> None:
        for _ in range(most):
            if self.send().status == 503:
                return
        raise AssertionError(f"no 503 in {most} requests on a full disk")


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def metric(port: int, name: str) -> float:
    text = call(port, "GET", "/metrics").body.decode()
    line = next(line for line in text.splitlines() if line.startswith(f"trail_{name} "))
    return float(line.split()[1])


def stored_event_ids(disk: SmallDisk) -> list[str]:
    """Every stored event id, duplicates kept, read where the tmpfs is mounted (the Delta
    readers resolve `/proc/<pid>/root` to this process's own root)."""
    code = (
        "import json, sys, pathlib; from collector_support import stored; "
        "print(json.dumps([e['event_id'] for e in stored(pathlib.Path(sys.argv[1]), 'events')]))"
    )
    out = subprocess.run(
        [*disk.prefix, sys.executable, "-c", code, str(disk.mount_point)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    ids: list[str] = json.loads(out.stdout)
    return ids


def stored_once(disk: SmallDisk, acked: list[str], refused: list[str]) -> None:
    ids = stored_event_ids(disk)
    counts: dict[str, int] = {}
    for event_id in ids:
        counts[event_id] = counts.get(event_id, 0) + 1
    assert [e for e in acked if e not in counts] == []  # nothing acknowledged lost
    assert {e: n for e, n in counts.items() if n > 1} == {}  # nor stored twice
    assert [e for e in refused if e in counts] == []  # a 503 stored nothing


def segments(disk: SmallDisk) -> dict[str, int]:
    wal_dir = disk.path / "_wal" / "daemon-test"
    return {p.name: p.stat().st_size for p in sorted(wal_dir.glob("*.wal"))}


@pytest.mark.slow
def test_a_full_disk_answers_503_then_recovers_under_load(small_disk: SmallDisk) -> None:
    daemon = collector(small_disk, "0.3")
    beacons = Beacons(daemon.port)
    for _ in range(20):
        assert beacons.send().status == 200

    small_disk.fill()
    beacons.until_refused()
    for _ in range(300):
        beacons.send()
    assert len(beacons.refused) >= 300 and beacons.other == []
    assert {a.retry_after for a in beacons.refused} == {"1"}  # the next commit attempt
    assert beacons.refused[0].body == b"Service unavailable: storage full, retry later\n"
    visit = {"visit_token": "v-full", "visitor_token": "u-full"}
    answer = call(daemon.port, "POST", "/ahoy/visits", visit)
    assert (answer.status, answer.retry_after) == (503, "1")
    health = call(daemon.port, "GET", "/health")
    assert health.status == 503 and health.retry_after == "1"
    body = json.loads(health.body)
    assert body["status"] == "degraded"
    assert body["reasons"][0].startswith("disk full: writes refused for")
    assert metric(daemon.port, "disk_full") == 1
    assert metric(daemon.port, "writes_refused_total") >= len(beacons.refused)

    # free the space while beacons keep coming: refused until the WAL is committed, then stored
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            beacons.send()

    loaders = [threading.Thread(target=load) for _ in range(4)]
    for loader in loaders:
        loader.start()
    try:
        refused_before = len(beacons.refused)
        wait_for(lambda: len(beacons.refused) > refused_before + 20, "refusals under load")
        acked_before = len(beacons.acked)
        small_disk.free()
        wait_for(lambda: len(beacons.acked) > acked_before + 500, "beacons stored again")
        wait_for(lambda: call(daemon.port, "GET", "/health").status == 200, "/health ok")
    finally:
        stop.set()
        for loader in loaders:
            loader.join(30)
    assert json.loads(call(daemon.port, "GET", "/health").body)["status"] == "ok"
    assert metric(daemon.port, "disk_full") == 0
    assert metric(daemon.port, "disk_full_episodes_total") == 1  # the freed space did not fill

    assert daemon.stop(signal.SIGTERM) == 0
    log = "".join(daemon.lines)
    assert "Traceback" not in log
    # thousands of refusals, a handful of lines: one as the episode begins, one per 10 s of
    # refusals or failed commits (with their count), one when it ends
    problems = [line for line in daemon.lines if " WARNING " in line or " ERROR " in line]
    assert 2 <= len(problems) <= 8, problems
    assert any("accepting writes again" in line for line in problems)
    stored_once(small_disk, beacons.acked, beacons.refused_ids)


@pytest.mark.slow
def test_sigterm_on_a_full_disk_keeps_the_wal_for_the_next_start(small_disk: SmallDisk) -> None:
    daemon = collector(small_disk, "3600")  # nothing is committed before the disk is full
    beacons = Beacons(daemon.port)
    for _ in range(20):
        assert beacons.send().status == 200
    small_disk.fill()
    beacons.until_refused()

    assert daemon.stop(signal.SIGTERM) == 1
    log = "".join(daemon.lines)
    assert "Traceback" not in log
    assert "Error: The disk holding" in log and "stay in its WAL" in log
    assert "Hint: free space on that disk and start 'trail collect' again" in log
    kept = segments(small_disk)
    assert kept and all(size > 0 for size in kept.values()), kept  # no 0-byte segment

    # starting while the disk is still full: a clear error, the WAL as it was
    cmd = [*small_disk.prefix, sys.executable, "-c", "from trailcli.cli import main; main()",
           "collect", "--port", "0", "--data-dir", str(small_disk.mount_point),
           "--node-id", "daemon-test", "--no-compact"]  # fmt: skip
    start = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert start.returncode == 1, start.stderr
    assert "Error: The disk holding" in start.stderr and "is full" in start.stderr
    assert "Hint: free space on that disk and start again" in start.stderr
    assert "Traceback" not in start.stderr
    assert segments(small_disk) == kept

    small_disk.free()
    again = collector(small_disk, "2")  # commits what the WAL kept
    assert again.stop(signal.SIGTERM) == 0
    assert segments(small_disk) == {}
    stored_once(small_disk, beacons.acked, beacons.refused_ids)


# --- every route that writes, in process (the writer put in its full state) --------------------

SECRET = "app-server-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}


async def test_every_writing_route_answers_503_while_full_and_stores_a_retry_after(
    aiohttp_client: Any, data_dir: Path
) -> None:
    app = create_app(make_settings(data_dir, secret=SECRET, disk_headroom=1 << 62))
    client = await aiohttp_client(app)
    writer = app[WRITER]
    assert writer.disk.note_full("No space left on device")  # as a write that found no space
    event = {"name": "tick", "id": "e-retried", "properties": {}}
    requests = [
        ("/ahoy/visits", {"visit_token": "v-1", "visitor_token": "w-1"}, {}),
        ("/ahoy/events", {"visit_token": "v-1", "visitor_token": "w-1", "events": [event]}, {}),
        ("/api/visits", {"visit_token": "v-2", "visitor_token": "w-2"}, AUTH),
        ("/api/events", {"visit_token": "v-2", "events": [{**event, "id": "e-api"}]}, AUTH),
        ("/api/identify", {"visit_token": "v-2", "user_id": "u-7"}, AUTH),
    ]
    for path, body, headers in requests:
        resp = await client.post(path, json=body, headers={"User-Agent": BROWSER_UA, **headers})
        assert (resp.status, resp.headers.get("Retry-After")) == (503, "1"), path
        text = await resp.text()
        if path.startswith("/api/"):
            assert "disk is full" in json.loads(text)["error"], path
    health = await client.get("/health")
    assert health.status == 503
    body = await health.json()
    assert (body["status"], health.headers.get("Retry-After")) == ("degraded", "1")
    assert len(body["reasons"]) == 1
    assert body["reasons"][0].startswith("disk full: writes refused for ")
    assert body["reasons"][0].endswith("s (No space left on device) until the WAL is committed "
                                       f"and {1 << 62} bytes are free")  # fmt: skip
    metrics = await (await client.get("/metrics")).text()
    assert "\ntrail_disk_full 1\n" in metrics
    refused = metrics.split("\ntrail_writes_refused_total ")[1].split()[0]
    assert int(refused) >= 5  # and the presence tracker's rows (retried)
    assert 'trail_http_requests_total{route="/ahoy/events",status="503"} 1' in metrics

    writer.disk_headroom = 0
    await asyncio.to_thread(writer.flush)  # committed, with room: the episode ends
    assert (await client.get("/health")).status == 200
    for path, body, headers in requests:  # the clients send them again
        resp = await client.post(path, json=body, headers={"User-Agent": BROWSER_UA, **headers})
        assert resp.status == 200, path
    await client.close()
    assert {e["event_id"] for e in stored(data_dir, "events")} == {"e-retried", "e-api"}
    assert {v["visit_token"] for v in stored(data_dir, "visits")} == {"v-1", "v-2"}
    assert [i["user_id"] for i in stored(data_dir, "identities")] == ["u-7"]

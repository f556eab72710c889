"""The daemon as users run it: a `trail collect` process, its startup line, SIGTERM and SIGKILL."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from collector_support import BROWSER_UA, Daemon, stored


def request(port: int, method: str, path: str, body: Any = None) -> int:
    """Send one request on a fresh connection; the status code."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body)
        headers = {"User-Agent": BROWSER_UA, "Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def post_event(port: int, event_id: str) -> int:
    body = {"visit_token": "kill-visit", "visitor_token": "kill-visitor",
            "events": [{"name": "tick", "id": event_id, "time": time.time(), "properties": {}}]}  # fmt: skip
    return request(port, "POST", "/ahoy/events", body)


def test_startup_line_and_clean_sigterm(data_dir: Path) -> None:
    daemon = Daemon(data_dir, "--no-access-log")
    assert f"writing to {data_dir}" in daemon.startup
    assert "(node daemon-test)" in daemon.startup
    visit = {"visit_token": "v1", "visitor_token": "u1", "landing_page": "https://x.test/"}
    status = request(daemon.port, "POST", "/ahoy/visits", visit)
    assert status == 200
    assert post_event(daemon.port, "e1") == 200
    assert daemon.stop(signal.SIGTERM) == 0
    assert sorted(v["visit_token"] for v in stored(data_dir, "visits")) == ["kill-visit", "v1"]
    assert [e["event_id"] for e in stored(data_dir, "events")] == ["e1"]


def test_sigint_exits_zero_and_access_log_goes_to_stderr(data_dir: Path) -> None:
    daemon = Daemon(data_dir)
    assert request(daemon.port, "GET", "/health") == 200
    assert daemon.stop(signal.SIGINT) == 0
    assert any('"GET /health HTTP/1.1" 200' in line for line in daemon.lines)


def test_the_access_log_never_shows_secrets_from_urls(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlencode

    monkeypatch.setenv("TRAIL_SECRET", "s3cret-value")
    monkeypatch.setenv("TRAIL_API_TOKEN", "read-token-value")
    daemon = Daemon(data_dir)
    handshake = {"channel": "/meta/handshake", "version": "1.0", "id": "1",
                 "supportedConnectionTypes": ["callback-polling"],
                 "ext": {"auth": "s3cret-value", "auth_token": "rails-token-value",
                         "trail": {"token": "read-token-value", "visit_token": "v1"}}}  # fmt: skip
    jsonp = "/faye?" + urlencode({"message": json.dumps([handshake]), "jsonp": "__jsonp1__"})
    assert request(daemon.port, "GET", jsonp) == 200
    assert request(daemon.port, "GET", "/health?api_token=read-token-value&x=1") == 200
    assert daemon.stop(signal.SIGTERM) == 0
    log = "".join(daemon.lines)
    for secret in ("s3cret-value", "rails-token-value", "read-token-value"):
        assert secret not in log
    faye_line = next(line for line in daemon.lines if '"GET /faye?' in line)
    assert (
        "[redacted]" in faye_line and "__jsonp1__" in faye_line and "/meta/handshake" in faye_line
    )
    assert '"GET /health?api_token=[redacted]&x=1 HTTP/1.1" 200' in log


@pytest.mark.slow
def test_sigkill_under_load_loses_and_repeats_nothing(data_dir: Path) -> None:
    daemon = Daemon(data_dir, "--no-access-log")
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            event_id = str(uuid.uuid4())
            try:
                status = post_event(daemon.port, event_id)
            except OSError:
                return  # the daemon is gone
            if status == 200:
                with lock:
                    acked.append(event_id)

    workers = [threading.Thread(target=stream) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(2.5)  # several WAL commits (every 2 s) happen under the stream
    daemon.proc.kill()
    daemon.proc.wait(30)
    stop.set()
    for w in workers:
        w.join(30)
    assert len(acked) > 50

    again = Daemon(data_dir, "--no-access-log")  # recovers the WAL left by the killed process
    assert again.stop() == 0
    ids = [e["event_id"] for e in stored(data_dir, "events")]
    counts: dict[str, int] = {}
    for event_id in ids:
        counts[event_id] = counts.get(event_id, 0) + 1
    missing = [e for e in acked if e not in counts]
    repeated = {e: n for e, n in counts.items() if n > 1}
    assert missing == []
    assert repeated == {}
    assert json.dumps(sorted(set(acked) - set(ids))) == "[]"


def test_port_in_use_is_a_clear_error(data_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect",
               "--port", str(port), "--data-dir", str(data_dir), "--no-compact"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_unreadable_geoip_file_exits_2(data_dir: Path) -> None:
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect", "--port", "0",
           "--data-dir", str(data_dir), "--geoip", str(data_dir / "missing.mmdb")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Cannot open GeoIP database" in done.stderr
    assert "No such file or directory" in done.stderr
    assert "--geoip" in done.stderr


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cmd = [sys.executable, "-c", "from trailcli.cli import main; main()", "collect", "--port", "0",
           "--data-dir", str(blocker / "data")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"Cannot write to the data dir {blocker / 'data'}" in done.stderr
    assert "Traceback" not in done.stderr

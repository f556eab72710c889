"""Helpers for the collector tests: settings for a temp data dir, a live in-process app, stored rows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trailcli.collector.settings import Settings

BROWSER_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:78.0) Gecko/20100101 Firefox/78.0"
BOT_UA = "DuckDuckBot/1.0; (+http://duckduckgo.com/duckduckbot.html)"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: a temp data dir, fast WAL commits, no background compaction or access log."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "node_id": "test-node",
        "compact": False,
        "flush_interval": 0.2,
        "access_log": False,
    }
    base.update(overrides)
    return Settings(**base)


def stored(data_dir: Path, kind: str, raw: bool = True) -> list[dict[str, Any]]:
    """Every committed row of `kind` (raw: duplicates kept), ordered by its time column."""
    from trailcli.store import views
    from trailcli.store.schema import KINDS

    con = views.connect(data_dir, need=())
    name = f"raw_{kind}" if raw else kind
    order = KINDS[kind].time_column
    cur = con.execute(f"SELECT * FROM {name} ORDER BY {order}")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


class Clock:
    """A settable clock for the collector's notion of now."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


# --- a tiny MaxMind DB writer (format spec: MaxMind DB File Format 2.0) ---------------------------


def _mmdb_ctrl(type_: int, size: int) -> bytes:
    if size < 29:
        head, tail = size, b""
    elif size < 285:
        head, tail = 29, bytes([size - 29])
    else:
        head, tail = 30, (size - 285).to_bytes(2, "big")
    if type_ <= 7:
        return bytes([(type_ << 5) | head]) + tail
    return bytes([head, type_ - 7]) + tail


def mmdb_encode(value: Any) -> bytes:
    """One value in the MaxMind DB data section encoding."""
    import struct

    if isinstance(value, tuple):  # (type number, int): uint16 = 5, uint32 = 6, uint64 = 9
        type_, number = value
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
        return _mmdb_ctrl(type_, len(raw)) + raw
    if isinstance(value, bool):
        return _mmdb_ctrl(14, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _mmdb_ctrl(2, len(raw)) + raw
    if isinstance(value, float):
        return _mmdb_ctrl(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
        return _mmdb_ctrl(6 if value < 2**32 else 9, len(raw)) + raw
    if isinstance(value, dict):
        body = b"".join(mmdb_encode(str(k)) + mmdb_encode(v) for k, v in value.items())
        return _mmdb_ctrl(7, len(value)) + body
    if isinstance(value, list):
        return _mmdb_ctrl(11, len(value)) + b"".join(mmdb_encode(v) for v in value)
    raise TypeError(type(value))


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]]) -> Path:
    """Write an IPv6 MaxMind DB (24-bit records) mapping each network (v4 or v6) to a record."""
    import ipaddress

    nodes: list[list[Any]] = [[None, None]]
    data = b""
    for cidr, record in networks.items():
        net = ipaddress.ip_network(cidr)
        if net.version == 4:
            bits, plen = int(net.network_address), 96 + net.prefixlen
        else:
            bits, plen = int(net.network_address) << 0, net.prefixlen
        offset = len(data)
        data += mmdb_encode(record)
        node = 0
        for depth in range(plen):
            bit = (
                (bits >> (127 - depth)) & 1
                if net.version == 6
                else (0 if depth < 96 else (bits >> (127 - depth)) & 1)
            )
            if depth == plen - 1:
                nodes[node][bit] = ("data", offset)
            else:
                if nodes[node][bit] is None:
                    nodes.append([None, None])
                    nodes[node][bit] = ("node", len(nodes) - 1)
                node = nodes[node][bit][1]
    count = len(nodes)

    def value(rec: Any) -> int:
        if rec is None:
            return count
        return rec[1] if rec[0] == "node" else count + 16 + rec[1]

    tree = b"".join(
        value(left).to_bytes(3, "big") + value(right).to_bytes(3, "big") for left, right in nodes
    )
    meta = {
        "node_count": (6, count),
        "record_size": (5, 24),
        "ip_version": (5, 6),
        "database_type": "trail-test-City",
        "languages": ["en"],
        "binary_format_major_version": (5, 2),
        "binary_format_minor_version": (5, 0),
        "build_epoch": (9, 1_700_000_000),
        "description": {"en": "test database"},
    }
    path.write_bytes(tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + mmdb_encode(meta))
    return path


# --- a real `trail collect` process ------------------------------------------------------------

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+), writing to (.+) \(node (\S+)\)")


class Daemon:
    """A `trail collect` subprocess on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        open_files: tuple[int, int] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        """Start it with `args`; `env` adds variables, `open_files` sets its (soft, hard)
        RLIMIT_NOFILE before it starts, `prefix` runs it through another command that execs it
        (`nsenter ...`)."""
        cmd = [*prefix, sys.executable, "-c", "from trailcli.cli import main; main()", "collect", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(data_dir), "--node-id", "daemon-test", "--no-compact", *args]  # fmt: skip
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

        def limit_files() -> None:
            if open_files is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

        self.proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, text=True, env=full_env, preexec_fn=limit_files
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline() if self.proc.stderr else ""
            if not line:
                raise AssertionError("collector exited: " + "".join(self.lines))
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                self.startup = line
                break
        else:
            raise AssertionError("no startup line")
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self._drain.join(5)
        return code

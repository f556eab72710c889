"""`trail collect --workers N`: N node processes serving one port, supervised by this one.

The parent picks the port (binding it with SO_REUSEPORT, which also settles `--port 0`), starts
each worker as its own node (`<node-id>-1` ... `-N`, each with its WAL, all in the cluster of
`--redis`) listening on that port with SO_REUSEPORT, so the kernel spreads connections among
them. It forwards SIGTERM and SIGINT, restarts a worker that dies while serving (with backoff),
and exits once every worker has stopped: 0 when all stopped cleanly. A worker that cannot start
stops the others: the parent exits with its code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from trailcli.collector.settings import Settings
from trailcli.errors import TrailError

log = logging.getLogger("trail.collect")

START_SECONDS = 120.0  # a worker not listening by then is a failed start
RESTART_FIRST, RESTART_MAX = 1.0, 30.0  # seconds before restarting a worker that died


def worker_ids(node_id: str, workers: int) -> list[str]:
    return [f"{node_id}-{i}" for i in range(1, workers + 1)]


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, and the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TrailError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            "pass another --port (0 picks a free one) or stop what is using it",
        ) from None
    return sock, sock.getsockname()[1]


def _worker(settings: Settings, reports: Any, purge: Any, ready: MpEvent) -> None:
    """One worker: the daemon, listening with SO_REUSEPORT; errors end it as the CLI would."""
    from trailcli.collector.daemon import run

    try:
        run(settings, reports=reports, purge=purge, reuse_port=True, on_ready=ready.set)
    except TrailError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        sys.exit(130)


class Supervisor:
    def __init__(self, settings: Settings, reports: Any, purge: Any = None) -> None:
        from trailcli.store.layout import resolve_node_id

        self.settings = settings
        self.reports = reports
        self.purge = purge  # the daily purge of --retention (picklable), or None
        self.ctx = multiprocessing.get_context("spawn")  # no event loop or threads inherited
        base = resolve_node_id(settings.data_dir, settings.node_id)
        self.ids = worker_ids(base, settings.workers)
        self.procs: dict[str, BaseProcess] = {}
        self.ready: dict[str, MpEvent] = {}  # kept: the child unpickles it after start() returns
        self.stopping = False
        self.port = settings.port

    def _spawn(self, node_id: str) -> tuple[BaseProcess, MpEvent]:
        one = dataclasses.replace(self.settings, node_id=node_id, port=self.port, workers=1)
        ready = self.ctx.Event()
        proc = self.ctx.Process(
            target=_worker, args=(one, self.reports, self.purge, ready), name=f"trail-{node_id}"
        )
        proc.start()
        self.procs[node_id], self.ready[node_id] = proc, ready
        return proc, ready

    def _stop_all(self, sig: int = signal.SIGTERM) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid is not None:
                proc_signal(proc.pid, sig)

    def run(self) -> int:
        sock, self.port = reserve_port(self.settings.host, self.settings.port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self._stop_all(signal.SIGTERM))
        try:
            started = [self._spawn(node_id) for node_id in self.ids]
            deadline = time.monotonic() + START_SECONDS
            for proc, ready in started:
                while not ready.wait(0.2):
                    if self.stopping:
                        break
                    if not proc.is_alive() or time.monotonic() > deadline:
                        code = proc.exitcode if proc.exitcode else 1
                        self._stop_all()
                        self._join_all()
                        return code
        finally:
            sock.close()  # the workers hold the port now
        return self._supervise()

    def _supervise(self) -> int:
        delays = dict.fromkeys(self.ids, RESTART_FIRST)
        worst = 0
        while True:
            alive = [p for p in self.procs.values() if p.is_alive()]
            if self.stopping and not alive:
                break
            for node_id, proc in list(self.procs.items()):
                if proc.is_alive() or self.stopping:
                    continue
                code = proc.exitcode or 0
                log.warning(
                    "worker %s exited (%s); restarting in %.0f s", node_id, code, delays[node_id]
                )
                if _sleep_unless(lambda: self.stopping, delays[node_id]):
                    break
                delays[node_id] = min(delays[node_id] * 2, RESTART_MAX)
                self._spawn(node_id)
            time.sleep(0.2)
        for proc in self.procs.values():
            proc.join()
            worst = max(worst, abs(proc.exitcode or 0))
        return 0 if worst == 0 else 1

    def _join_all(self) -> None:
        for proc in self.procs.values():
            proc.join(60)


def _sleep_unless(stop: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop():
            return True
        time.sleep(0.1)
    return stop()


def proc_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def supervise(settings: Settings, reports: Any = None, purge: Any = None) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT; the exit code."""
    from trailcli.collector.daemon import configure_logging

    configure_logging()
    return Supervisor(settings, reports, purge).run()

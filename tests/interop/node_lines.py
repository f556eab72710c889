"""A child process's stdout as lines, waited for with a deadline.

`select()` on a pipe and then `readline()` on its buffered file loses lines: when two lines arrive
in one read, the second waits in the file's buffer while `select()` sees an empty pipe. A thread
reads every line into a queue instead.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import IO


class Lines:
    """Every line `stream` yields, in order, until it ends."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        self.ended = False

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, deadline: float) -> str | None:
        """The next line (stripped), or None once the stream ended or `deadline`
        (a `time.monotonic()` value) passed."""
        if self.ended:
            return None
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            self.ended = True
            return None
        return line.strip()

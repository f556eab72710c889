"""The interop tests' line reader: lines that reach the pipe together are all seen."""

from __future__ import annotations

import io
import subprocess
import sys
import time

from node_lines import Lines


def test_lines_written_in_one_chunk_are_all_read_while_the_writer_lives() -> None:
    # a Faye client prints "up" and "ready ..." at once and then waits, as listen.js does
    child = subprocess.Popen(
        [sys.executable, "-c", "print('up\\nready abc', flush=True); import time; time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = Lines(child.stdout)
        deadline = time.monotonic() + 10
        assert [lines.next(deadline), lines.next(deadline)] == ["up", "ready abc"]
    finally:
        child.kill()
        child.wait()


def test_the_end_of_the_stream_and_a_passed_deadline_give_none() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "print('only')"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    lines = Lines(child.stdout)
    deadline = time.monotonic() + 10
    assert lines.next(deadline) == "only"
    assert lines.next(deadline) is None
    assert lines.ended
    child.wait()
    assert Lines(io.StringIO("")).next(time.monotonic()) is None

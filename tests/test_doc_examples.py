"""The shell examples of README.md and docs/ work as written.

A block marked `<!-- runnable -->` runs as one shell session (variables carry from one command to
the next; the first failing command fails it) in a directory holding a fresh `trail sample` in
`./trail-data`, as `make demo` leaves it; one marked `<!-- runnable: collector -->` runs against
a live `trail collect` (its address put in place of 127.0.0.1:9292). Every `trail` command line
of every shell example, runnable or not, may only use options its command has.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector_support import Daemon

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"(?:<!-- runnable(?:: (\w+))? -->\n)?```(?:sh|bash)\n(.*?)```", re.S)
DEFAULT_ADDRESS = "127.0.0.1:9292"


def _commands(block: str) -> Iterator[str]:
    """The block's commands: continuation lines and quotes spanning lines joined, comment-only
    lines left out."""
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        yield pending.strip()
        pending = ""
    assert not pending, f"unfinished command: {pending!r}"


def _blocks() -> list[tuple[str, str | None, str]]:
    """(where, mark, text) of every shell block; mark is None for a block not marked runnable,
    '' for the sample, or the mark's name."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in SHELL_BLOCK.finditer(text):
            runnable = match.group(0).startswith("<!--")
            line = text[: match.start()].count("\n") + 1 + runnable
            mark = (match.group(1) or "") if runnable else None
            found.append((f"{doc.relative_to(ROOT)}:{line}", mark, match.group(2)))
    return found


BLOCKS = _blocks()
ON_SAMPLE = [(w, b) for w, m, b in BLOCKS if m == ""]
ON_COLLECTOR = [(w, b) for w, m, b in BLOCKS if m == "collector"]
EXAMPLES = [(w, c) for w, _, b in BLOCKS for c in _commands(b)]


def _script(block: str) -> str:
    """The block as a script that stops at the first failing command (pipes included)."""
    return "set -e -o pipefail\n" + "\n".join(_commands(block))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAIL_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["CURL_HOME"] = str(home)  # its .curlrc makes an HTTP error a failing exit code
    env["COLUMNS"] = "120"
    return env


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -o pipefail\n" + command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory as `make demo` leaves it: a week of sample traffic in ./trail-data."""
    where = tmp_path_factory.mktemp("demo")
    (where / ".curlrc").write_text("fail-with-body\n")
    done = _run("trail sample --data-dir ./trail-data", where, _env(where))
    assert done.returncode == 0, done.stderr
    return where


def test_the_docs_mark_examples_runnable() -> None:
    commands = sum(len(list(_commands(b))) for _, b in ON_SAMPLE)
    assert commands >= 20 and len(ON_COLLECTOR) >= 1
    assert {w.split(":")[0] for w, _ in ON_SAMPLE} >= {"README.md", "docs/presence.md"}


@pytest.mark.slow
@pytest.mark.parametrize(("where", "block"), ON_SAMPLE, ids=[w for w, _ in ON_SAMPLE])
def test_runnable_example_on_the_sample(demo_dir: Path, where: str, block: str) -> None:
    done = _run(_script(block), demo_dir, _env(demo_dir))
    assert done.returncode == 0, f"{where}:\n{block}\n{done.stderr}"
    assert "Error:" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip() or block.startswith("trail compact"), f"{where}: no output"


@pytest.mark.slow
def test_runnable_examples_against_a_collector(tmp_path: Path, monkeypatch) -> None:
    """The README's quick look at the API stores what it sends."""
    monkeypatch.setenv("TRAIL_FLUSH_INTERVAL", "0.2s")
    (tmp_path / ".curlrc").write_text("fail-with-body\n")
    daemon = Daemon(tmp_path / "data")
    try:
        address = f"127.0.0.1:{daemon.port}"
        for where, block in ON_COLLECTOR:
            script = _script(block).replace(DEFAULT_ADDRESS, address)
            done = _run(script, tmp_path, _env(tmp_path))
            assert done.returncode == 0, f"{where}:\n{block}\n{done.stdout}{done.stderr}"
    finally:
        assert daemon.stop() == 0
    query = "SELECT (SELECT count(*) FROM visits) AS visits, (SELECT string_agg(name) FROM events) AS names"
    done = _run(f'trail sql "{query}" -f csv --data-dir data', tmp_path, _env(tmp_path))
    assert done.stdout.splitlines()[1:] == ["1,signup"], done.stderr


@pytest.mark.slow
def test_a_visit_sent_with_curls_own_user_agent_is_answered_but_not_stored(
    tmp_path: Path, monkeypatch
) -> None:
    """What the README says about curl: 200 with the usual body, nothing stored, a bot drop."""
    monkeypatch.setenv("TRAIL_FLUSH_INTERVAL", "0.2s")
    daemon = Daemon(tmp_path / "data")
    env = _env(tmp_path)
    try:
        url = daemon.url("/ahoy/visits")
        body = '{"visit_token": "v-curl", "visitor_token": "p-curl"}'
        sent = _run(
            f"curl -s -w '\\n%{{http_code}}' -H 'Content-Type: application/json' {url} -d '{body}'",
            tmp_path,
            env,
        )
        reply, status = sent.stdout.rsplit("\n", 1)
        assert status == "200" and '"visit_token": "v-curl"' in reply.replace('":"', '": "')
        metrics = _run(f"curl -s {daemon.url('/metrics')}", tmp_path, env).stdout
        assert re.search(r'trail_drops_total\{reason="bot"\} 1\b', metrics), metrics
    finally:
        assert daemon.stop() == 0
    done = _run(
        "trail sql 'SELECT count(*) AS n FROM visits' -f csv --data-dir data", tmp_path, env
    )
    assert done.returncode == 0 and done.stdout == "n\n0\n", done.stderr


def _option_names(tokens: list[str]) -> tuple[str, set[str], list[str]]:
    """The command path, its option names, and the tokens after the path."""
    import typer.main

    from trailcli.cli import app

    command = typer.main.get_command(app)  # a click command (groups have `commands`)
    path = ["trail"]
    rest = tokens[1:]
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    names = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    return " ".join(path), names | {"--help", "-h"}, rest


TRAIL_LINES = [(w, c) for w, c in EXAMPLES if shlex.split(c, comments=True)[0] == "trail"]


@pytest.mark.parametrize(("where", "command"), TRAIL_LINES, ids=[w for w, _ in TRAIL_LINES])
def test_example_options_exist(where: str, command: str) -> None:
    tokens = shlex.split(command, comments=True)
    tokens = tokens[: tokens.index("|")] if "|" in tokens else tokens
    path, names, rest = _option_names(tokens)
    unknown = [
        t.split("=")[0]
        for t in rest
        if t.startswith("-") and not re.match(r"^-\d", t) and t.split("=")[0] not in names
    ]
    assert not unknown, f"{where}: `{path}` has no option {unknown}"
    for flag in ("--faye-client-js", "--referrer-db"):
        if flag in rest:
            value = rest[rest.index(flag) + 1]
            assert value in ("matomo",) or (ROOT / value).exists(), f"{where}: no file {value}"


def test_help_texts_name_the_collectors_default_port(run_cli) -> None:
    """Every example address in `--help` uses the collector's default port, 9292."""
    import typer.main

    from trailcli.cli import app

    def paths(command, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        yield prefix
        for name, sub in getattr(command, "commands", {}).items():
            yield from paths(sub, (*prefix, name))

    for path in paths(typer.main.get_command(app)):
        text = run_cli(*path, "--help").stdout
        ports = set(re.findall(r"(?:127\.0\.0\.1|localhost|HOST):(\d+)", text))
        assert ports <= {"9292"}, (path, ports)

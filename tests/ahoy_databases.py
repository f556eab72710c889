"""Real PostgreSQL and MariaDB servers for the import tests, and Ahoy's tables in them.

Each server runs from Debian's binaries in its own temporary directory on a free loopback port,
once per test session, and is stopped at the end. PostgreSQL refuses to run as root, so as root it
runs as `nobody` (via `setpriv`) in a directory that user owns. The tables are created with the
column types Ahoy's migration generator gives on each database (Rails 7: `t.string` is
`character varying` / `varchar(255)`, `t.text` is `text`, `t.references` a `bigint`, `t.float`
`double precision` / `float`, `t.datetime` `timestamp(6)` / `datetime(6)`, properties `jsonb` /
`json`), filled with generated rows including odd ones.
"""

from __future__ import annotations

import getpass
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL = "/usr/bin/mariadb-install-db"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


class PostgresServer:
    """initdb + postgres in a temp dir, as `nobody` when run as root."""

    def __init__(self) -> None:
        if not PG_BIN:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(PG_BIN[-1])
        self.root = Path(tempfile.mkdtemp(prefix="trail-pg-"))
        self.port = free_port()
        self.as_nobody = os.geteuid() == 0
        if self.as_nobody:
            shutil.chown(self.root, "nobody", "nogroup")
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self, *args: str) -> list[str]:
        drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        return [*(drop if self.as_nobody else []), *args]

    def start(self) -> PostgresServer:
        data = self.root / "data"
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
        subprocess.run(
            self._command(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
                          "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"),
            check=True, capture_output=True, env=env, cwd=self.root,
        )  # fmt: skip
        log = open(self.root / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self._command(str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
                          "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                          "-c", "fsync=off", "-c", "synchronous_commit=off",
                          "-c", "full_page_writes=off"),
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
        )  # fmt: skip
        _wait_port(self.port, self.proc, "postgres")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, encoding: str = "UTF8") -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(
                f"CREATE DATABASE \"{name}\" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            )
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


class MariaDBServer:
    """mariadb-install-db + mariadbd in a temp dir."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="trail-mariadb-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MariaDBServer:
        data = self.root / "data"
        user = f"--user={getpass.getuser()}"
        subprocess.run(
            [MARIADB_INSTALL, "--no-defaults", f"--datadir={data}", user,
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, cwd=self.root,
        )  # fmt: skip
        log = open(self.root / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root / 'sock'}",
             f"--pid-file={self.root / 'pid'}", user, "--skip-name-resolve",
             "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=64M",
             "--skip-log-bin", "--max-allowed-packet=64M"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
        )  # fmt: skip
        _wait_port(self.port, self.proc, "mariadbd")
        return self

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", password="", database=database,
            charset="utf8mb4", autocommit=True, init_command="SET time_zone = '+00:00'",
        )  # fmt: skip

    def create_database(self, name: str, charset: str = "utf8mb4") -> str:
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET {charset}")
        conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def _missing(*paths: str) -> str | None:
    gone = [p for p in paths if not Path(p).exists()]
    return ", ".join(gone) if gone else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip(
        "psycopg", reason="the import extra is not installed (pip install -e '.[import]')"
    )
    if not PG_BIN:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    pytest.importorskip(
        "pymysql", reason="the import extra is not installed (pip install -e '.[import]')"
    )
    missing = _missing(MARIADBD, MARIADB_INSTALL)
    if missing:
        pytest.skip(f"MariaDB is not installed ({missing}; make test installs mariadb-server)")
    server = MariaDBServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ahoy_pg_main(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Generated Ahoy rows (odd ones included) in PostgreSQL, imported once in batches of 128:
    (url, data, data dir, result, progress as (table, rows read) per report)."""
    from trailcli.importer.ahoy import AhoyImport, import_ahoy

    url = postgres_server.create_database("ahoy_main")
    data = generate(seed=1, visits=300)
    create_postgres_tables(url, extra_column=data.extra_column)
    fill_postgres(url, data)
    data_dir = tmp_path_factory.mktemp("pg-main")
    progress: list[tuple[str, int]] = []
    request = AhoyImport(url, batch_size=128)
    result = import_ahoy(data_dir, request, lambda s: progress.append((s.table, s.read)))
    return url, data, data_dir, result, progress


@pytest.fixture(scope="session")
def ahoy_maria_main(mariadb_server: MariaDBServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same in MariaDB, imported through a `mysql2://` URL: (url, data, data dir, result)."""
    from trailcli.importer.ahoy import AhoyImport, import_ahoy

    url = mariadb_server.create_database("ahoy_main")
    data = generate(seed=5, visits=300, dialect="mysql")
    create_mysql_tables(mariadb_server, "ahoy_main", extra_column=data.extra_column)
    fill_mysql(mariadb_server, "ahoy_main", data)
    data_dir = tmp_path_factory.mktemp("maria-main")
    result = import_ahoy(data_dir, AhoyImport(url.replace("mysql://", "mysql2://"), batch_size=128))
    return url, data, data_dir, result


# --- Ahoy's tables --------------------------------------------------------------------------------

POSTGRES_DDL = """
CREATE TABLE ahoy_visits (
    id bigserial PRIMARY KEY,
    visit_token character varying, visitor_token character varying,
    user_id bigint,
    ip character varying, user_agent text, referrer text, referring_domain character varying,
    landing_page text,
    browser character varying, os character varying, device_type character varying,
    country character varying, region character varying, city character varying,
    latitude double precision, longitude double precision,
    utm_source character varying, utm_medium character varying, utm_term character varying,
    utm_content character varying, utm_campaign character varying,
    app_version character varying, os_version character varying, platform character varying,
    started_at timestamp(6) without time zone
    {extra_visit_columns}
);
CREATE INDEX index_ahoy_visits_on_user_id ON ahoy_visits (user_id);
CREATE UNIQUE INDEX index_ahoy_visits_on_visit_token ON ahoy_visits (visit_token);
CREATE INDEX index_ahoy_visits_on_visitor_token_and_started_at ON ahoy_visits (visitor_token, started_at);
CREATE TABLE ahoy_events (
    id bigserial PRIMARY KEY,
    visit_id bigint, user_id bigint,
    name character varying, properties {properties_type}, time timestamp(6) without time zone
);
CREATE INDEX index_ahoy_events_on_visit_id ON ahoy_events (visit_id);
CREATE INDEX index_ahoy_events_on_user_id ON ahoy_events (user_id);
CREATE INDEX index_ahoy_events_on_name_and_time ON ahoy_events (name, time);
"""
POSTGRES_GIN = "CREATE INDEX index_ahoy_events_on_properties ON ahoy_events USING gin (properties jsonb_path_ops)"

MYSQL_DDL = [
    """CREATE TABLE ahoy_visits (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    visit_token varchar(255), visitor_token varchar(255),
    user_id bigint,
    ip varchar(255), user_agent text, referrer text, referring_domain varchar(255),
    landing_page text,
    browser varchar(255), os varchar(255), device_type varchar(255),
    country varchar(255), region varchar(255), city varchar(255),
    latitude float, longitude float,
    utm_source varchar(255), utm_medium varchar(255), utm_term varchar(255),
    utm_content varchar(255), utm_campaign varchar(255),
    app_version varchar(255), os_version varchar(255), platform varchar(255),
    started_at datetime(6)
    {extra_visit_columns},
    INDEX index_ahoy_visits_on_user_id (user_id),
    UNIQUE INDEX index_ahoy_visits_on_visit_token (visit_token),
    INDEX index_ahoy_visits_on_visitor_token_and_started_at (visitor_token, started_at)
) ENGINE=InnoDB""",
    """CREATE TABLE ahoy_events (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    visit_id bigint, user_id bigint,
    name varchar(255), properties json, `time` datetime(6),
    INDEX index_ahoy_events_on_visit_id (visit_id),
    INDEX index_ahoy_events_on_user_id (user_id),
    INDEX index_ahoy_events_on_name_and_time (name, `time`)
) ENGINE=InnoDB""",
]

VISIT_FIELDS = (
    "id", "visit_token", "visitor_token", "user_id", "ip", "user_agent", "referrer",
    "referring_domain", "landing_page", "browser", "os", "device_type", "country", "region",
    "city", "latitude", "longitude", "utm_source", "utm_medium", "utm_term", "utm_content",
    "utm_campaign", "app_version", "os_version", "platform", "started_at",
)  # fmt: skip
EVENT_FIELDS = ("id", "visit_id", "user_id", "name", "properties", "time")


@dataclass
class AhoyData:
    """Generated Ahoy rows (dicts keyed by column), as written to the source database."""

    visits: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    extra_column: str | None = None  # a custom visit column (Ahoy apps add some)
    site_host: str = "shop.example"


FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:78.0) Gecko/20100101 Firefox/78.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.5 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
AGENTS = [FIREFOX, IPHONE, ANDROID_TABLET, CHROME_WIN, BOT]
# (referrer, known source name or None for "the host without www.")
REFERRERS = [
    (None, None),
    ("https://www.google.com/search?q=red+shoes", "Google"),
    ("https://m.facebook.com/", "Facebook"),
    ("https://blog.example.org/post/1", None),
    ("https://www.shop.example/cart", None),  # the site itself: no referrer
]
PAGES = ["/", "/product/1", "/product/2", "/pricing", "/blog/hello"]
FUNNEL = ["$view", "add_to_cart", "checkout", "purchase"]
START = datetime(2026, 3, 1, tzinfo=UTC)


def generate(seed: int, visits: int, odd: bool = True, dialect: str = "postgresql") -> AhoyData:
    """Visits with their events over a few days; `odd` adds the awkward rows."""
    rng = random.Random(seed)
    data = AhoyData(extra_column="accept_language")
    event_id = 0
    for n in range(1, visits + 1):
        started = START + timedelta(seconds=rng.randrange(0, 5 * 86400), microseconds=n)
        referrer, _name = rng.choice(REFERRERS)
        page = rng.choice(PAGES)
        query = ""
        utm = {
            k: None for k in ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
        }
        roll = rng.random()
        if roll < 0.15:
            utm.update(
                utm_source=rng.choice(["Newsletter", "partner"]),
                utm_medium="email",
                utm_campaign="spring",
            )
            query = f"?utm_source={utm['utm_source']}&utm_medium=email&utm_campaign=spring"
        elif roll < 0.22 and referrer is None:
            query = "?gclid=abc123"
        landing = f"https://www.{data.site_host}{page}{query}"
        agent = rng.choice(AGENTS)
        user = rng.randrange(1, 40) if rng.random() < 0.4 else None
        visit = {
            "id": n,
            "visit_token": f"visit-{seed}-{n:05d}",
            "visitor_token": f"visitor-{seed}-{rng.randrange(1, visits // 2 + 2):05d}",
            "user_id": user,
            "ip": f"198.51.100.{n % 250}",
            "user_agent": agent,
            "referrer": referrer,
            "referring_domain": referrer.split("/")[2] if referrer else None,
            "landing_page": landing,
            "browser": "Ahoy's browser", "os": "Ahoy's os", "device_type": "Desktop",
            "country": rng.choice(["Germany", "France", None]),
            "region": None, "city": rng.choice(["Berlin", "Paris", None]),
            "latitude": rng.choice([52.52, 48.85, None]), "longitude": rng.choice([13.4, 2.35, None]),
            **utm,
            "app_version": None, "os_version": None, "platform": "Web",
            "started_at": started,
            "accept_language": rng.choice(["de-DE", "fr", None]),
        }  # fmt: skip
        data.visits.append(visit)
        t = started
        steps = rng.randrange(1, 8)
        funnel_depth = rng.randrange(0, 5)
        for k in range(steps):
            t += timedelta(seconds=rng.randrange(1, 3000), microseconds=k + 1)
            if k < funnel_depth:
                name = FUNNEL[k]
            else:
                name = rng.choice(["$view", "$click", "search"])
            props: dict[str, Any] = {"page": rng.choice(PAGES)} if name == "$view" else {}
            if name == "add_to_cart":
                props = {
                    "sku": f"sku-{rng.randrange(100)}",
                    "price": rng.choice([9.99, 20, 0.5]),
                    "gift": rng.random() < 0.5,
                }
            event_id += 1
            event_user = user if user is not None and rng.random() < 0.8 else None
            data.events.append(
                {"id": event_id, "visit_id": n, "user_id": event_user, "name": name, "properties": props, "time": t}
            )  # fmt: skip
    if odd:
        _add_odd_rows(data, visits, event_id, dialect)
    return data


def _add_odd_rows(data: AhoyData, visits: int, event_id: int, dialect: str) -> None:
    when = START + timedelta(days=2, hours=3)
    base = {k: None for k in VISIT_FIELDS}
    odd_visits = [
        # a visit tracked from a background job: no request, so no user agent and no IP
        {**base, "visit_token": "odd-no-agent", "visitor_token": "odd-visitor-1", "user_id": 7,
         "device_type": "Smartphone", "browser": "Chrome Mobile", "os": "Android",
         "started_at": when, "accept_language": None},
        # a huge landing page (kept to the first 4096 characters, as the collector keeps it)
        {**base, "visit_token": "odd-long-page", "visitor_token": "odd-visitor-2",
         "landing_page": f"https://www.{data.site_host}/search?q=" + "x" * 6000,
         "user_agent": "", "started_at": when + timedelta(minutes=1), "accept_language": "",
         "country": "Bosnia and Herzegovina ⚑"},
        # unicode beyond the BMP and a referrer that is not a URL
        {**base, "visit_token": "odd-unicode", "visitor_token": "odd-visitor-3",
         "user_agent": FIREFOX, "referrer": "not a url 🚀", "city": "Zürich 🏔",
         "landing_page": f"https://www.{data.site_host}/?utm_source=Mastodon&utm_medium=social", "utm_source": None,
         "started_at": when + timedelta(minutes=2), "accept_language": "en-GB"},
    ]  # fmt: skip
    for i, visit in enumerate(odd_visits, start=visits + 1):
        visit["id"] = i
        data.visits.append(visit)
    no_agent, long_page, unicode_visit = visits + 1, visits + 2, visits + 3
    name_with_nul = "odd\x00name" if dialect == "mysql" else "odd name"
    odd_events = [
        (
            no_agent,
            7,
            "shipped",
            {"order": 12345678901234567890, "nested": {"a": [1, 2.5, None, True]}},
        ),
        (no_agent, None, "$view", None),  # NULL properties: stored as {}
        (long_page, None, "huge", {"blob": "y" * 1_000_000, "n": 1}),
        (unicode_visit, 3, "ünïcödé 🚀", {"emoji": "🎉", "quote": 'he said "hi"\n', "k": "ü"}),
        (unicode_visit, None, name_with_nul, {"t": "tab\there"}),
        (999_999, 5, "orphan", {"why": "its visit was deleted"}),  # the visit is missing
        (None, None, "no visit", {}),  # no visit at all
    ]
    t = when + timedelta(minutes=5)
    for visit_id, user, name, props in odd_events:
        event_id += 1
        t += timedelta(seconds=7, microseconds=13)
        data.events.append(
            {"id": event_id, "visit_id": visit_id, "user_id": user, "name": name, "properties": props, "time": t}
        )  # fmt: skip


def _naive(value: Any) -> Any:
    return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value


def create_postgres_tables(
    url: str, properties_type: str = "jsonb", extra_column: str | None = None
) -> None:
    import psycopg

    extra = f", {extra_column} character varying" if extra_column else ""
    ddl = POSTGRES_DDL.format(properties_type=properties_type, extra_visit_columns=extra)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ahoy_events, ahoy_visits")
        conn.execute(ddl)
        if properties_type == "jsonb":
            conn.execute(POSTGRES_GIN)


def fill_postgres(url: str, data: AhoyData) -> None:
    """Write the rows with COPY (ids as generated, so the test knows them)."""
    import psycopg

    visit_columns = [*VISIT_FIELDS, *([data.extra_column] if data.extra_column else [])]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        with cur.copy(f"COPY ahoy_visits ({', '.join(visit_columns)}) FROM STDIN") as copy:
            for v in data.visits:
                copy.write_row([_naive(v.get(c)) for c in visit_columns])
        with cur.copy(f"COPY ahoy_events ({', '.join(EVENT_FIELDS)}) FROM STDIN") as copy:
            for e in data.events:
                props = e["properties"]
                row = {
                    **e,
                    "properties": None if props is None else json.dumps(props, ensure_ascii=False),
                }
                copy.write_row([_naive(row[c]) for c in EVENT_FIELDS])
        cur.execute("SELECT setval('ahoy_visits_id_seq', (SELECT max(id) FROM ahoy_visits))")
        cur.execute("SELECT setval('ahoy_events_id_seq', (SELECT max(id) FROM ahoy_events))")


def create_mysql_tables(
    server: MariaDBServer, database: str, extra_column: str | None = None
) -> None:
    extra = f", {extra_column} varchar(255)" if extra_column else ""
    conn = server.connect(database)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS ahoy_events, ahoy_visits")
        for statement in MYSQL_DDL:
            cur.execute(statement.format(extra_visit_columns=extra))
    conn.close()


def fill_mysql(server: MariaDBServer, database: str, data: AhoyData, chunk: int = 2000) -> None:
    visit_columns = [*VISIT_FIELDS, *([data.extra_column] if data.extra_column else [])]
    conn = server.connect(database)
    with conn.cursor() as cur:
        for rows, table, columns in (
            (data.visits, "ahoy_visits", visit_columns),
            (data.events, "ahoy_events", list(EVENT_FIELDS)),
        ):
            marks = ", ".join(["%s"] * len(columns))
            names = ", ".join(f"`{c}`" for c in columns)
            statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"
            for start in range(0, len(rows), chunk):
                cur.executemany(
                    statement, [_mysql_row(r, columns) for r in rows[start : start + chunk]]
                )
    conn.close()


def _mysql_row(row: dict[str, Any], columns: list[str]) -> list[Any]:
    out = []
    for c in columns:
        value = row.get(c)
        if c == "properties" and value is not None:
            value = json.dumps(value, ensure_ascii=False)
        out.append(_naive(value))
    return out

"""Reading Ahoy's tables from PostgreSQL with psycopg 3: each batch is one `COPY (SELECT ...)`.

COPY streams a batch as CSV, which pyarrow parses into columns in C++; fetching rows as Python
tuples would cost more than everything else the import does.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from trailcli.errors import TrailError
from trailcli.importer import ahoy_schema as schema
from trailcli.importer import raw
from trailcli.importer.source_url import DatabaseURL

if TYPE_CHECKING:
    import pyarrow as pa
    from psycopg import sql as pg_sql


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise TrailError(
            "Reading PostgreSQL needs the psycopg package.",
            "pip install 'trailcli[import]'",
        ) from None
    return psycopg


class PostgresSource:
    """An open connection to the source database and the batch queries over its Ahoy tables."""

    dialect = "postgresql"

    def __init__(self, url: DatabaseURL) -> None:
        psycopg = _driver()
        self.url = url
        conninfo = "postgresql://" + url.raw.split("://", 1)[1]
        try:
            self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise TrailError(
                f"Cannot connect to {url}: {str(exc).strip()}",
                "check the URL's host, port, user, password and database name",
            ) from None
        self.conn.execute("SET TimeZone = 'UTC'")
        self.conn.execute("SET DateStyle = 'ISO, YMD'")
        encoding = self.conn.execute("SHOW server_encoding").fetchone()
        # a SQL_ASCII database stores bytes as given, valid UTF-8 or not: they are read as they
        # are (PostgreSQL refuses to convert them) and repaired here
        self.repair_text = bool(encoding) and _str(encoding[0]).upper() == "SQL_ASCII"
        self.conn.execute(f"SET client_encoding = '{'SQL_ASCII' if self.repair_text else 'UTF8'}'")

    def close(self) -> None:
        self.conn.close()

    def _name(self, table: str) -> pg_sql.Composable:
        from psycopg import sql

        return sql.Identifier(*table.split(".", 1))

    def columns(self, table: str) -> dict[str, str] | None:
        """The table's columns and their types (None when there is no such table)."""
        schema_name, _, name = table.rpartition(".")
        rows = self.conn.execute(
            "SELECT column_name, CASE WHEN data_type = 'USER-DEFINED' THEN udt_name "
            "ELSE data_type END FROM information_schema.columns "
            "WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema_name or None, name),
        ).fetchall()
        return {_str(r[0]): _str(r[1]) for r in rows} or None

    def max_id(self, table: str) -> int | None:
        from psycopg import sql

        query = sql.SQL("SELECT max(id) FROM {}").format(self._name(table))
        row = self.conn.execute(query).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def visits_batch(
        self, plan: schema.TablePlan, after: int, since: datetime | None, limit: int
    ) -> pa.Table:
        """Up to `limit` visits with id > `after` (and started_at >= `since`), by id."""
        from psycopg import sql

        select = [_value(plan, name, sql.Identifier(name)) for name in raw.VISIT_RAW]
        select += [sql.SQL("{}::text").format(sql.Identifier(c)) for c in plan.others]
        query = sql.SQL(
            "SELECT {columns} FROM {table} WHERE id > %(after)s AND {since} ORDER BY id "
            "LIMIT %(limit)s"
        ).format(
            columns=sql.SQL(", ").join(select),
            table=self._name(plan.table),
            since=_since(sql.Identifier("started_at")),
        )
        names = [*raw.VISIT_RAW, *plan.others]
        return self._copy(query, {"after": after, "since": since, "limit": limit}, names)

    def events_batch(
        self,
        plan: schema.TablePlan,
        visits: schema.TablePlan,
        after: int,
        since: datetime | None,
        limit: int,
    ) -> pa.Table:
        """Up to `limit` events with id > `after` (and time >= `since`), by id, each with its
        visit's tokens."""
        from psycopg import sql

        def e(name: str) -> Any:
            return _value(plan, name, sql.Identifier("e", name))

        def v(name: str) -> Any:
            return _value(visits, name, sql.Identifier("v", name))

        select = [e("id"), v("visit_token"), v("visitor_token"), e("user_id"), e("name")]
        select += [e("properties"), e("time")]
        query = sql.SQL(
            "SELECT {columns} FROM {events} AS e LEFT JOIN {visits} AS v ON v.id = e.visit_id "
            "WHERE e.id > %(after)s AND {since} ORDER BY e.id LIMIT %(limit)s"
        ).format(
            columns=sql.SQL(", ").join(select),
            events=self._name(plan.table),
            visits=self._name(visits.table),
            since=_since(sql.Identifier("e", "time")),
        )
        return self._copy(query, {"after": after, "since": since, "limit": limit}, raw.EVENT_RAW)

    def _copy(
        self, query: Any, params: dict[str, Any], names: list[str] | tuple[str, ...]
    ) -> pa.Table:
        from psycopg import sql

        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT text)").format(query)
        chunks: list[bytes] = []
        with self.conn.cursor() as cur, cur.copy(statement, params) as copy:
            chunks.extend(bytes(chunk) for chunk in copy)
        data = b"".join(chunks)
        if self.repair_text:
            data = data.decode("utf-8", "replace").encode("utf-8")
        return read_copy_text(data, names)


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _value(plan: schema.TablePlan, name: str, column: Any) -> Any:
    """The SELECT expression of a raw column: cast to what the batch holds, null when absent."""
    from psycopg import sql

    kind = plan.columns.get(name)
    if kind is None:
        return sql.SQL("NULL")
    if kind == schema.TIMESTAMP:
        return sql.SQL("CASE WHEN isfinite({0}) THEN {0} END").format(column)
    if kind == schema.TIMESTAMPTZ:
        return sql.SQL("CASE WHEN isfinite({0}) THEN {0} AT TIME ZONE 'UTC' END").format(column)
    if kind == schema.INET:
        return sql.SQL("host({})").format(column)
    if name in ("latitude", "longitude"):
        return sql.SQL("{}::float8").format(column)
    if name in raw.INTEGERS:
        return sql.SQL("{}::int8").format(column)
    return sql.SQL("{}::text").format(column)


def _since(column: Any) -> Any:
    from psycopg import sql

    return sql.SQL("(%(since)s::timestamptz IS NULL OR {} >= %(since)s::timestamptz)").format(
        column
    )


# COPY's text format: tab-separated, \N for NULL, these characters escaped with a backslash
_ESCAPES = (
    ("\\b", "\b"),
    ("\\f", "\f"),
    ("\\n", "\n"),
    ("\\r", "\r"),
    ("\\t", "\t"),
    ("\\v", "\v"),
)


def read_copy_text(data: bytes, names: list[str] | tuple[str, ...]) -> pa.Table:
    """The output of `COPY ... TO STDOUT (FORMAT text)` as a raw batch.

    The text format escapes newlines, so pyarrow splits it into rows without looking for quoted
    ones (CSV would need `newlines_in_values`, several times slower to parse).
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    types = {name: raw.arrow_type(name, naive=True) for name in names}
    if not data:
        return pa.table({n: pa.array([], type=t) for n, t in types.items()})
    table = pa_csv.read_csv(
        pa.BufferReader(data),
        read_options=pa_csv.ReadOptions(column_names=list(names), block_size=16 << 20),
        parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
        convert_options=pa_csv.ConvertOptions(
            column_types=types, strings_can_be_null=True, null_values=["\\N"]
        ),
    )
    for i, name in enumerate(table.column_names):
        if types[name] == pa.string():
            table = table.set_column(i, name, _unescape(table.column(i)))
    return raw.as_utc(table)


def _unescape(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Undo the text format's backslash escapes (a column without a backslash is left as it is).

    A backslash itself is first parked as NUL, which PostgreSQL text never holds."""
    import pyarrow.compute as pc

    if not pc.any(pc.match_substring(column, "\\")).as_py():
        return column
    column = pc.replace_substring(column, "\\\\", "\x00")
    for escaped, char in _ESCAPES:
        column = pc.replace_substring(column, escaped, char)
    return pc.replace_substring(column, "\x00", "\\")

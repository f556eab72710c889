"""Reading Ahoy's tables from MySQL or MariaDB with PyMySQL: each batch is one keyset query.

PyMySQL is pure Python: it installs anywhere without MySQL's client library or a compiler
(mysqlclient needs both to build), and speaks to MySQL 5.7+, 8.x and MariaDB alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trailcli.errors import TrailError
from trailcli.importer import ahoy_schema as schema
from trailcli.importer import raw
from trailcli.importer.source_url import DatabaseURL

if TYPE_CHECKING:
    import pyarrow as pa


def _driver() -> Any:
    try:
        import pymysql
    except ImportError:
        raise TrailError(
            "Reading MySQL or MariaDB needs the PyMySQL package.",
            "pip install 'trailcli[import]'",
        ) from None
    return pymysql


def quote(identifier: str) -> str:
    """A MySQL identifier in backquotes (a dotted name is database.table)."""
    return ".".join("`" + part.replace("`", "``") + "`" for part in identifier.split(".", 1))


class MySQLSource:
    """An open connection to the source database and the batch queries over its Ahoy tables."""

    dialect = "mysql"

    def __init__(self, url: DatabaseURL) -> None:
        pymysql = _driver()
        self.url = url
        try:
            self.conn = pymysql.connect(
                host=url.host or "localhost",
                port=url.port or 3306,
                user=url.user,
                password=url.password or "",
                database=url.database,
                unix_socket=url.options.get("socket"),
                charset="utf8mb4",
                connect_timeout=10,
                autocommit=True,
                init_command="SET time_zone = '+00:00'",
            )
        except pymysql.Error as exc:
            raise TrailError(
                f"Cannot connect to {url}: {exc}",
                "check the URL's host, port, user, password and database name",
            ) from None

    def close(self) -> None:
        self.conn.close()

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], ...]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            rows: tuple[tuple[Any, ...], ...] = cur.fetchall()
            return rows

    def columns(self, table: str) -> dict[str, str] | None:
        """The table's columns and their types (None when there is no such table)."""
        database, _, name = table.rpartition(".")
        rows = self._rows(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s "
            "ORDER BY ORDINAL_POSITION",
            (database or None, name),
        )
        return {str(r[0]): str(r[1]) for r in rows} or None

    def max_id(self, table: str) -> int | None:
        rows = self._rows(f"SELECT MAX(id) FROM {quote(table)}")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def visits_batch(
        self, plan: schema.TablePlan, after: int, since: datetime | None, limit: int
    ) -> pa.Table:
        """Up to `limit` visits with id > `after` (and started_at >= `since`), by id."""
        select = [_value(plan, name, quote(name)) for name in raw.VISIT_RAW]
        select += [f"CAST({quote(c)} AS CHAR)" for c in plan.others]
        query = (
            f"SELECT {', '.join(select)} FROM {quote(plan.table)} "
            f"WHERE id > %s AND (%s IS NULL OR started_at >= %s) ORDER BY id LIMIT %s"
        )
        names = [*raw.VISIT_RAW, *plan.others]
        return self._batch(query, after, since, limit, names)

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

        def e(name: str) -> str:
            return _value(plan, name, "e." + quote(name))

        def v(name: str) -> str:
            return _value(visits, name, "v." + quote(name))

        select = [e("id"), v("visit_token"), v("visitor_token"), e("user_id"), e("name")]
        select += [e("properties"), e("time")]
        query = (
            f"SELECT {', '.join(select)} FROM {quote(plan.table)} AS e "
            f"LEFT JOIN {quote(visits.table)} AS v ON v.id = e.visit_id "
            f"WHERE e.id > %s AND (%s IS NULL OR e.`time` >= %s) ORDER BY e.id LIMIT %s"
        )
        return self._batch(query, after, since, limit, raw.EVENT_RAW)

    def _batch(
        self,
        query: str,
        after: int,
        since: datetime | None,
        limit: int,
        names: list[str] | tuple[str, ...],
    ) -> pa.Table:
        naive = since.astimezone(UTC).replace(tzinfo=None) if since else None
        rows = self._rows(query, (after, naive, naive, limit))
        converters = [_converter(name) for name in names]
        return raw.from_rows(
            names, ([f(v) for f, v in zip(converters, row, strict=True)] for row in rows)
        )


def _value(plan: schema.TablePlan, name: str, column: str) -> str:
    """The SELECT expression of a raw column, null when the table lacks it: ids, numbers and
    times as they are, everything else as text."""
    kind = plan.columns.get(name)
    if kind is None:
        return "NULL"
    if kind == schema.TEXT or name in raw.INTEGERS | raw.FLOATS | raw.TIMES:
        return column
    return f"CAST({column} AS CHAR)"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    text = str(value)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _time(value: Any) -> datetime | None:
    # zero dates ('0000-00-00') come back as text: no time
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else None


def _number(value: Any) -> float | None:
    return float(value) if value is not None else None


def _integer(value: Any) -> int | None:
    return int(value) if value is not None else None


def _converter(name: str) -> Any:
    if name in raw.TIMES:
        return _time
    if name in raw.INTEGERS:
        return _integer
    if name in raw.FLOATS:
        return _number
    return _text

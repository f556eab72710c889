"""Fetch query results as Arrow tables through the store's error mapping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trailcli.store import views

if TYPE_CHECKING:
    import duckdb


def fetch_arrow(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any] | None = None
) -> Any:
    """The rows of `query` as an Arrow table; an unreadable Parquet file is a CorruptDataError."""
    views.run(con, f"CREATE OR REPLACE TEMP TABLE _fetched AS {query}", params)
    table = con.sql("SELECT * FROM _fetched").to_arrow_table()
    con.execute("DROP TABLE _fetched")
    return table

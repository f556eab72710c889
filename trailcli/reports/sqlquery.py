"""Free-form SQL over the views, for `trail sql`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trailcli.errors import UsageError
from trailcli.store import views


def run_sql(data_dir: Path, query: str) -> Any:
    """The result of `query` over the bound views, as an Arrow table."""
    import duckdb
    import pyarrow as pa

    con = views.connect(data_dir)
    try:
        with views.reading():
            relation = con.sql(query)
            return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        if isinstance(
            exc, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
        ):
            raise UsageError(
                f"The query failed: {str(exc).splitlines()[0]}",
                "the views are visits, events, presence, identities and sessions",
            ) from exc
        raise

"""Free-form SQL over the views, for `trail sql`: one or more statements, each result in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trailcli.errors import UsageError
from trailcli.store import views

# Statement types whose rows are a result to print; the others (CREATE, INSERT, SET, ...) change
# the session for the statements after them and print nothing.
_RESULT_TYPES = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL", "MULTI"})
VIEWS_HINT = "the views are visits, events, presence, identities and sessions"


def run_sql(data_dir: Path, text: str) -> list[Any]:
    """The result of each statement of `text` that returns rows, in order, as Arrow tables.

    Statements run one after the other on one connection, so a statement sees what the ones
    before it created (`CREATE TEMP TABLE t AS ...; SELECT ... FROM t`).
    """
    import duckdb

    con = views.connect(data_dir)
    results = []
    try:
        with views.reading():
            for statement in con.extract_statements(text):
                relation = con.sql(statement)
                if relation is not None and statement.type.name in _RESULT_TYPES:
                    results.append(relation.to_arrow_table())
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as exc:
        raise UsageError(f"The query failed: {str(exc).splitlines()[0]}", VIEWS_HINT) from exc
    return results

"""Database URLs as Rails apps write them (`postgres://`, `mysql2://`, ...), parsed and redacted."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from trailcli.errors import UsageError

POSTGRES = "postgresql"
MYSQL = "mysql"
# URL schemes and the database each one means (Rails' adapter names included)
SCHEMES = {
    "postgresql": POSTGRES,
    "postgres": POSTGRES,
    "postgis": POSTGRES,
    "mysql": MYSQL,
    "mysql2": MYSQL,
    "mariadb": MYSQL,
    "trilogy": MYSQL,
}
URL_FORMS = (
    "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or mysql://USER:PASSWORD@HOST:PORT/DATABASE"
)


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database URL; `str()` never shows the password."""

    dialect: str  # POSTGRES or MYSQL
    host: str | None
    port: int | None
    user: str | None
    password: str | None = field(repr=False)
    database: str
    options: dict[str, str]
    raw: str = field(repr=False)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.dialect}://{user}{self.host or 'localhost'}{port}/{self.database}"


def parse_database_url(text: str) -> DatabaseURL:
    """Parse `text`; UsageError (naming the accepted forms) when it is not a database URL."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"Cannot read the database URL: {exc}.", f"use {URL_FORMS}") from None
    dialect = SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        shown = parts.scheme or "(none)"
        raise UsageError(
            f"Unsupported database URL scheme {shown!r}.",
            f"use {URL_FORMS} (also postgres://, mysql2://, mariadb://, trilogy://)",
        )
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise UsageError("The database URL names no database.", f"use {URL_FORMS}")
    return DatabaseURL(
        dialect=dialect,
        host=unquote(parts.hostname) if parts.hostname else None,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        database=database,
        options=dict(parse_qsl(parts.query)),
        raw=text.strip(),
    )

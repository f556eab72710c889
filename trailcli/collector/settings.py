"""Every option of `trail collect`, resolved from flags, `TRAIL_*` environment, a TOML file, defaults."""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trailcli.errors import UsageError
from trailcli.timeparse import DURATION_FORMS, parse_duration

log = logging.getLogger("trail.collect")

COOKIE_MODES = ("js", "none")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")  # a bare number of seconds
SECRET_FIELDS = ("secret", "api_token")
BAYEUX_LIMITS = (
    "bayeux_max_message_bytes",
    "bayeux_max_queued",
    "bayeux_max_clients",
    "bayeux_max_subscriptions",
    "bayeux_handshakes_per_minute",
    "bayeux_handshake_burst",
    "bayeux_max_sessions_per_address",
    "bayeux_first_connect_timeout",
)


def _meta(help: str, *, duration: bool = False, env: str | None = None) -> dict[str, Any]:
    """A field's help text; `duration` fields accept `30s`/`4h` forms; `env` overrides its name."""
    return {"help": help, "duration": duration, "env": env}


@dataclass(frozen=True)
class Settings:
    """The collector's whole configuration; immutable once the app is built."""

    # Where it listens and writes
    host: str = field(default="127.0.0.1", metadata=_meta("Address to listen on."))
    port: int = field(default=9292, metadata=_meta("TCP port to listen on."))
    data_dir: Path = field(default=Path("./trail-data"), metadata=_meta("Where the logs live."))
    node_id: str | None = field(
        default=None, metadata=_meta("Stable id of this node (default: kept in the data dir).")
    )
    redis: str | None = field(
        default=None,
        metadata=_meta(
            "Redis URL of the cluster this node joins (redis://host:6379/0); none: one process.",
            env="REDIS_URL",
        ),
    )
    workers: int = field(
        default=1,
        metadata=_meta("Processes serving one port, each its own node (more than 1 needs redis)."),
    )
    access_log: bool = field(default=True, metadata=_meta("Log one line per request on stderr."))
    header_timeout: float = field(
        default=10.0,
        metadata=_meta(
            "Time a connection has to send a request's headers (from connecting, or from the "
            "first byte of a later request); then it is closed.",
            duration=True,
        ),
    )
    keepalive_timeout: float = field(
        default=15.0,
        metadata=_meta("How long a connection may stay idle between requests.", duration=True),
    )
    max_connections: int = field(
        default=60_000,
        metadata=_meta(
            "Client connections open at once (at most the open-file limit less 256); more are "
            "refused."
        ),
    )
    shutdown_timeout: float = field(
        default=10.0,
        metadata=_meta("How long to wait for in-flight requests on shutdown.", duration=True),
    )
    # Secrets (never in a config file's plain keys; see secret_file)
    secret: str | None = field(
        default=None, metadata=_meta("Secret for trusted writes (identify, publish, user_token).")
    )
    secret_file: Path | None = field(
        default=None, metadata=_meta("Read the secret from this file.")
    )
    api_token: str | None = field(
        default=None, metadata=_meta("Token for reading personal data (/api/online, /trail/**).")
    )
    # Ahoy API
    allow_origins: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Origins allowed to call the API from a browser ('*' for any).", env="ALLOW_ORIGIN"
        ),
    )
    cookies: str = field(
        default="js", metadata=_meta("Cookie mode: 'js' (ahoy.js cookies) or 'none' (cookie-less).")
    )
    cookie_domain: str | None = field(
        default=None, metadata=_meta("Domain attribute of the cookies the server sets.")
    )
    visit_duration: float = field(
        default=4 * 3600.0, metadata=_meta("Visit lifetime.", duration=True)
    )
    visitor_duration: float = field(
        default=2 * 365 * 86400.0, metadata=_meta("Visitor cookie lifetime.", duration=True)
    )
    server_side_visits: bool = field(
        default=True, metadata=_meta("Create a visit from an event with an unknown visit.")
    )
    track_bots: bool = field(
        default=False, metadata=_meta("Store visits and events of bots and empty user agents.")
    )
    trust_proxy: bool = field(
        default=False, metadata=_meta("Take the client IP from X-Forwarded-For.")
    )
    mask_ips: bool = field(
        default=False, metadata=_meta("Store IPv4 /24 and IPv6 /48 networks instead of addresses.")
    )
    geoip: Path | None = field(
        default=None, metadata=_meta("MaxMind .mmdb file for country, region, city, lat/lon.")
    )
    max_content_length: int = field(
        default=8192, metadata=_meta("Largest accepted request body in bytes (else 413).")
    )
    body_timeout: float = field(
        default=10.0,
        metadata=_meta("Time a client has to send its request body (else 408).", duration=True),
    )
    accept_unscoped_user_tokens: bool = field(
        default=False,
        metadata=_meta("Also accept user tokens in the older format that names no visit."),
    )
    max_events_per_request: int = field(
        default=10, metadata=_meta("Events kept per request; the rest are dropped.")
    )
    max_json_depth: int = field(
        default=64,
        metadata=_meta("Deepest nesting of JSON accepted on /faye (else 400 or a Bayeux error)."),
    )
    event_time_window: float = field(
        default=60.0,
        metadata=_meta("Client event times older than this become server time.", duration=True),
    )
    # Bounded state
    dedup_size: int = field(
        default=200_000, metadata=_meta("Event ids remembered for de-duplication.")
    )
    visit_cache_size: int = field(
        default=200_000, metadata=_meta("Visits remembered (known tokens, cookie-less reuse).")
    )
    ua_cache_size: int = field(default=10_000, metadata=_meta("Parsed user agents cached."))
    # Store
    flush_interval: float = field(
        default=2.0, metadata=_meta("How often the WAL is committed to the tables.", duration=True)
    )
    disk_headroom: int = field(
        default=16 * 1024 * 1024,
        metadata=_meta(
            "After a full disk: bytes that must be free again (once the WAL is committed) "
            "before writes are accepted."
        ),
    )
    compact: bool = field(
        default=True, metadata=_meta("Bin-pack today hourly and compact closed days daily.")
    )
    bin_pack_interval: float = field(
        default=3600.0, metadata=_meta("How often today's files are bin-packed.", duration=True)
    )
    compact_interval: float = field(
        default=86400.0, metadata=_meta("How often closed days are compacted.", duration=True)
    )
    # Bayeux and presence (mounted at /faye)
    bayeux_timeout: float = field(
        default=45.0, metadata=_meta("How long a /meta/connect is held.", duration=True)
    )
    transport_grace: float = field(
        default=15.0,
        metadata=_meta(
            "Time a closed transport (socket, held long-poll) has to come back before its "
            "session ends.",
            duration=True,
        ),
    )
    heartbeat_interval: float = field(
        default=10.0, metadata=_meta("Presence heartbeat interval.", duration=True)
    )
    open_publish: bool = field(
        default=False,
        metadata=_meta("Accept back-end publishes (no client id) without the secret."),
    )
    bayeux_max_message_bytes: int = field(
        default=32 * 1024, metadata=_meta("Largest published Bayeux message in bytes (else 407).")
    )
    bayeux_max_queued: int = field(
        default=1000, metadata=_meta("Messages queued per Bayeux client; the oldest are dropped.")
    )
    bayeux_max_clients: int = field(
        default=50_000, metadata=_meta("Bayeux clients per node; more handshakes are refused.")
    )
    bayeux_max_subscriptions: int = field(
        default=100, metadata=_meta("Subscriptions per Bayeux client.")
    )
    bayeux_handshakes_per_minute: float = field(
        default=120.0,
        metadata=_meta("Handshakes per minute one client address may make (after the burst)."),
    )
    bayeux_handshake_burst: int = field(
        default=60, metadata=_meta("Handshakes one client address may make at once.")
    )
    bayeux_max_sessions_per_address: int = field(
        default=1000, metadata=_meta("Live Bayeux sessions one client address may hold.")
    )
    bayeux_first_connect_timeout: float = field(
        default=20.0,
        metadata=_meta(
            "A session that sends no /meta/connect this long after its handshake ends.",
            duration=True,
        ),
    )
    faye_client_js: Path | None = field(
        default=None,
        metadata=_meta("The Faye browser client served at /faye/client.js (faye-browser-min.js)."),
    )
    # Dashboard (/dashboard)
    dashboard: bool = field(
        default=True, metadata=_meta("Serve the live page at /dashboard (needs the API token).")
    )
    dashboard_session: float = field(
        default=12 * 3600.0,
        metadata=_meta("How long a dashboard sign-in lasts.", duration=True),
    )

    def __post_init__(self) -> None:
        if self.cookies not in COOKIE_MODES:
            raise UsageError(
                f"Invalid cookie mode {self.cookies!r}.", f"use one of {', '.join(COOKIE_MODES)}"
            )
        positive = (
            "max_content_length",
            "max_events_per_request",
            "max_json_depth",
            "header_timeout",
            "keepalive_timeout",
            "max_connections",
            "workers",
            *BAYEUX_LIMITS,
        )
        if self.port < 0:
            raise UsageError(
                f"Invalid port: {self.port}.", "use 0 (any free port) or a port number"
            )
        for name in positive:
            if getattr(self, name) <= 0:
                raise UsageError(f"Invalid {name}: {getattr(self, name)}.", "use a positive number")

        if self.workers > 1 and not self.redis:
            raise UsageError(
                f"--workers {self.workers} needs --redis: the workers are nodes of one cluster "
                "and share Bayeux clients and live presence through Redis.",
                "pass --redis redis://HOST:6379/0 (or $TRAIL_REDIS_URL), or run one worker",
            )

    @property
    def cookieless(self) -> bool:
        return self.cookies == "none"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets replaced by '***' (for logs and /health)."""
        out = dataclasses.asdict(self)
        for name in SECRET_FIELDS:
            if out.get(name):
                out[name] = "***"
        return out


def env_name(f: dataclasses.Field[Any]) -> str:
    return "TRAIL_" + (f.metadata.get("env") or f.name.upper())


def _base_type(f: dataclasses.Field[Any]) -> Any:
    hint = typing.get_type_hints(Settings)[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def coerce(name: str, value: Any, source: str) -> Any:
    """Turn a value from the environment or a TOML file into the field's type; UsageError if it can't."""
    f = FIELDS[name]
    kind = _base_type(f)
    try:
        if value is None:
            return None
        if kind is bool:
            return _bool(value)
        if f.metadata.get("duration"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            text = str(value).strip()
            return float(text) if _NUMBER.match(text) else parse_duration(text).total_seconds()
        if kind is tuple:
            items = value if isinstance(value, list) else str(value).split(",")
            return tuple(str(v).strip() for v in items if str(v).strip())
        if kind in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return kind(value)
        if kind is Path:
            return Path(str(value))
        return str(value)
    except (ValueError, TypeError, UsageError):
        form = DURATION_FORMS if f.metadata.get("duration") else kind.__name__
        raise UsageError(
            f"Invalid value {value!r} for {name} in {source}.", f"use {form}"
        ) from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}


# Options under their old names, still read for one release: old name -> new name.
RENAMED = {"grace": "transport_grace"}


def _renamed(old: str, source: str) -> str:
    new = RENAMED[old]
    log.warning(
        "%s: %r is deprecated and will be removed in the next release; use %r",
        source,
        old,
        new,
    )
    return new


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The options set through `TRAIL_*` variables (old names of renamed options too)."""
    out: dict[str, Any] = {}
    for name, f in FIELDS.items():
        key = env_name(f)
        if key in env and env[key] != "":
            out[name] = coerce(name, env[key], f"${key}")
    for old in RENAMED:
        key = "TRAIL_" + old.upper()
        if env.get(key) and RENAMED[old] not in out:
            out[_renamed(old, "environment")] = coerce(RENAMED[old], env[key], f"${key}")
    return out


def from_file(path: Path) -> dict[str, Any]:
    """The options of a TOML file: top-level keys or a `[collect]` table, dashes or underscores."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"Config file {path} not found.", "pass an existing --config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise UsageError(f"Config file {path} is not valid TOML: {exc}.", "fix the file") from None
    table = doc.get("collect", doc)
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            continue  # other commands' tables
        name = key.replace("-", "_")
        if name == "allow_origin":
            name = "allow_origins"
        if name in RENAMED:
            name = _renamed(name, str(path))
        if name not in FIELDS:
            raise UsageError(
                f"Unknown option {key!r} in {path}.", f"use one of: {', '.join(FIELDS)}"
            )
        if name in SECRET_FIELDS:
            raise UsageError(
                f"{path} must not hold {key!r}.", "use TRAIL_SECRET/TRAIL_API_TOKEN or secret_file"
            )
        out[name] = coerce(name, value, str(path))
    return out


def read_secret_file(path: Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(
            f"Cannot read secret file {path}: {exc.strerror}.", "check the path"
        ) from None
    if not text:
        raise UsageError(f"Secret file {path} is empty.", "put the secret in it")
    return text


def _resolve_secret(layers: list[dict[str, Any]]) -> str | None:
    """The first layer (highest precedence) that gives the secret or a secret file decides."""
    for layer in layers:
        if layer.get("secret"):
            return str(layer["secret"])
        if layer.get("secret_file"):
            return read_secret_file(layer["secret_file"])
    return None


def load_settings(
    flags: Mapping[str, Any], env: Mapping[str, str], config: Path | None = None
) -> Settings:
    """Settings from flags > environment > config file > defaults (None flags count as unset)."""
    if config is None and env.get("TRAIL_CONFIG"):
        config = Path(env["TRAIL_CONFIG"])
    layers = [
        {k: v for k, v in flags.items() if v is not None and v != ()},
        from_env(env),
        from_file(config) if config is not None else {},
    ]
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged.update(layer)
    merged["secret"] = _resolve_secret(layers)
    return Settings(**merged)

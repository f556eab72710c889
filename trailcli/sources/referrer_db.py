"""The database of known referrer sources: the package's own list plus community lists (--referrer-db)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from trailcli.errors import UsageError

MEDIUMS = ("search", "social", "email", "chatbot", "video", "shopping", "referral")
# Snowplow's section names mapped to ours (`unknown`: a known source whose medium is not known).
_SNOWPLOW_SECTIONS = {
    "search": "search",
    "social": "social",
    "email": "email",
    "chatbot": "chatbot",
    "paid": "search",
    "unknown": "referral",
}
# Second-level labels under which a country registers names (google.co.uk, google.com.br).
_SECOND_LEVEL = frozenset(
    [
        "co",
        "com",
        "net",
        "org",
        "gov",
        "edu",
        "ac",
        "or",
        "ne",
        "go",
        "gob",
        "gouv",
        "mil",
        "nic",
        "ltd",
        "plc",
        "sch",
        "web",
        "info",
        "biz",
    ]
)


@dataclass(frozen=True)
class Source:
    """One known source: display name, medium and the query parameters carrying a search term."""

    name: str
    medium: str
    params: tuple[str, ...] = ()


@dataclass
class ReferrerDB:
    """Known sources indexed by host, `name.*` wildcard, host+path prefix, app id and utm alias."""

    hosts: dict[str, Source] = field(default_factory=dict)
    wildcards: dict[str, Source] = field(default_factory=dict)
    paths: dict[str, list[tuple[str, Source]]] = field(default_factory=dict)
    apps: dict[str, Source] = field(default_factory=dict)
    aliases: dict[str, Source] = field(default_factory=dict)
    click_ids: dict[str, Source] = field(default_factory=dict)

    def add(
        self,
        source: Source,
        domains: Iterable[str] = (),
        apps: Iterable[str] = (),
        aliases: Iterable[str] = (),
    ) -> None:
        """Register `source` under its domains, app ids and aliases (a later entry wins)."""
        for domain in domains:
            self._add_domain(source, domain)
        for app in apps:
            self.apps[app.strip().lower()] = source
        for alias in (*aliases, source.name):
            self.aliases[alias.strip().lower()] = source

    def _add_domain(self, source: Source, domain: str) -> None:
        text = domain.strip().lower().removeprefix("http://").removeprefix("https://")
        text = text.replace("{}", "*")
        while text.startswith("*."):
            text = text[2:]  # a subdomain wildcard: subdomains match anyway
        text = text.removeprefix("www.")
        host, _, path = text.partition("/")
        if not host:
            return
        if path.strip("/"):
            prefix = "/" + path.strip("/")
            entries = [e for e in self.paths.get(host, []) if e[0] != prefix]
            entries.append((prefix, source))
            self.paths[host] = sorted(entries, key=lambda e: -len(e[0]))
        elif host.endswith(".*"):
            self.wildcards[host[:-2]] = source
        else:
            self.hosts[host] = source

    def lookup_host(self, host: str, path: str = "") -> Source | None:
        """The source owning `host` (lower case, no `www.`): host+path, host, `name.*`, then parents."""
        return self.lookup_host_rule(host, path)[0]

    def lookup_host_rule(self, host: str, path: str = "") -> tuple[Source | None, str | None]:
        """The source owning `host` and the path prefix of the rule that decided it (None when
        the host alone did)."""
        candidate = host
        while candidate:
            found = self._match(candidate, path)
            if found[0] is not None:
                return found
            _, dot, rest = candidate.partition(".")
            candidate = rest if dot and "." in rest else ""
        return None, None

    def _match(self, host: str, path: str) -> tuple[Source | None, str | None]:
        for prefix, source in self.paths.get(host, ()):
            if path == prefix or path.startswith(prefix + "/"):
                return source, prefix
        if host in self.hosts:
            return self.hosts[host], None
        for base in _wildcard_bases(host):
            if base in self.wildcards:
                return self.wildcards[base], None
        return None, None

    def lookup_alias(self, text: str) -> Source | None:
        """The source a utm_source spelling names (`google`, `ig`, `facebook.com`), if any."""
        key = text.strip().lower()
        if key in self.aliases:
            return self.aliases[key]
        if "." in key and " " not in key:
            return self.lookup_host(key.removeprefix("www."))
        return None


def _wildcard_bases(host: str) -> list[str]:
    """The `name` parts that `name.*` could mean for `host`: before a TLD or a country's SLD+TLD."""
    labels = host.split(".")
    bases = []
    if len(labels) >= 2 and labels[-1].isalpha():
        bases.append(".".join(labels[:-1]))
    if (
        len(labels) >= 3
        and len(labels[-1]) == 2
        and labels[-1].isalpha()
        and labels[-2] in _SECOND_LEVEL
    ):
        bases.append(".".join(labels[:-2]))
    return bases


def _builtin_data() -> dict[str, Any]:
    text = (files("trailcli.sources") / "referrer_data.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def add_trail_json(db: ReferrerDB, data: Mapping[str, Any]) -> None:
    """Add entries in the package's own format (referrer_data.json)."""
    for entry in data.get("sources", []):
        medium = str(entry.get("medium", "referral"))
        source = Source(str(entry["name"]), medium, tuple(entry.get("params", ())))
        db.add(source, entry.get("domains", ()), entry.get("apps", ()), entry.get("aliases", ()))
    for click_id, name in data.get("click_ids", {}).items():
        known = db.aliases.get(str(name).lower())
        db.click_ids[click_id.lower()] = known or Source(str(name), "search")


def builtin_db() -> ReferrerDB:
    """A fresh database holding the package's known sources."""
    db = ReferrerDB()
    add_trail_json(db, _builtin_data())
    return db


def add_snowplow(db: ReferrerDB, data: Mapping[str, Any]) -> None:
    """Add Snowplow's referers.yml: {section: {name: {domains: [...], parameters: [...]}}}."""
    for section, sources in data.items():
        medium = _SNOWPLOW_SECTIONS.get(str(section).lower(), "referral")
        for name, spec in (sources or {}).items():
            spec = spec or {}
            params = tuple(str(p) for p in spec.get("parameters") or ())
            domains = [str(d) for d in spec.get("domains") or ()]
            db.add(Source(str(name), medium, params), domains)


def add_matomo(db: ReferrerDB, data: Mapping[str, Any], list_medium: str) -> None:
    """Add Matomo's SearchEngines.yml ({name: [{urls, params}]}) or Socials/AIAssistants.yml ({name: [urls]})."""
    for name, spec in data.items():
        for item in spec or ():
            if isinstance(item, Mapping):
                params = tuple(
                    str(p) for p in item.get("params") or () if not str(p).startswith("/")
                )
                db.add(
                    Source(str(name), "search", params), [str(u) for u in item.get("urls") or ()]
                )
            else:
                db.add(Source(str(name), list_medium), [str(item)])


def _detect_format(data: Any, path: Path) -> str:
    """Which supported list `data` is: trail, snowplow, matomo-search or matomo-list."""
    if isinstance(data, Mapping) and "sources" in data:
        return "trail"
    if not isinstance(data, Mapping) or not data:
        return "unknown"
    values = list(data.values())
    if all(isinstance(v, Mapping) for v in values) and str(next(iter(data))).lower() in (
        _SNOWPLOW_SECTIONS
    ):
        return "snowplow"
    if all(isinstance(v, list) for v in values):
        items = [i for v in values for i in v]
        if items and all(isinstance(i, Mapping) for i in items):
            return "matomo-search"
        if all(isinstance(i, str) for i in items):
            return "matomo-list"
    return "unknown"


def _read_structured(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"Cannot read the referrer list {path}: {exc.strerror or exc}.",
            "pass a readable file to --referrer-db",
        ) from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}.", "fix the file") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}.", "fix the file") from exc


def load_file(db: ReferrerDB, path: Path) -> str:
    """Add the sources of one list file to `db`; returns the format it was read as."""
    path = Path(path)
    data = _read_structured(path)
    kind = _detect_format(data, path)
    if kind == "trail":
        add_trail_json(db, data)
    elif kind == "snowplow":
        add_snowplow(db, data)
    elif kind == "matomo-search":
        add_matomo(db, data, "search")
    elif kind == "matomo-list":
        stem = path.stem.lower()
        medium = "chatbot" if stem.startswith("ai") or "assistant" in stem else "social"
        add_matomo(db, data, medium)
    else:
        raise UsageError(
            f"{path} is not a referrer list trail can read.",
            "use Matomo's SearchEngines.yml, Socials.yml or AIAssistants.yml, Snowplow's "
            "referers.yml, or a JSON file shaped like trail's referrer_data.json",
        )
    return kind


def load_db(extra_files: Iterable[Path] = ()) -> ReferrerDB:
    """The package's sources, then each file in order (a later entry wins for the same host)."""
    db = builtin_db()
    for path in extra_files:
        load_file(db, path)
    return db

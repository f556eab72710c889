"""The database of known referrer sources: the package's own list plus community lists (--referrer-db)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from trailcli.errors import UsageError

MEDIUMS = ("search", "social", "email", "chatbot", "video", "shopping", "paid", "referral")
# Snowplow's section names mapped to our mediums (`unknown`: a known source whose medium is not
# known). `paid` (ad networks) is read after the others: see add_snowplow.
_SNOWPLOW_SECTIONS = {
    "search": "search",
    "social": "social",
    "email": "email",
    "chatbot": "chatbot",
    "paid": "paid",
    "unknown": "referral",
}
# Categories a paid source borrows from the source of the same name (Google's ads: search)
_PAID_CATEGORIES = frozenset({"search", "social", "video", "shopping"})
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
    """One known source: display name, medium, the query parameters carrying a search term and
    the charsets its terms may be sent in besides UTF-8 (Matomo's `charsets`).

    `category` decides the channel where it differs from the medium: the ads of a search engine
    have medium `paid` and category `search` (Paid Search); other ad networks `display`.
    """

    name: str
    medium: str
    params: tuple[str, ...] = ()
    category: str | None = None
    charsets: tuple[str, ...] = ()

    @property
    def channel_category(self) -> str:
        return self.category or self.medium


@dataclass
class ReferrerDB:
    """Known sources indexed by host, host+path prefix, app id and utm alias.

    A host may hold Matomo's `{}` placeholder, kept as `*`: `google.*` (any TLD, `co.uk` and
    the like included) or `images.*.ask.com` (a country-code label); see `host_forms`.
    """

    hosts: dict[str, Source] = field(default_factory=dict)
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
        name_alias: bool = True,
    ) -> None:
        """Register `source` under its domains, app ids and aliases (a later entry wins), and
        its name as an alias unless `name_alias` is false."""
        for domain in domains:
            self._add_domain(source, domain)
        for app in apps:
            self.apps[app.strip().lower()] = source
        for alias in (*aliases, source.name) if name_alias else aliases:
            self.aliases[alias.strip().lower()] = source

    def _add_domain(self, source: Source, domain: str) -> None:
        text = domain.strip().lower().removeprefix("http://").removeprefix("https://")
        text = text.replace("{}", "*")
        while text.startswith("*."):
            text = text[2:]  # a subdomain placeholder: subdomains match anyway
        text = text.removeprefix("www.")
        host, _, path = text.partition("/")
        if not host or host == "*":
            return
        if path.strip("/"):
            prefix = "/" + path.strip("/")
            entries = [e for e in self.paths.get(host, []) if e[0] != prefix]
            entries.append((prefix, source))
            self.paths[host] = sorted(entries, key=lambda e: -len(e[0]))
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
        forms = host_forms(host)
        for form in forms:
            for prefix, source in self.paths.get(form, ()):
                if path == prefix or path.startswith(prefix + "/"):
                    return source, prefix
        for form in forms:
            if form in self.hosts:
                return self.hosts[form], None
        return None, None

    def lookup_alias(self, text: str) -> Source | None:
        """The source a utm_source spelling names (`google`, `ig`, `facebook.com`), if any."""
        key = text.strip().lower()
        if key in self.aliases:
            return self.aliases[key]
        if "." in key and " " not in key:
            return self.lookup_host(key.removeprefix("www."))
        return None


@functools.lru_cache(maxsize=4096)  # referrer hosts repeat: the collector asks per visit
def host_forms(host: str) -> tuple[str, ...]:
    """`host` itself, then the placeholder forms Matomo's `{}` would match it under: its TLD as
    `*` (one label, or a country code after a second-level label: google.co.uk -> google.*) and
    a two-letter label below the registered name as `*` (images.de.ask.com -> images.*.ask.com).
    """
    labels = host.split(".")
    forms = [host]
    tlds = 0
    if len(labels) >= 3 and _is_country(labels[-1]) and labels[-2] in _SECOND_LEVEL:
        tlds = 2
    elif len(labels) >= 2 and labels[-1].isalpha():
        tlds = 1
    if tlds:
        forms.append(".".join(labels[:-tlds]) + ".*")
    for i in range(1, len(labels) - max(tlds, 1) - 1):
        if _is_country(labels[i]):
            forms.append(".".join([*labels[:i], "*", *labels[i + 1 :]]))
    return tuple(forms)


def _is_country(label: str) -> bool:
    return len(label) == 2 and label.isalpha()


def host_regex(host: str) -> str:
    """A regex (without anchors) for a host as `host_forms` matches it, `*` included."""
    parts = []
    labels = host.split(".")
    for i, label in enumerate(labels):
        if label != "*":
            parts.append(re.escape(label))
        elif i == len(labels) - 1:
            parts.append(r"[a-z0-9-]+(\.[a-z]{2})?")
        else:
            parts.append("[a-z]{2}")
    return r"\.".join(parts)


def _builtin_data() -> dict[str, Any]:
    text = (files("trailcli.sources") / "referrer_data.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def add_trail_json(db: ReferrerDB, data: Mapping[str, Any]) -> None:
    """Add entries in the package's own format (referrer_data.json)."""
    for entry in data.get("sources", []):
        medium = str(entry.get("medium", "referral"))
        source = Source(
            str(entry["name"]),
            medium,
            tuple(entry.get("params", ())),
            entry.get("category"),
            tuple(entry.get("charsets", ())),
        )
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
    """Add Snowplow's referers.yml: {section: {name: {domains: [...], parameters: [...]}}}.

    Each section gives its medium (_SNOWPLOW_SECTIONS). The `paid` section (ad networks) is read
    last, with medium `paid`: a network named like a known search engine, social network, video
    or shopping site (Google) takes that category, so its clicks are Paid Search (Paid Social,
    ...); any other network is `display`.
    """
    sections = sorted(data.items(), key=lambda item: str(item[0]).lower() == "paid")
    for section, sources in sections:
        medium = _SNOWPLOW_SECTIONS.get(str(section).lower(), "referral")
        for name, spec in (sources or {}).items():
            spec = spec or {}
            params = tuple(str(p) for p in spec.get("parameters") or ())
            domains = [str(d) for d in spec.get("domains") or ()]
            if medium != "paid":
                db.add(Source(str(name), medium, params), domains)
                continue
            # an ad network named like a known source keeps that source as its utm alias
            known = str(name).strip().lower() in db.aliases
            source = Source(str(name), medium, params, _paid_category(db, str(name)))
            db.add(source, domains, name_alias=not known)


def _paid_category(db: ReferrerDB, name: str) -> str:
    known = db.aliases.get(name.strip().lower())
    if known is not None and known.channel_category in _PAID_CATEGORIES:
        return known.channel_category
    return "display"


def add_matomo(db: ReferrerDB, data: Mapping[str, Any], list_medium: str) -> None:
    """Add Matomo's SearchEngines.yml ({name: [{urls, params, charsets}]}) or
    Socials/AIAssistants.yml ({name: [urls]}). Keyword parameters written as /regex/ are
    skipped."""
    for name, spec in data.items():
        for item in spec or ():
            if isinstance(item, Mapping):
                params = tuple(
                    str(p) for p in item.get("params") or () if not str(p).startswith("/")
                )
                charsets = tuple(str(c) for c in item.get("charsets") or ())
                source = Source(str(name), "search", params, charsets=charsets)
                db.add(source, [str(u) for u in item.get("urls") or ()])
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


# Lists that --referrer-db takes by name: the files shipped under referrer_lists/<name>/
SHIPPED_LISTS = {"matomo": ("SearchEngines.yml", "Socials.yml", "AIAssistants.yml")}
SNOWPLOW_URL = (
    "https://s3-eu-west-1.amazonaws.com/snowplow-hosted-assets/third-party/referer-parser/"
    "referers-latest.yaml"
)


def list_files(value: Path | str) -> list[Path]:
    """The files one --referrer-db value stands for: an existing file, or the name of a list
    shipped with trail (`matomo`). `snowplow` names a list trail does not ship (GPL-3.0): the
    error says where to get it."""
    path = Path(value)
    name = str(value).strip().lower()
    if path.is_file() or name not in (*SHIPPED_LISTS, "snowplow"):
        return [path]
    if name == "snowplow":
        raise UsageError(
            "Snowplow's referers.yml is not shipped with trail: it is licensed under the GPL "
            "v3, trail under MIT.",
            f"download it (curl -LO {SNOWPLOW_URL}) and pass --referrer-db referers-latest.yaml",
        )
    folder = files("trailcli.sources") / "referrer_lists" / name
    return [Path(str(folder / f)) for f in SHIPPED_LISTS[name]]


def load_db(extra_files: Iterable[Path | str] = ()) -> ReferrerDB:
    """The package's sources, then each list in order (a later entry wins for the same host):
    a file, or a shipped list by name (`list_files`)."""
    db = builtin_db()
    for value in extra_files:
        for path in list_files(value):
            load_file(db, path)
    return db

"""What a visit learns from its request: client IP and masking, user agent, bots, geo location."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trailcli.collector.lru import LRU
from trailcli.errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


PROXY_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _is_proxy(ip: IPAddress) -> bool:
    """Loopback, link-local and private networks: where a trusted reverse proxy sits."""
    return ip.is_loopback or ip.is_link_local or any(ip in net for net in PROXY_NETWORKS)


def client_ip(remote: str | None, forwarded_for: str | None, trust_proxy: bool) -> str | None:
    """The client's address: the peer, or with `trust_proxy` the nearest public X-Forwarded-For hop.

    Hops are read right to left, skipping private and loopback proxies; if every hop is private
    the leftmost one is the client. Malformed hops are ignored.
    """
    peer = _parse_ip(remote)
    if trust_proxy and forwarded_for:
        hops = [ip for ip in map(_parse_ip, forwarded_for.split(",")) if ip is not None]
        for ip in reversed(hops):
            if not _is_proxy(ip):
                return _text(ip)
        if hops:
            return _text(hops[0])
    return _text(peer) if peer is not None else None


def _text(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def mask_ip(ip: str | None) -> str | None:
    """IPv4 to its /24 network address, IPv6 to its /48 (as Ahoy's mask_ips)."""
    parsed = _parse_ip(ip)
    if parsed is None:
        return ip
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False).network_address)


@dataclass(frozen=True)
class Device:
    browser: str | None
    os: str | None
    device_type: str
    is_bot: bool


EMPTY_UA = Device(None, None, "Bot", True)


def _family(name: str | None) -> str | None:
    return None if not name or name == "Other" else name


def parse_user_agent(user_agent: str | None) -> Device:
    """Browser and OS family names and the device type (Desktop, Mobile, Tablet, Bot, Other).

    As Ahoy's bot detection v2, a bot is what the parser flags, an empty user agent, or one
    with neither a known OS nor a known device (HTTP libraries, scripts).
    """
    if not user_agent or not user_agent.strip():
        return EMPTY_UA
    from user_agents import parse

    ua = parse(user_agent)
    os_family = _family(ua.os.family)
    unknown_device = not (ua.is_tablet or ua.is_mobile or ua.is_pc)
    if ua.is_bot or (os_family is None and unknown_device):
        kind = "Bot"
    elif ua.is_tablet:
        kind = "Tablet"
    elif ua.is_mobile:
        kind = "Mobile"
    elif ua.is_pc:
        kind = "Desktop"
    else:
        kind = "Other"
    return Device(_family(ua.browser.family), os_family, kind, kind == "Bot")


class UserAgentCache:
    """parse_user_agent behind a bounded LRU: real traffic repeats a few user agents."""

    def __init__(self, maxsize: int) -> None:
        self._cache: LRU[str, Device] = LRU(maxsize)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def parse(self, user_agent: str | None) -> Device:
        key = (user_agent or "")[:2048]
        found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        device = parse_user_agent(key)
        self._cache.put(key, device)
        return device


GEO_FIELDS = ("country", "region", "city", "latitude", "longitude")


class GeoIP:
    """Country, region, city and coordinates of an IP from a MaxMind database (City or Country)."""

    def __init__(self, path: Path) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(
                f"Cannot open GeoIP database {path}: {reason}.",
                "pass a MaxMind .mmdb file to --geoip",
            ) from None

    def close(self) -> None:
        self._reader.close()

    def lookup(self, ip: str | None) -> dict[str, Any]:
        """The geo fields for `ip` (all None when unknown or on any lookup error)."""
        empty: dict[str, Any] = dict.fromkeys(GEO_FIELDS)
        if not ip or _parse_ip(ip) is None:
            return empty
        try:
            found = self._reader.get(ip)
        except (ValueError, TypeError, OSError):
            return empty
        if not isinstance(found, dict):
            return empty
        return {**empty, **_geo_fields(found)}


def _name(node: Any) -> str | None:
    if isinstance(node, dict):
        names = node.get("names")
        if isinstance(names, dict) and isinstance(names.get("en"), str):
            return str(names["en"])
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _geo_fields(record: dict[str, Any]) -> dict[str, Any]:
    subdivisions = record.get("subdivisions")
    region = _name(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else None
    found = record.get("location")
    location: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "country": _name(record.get("country")),
        "region": region,
        "city": _name(record.get("city")),
        "latitude": _number(location.get("latitude")),
        "longitude": _number(location.get("longitude")),
    }

"""A small Prometheus text-format registry: counters and gauges with labels, and callback gauges."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

Labels = Mapping[str, str] | None
_LabelKey = tuple[tuple[str, str], ...]


_KEYS: dict[tuple[tuple[str, str], ...], _LabelKey] = {}


def _key(labels: Labels) -> _LabelKey:
    """Labels as a sorted tuple (memoised: the same few label sets recur on every request)."""
    if not labels:
        return ()
    raw = tuple(labels.items())
    found = _KEYS.get(raw)
    if found is None:
        found = tuple(sorted((str(k), str(v)) for k, v in raw))
        if len(_KEYS) < 10_000:
            _KEYS[raw] = found
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(key: _LabelKey) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in key) + "}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Series:
    """One counter series of a `Metrics` registry (a name with fixed labels)."""

    __slots__ = ("_key", "_values")

    def __init__(self, values: dict[_LabelKey, float], key: _LabelKey) -> None:
        self._values = values
        self._key = key

    def inc(self, value: float = 1.0) -> None:
        self._values[self._key] += value


class Metrics:
    """Counters only go up (`inc`); gauges are set (`set`) or read from a callback at scrape time."""

    def __init__(self, prefix: str = "trail_") -> None:
        self.prefix = prefix
        self._types: dict[str, str] = {}
        self._help: dict[str, str] = {}
        self._values: dict[str, dict[_LabelKey, float]] = {}
        self._callbacks: dict[str, Callable[[], float]] = {}
        self._scrapers: list[Callable[[Metrics], None]] = []

    def describe(self, name: str, kind: str, help: str) -> None:
        """Declare a metric's type (`counter` or `gauge`) and help text, so it shows even at zero."""
        self._types[name] = kind
        self._help[name] = help
        self._values.setdefault(name, {})

    def inc(self, name: str, labels: Labels = None, value: float = 1.0) -> None:
        """Add `value` to the counter `name` with these labels."""
        self._types.setdefault(name, "counter")
        series = self._values.setdefault(name, {})
        key = _key(labels)
        series[key] = series.get(key, 0.0) + value

    def counter(self, name: str, labels: Labels = None) -> Series:
        """The counter series `name` with these labels, to `inc` without looking them up again."""
        self._types.setdefault(name, "counter")
        series = self._values.setdefault(name, {})
        key = _key(labels)
        series.setdefault(key, 0.0)
        return Series(series, key)

    def set(self, name: str, value: float, labels: Labels = None) -> None:
        """Set the gauge `name` with these labels."""
        self._types.setdefault(name, "gauge")
        self._values.setdefault(name, {})[_key(labels)] = float(value)

    def gauge_fn(self, name: str, fn: Callable[[], float], help: str = "") -> None:
        """A gauge whose value `fn()` gives at scrape time (a failing callback reads as NaN)."""
        self.describe(name, "gauge", help)
        self._callbacks[name] = fn

    def on_scrape(self, fn: Callable[[Metrics], None]) -> None:
        """Call `fn(metrics)` before every render, to `set` gauges from another component's stats."""
        self._scrapers.append(fn)

    def scrape(self) -> None:
        for fn in self._scrapers:
            try:
                fn(self)
            except Exception:  # a failing source must not break /metrics
                self.inc("scrape_errors_total")

    def value(self, name: str, labels: Labels = None) -> float:
        """The current value of a series (0 when never touched); callback gauges are evaluated."""
        if name in self._callbacks:
            return self._call(name)
        return self._values.get(name, {}).get(_key(labels), 0.0)

    def total(self, name: str) -> float:
        """The sum over all label sets of a metric."""
        return sum(self._values.get(name, {}).values())

    def _call(self, name: str) -> float:
        try:
            return float(self._callbacks[name]())
        except Exception:
            return math.nan

    def render(self) -> str:
        """The registry in Prometheus text exposition format 0.0.4."""
        self.scrape()
        lines: list[str] = []
        for name in sorted(self._types):
            full = self.prefix + name
            if self._help.get(name):
                lines.append(f"# HELP {full} {self._help[name]}")
            lines.append(f"# TYPE {full} {self._types[name]}")
            if name in self._callbacks:
                lines.append(f"{full} {_format_value(self._call(name))}")
                continue
            for key, value in sorted(self._values.get(name, {}).items()):
                lines.append(f"{full}{_format_labels(key)} {_format_value(value)}")
        return "\n".join(lines) + "\n"

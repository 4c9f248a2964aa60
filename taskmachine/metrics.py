"""A small Prometheus text-format registry: counters, histograms and gauges read on demand."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

Labels = tuple[tuple[str, str], ...]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _fmt(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in items
    )
    return "{" + body + "}"


def _num(value: float) -> str:
    """Exact for counts (`:g` would print 1e+06 for 1,000,001), shortest round-trip otherwise."""
    return str(int(value)) if value.is_integer() else repr(value)


class Metrics:
    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, dict[Labels, list[float]]] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], float]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._histograms[name].get(key)
        if series is None:
            # One slot per bucket, then +Inf, count and sum.
            series = self._histograms[name][key] = [0.0] * (len(BUCKETS) + 3)
        series[bisect.bisect_left(BUCKETS, seconds)] += 1
        series[-2] += 1
        series[-1] += seconds

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []

        def header(name: str, default_kind: str) -> None:
            kind, text = self._help.get(name, (default_kind, name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        for name, series in sorted(self._counters.items()):
            header(name, "counter")
            for labels, value in sorted(series.items()):
                lines.append(f"{name}{_fmt(labels)} {_num(value)}")
        for name, hseries in sorted(self._histograms.items()):
            header(name, "histogram")
            for labels, slots in sorted(hseries.items()):
                cumulative = 0.0
                for bound, count in zip(BUCKETS, slots, strict=False):
                    cumulative += count
                    lines.append(
                        f"{name}_bucket{_fmt(labels, (('le', f'{bound:g}'),))} {_num(cumulative)}"
                    )
                cumulative += slots[len(BUCKETS)]
                lines.append(f"{name}_bucket{_fmt(labels, (('le', '+Inf'),))} {_num(cumulative)}")
                lines.append(f"{name}_count{_fmt(labels)} {_num(slots[-2])}")
                lines.append(f"{name}_sum{_fmt(labels)} {_num(slots[-1])}")
        for name, read in sorted(self._gauges.items()):
            header(name, "gauge")
            lines.append(f"{name} {_num(read())}")
        return "\n".join(lines) + "\n"

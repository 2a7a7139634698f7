"""Counters, histograms and summaries for the worker's per-record path: plain numbers,
turned into Prometheus metric families only when /metrics is scraped.

prometheus_client's own ``Counter`` and ``Histogram`` validate the amount and take a
lock on every call: ~0.7 µs an ``inc`` and ~1.8 µs an ``observe``, and a decision point
makes some ten of them, each one more in the handler's time per event. The metrics here
are written only by the worker's event loop (engine/handler.py carrying out a result)
and collected by the registry when /metrics is scraped, on the same loop; so they are
plain numbers, and each tally is a registered collector that reports them in the same
exposition (names, ``_total`` suffixes, cumulative ``le`` buckets) as prometheus_client's
own metrics would, minus the ``_created`` series nothing of ours reads.

Only metrics written by the event loop belong here: a write from another thread (the
garbage collector's callbacks, which run on whatever thread allocates) could lose an
increment.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> r = CollectorRegistry()
>>> seen = CounterTally("seen", "Things seen.", ["kind"], registry=r)
>>> seen.labels("cat").inc()
>>> seen.labels(kind="cat").inc(2)
>>> print(generate_latest(r).decode().splitlines()[-1])
seen_total{kind="cat"} 3.0
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from prometheus_client import CollectorRegistry, utils
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

_bound = cast(Callable[[float], str], utils.floatToGoString)
"""A bucket's ``le`` label as prometheus_client writes it (``1.0``, ``+Inf``)."""


class Count:
    """One counter series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counters only go up: inc({amount})")
        self.value += amount

    def report(self, family: CounterMetricFamily, values: list[str]) -> None:
        family.add_metric(values, self.value)


class Buckets:
    """One histogram series: the observations per bucket (not cumulative) and their sum.
    ``bounds`` are the buckets' upper bounds, ``+Inf`` last."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets hold what is less than or equal to their bound ("le").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def report(self, family: HistogramMetricFamily, values: list[str]) -> None:
        cumulative, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            cumulative.append((_bound(bound), running))
        family.add_metric(values, cumulative, self.total)


class Mean:
    """One summary series: a count and a sum, no quantiles (as prometheus_client's)."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value

    def report(self, family: SummaryMetricFamily, values: list[str]) -> None:
        family.add_metric(values, self.count, self.total)


S = TypeVar("S", Count, Buckets, Mean)


class _Tally(ABC, Generic[S]):
    """A metric's series by label values, registered with ``registry`` as a collector:
    a scrape gets one ``family`` with each series reported into it."""

    family: ClassVar[Callable[..., Any]]

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        self._only: S | None = None
        """The one series of a metric without labels, exposed from the start, at zero."""
        if not self.labelnames:
            self._only = self._series[()] = self._new()
        registry.register(self)

    @abstractmethod
    def _new(self) -> S:
        """A new series, at zero."""

    def labels(self, *values: str, **named: str) -> S:
        """The series of these label values (positional, in declared order, or by name),
        made, and its values checked, on first use."""
        if named:
            values = self._by_name(values, named)
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: labels are {self.labelnames}, got {values}")
            if not all(isinstance(v, str) for v in values):
                raise ValueError(f"{self.name}: label values must be strings, got {values}")
            series = self._series[values] = self._new()
        return series

    def _by_name(self, values: tuple[str, ...], named: dict[str, str]) -> tuple[str, ...]:
        if values:
            raise ValueError(f"{self.name}: label values by position or by name, not both")
        if set(named) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels are {self.labelnames}, got {sorted(named)}")
        return tuple(named[n] for n in self.labelnames)

    def _unlabelled(self) -> S:
        """The one series (``_only``), read without a call by the writers below."""
        if self._only is None:
            raise ValueError(f"{self.name} has labels {self.labelnames}: call labels() first")
        return self._only

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, series in list(self._series.items()):
            series.report(family, list(values))
        yield family

    def _family(self) -> Any:
        return self.family(self.name, self.documentation, labels=self.labelnames)


class CounterTally(_Tally[Count]):
    family = CounterMetricFamily

    def _new(self) -> Count:
        return Count()

    def inc(self, amount: float = 1.0) -> None:
        (self._only or self._unlabelled()).inc(amount)


class HistogramTally(_Tally[Buckets]):
    family = HistogramMetricFamily

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct and at least one: {buckets}")
        self.bounds = bounds if bounds[-1] == float("inf") else (*bounds, float("inf"))
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new(self) -> Buckets:
        return Buckets(self.bounds)

    def observe(self, value: float) -> None:
        (self._only or self._unlabelled()).observe(value)


class SummaryTally(_Tally[Mean]):
    family = SummaryMetricFamily

    def _new(self) -> Mean:
        return Mean()

    def observe(self, value: float) -> None:
        (self._only or self._unlabelled()).observe(value)

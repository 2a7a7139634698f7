"""Open-loop load at a fixed rate and event-to-output latency: the pure accounting.

How latency is defined, the same way for every path:

* The load generator stamps each event just before handing it to its producer: the
  event id is ``L<run>-<seq>-<sent_ns>``, ``sent_ns`` being ``time.time_ns()`` then, and
  the event's ``time`` field is the same instant in milliseconds.
* The path's output for that event (a decision, or the raw loop's decision-like record)
  carries the event id. A measuring consumer in another process reads the output topic;
  an output *arrives* at the ``time.time_ns()`` taken when ``getmany`` returned it.
* **latency = arrival - sent_ns**, of the first output per event. Both clocks are the
  same machine's CLOCK_REALTIME. It includes the generator's producer, the broker twice,
  the path's fetch, processing and produce, and the measuring consumer's fetch.
* **produced = appended - sent_ns**: the bench has the broker stamp each record of the
  output topic with the time it appends it (``message.timestamp.type=LogAppendTime``,
  :func:`benchmarks.loadgen.stamp_on_append`), so this is the event's time to its output
  produced, to 1 ms: event-to-decision latency as issue 6 defines it. It leaves out the
  measuring consumer's fetch, the reading side's part (at 1,000/s here: ~2 ms at the
  median, 5-12 ms at p99, up to ~60 ms when that process waited for a core).
* Alongside, ``decided_at_ms - time`` (the path's own stamp of when it decided, minus the
  event time): the same without the output's trip back through the broker, to 1 ms.

Events sent in the first WARMUP_SECONDS of a run are not counted. The *backlog* is the
outputs still missing (sent minus arrived). A run is *not sustained* when its backlog at
the end of the sending exceeds the one at the end of the warm-up by more than
GROWTH_LIMIT_SECONDS of the offered output rate (the lag grows), or when some outputs
are still missing a drain time later; it then gets no latency figures. A run whose
backlog passes ABORT_BACKLOG_SECONDS of load stops sending at once: that bounds the runs
a path cannot keep up with. A steady backlog is no failure: it is the latency.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

WARMUP_SECONDS = 3.0
"""Events sent this early in a run are left out: connections, caches, the first fetches."""
GROWTH_LIMIT_SECONDS = 1.0
"""A sustained path's backlog grows by less than this many seconds of load over a run
(over the 17 counted seconds of a 20 s run: it delivers at least 94% of what it is sent)."""
ABORT_BACKLOG_SECONDS = 5.0
"""Stop a run once this many seconds of load are in flight: it cannot be sustained."""
FIXED_RATES = (1_000, 5_000)
SATURATION_SHARE = 0.8

_EVENT_ID = re.compile(rb'"event_id":"L([0-9a-z]+)-(\d+)-(\d+)"')
_DECIDED = re.compile(rb'"decided_at_ms":(\d+)')


def due(rate: float, elapsed: float) -> int:
    """How many events an open-loop source at ``rate``/s has sent ``elapsed`` s in.

    >>> due(1000, 0.0105), due(1000, -1.0)
    (10, 0)
    """
    return int(rate * elapsed) if elapsed > 0 else 0


def event_id(run: str, seq: int, sent_ns: int) -> str:
    """The id of run ``run``'s event ``seq``, sent at ``sent_ns``.

    >>> event_id("b2", 7, 1_700_000_000_123_456_789)
    'Lb2-7-1700000000123456789'
    """
    return f"L{run}-{seq}-{sent_ns}"


def stamped(rest: bytes, run: str, seq: int, sent_ns: int) -> bytes:
    """An event's JSON value: its id and time first, then ``rest``, the template's JSON
    object without its opening brace (built once, so stamping costs no encoding).

    >>> stamped(b'"type":"search"}', "c1", 3, 2_000_000_000)
    b'{"event_id":"Lc1-3-2000000000","time":2000,"type":"search"}'
    """
    eid = event_id(run, seq, sent_ns).encode()
    return b'{"event_id":"%s","time":%d,%s' % (eid, sent_ns // 1_000_000, rest)


def template_rest(doc: Mapping[str, object], encoded: bytes) -> bytes:
    """``encoded`` (the JSON of ``doc``, which has neither ``event_id`` nor ``time``) less
    its opening brace: the part :func:`stamped` appends."""
    if "event_id" in doc or "time" in doc or not doc or encoded[:1] != b"{":
        raise ValueError("a template is a non-empty object without event_id and time")
    return encoded[1:]


@dataclass(frozen=True, slots=True)
class Output:
    seq: int
    sent_ns: int
    decided_at_ms: int | None


def read_output(value: bytes | None, run: str) -> Output | None:
    """The event an output answers, if it is one of run ``run``'s; None otherwise.

    >>> read_output(b'{"event_id":"La1-5-3000000000","decided_at_ms":3004}', "a1")
    Output(seq=5, sent_ns=3000000000, decided_at_ms=3004)
    >>> read_output(b'{"event_id":"La2-5-3000000000"}', "a1") is None
    True
    """
    if not value:
        return None
    found = _EVENT_ID.search(value)
    if found is None or found.group(1).decode() != run:
        return None
    decided = _DECIDED.search(value, found.end())
    return Output(
        int(found.group(2)), int(found.group(3)), int(decided.group(1)) if decided else None
    )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of values sorted ascending.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], not {q}")
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values_ms: Iterable[float]) -> dict[str, float | int | None]:
    """Count, p50, p99, p999 and max in ms (rounded to 0.01 ms).

    p999 needs 1,000 samples to be more than the maximum: with fewer it is None.
    """
    ordered = sorted(values_ms)
    if not ordered:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 0.5), 2),
        "p99_ms": round(percentile(ordered, 0.99), 2),
        "p999_ms": round(percentile(ordered, 0.999), 2) if len(ordered) >= 1000 else None,
        "max_ms": round(ordered[-1], 2),
    }


@dataclass(frozen=True, slots=True)
class Verdict:
    sustained: bool
    reason: str


def verdict(
    rate: float, backlog_warm: int, backlog_end: int, *, aborted: bool, drained: bool
) -> Verdict:
    """Whether a path kept up with ``rate`` outputs/s expected.

    ``backlog_warm`` and ``backlog_end`` are the outputs missing at the end of the warm-up
    and of the sending, ``aborted`` that the run stopped early on its backlog, ``drained``
    that every output arrived afterwards.

    >>> verdict(1000, 30, 40, aborted=False, drained=True)
    Verdict(sustained=True, reason='40 in flight at the end (0.04 s of load)')
    >>> verdict(1000, 2000, 2100, aborted=False, drained=True).sustained
    True
    >>> verdict(1000, 30, 1500, aborted=False, drained=True).reason
    'lag grows: 30 in flight after the warm-up, 1,500 at the end (1.50 s of load)'
    """
    seconds = f"({backlog_end / rate:.2f} s of load)"
    if aborted:
        return Verdict(False, f"stopped early: over {ABORT_BACKLOG_SECONDS:g} s of load in flight")
    if backlog_end - backlog_warm > rate * GROWTH_LIMIT_SECONDS:
        return Verdict(
            False,
            f"lag grows: {backlog_warm:,} in flight after the warm-up, "
            f"{backlog_end:,} at the end {seconds}",
        )
    if not drained:
        return Verdict(False, f"outputs missing after the drain; {backlog_end:,} at the end")
    return Verdict(True, f"{backlog_end:,} in flight at the end {seconds}")


def fixed_rates(saturation: float | None) -> list[int]:
    """The offered loads of one path, ascending: 1,000/s, 5,000/s and 80% of its
    measured saturation (rounded to 10/s), without repeats.

    >>> fixed_rates(2500.0), fixed_rates(40_000.0), fixed_rates(None)
    ([1000, 2000, 5000], [1000, 5000, 32000], [1000, 5000])
    """
    rates = set(FIXED_RATES)
    if saturation:
        rates.add(max(10, int(round(saturation * SATURATION_SHARE, -1))))
    return sorted(rates)

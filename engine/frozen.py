"""Read-only values that cost less than frozen dataclasses: ``immutable`` classes,
``assembled`` instances, and a read-only dict that pickles.

``immutable`` is for the small records built several times per event (a raw record, a
send): mypy holds them frozen (``dataclass_transform(frozen_default=True)``), while at
run time they are slotted dataclasses whose ``__init__`` assigns each field directly. A
frozen dataclass's sets each one through ``object.__setattr__``: 1.07 µs against 0.27 µs
for a six-field record (timeit, Python 3.11). Equal ones hash alike, as frozen ones do.

>>> @immutable
... class Point:
...     x: int
...     y: int = 0
>>> Point(1) == Point(1, 0), hash(Point(1)) == hash(Point(1, 0))
(True, True)

``assembled`` is for the frozen dataclasses without slots that the core builds per event
(a decision and its candidates, an event, recent activity): their instance dict is set
whole, where ``__init__`` sets each field with its own ``object.__setattr__``. A
``Decision`` (21 fields) costs ~43k instructions built field by field, ~13k this way
(callgrind). Without slots, orjson also writes them from that dict, in its order.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Pair:
...     a: int
...     b: int = 0
>>> p = assembled(Pair, {"a": 1, "b": 2})
>>> p == Pair(1, 2), is_assembled(p), is_assembled(assembled(Pair, {"b": 2, "a": 1}))
(True, True, False)

``FrozenDict`` is for mappings inside frozen catalogue and policy objects.

``types.MappingProxyType`` is read-only too, but does not pickle, and a catalogue crosses
processes (the CLI validates one, errors and all, in a worker pool of tests).

>>> import pickle
>>> caps = FrozenDict({"email": 1})
>>> pickle.loads(pickle.dumps(caps)) == caps
True
>>> caps["sms"] = 2
Traceback (most recent call last):
TypeError: FrozenDict is read-only
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, NoReturn, TypeVar, dataclass_transform

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def immutable(cls: type[T]) -> type[T]:
    """A dataclass frozen to the type checker, cheap to build at run time (above)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


def assembled(cls: type[T], values: dict[str, Any]) -> T:
    """``cls(**values)`` for a frozen dataclass without slots, ``values`` its instance
    dict (above). ``values`` must name every field, in field order (orjson writes the
    dict in its order): nothing here checks it, the callers' tests do (``is_assembled``)."""
    made = _new(cls)
    _set(made, "__dict__", values)
    return made


def is_assembled(instance: Any) -> bool:
    """Whether a dataclass ``instance`` holds every field of its class, in field order."""
    return list(vars(instance)) == [f.name for f in fields(instance)]


_new, _set = object.__new__, object.__setattr__


class FrozenDict(dict[K, V]):
    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("FrozenDict is read-only")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[type[FrozenDict[K, V]], tuple[dict[K, V]]]:
        return (type(self), (dict(self),))

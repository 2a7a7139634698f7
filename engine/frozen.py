"""A read-only dict that pickles: for mappings inside frozen catalogue and policy objects.

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

from typing import Any, NoReturn, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("FrozenDict is read-only")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[type[FrozenDict[K, V]], tuple[dict[K, V]]]:
        return (type(self), (dict(self),))

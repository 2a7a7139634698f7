"""What a condition does with values: the tree ``engine.expr`` parses, compiled into
Python closures, and the null-aware semantics of every operator.

A condition is evaluated many times per event (every action's ``when``, every lifecycle
stage, every journey's entry and exit rules: about 22 per decision point), and walking
the tree cost a dispatch on the operator name per node per evaluation: 20% of the core's
CPU. ``compile_tree`` makes that dispatch once, when the catalogue is loaded: each node
becomes a closure over its compiled operands, with the operator's semantics chosen at
compile time (an ordering against a number literal, the commonest comparison, checks
only its other operand's type). The semantics are those of the module docstring of
``engine.expr``, exactly: no operator ever raises, a type mismatch is null.

>>> run = compile_tree(Node("and", (Node("path", ("a",)), Node("const", (True,)))))
>>> run({"a": True}), run({}), run({"a": 0})
(True, None, False)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of brackets, calls and prefix operators. The parser and the compiled
closures recurse once per level, so this keeps both far below Python's recursion limit."""
MAX_STRING = 10_000
"""Longest string ``+`` may build (a longer result is null): a rule cannot grow memory."""
MAX_INT = 2**63 - 1
"""Integer literals beyond 64 bits are rejected and computed ones are null: that is what
downstream JSON consumers hold, and it keeps arithmetic on context values cheap."""
DAY_MS = 86_400_000

Run = Callable[[Mapping[str, Any]], Any]
"""A compiled expression: the context in, the raw value out (None: unknown)."""


@dataclass(frozen=True, slots=True)
class Node:
    """One step of the tree, an operator and its arguments:

    - ``const`` (value), ``path`` (names), ``list`` (items), a function name (arguments);
    - ``not`` and ``neg`` (operand), ``and`` and ``or`` (operands), a comparison (two);
    - ``arith`` (first, op, operand, op, operand, ...): a flat left-to-right chain, so a
      long sum does not nest deep enough to exhaust the stack.
    """

    op: str
    args: tuple[Any, ...]


def compile_tree(node: Node) -> Run:
    """The closure that evaluates ``node``: every node is evaluated at most once per call,
    so a call costs time linear in the tree (times the size of the values it touches)."""
    op, args = node.op, node.args
    if op == "const":
        value = args[0]
        return lambda ctx: value
    if op == "path":
        return _path(args)
    if op in ("and", "or"):
        return _logic(op == "or", tuple(compile_tree(arg) for arg in args))
    if op == "arith":
        return _chain(compile_tree(args[0]), [(o, compile_tree(a)) for o, a in _pairs(args)])
    parts = tuple(compile_tree(arg) for arg in args)
    if op == "list":
        return lambda ctx: [part(ctx) for part in parts]
    if op == "not":
        return _negation(parts[0])
    if op == "neg":
        operand = parts[0]
        return lambda ctx: _arith("-", 0, operand(ctx))
    if op in FUNCTIONS:
        body = FUNCTIONS[op][2]
        if op == "days_since":  # the one function that reads the context's ``now``
            return lambda ctx: body([part(ctx) for part in parts], ctx.get("now"))
        if op == "len":  # len(profile.cart), in many rules: the body's test inlined
            return _length(parts[0])
        if len(parts) == 1:  # no comprehension (a call of its own)
            only = parts[0]
            return lambda ctx: body([only(ctx)], None)
        return lambda ctx: body([part(ctx) for part in parts], None)
    return _comparison(op, parts[0], parts[1], args[0], args[1])


def _pairs(chain: tuple[Any, ...]) -> list[tuple[str, Node]]:
    return [(chain[i], chain[i + 1]) for i in range(1, len(chain), 2)]


_SIZED = (str, list, tuple, Mapping)
_PLAIN = (bool, int, float, *_SIZED)
# The exact types the view and events hold, checked before the tuples above: a dict is a
# Mapping only by the ABC machinery, a Python-level check per value read.
_SIZED_TYPES = frozenset({str, list, tuple, dict})
_PLAIN_TYPES = frozenset({bool, int, float, *_SIZED_TYPES})


def _path(parts: Sequence[str]) -> Run:
    # A plain dict (what the view and the event are) first: the Mapping check goes through
    # the ABC machinery, a few times slower, and every condition reads paths.
    def run(ctx: Mapping[str, Any]) -> Any:
        value: Any = ctx
        for part in parts:
            value = value.get(part) if type(value) is dict or isinstance(value, Mapping) else None
        if value is None:  # an absent field, the commonest unknown
            return None
        # Anything but plain data reads as unknown, so no operator meets a Python object.
        return value if type(value) in _PLAIN_TYPES or isinstance(value, _PLAIN) else None

    if len(parts) != 2:
        return run
    root, name = parts

    def run2(ctx: Mapping[str, Any]) -> Any:  # root.name, as most conditions read
        value = ctx.get(root) if type(ctx) is dict or isinstance(ctx, Mapping) else None
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(name)
            if type(value) in _PLAIN_TYPES or (value is not None and isinstance(value, _PLAIN)):
                return value
        return None

    return run2


def _logic(deciding: bool, operands: tuple[Run, ...]) -> Run:
    # Three-valued: the deciding value (false for and, true for or) wins even after an
    # unknown operand; otherwise any unknown operand makes the result unknown.
    def run(ctx: Mapping[str, Any]) -> bool | None:
        result: bool | None = not deciding
        for operand in operands:
            truth = _truth(operand(ctx))
            if truth is deciding:
                return deciding
            if truth is None:
                result = None
        return result

    return run


def _negation(operand: Run) -> Run:
    def run(ctx: Mapping[str, Any]) -> bool | None:
        truth = _truth(operand(ctx))
        return None if truth is None else not truth

    return run


def _chain(first: Run, rest: list[tuple[str, Run]]) -> Run:
    def run(ctx: Mapping[str, Any]) -> Any:
        value = first(ctx)
        for op, operand in rest:
            value = _arith(op, value, operand(ctx))
        return value

    return run


def _comparison(op: str, left: Run, right: Run, left_node: Node, right_node: Node) -> Run:
    if op in ("==", "!="):
        same = op == "=="
        return lambda ctx: _equal(left(ctx), right(ctx)) == same
    if op in ("in", "not in"):
        inside = op == "in"

        def member(ctx: Mapping[str, Any]) -> bool | None:
            needle = left(ctx)
            found = _contains(right(ctx), needle)
            return None if found is None else found == inside

        return member
    order = _OPERATORS[op]
    if right_node.op == "const" and _is_number(right_node.args[0]):
        # ``profile.orders >= 5``: only the left operand's type is left to check.
        bound = right_node.args[0]
        if left_node.op == "path" and len(left_node.args) == 2:
            return _path_against(*left_node.args, order, bound)
        inner = left_node.args[0] if left_node.op == "len" else None
        if isinstance(inner, Node) and inner.op == "path" and len(inner.args) == 2:
            return _length_against(*inner.args, order, bound)

        def against(ctx: Mapping[str, Any]) -> bool | None:
            value = left(ctx)
            kind = type(value)
            if kind is int or kind is float:  # ``_is_number``'s common case, without a call
                return bool(order(value, bound))
            return bool(order(value, bound)) if _is_number(value) else None

        return against

    def ordering(ctx: Mapping[str, Any]) -> bool | None:
        a, b = left(ctx), right(ctx)
        if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return bool(order(a, b))
        return None

    return ordering


def _path_against(root: str, name: str, order: Callable[[Any, Any], Any], bound: Any) -> Run:
    """``root.name`` ordered against a number literal (``profile.orders >= 5``, most
    lifecycle stages and many rules) in one closure: ``run2`` inlined into ``against``,
    one Python call less per evaluation, about 1,000 instructions (callgrind)."""

    def against_path(ctx: Mapping[str, Any]) -> bool | None:
        value = ctx.get(root) if type(ctx) is dict or isinstance(ctx, Mapping) else None
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(name)
            kind = type(value)
            if kind is int or kind is float:
                return bool(order(value, bound))
            # ``run2`` lets only plain data through; of that, only numbers compare.
            if value is not None and isinstance(value, _PLAIN) and _is_number(value):
                return bool(order(value, bound))
        return None

    return against_path


def _length_against(root: str, name: str, order: Callable[[Any, Any], Any], bound: Any) -> Run:
    """``len(root.name)`` ordered against a number literal (``len(profile.cart) > 0``, in
    a lifecycle stage and a rule evaluated at most decision points) in one closure:
    ``run2`` and ``_length`` inlined into ``against``, two Python calls less, about 1,300
    instructions an evaluation (callgrind).

    >>> run = _length_against("p", "cart", operator.gt, 0)
    >>> run({"p": {"cart": {"a": 1}}}), run({"p": {"cart": {}}}), run({"p": {"cart": 3}})
    (True, False, None)
    >>> run({"p": {}}), run({"p": None}), run({})
    (None, None, None)
    """

    def against_length(ctx: Mapping[str, Any]) -> bool | None:
        value: Any = ctx.get(root) if type(ctx) is dict or isinstance(ctx, Mapping) else None
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(name)
            # ``run2`` lets only plain data through; of that, ``len`` only sized values.
            if type(value) in _SIZED_TYPES or (value is not None and isinstance(value, _SIZED)):
                return bool(order(len(value), bound))
        return None

    return against_length


def _length(operand: Run) -> Run:
    """``len``: the ``FUNCTIONS`` body, without its argument list and two calls."""

    def run(ctx: Mapping[str, Any]) -> int | None:
        value = operand(ctx)
        return len(value) if type(value) in _SIZED_TYPES or isinstance(value, _SIZED) else None

    return run


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float:  # the common case, without the isinstance calls
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sized(value: Any) -> bool:
    return type(value) in _SIZED_TYPES or isinstance(value, _SIZED)


def _truth(value: Any) -> bool | None:
    """An operand of not/and/or: zero and empty are false, null is unknown."""
    if value is None or value is True or value is False:
        return value
    return bool(value) if type(value) in _PLAIN_TYPES or isinstance(value, _PLAIN) else None


def _bounded(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if abs(value) <= MAX_INT else None


def _equal(a: Any, b: Any, depth: int = 0) -> bool:
    # Strict types: true is not 1 and "1" is not 1. Data nested beyond MAX_DEPTH compares
    # unequal rather than recursing without bound.
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        pairs = zip(a, b, strict=False)
        same = len(a) == len(b) and depth < MAX_DEPTH
        return same and all(_equal(x, y, depth + 1) for x, y in pairs)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        same = a.keys() == b.keys() and depth < MAX_DEPTH
        return same and all(_equal(a[k], b[k], depth + 1) for k in a)
    if (isinstance(a, str) and isinstance(b, str)) or (isinstance(a, bool) and isinstance(b, bool)):
        return bool(a == b)
    return a is None and b is None


def _contains(haystack: Any, needle: Any) -> bool | None:
    if needle is None:
        return None
    if isinstance(haystack, list | tuple):
        return any(_equal(needle, item) for item in haystack)
    if isinstance(haystack, str | Mapping) and isinstance(needle, str):
        return needle in haystack  # a substring, or a key of a map
    return None


def _arith(op: str, a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        try:
            return _bounded(_OPERATORS[op](a, b))
        except ArithmeticError:  # division by zero; an int too large for a float
            return None
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b if len(a) + len(b) <= MAX_STRING else None
    return None


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {"<": operator.lt, "<=": operator.le}
_OPERATORS |= {">": operator.gt, ">=": operator.ge, "+": operator.add, "-": operator.sub}
_OPERATORS |= {"*": operator.mul, "/": operator.truediv, "%": operator.mod}


def _extreme(pick: Callable[[Sequence[Any]], Any], args: Sequence[Any]) -> Any:
    items = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
    if items and (all(_is_number(v) for v in items) or all(isinstance(v, str) for v in items)):
        return pick(items)
    return None


FUNCTIONS: Mapping[str, tuple[int, int | None, Callable[[Sequence[Any], Any], Any]]] = {
    "abs": (1, 1, lambda a, now: _bounded(abs(a[0])) if _is_number(a[0]) else None),
    "coalesce": (1, None, lambda a, now: next((v for v in a if v is not None), None)),
    "contains": (2, 2, lambda a, now: _contains(a[0], a[1])),
    "days_since": (1, 1, lambda a, now: _arith("/", _arith("-", now, a[0]), DAY_MS)),
    "len": (1, 1, lambda a, now: len(a[0]) if _sized(a[0]) else None),
    "lower": (1, 1, lambda a, now: a[0].lower() if isinstance(a[0], str) else None),
    "max": (1, None, lambda a, now: _extreme(max, a)),
    "min": (1, None, lambda a, now: _extreme(min, a)),
    "upper": (1, 1, lambda a, now: a[0].upper() if isinstance(a[0], str) else None),
}
"""The whitelist (nothing else can be called): (least arguments, most or None, body),
where a body takes the argument values and the context's ``now``."""

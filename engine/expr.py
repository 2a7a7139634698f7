"""Conditions written in journey and action YAML: a small, safe expression language.

Marketers and support leads write conditions as data, so the text never reaches
``eval``: a hand-written tokenizer and a precedence-climbing parser build an immutable
tree, compiled into closures (``engine.expr_eval``) that evaluate it over plain data
(dicts, lists, strings, numbers, booleans, null). Names resolve by dict lookup only,
never by attribute access.

Grammar, loosest first (``a < b < c`` is an error: comparisons do not chain)::

    expr       = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | comparison
    comparison = sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum ]
    sum        = product { ("+" | "-") product }
    product    = unary { ("*" | "/" | "%") unary }
    unary      = "-" unary | primary
    primary    = number | duration | string | "true" | "false" | "null" | "(" expr ")"
               | "[" args "]" | function "(" args ")" | name { "." name }
    args       = [ expr { "," expr } [","] ]

Null means unknown: arithmetic and ordering with null give null, ``and``/``or`` follow
three-valued logic, and a type mismatch at run time gives null, never an exception.
``not``, ``and`` and ``or`` read 0, "" and empty lists and maps as false, while ``test``
accepts only a value that is exactly ``true``.

>>> rule = compile_expr('cart.value > 20 and not support.open_tickets',
...                     roots={'cart', 'support'})
>>> rule.test({'cart': {'value': 35.0}, 'support': {'open_tickets': []}})
True
>>> print(rule.evaluate({'support': {'open_tickets': []}}))  # no cart: unknown
None
>>> rule.evaluate({'support': {'open_tickets': ['t1']}})  # false and unknown
False
>>> sorted(compile_expr('now - last.seen > 30d', roots={'now', 'last'}).paths())
['last.seen', 'now']
>>> try:
...     compile_expr('cart.value > 20 and', roots={'cart'})
... except ExprError as err:
...     print(err)
line 1, column 20: expected a value after 'and'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.expr_eval import DAY_MS, FUNCTIONS, MAX_DEPTH, MAX_INT, MAX_STRING, Node, Run
from engine.expr_eval import compile_tree as _compile_tree

__all__ = [
    "DAY_MS",
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_ITEMS",
    "MAX_LENGTH",
    "MAX_STRING",
    "Expr",
    "ExprError",
    "Node",
    "compile_expr",
]

MAX_LENGTH = 2_000
"""Longest accepted text: a condition needing more belongs in code or in several rules."""
MAX_ITEMS = 1_000
"""Most items in one list literal or arguments in one call."""

# There is no loop, no recursion and no user-defined function in the language, and every
# node is evaluated at most once: an evaluation costs time linear in the tree (times the
# size of the context values it touches), so no runtime budget is needed.

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_CONSTANTS = {"true": True, "false": False, "null": None}
_HINTS = {"=": "use '==' to compare", "&": "use 'and'", "|": "use 'or'", "!": "use 'not'"}
_HINTS["_"] = "names cannot start with '_'"  # keeps __class__ and friends out of the text
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<num>\d+(?:\.\d+)?)(?P<unit>\w*)
      | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<name>[A-Za-z]\w*)
      | (?P<sym>[=!<>]=|[-+*/%()\[\],.<>])""",
    # ASCII: look-alike Unicode letters and digits would make names that read the same.
    re.VERBOSE | re.ASCII,
)
# Binding power of infix operators, higher binds tighter; "not" starts "not in".
_INFIX = {"or": 1, "and": 2, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_COMPARE = 4
_INFIX.update(dict.fromkeys(("==", "!=", "<", "<=", ">", ">=", "in", "not"), _COMPARE))
_NOT_OPERAND, _NEG_OPERAND = 3, 6


class ExprError(ValueError):
    """A malformed expression and the place in its text (1-based line and column)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message, self.line, self.column = message, line, column

    def shifted(self, line_offset: int, column_offset: int) -> ExprError:
        """The same error placed in the enclosing file; the offsets count the lines and
        columns before the text. Added on every line: a YAML block scalar's indentation
        is the same on each of its lines."""
        return ExprError(self.message, self.line + line_offset, self.column + column_offset)

    def __reduce__(self) -> tuple[type[ExprError], tuple[str, int, int]]:
        return (ExprError, (self.message, self.line, self.column))


@dataclass(frozen=True, slots=True, repr=False)
class Expr:
    """A compiled expression: immutable, hashable and picklable. Equal, and hashed, by
    its text and tree; ``run`` is the tree compiled into closures (``engine.expr_eval``),
    rebuilt from the tree when unpickled."""

    source: str
    tree: Node
    run: Run = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", _compile_tree(self.tree))

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    def __reduce__(self) -> tuple[type[Expr], tuple[str, Node]]:
        return (Expr, (self.source, self.tree))

    def evaluate(self, ctx: Mapping[str, Any]) -> Any:
        """The raw value over ``ctx``: None where something was unknown or mistyped."""
        return self.run(ctx)

    def test(self, ctx: Mapping[str, Any]) -> bool:
        """The condition entry point: True only when the value is exactly ``true``."""
        return self.run(ctx) is True

    def paths(self) -> frozenset[str]:
        """Every dotted path the expression reads (``now`` too, for ``days_since``)."""
        found: set[str] = set()
        stack = [self.tree]
        while stack:
            node = stack.pop()
            if node.op == "path":
                found.add(".".join(node.args))
            elif node.op == "days_since":
                found.add("now")
            stack.extend(arg for arg in node.args if isinstance(arg, Node))
        return frozenset(found)


def compile_expr(text: str, *, roots: Collection[str]) -> Expr:
    """Parse ``text``. ``roots`` are the top-level names the context will provide."""
    if len(text) > MAX_LENGTH:
        raise _error(text, MAX_LENGTH, f"expression is longer than {MAX_LENGTH} characters")
    return Expr(text, _Parser(text, frozenset(roots)).parse())


def _where(src: str, pos: int) -> tuple[int, int]:
    return src.count("\n", 0, pos) + 1, pos - src.rfind("\n", 0, pos)


def _error(src: str, pos: int, message: str) -> ExprError:
    return ExprError(message, *_where(src, pos))


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "num", "str", "name", "end", or the symbol or keyword itself
    text: str
    value: int | float | str | None
    pos: int


def _tokenize(src: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            # Strings end on their line, so an unclosed one is reported where it opens.
            c = src[pos]
            hint = f": {_HINTS[c]}" if c in _HINTS else ""
            raise _error(src, pos, "unclosed string" if c in "\"'" else f"unexpected {c!r}{hint}")
        text = m.group()
        if m["num"] is not None:
            tokens.append(_number(src, m))
        elif m["str"] is not None:
            tokens.append(_Token("str", text, _unescape(src, pos, text), pos))
        elif m["name"] is not None:
            tokens.append(_Token(text if text in _KEYWORDS else "name", text, None, pos))
        elif m["sym"] is not None:
            tokens.append(_Token(text, text, None, pos))
        pos = m.end()
    # Point "expected a value" at the end just after the last token, not past trailing space.
    end = tokens[-1].pos + len(tokens[-1].text) if tokens else 0
    return [*tokens, _Token("end", "end of text", None, end)]


def _number(src: str, m: re.Match[str]) -> _Token:
    digits, unit, start = m["num"], m["unit"], m.start()
    value: int | float = float(digits) if "." in digits else int(digits)
    if unit:
        if unit not in _UNITS:
            message = f"unknown duration unit {unit!r}: use ms, s, m, h or d"
            raise _error(src, m.start("unit"), message)
        if isinstance(value, float):
            raise _error(src, start, "a duration takes a whole number: write 90m, not 1.5h")
        value *= _UNITS[unit]
    if abs(value) > MAX_INT:
        raise _error(src, start, "number too large")
    return _Token("num", m.group(), value, start)


def _unescape(src: str, start: int, text: str) -> str:
    for escape in re.finditer(r"\\(.)", text):
        if escape[1] not in "\"'\\":
            raise _error(src, start + escape.start(), "unknown escape: use \\\", \\' or \\\\")
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class _Parser:
    """Precedence climbing over the token list; ``depth`` counts open nesting levels."""

    def __init__(self, src: str, roots: frozenset[str]) -> None:
        self.src, self.roots, self.tokens = src, roots, _tokenize(src)
        self.i = self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def fail(self, tok: _Token, message: str) -> ExprError:
        return _error(self.src, tok.pos, message)

    def enter(self, tok: _Token) -> None:
        # An error abandons the whole parse, so levels are left only on success.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(tok, f"nesting deeper than {MAX_DEPTH} levels")

    def parse(self) -> Node:
        node = self.expr(0)
        if self.tok.kind != "end":
            raise self.fail(self.tok, f"unexpected {self.tok.text!r} after a complete expression")
        return node

    def expr(self, min_power: int) -> Node:
        left = self.prefix(min_power)
        while (power := _INFIX.get(self.tok.kind, 0)) > min_power:
            op = self.take().kind
            if op == "not":
                if self.tok.kind != "in":
                    raise self.fail(self.tok, "expected 'in' after 'not'")
                op = f"not {self.take().kind}"
            right = self.expr(power)
            if power == _COMPARE:
                if _INFIX.get(self.tok.kind) == _COMPARE:
                    raise self.fail(self.tok, "comparisons cannot chain: use and (a < b and b < c)")
                left = Node(op, (left, right))
            elif op in ("and", "or"):
                left = Node(op, (*left.args, right) if left.op == op else (left, right))
            else:
                # Evaluating a flat chain left to right equals the left-nested tree.
                head = left.args if left.op == "arith" else (left,)
                left = Node("arith", (*head, op, right))
        return left

    def prefix(self, min_power: int) -> Node:
        tok = self.tok
        if tok.kind == "-" or (tok.kind == "not" and min_power <= _NOT_OPERAND):
            self.enter(self.take())
            operand = self.expr(_NEG_OPERAND if tok.kind == "-" else _NOT_OPERAND)
            node = Node("neg" if tok.kind == "-" else "not", (operand,))
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("num", "str") or tok.kind in _CONSTANTS:
            self.take()
            return Node("const", (_CONSTANTS.get(tok.kind, tok.value),))
        if tok.kind == "name":
            self.take()
            return self.call(tok) if self.tok.kind == "(" else self.path(tok)
        if tok.kind in ("(", "["):
            self.enter(self.take())
            if tok.kind == "(":
                node = self.expr(0)
                self.close(")", tok)
            else:
                node = Node("list", self.items("]", tok))
            self.depth -= 1
            return node
        after = f" after {self.tokens[self.i - 1].text!r}" if self.i else ""
        found = "" if tok.kind == "end" else f", found {tok.text!r}"
        raise self.fail(tok, f"expected a value{after}{found}")

    def close(self, closer: str, opener: _Token) -> None:
        if self.tok.kind != closer:
            line, column = _where(self.src, opener.pos)
            found = "" if self.tok.kind == "end" else f", found {self.tok.text!r}"
            where = f"the {opener.text!r} at line {line}, column {column}"
            raise self.fail(self.tok, f"expected {closer!r} to close {where}{found}")
        self.take()

    def items(self, closer: str, opener: _Token) -> tuple[Node, ...]:
        items: list[Node] = []
        while self.tok.kind != closer:
            if len(items) == MAX_ITEMS:
                raise self.fail(self.tok, f"more than {MAX_ITEMS} items")
            items.append(self.expr(0))
            if self.tok.kind != ",":
                break
            self.take()
        self.close(closer, opener)
        return tuple(items)

    def call(self, name: _Token) -> Node:
        if name.text not in FUNCTIONS:
            known = f"functions: {', '.join(FUNCTIONS)}"
            hint = _suggest(name.text, FUNCTIONS)
            raise self.fail(name, f"unknown function {name.text!r}{hint}; {known}")
        if name.text == "days_since" and "now" not in self.roots:
            raise self.fail(name, "days_since() needs 'now' (epoch ms) among the names")
        self.enter(self.tok)
        args = self.items(")", self.take())
        self.depth -= 1
        low, high, _ = FUNCTIONS[name.text]
        if not low <= len(args) <= (high or MAX_ITEMS):
            wanted = f"{'' if low == high else 'at least '}{low} argument{'s' * (low > 1)}"
            raise self.fail(name, f"{name.text}() takes {wanted}, got {len(args)}")
        return Node(name.text, args)

    def path(self, root: _Token) -> Node:
        if root.text not in self.roots:
            word = root.text.lower()
            hint = f" (did you mean {word!r}?)" if word in _KEYWORDS else ""
            known = ", ".join(sorted(self.roots)) or "none"
            hint = hint or _suggest(root.text, self.roots)
            raise self.fail(root, f"unknown name {root.text!r}{hint}; known names: {known}")
        parts = [root.text]
        while self.tok.kind == ".":
            self.take()
            if self.tok.kind != "name":
                raise self.fail(self.tok, "expected a field name after '.'")
            parts.append(self.take().text)
        if self.tok.kind == "(":
            raise self.fail(self.tok, f"only functions can be called; {'.'.join(parts)!r} is data")
        return Node("path", tuple(parts))


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

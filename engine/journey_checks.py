"""Checks on the pieces of a journey catalogue, for ``engine.journeys`` to assemble.

Two kinds, both reporting ``Finding`` values (line, column, message) that the loader
turns into problems naming the file:

- ``NodeReader`` reads YAML nodes as typed values: unknown keys (with a did-you-mean),
  wrong types, missing keys, durations, and conditions compiled with the error placed
  at its exact position in the file.
- ``check_step_graph`` checks one journey's steps, each reduced to a ``StepNode`` (its
  id, whether it pauses, the steps it may go to): dangling links, unreachable steps and
  loops that never wait. A loop is only safe when one of its steps pauses (``wait`` or
  ``wait_for``): without one, a worker would take the loop's actions over and over
  within a single event.

>>> steps = [StepNode("a", 3, 7, False, (Ref("b", 4, 13),)),
...          StepNode("b", 5, 7, False, (Ref("a", 6, 13),)),
...          StepNode("c", 7, 7, True, ())]
>>> for f in check_step_graph(steps):
...     print(f.line, f.message)
3 loop without a wait: a -> b -> a; add a wait or wait_for step to it
7 step 'c' is unreachable from the first step 'a'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import time

import yaml

from engine.expr import Expr, ExprError, compile_expr
from engine.profile_view import VIEW_FIELDS

_STR, _INT, _BOOL, _NULL, _FLOAT = (
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null", "float")
)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DURATION = re.compile(r"(\d{1,12})(ms|s|m|h|d)")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class Ref:
    """A link to another step (next, goto, else, on_event, on_timeout) and where it is."""

    target: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class StepNode:
    id: str
    line: int
    column: int
    pauses: bool
    """True for wait and wait_for: a loop through this step cannot spin."""
    links: tuple[Ref, ...]
    """Every step this one may go to, defaults included; empty means the journey ends."""


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    column: int
    message: str


class NodeReader:
    """Reads composed YAML nodes as typed values, recording a ``Finding`` for each problem.

    Every method takes the node (None when a required key was missing, which is already
    reported) and a short description for messages, and returns None on a problem, so a
    caller checks every part before giving up and reports all problems at once.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.findings: list[Finding] = []
        self._visited: set[int] = set()

    def report(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        self.findings.append(Finding(mark.line + 1, mark.column + 1, message))

    def pairs(
        self, node: yaml.Node | None, what: str
    ) -> list[tuple[yaml.ScalarNode, yaml.Node]] | None:
        """A mapping's keys and values in order; duplicate keys (which YAML would silently
        overwrite) are reported and dropped."""
        if node is None or not self._fresh(node, what):
            return None
        if not isinstance(node, yaml.MappingNode):
            self.report(node, f"{what} must be a mapping, found {_kind(node)}")
            return None
        seen: set[str] = set()
        found = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.report(key, f"a key in {what} must be a name, found {_kind(key)}")
            elif key.value in seen:
                self.report(key, f"duplicate key {key.value!r} in {what}")
            else:
                seen.add(key.value)
                found.append((key, value))
        return found

    def mapping(
        self,
        node: yaml.Node | None,
        what: str,
        required: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> dict[str, yaml.Node] | None:
        """A mapping with known keys; unknown keys get a did-you-mean."""
        pairs = self.pairs(node, what)
        if node is None or pairs is None:
            return None
        known = [*required, *optional]
        found = {}
        for key, value in pairs:
            if key.value in known:
                found[str(key.value)] = value
            else:
                hint = _suggest(key.value, known)
                message = f"unknown key {key.value!r} in {what}{hint}; keys: {', '.join(known)}"
                self.report(key, message)
        for key in required:
            if key not in found:
                self.report(node, f"{what} is missing {key!r}")
        return found

    def sequence(
        self, node: yaml.Node | None, what: str, *, non_empty: bool = False
    ) -> list[yaml.Node] | None:
        if node is None or not self._fresh(node, what):
            return None
        if not isinstance(node, yaml.SequenceNode):
            self.report(node, f"{what} must be a list, found {_kind(node)}")
            return None
        if non_empty and not node.value:
            self.report(node, f"{what} must not be empty")
            return None
        return list(node.value)

    def string(self, node: yaml.Node | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR or not node.value:
            self.report(node, f"{what} must be text, found {_kind(node)}")
            return None
        return str(node.value)

    def name(self, node: yaml.Node | None, what: str) -> str | None:
        """An id: metrics, logs and timers carry it, so it is a plain lower-case word."""
        text = self.string(node, what)
        if node is None or text is None:
            return None
        if not _NAME.fullmatch(text):
            self.report(node, f"{what} {text!r} must be lower-case letters, digits and _")
            return None
        return text

    def choice(
        self, node: yaml.Node | None, what: str, choices: Collection[str], *, listed: bool = True
    ) -> str | None:
        """One of ``choices``; the message lists them unless they are too many to read."""
        text = self.string(node, what)
        if node is None or text is None:
            return None
        if text not in choices:
            known = f"; known: {', '.join(choices)}" if listed else ""
            self.report(node, f"unknown {what} {text!r}{_suggest(text, choices)}{known}")
            return None
        return text

    def integer(self, node: yaml.Node | None, what: str, low: int, high: int | None) -> int | None:
        if node is None:
            return None
        value = None
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            value = int(yaml.constructor.SafeConstructor().construct_yaml_int(node))
        if value is None or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
            self.report(node, f"{what} must be a whole number {bounds}, found {_kind(node)}")
            return None
        return value

    def number(self, node: yaml.Node | None, what: str, low: float, high: float) -> float | None:
        """A finite number from ``low`` to ``high``, whole or not."""
        if node is None:
            return None
        value = None
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            try:  # .inf and .nan are floats to YAML, and no bound holds them
                value = float(node.value.replace("_", ""))
            except ValueError:
                value = None
        if value is None or not low <= value <= high:
            self.report(
                node, f"{what} must be a number from {low:g} to {high:g}, found {_kind(node)}"
            )
            return None
        return value

    def time_of_day(self, node: yaml.Node | None, what: str) -> time | None:
        """A local wall-clock time written ``HH:MM``, quoted or not."""
        if node is None:
            return None
        # YAML 1.1 reads an unquoted 21:00 as a base-60 integer; its text is still 21:00.
        m = _TIME.fullmatch(node.value) if isinstance(node, yaml.ScalarNode) else None
        if m is None or int(m[1]) > 23 or int(m[2]) > 59:
            self.report(node, f"{what} must be a time of day such as 21:00, found {_kind(node)}")
            return None
        return time(int(m[1]), int(m[2]))

    def boolean(self, node: yaml.Node | None, what: str) -> bool | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL:
            self.report(node, f"{what} must be true or false, found {_kind(node)}")
            return None
        return bool(yaml.constructor.SafeConstructor().construct_yaml_bool(node))

    def duration(
        self, node: yaml.Node | None, what: str, *, allow_zero: bool = False
    ) -> int | None:
        """Milliseconds, from a whole number and a unit: ``500ms``, ``30s``, ``7d``."""
        if node is None:
            return None
        m = _DURATION.fullmatch(node.value) if isinstance(node, yaml.ScalarNode) else None
        if m is None or (int(m[1]) == 0 and not allow_zero):
            message = f"{what} must be a duration such as 30m, 1h or 7d, found {_kind(node)}"
            self.report(node, message)
            return None
        return int(m[1]) * DURATION_UNITS_MS[m[2]]

    def condition(
        self,
        node: yaml.Node | None,
        what: str,
        roots: Collection[str],
        variables: Collection[str] | None = None,
    ) -> Expr | None:
        """A compiled condition; an error is placed where it is in the file. With
        ``variables``, every ``journey.x`` it reads must be one of them."""
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.report(node, f"{what} must be a condition, found {_kind(node)}")
            return None
        # Any scalar is condition text: `when: true` is the condition "true".
        text = str(node.value)
        try:
            rule = compile_expr(text, roots=roots)
        except ExprError as err:
            index = sum(len(line) + 1 for line in text.split("\n")[: err.line - 1])
            line, column = self._place(node, index + err.column - 1)
            placed = err.shifted(line - err.line, column - err.column)
            self.findings.append(Finding(placed.line, placed.column, placed.message))
            return None
        unknown = False
        for path in sorted(rule.paths()):
            parts = path.split(".")
            if len(parts) < 2:
                continue
            root, name = parts[0], parts[1]
            if root == "profile" and name not in VIEW_FIELDS:
                message = f"unknown profile field {name!r}{_suggest(name, VIEW_FIELDS)}"
            elif root == "journey" and variables is not None and name not in variables:
                known = ", ".join(variables) or "none (add a capture)"
                hint = _suggest(name, variables)
                message = f"unknown journey variable {name!r}{hint}; captured: {known}"
            else:
                continue
            unknown = True
            where = re.search(rf"{root}\s*\.\s*{name}\b", text)
            line, column = self._place(node, where.start() if where else 0)
            self.findings.append(Finding(line, column, message))
        return None if unknown else rule

    def _place(self, node: yaml.ScalarNode, index: int) -> tuple[int, int]:
        """File line and column (1-based) of character ``index`` of the scalar's value."""
        start = node.start_mark
        raw = self.text[start.index : node.end_mark.index]
        if node.style == "|":
            # A literal block keeps its lines: value line k is the k-th line after the
            # header, indented by the indentation of its first non-blank line.
            body = raw.split("\n")[1:]
            indent = next((len(s) - len(s.lstrip(" ")) for s in body if s.strip()), 0)
            before = node.value[:index]
            line = start.line + 2 + before.count("\n")
            return line, indent + index - (before.rfind("\n") + 1) + 1
        skip = raw.find("\n") + 1 if node.style == ">" else 0
        offset = start.index + _raw_offset(node.value, raw, index, skip)
        line = self.text.count("\n", 0, offset) + 1
        return line, offset - self.text.rfind("\n", 0, offset)

    def _fresh(self, node: yaml.Node, what: str) -> bool:
        # An alias shares its node: reading it again could multiply the work (a
        # "billion laughs" catalogue), so each collection is read once.
        if id(node) in self._visited:
            self.report(node, f"{what}: aliases (*name) are not supported; write it out")
            return False
        if isinstance(node, yaml.CollectionNode):
            self._visited.add(id(node))
        return True


def _raw_offset(value: str, raw: str, index: int, skip: int) -> int:
    """Where character ``index`` of a scalar's value is in ``raw``, the scalar as written.

    Quoting, escapes and line folding only drop written characters or merge them into
    one, so the value's characters appear in order in the raw text: match them greedily.
    Errors point at tokens, never at the spaces whose matching this may shift.
    """
    j = skip
    for i, char in enumerate(value):
        while j < len(raw) and raw[j] != char:
            j += 1
        if j == len(raw):
            return skip  # an escape such as \x41: the scalar's start is the best we know
        if i == index:
            return j
        j += 1
    return j if index >= len(value) else skip


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value)


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_step_graph(steps: Sequence[StepNode]) -> list[Finding]:
    """Every graph problem in one journey's steps, in file order within each kind.

    Duplicate ids are the loader's to report; here the first step with an id wins.
    """
    by_id: dict[str, StepNode] = {}
    for step in steps:
        by_id.setdefault(step.id, step)
    findings: list[Finding] = []
    for step in steps:
        for ref in step.links:
            if ref.target not in by_id:
                message = f"no step named {ref.target!r}{_suggest(ref.target, by_id)}"
                findings.append(Finding(ref.line, ref.column, message))
    edges = {
        step.id: [r.target for r in step.links if r.target in by_id] for step in by_id.values()
    }
    findings += _spinning_loops(list(by_id.values()), edges)
    if steps:
        reached = _reachable(steps[0].id, edges)
        for step in by_id.values():
            if step.id not in reached:
                message = f"step {step.id!r} is unreachable from the first step {steps[0].id!r}"
                findings.append(Finding(step.line, step.column, message))
    return findings


def _reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _spinning_loops(steps: list[StepNode], edges: dict[str, list[str]]) -> list[Finding]:
    """One finding per cycle of non-pausing steps, at its first step in file order.

    Pausing steps are removed from the graph first: any cycle left cannot wait. Each
    strongly connected component of what remains that holds a cycle (more than one step,
    or a step linking to itself) is reported once, with one concrete loop through it.
    """
    spinning = {s.id for s in steps if not s.pauses}
    graph = {sid: [t for t in edges[sid] if t in spinning] for sid in spinning}
    order = {s.id: i for i, s in enumerate(steps)}
    findings = []
    for component in _components(graph):
        first = min(component, key=order.__getitem__)
        if len(component) == 1 and first not in graph[first]:
            continue
        path = _loop_through(first, graph, component)
        step = steps[order[first]]
        message = f"loop without a wait: {' -> '.join(path)}; add a wait or wait_for step to it"
        findings.append(Finding(step.line, step.column, message))
    return sorted(findings, key=lambda f: (f.line, f.column))


def _components(graph: dict[str, list[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively: a journey of a few thousand
    steps must not exhaust Python's recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(graph[node]):
                work.append((node, i + 1))
                target = graph[node][i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _loop_through(start: str, graph: dict[str, list[str]], component: set[str]) -> list[str]:
    """The shortest walk from ``start`` back to itself inside ``component``."""
    came_from: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for target in graph[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target in component and target not in came_from:
                came_from[target] = node
                todo.append(target)
    return [start, start]  # unreachable for a real cycle; keeps the type total

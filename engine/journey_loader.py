"""Reads a journey catalogue from YAML (the format: engine/journeys.py) into its model,
checking it whole: ``load_catalogue`` reports *every* problem it finds, each with the
file, line and column of the offending text, and returns a ``Catalogue`` only when there
are none. YAML is read with PyYAML's safe composer only; conditions are compiled by
``engine.expr``, nothing is ``eval``-ed. ``default_catalogue`` is the one Segue ships
(``engine/default_journeys.yaml``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar, cast

import yaml

from engine.actions import Action, Levers, read_actions, read_levers
from engine.contact_config import read_contact_policy
from engine.contact_policy import DEFAULT_POLICY
from engine.expr import Expr
from engine.journey_checks import NodeReader, Ref, StepNode, check_step_graph
from engine.journeys import (
    ENTRY_ROOTS,
    JOURNEY_CLASSES,
    JOURNEY_ROOTS,
    LIFECYCLE_ROOTS,
    MAX_PRIORITY,
    REENTRY_POLICIES,
    Act,
    Branch,
    Case,
    Catalogue,
    CatalogueError,
    Entry,
    Exit,
    ExitStep,
    Journey,
    JourneyClass,
    Problem,
    Reentry,
    ReentryPolicy,
    Stage,
    Step,
    Wait,
    WaitFor,
    canonical,
)
from topics.catalogue import CHANNELS
from topics.contracts import CURRENT


def load_catalogue(text: str, *, filename: str = "<string>") -> Catalogue:
    """Parse and check a catalogue; raise ``CatalogueError`` listing every problem."""
    reader = NodeReader(text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise CatalogueError([Problem(filename, line, column, f"YAML: {err.problem}")]) from None
    except yaml.YAMLError as err:  # e.g. a control character, which has no mark
        raise CatalogueError([Problem(filename, 1, 1, f"YAML: {err}")]) from None
    if root is None:
        raise CatalogueError([Problem(filename, 1, 1, "the file is empty: expected a catalogue")])
    catalogue = _Builder(reader).catalogue(root)
    if reader.findings or catalogue is None:
        found = sorted(reader.findings, key=lambda f: (f.line, f.column))
        raise CatalogueError([Problem(filename, f.line, f.column, f.message) for f in found])
    return replace(catalogue, digest=hashlib.sha256(canonical(catalogue)).hexdigest())


def default_catalogue() -> Catalogue:
    """The catalogue that ships with Segue (``engine/default_journeys.yaml``)."""
    return load_catalogue(default_catalogue_text(), filename=str(_DEFAULT))


@functools.cache
def default_actions() -> tuple[Action, ...]:
    """The actions of the default catalogue: those of a catalogue that lists none."""
    return default_catalogue().actions


def default_catalogue_text() -> str:
    return _DEFAULT.read_text(encoding="utf-8")


_DEFAULT = importlib.resources.files("engine").joinpath("default_journeys.yaml")


_STEP_KINDS = ("act", "wait", "wait_for", "branch", "exit")
_PAUSES = (Wait, WaitFor)
_ARTICLE = {"act": "an", "exit": "an", "wait": "a", "wait_for": "a", "branch": "a"}


class _Builder:
    """Walks the composed YAML once, building the model. Each method checks all of its
    part before returning None for a problem (already recorded by the reader), so one
    run reports everything; only the step-graph checks wait for a journey's steps to
    parse, as a broken step would make its links look dangling."""

    def __init__(self, reader: NodeReader) -> None:
        self.r = reader
        self.actions: dict[str, Action] | None = None
        """The catalogue's actions by id; None when they did not parse (acts unchecked)."""
        self.journey_id: str | None = None

    def catalogue(self, node: yaml.Node) -> Catalogue | None:
        required = ("catalogue", "version", "journeys")
        optional = ("lifecycle", "actions", "levers", "contact_policy")
        f = self.r.mapping(node, "the catalogue", required, optional)
        if f is None:
            return None
        name = self.r.name(f.get("catalogue"), "catalogue name")
        version = self.r.integer(f.get("version"), "version", 1, None)
        stage_items = self.r.sequence(f["lifecycle"], "lifecycle") if "lifecycle" in f else []
        stages = _all([self.stage(n) for n in stage_items or ()])
        self._duplicates(stage_items or [], "stage", "lifecycle stage")
        names = frozenset(s.name for s in stages) if stages is not None else None
        actions = read_actions(self.r, f["actions"], names) if "actions" in f else default_actions()
        self.actions = {a.action_id: a for a in actions} if actions is not None else None
        levers = read_levers(self.r, f["levers"], actions) if "levers" in f else Levers()
        contact = DEFAULT_POLICY
        if "contact_policy" in f:
            contact = read_contact_policy(self.r, f["contact_policy"]) or DEFAULT_POLICY
        items = self.r.sequence(f.get("journeys"), "journeys", non_empty=True)
        journeys = _all([self.journey(n) for n in items or ()])
        self._duplicates(items or [], "id", "journey id")
        if name is None or version is None or items is None or journeys is None:
            return None
        if stage_items is None or stages is None or actions is None or levers is None:
            return None
        return Catalogue(name, version, journeys, stages, "", actions, levers, contact)

    def journey(self, node: yaml.Node) -> Journey | None:
        r = self.r
        required = ("id", "class", "priority", "entry", "steps")
        optional = ("pause_on_open_ticket", "reentry", "capture", "exit")
        f = r.mapping(node, "a journey", required, optional)
        if f is None:
            return None
        jid = self.journey_id = r.name(f.get("id"), "journey id")
        klass = r.choice(f.get("class"), "journey class", JOURNEY_CLASSES)
        priority = r.integer(f.get("priority"), "priority", 0, MAX_PRIORITY)
        pause: bool | None = klass == "marketing"
        if "pause_on_open_ticket" in f:
            pause = r.boolean(f["pause_on_open_ticket"], "pause_on_open_ticket")
        reentry = self.reentry(f["reentry"]) if "reentry" in f else Reentry()
        entry = self.entry(f.get("entry"))
        variables, capture = self.capture(f["capture"]) if "capture" in f else ([], ())
        exits = self.exits(f["exit"], variables) if "exit" in f else ()
        steps = self.steps(f.get("steps"), variables)
        if jid is None or klass is None or priority is None or pause is None or reentry is None:
            return None
        if entry is None or capture is None or exits is None or steps is None:
            return None
        klass_ = cast(JourneyClass, klass)
        return Journey(jid, klass_, priority, pause, reentry, entry, capture, exits, steps)

    def reentry(self, node: yaml.Node) -> Reentry | None:
        f = self.r.mapping(node, "reentry", ("policy",), ("cooldown",))
        if f is None:
            return None
        policy = self.r.choice(f.get("policy"), "reentry policy", REENTRY_POLICIES)
        cooldown = self.r.duration(f["cooldown"], "cooldown") if "cooldown" in f else None
        if policy == "after" and "cooldown" not in f:
            self.r.report(node, "reentry policy 'after' needs a cooldown, such as cooldown: 7d")
            return None
        if policy not in (None, "after") and "cooldown" in f:
            self.r.report(f["cooldown"], f"cooldown applies only to policy 'after', not {policy!r}")
            return None
        if policy is None or ("cooldown" in f and cooldown is None):
            return None
        return Reentry(cast(ReentryPolicy, policy), cooldown)

    def entry(self, node: yaml.Node | None) -> Entry | None:
        f = self.r.mapping(node, "entry", ("event",), ("when",))
        if f is None:
            return None
        event = self.event(f.get("event"), "entry event")
        when = self.r.condition(f.get("when"), "entry condition", ENTRY_ROOTS)
        if event is None or ("when" in f and when is None):
            return None
        return Entry(event, when)

    def capture(self, node: yaml.Node) -> tuple[list[str] | None, _Captures | None]:
        """The variable names (None if unreadable: then ``journey.x`` goes unchecked)
        and the captures (None on any problem)."""
        pairs = self.r.pairs(node, "capture")
        if pairs is None:
            return None, None
        names, found = [], []
        for key, value in pairs:
            name = self.r.name(key, "journey variable")
            rule = self.r.condition(value, f"capture {key.value!r}", ENTRY_ROOTS)
            names += [name] if name else []
            found += [(name, rule)] if name and rule else []
        return names, tuple(found) if len(found) == len(pairs) else None

    def exits(self, node: yaml.Node, variables: list[str] | None) -> tuple[Exit, ...] | None:
        items = self.r.sequence(node, "exit")
        rules = [self.exit_rule(item, variables) for item in items or ()]
        return None if items is None else _all(rules)

    def exit_rule(self, node: yaml.Node, variables: list[str] | None) -> Exit | None:
        f = self.r.mapping(node, "an exit rule", (), ("event", "when"))
        if f is None:
            return None
        if not f:
            self.r.report(node, "an exit rule needs an event, a when, or both")
            return None
        event = self.event(f.get("event"), "exit event")
        when = self.r.condition(f.get("when"), "exit condition", JOURNEY_ROOTS, variables)
        if ("event" in f and event is None) or ("when" in f and when is None):
            return None
        return Exit(event, when)

    def steps(self, node: yaml.Node | None, variables: list[str] | None) -> tuple[Step, ...] | None:
        items = self.r.sequence(node, "steps", non_empty=True)
        if items is None:
            return None
        self._duplicates(items, "id", "step id")
        # A default link goes to the following step by the id written there, even a
        # malformed one, so a problem in one step does not make the next unreachable.
        ids = [_scalar(_get(n, "id")) or f"#{i + 1}" for i, n in enumerate(items)]
        following = [*ids[1:], None]
        done = _all(
            [self.step(n, after, variables) for n, after in zip(items, following, strict=True)]
        )
        if done is None:
            return None
        graph = []
        for item, (step, links) in zip(items, done, strict=True):
            mark = item.start_mark
            pauses = isinstance(step, _PAUSES)
            graph.append(StepNode(step.id, mark.line + 1, mark.column + 1, pauses, links))
        self.r.findings += check_step_graph(graph)
        return tuple(step for step, _ in done)

    def step(
        self, node: yaml.Node, following: str | None, variables: list[str] | None
    ) -> tuple[Step, tuple[Ref, ...]] | None:
        """The step and every link out of it, defaults resolved to ``following``."""
        r = self.r
        f = r.mapping(node, "a step", ("id",), (*_STEP_KINDS, "next", "else"))
        if f is None:
            return None
        sid = r.name(f.get("id"), "step id")
        kinds = [k for k in _STEP_KINDS if k in f]
        if len(kinds) != 1:
            found = f"found {' and '.join(kinds)}" if kinds else "found none"
            r.report(node, f"a step does exactly one of {', '.join(_STEP_KINDS)}; {found}")
            return None
        kind, ok = kinds[0], sid is not None
        for key, owners in (("next", ("act", "wait")), ("else", ("branch",))):
            if key in f and kind not in owners:
                r.report(f[key], f"{key!r} does not apply to {_ARTICLE[kind]} {kind} step")
                ok = False
        mark = node.start_mark
        default = Ref(following, mark.line + 1, mark.column + 1) if following else None
        links = [self.link(f.get(k), default) for k in ("next", "else")]
        if kind == "act":
            a = r.mapping(f["act"], "act", ("action", "channels")) or {}
            action, channels = self.act(a)
            if sid and action and channels and links[0] is not None:
                return Act(sid, action, channels, _target(links[0])), _refs(links[:1])
        elif kind == "wait":
            ms = r.duration(f["wait"], "wait")
            if sid and ms and links[0] is not None:
                return Wait(sid, ms, _target(links[0])), _refs(links[:1])
        elif kind == "wait_for":
            w = r.mapping(f["wait_for"], "wait_for", ("event", "timeout"), _WAIT_FOR_OPTIONAL)
            w = w or {}
            event = self.event(w.get("event"), "wait_for event")
            match = r.condition(w.get("match"), "match", JOURNEY_ROOTS, variables)
            ms = r.duration(w.get("timeout"), "timeout")
            outs = [self.link(w.get(k), default) for k in ("on_event", "on_timeout")]
            ok = ok and ("match" not in w or match is not None)
            if sid and ok and event and ms and None not in outs:
                on_event, on_timeout = (_target(x) for x in outs)
                return WaitFor(sid, event, match, ms, on_event, on_timeout), _refs(outs)
        elif kind == "branch":
            cases = self.cases(f["branch"], variables)
            if sid and ok and cases and links[1] is not None:
                gotos = [(Ref(c.goto, *_pos(n)), c) for n, c in cases]
                step = Branch(sid, tuple(c for _, c in gotos), _target(links[1]))
                return step, _refs([*(g for g, _ in gotos), *links[1:]])
        elif r.boolean(f["exit"], "exit") is False:
            r.report(f["exit"], "exit must be true: an exit step ends the journey")
        elif sid and ok:
            return ExitStep(sid), ()
        return None

    def act(self, a: dict[str, yaml.Node]) -> tuple[str | None, tuple[str, ...] | None]:
        """An act's action and channels, checked against the catalogue's actions."""
        channels = self.channels(a.get("channels"))
        if self.actions is None:  # the actions section is broken: reported already
            return self.r.name(a.get("action"), "action"), channels
        action = self.r.choice(a.get("action"), "action", sorted(self.actions))
        spec = self.actions.get(action or "")
        if spec is None or channels is None:
            return action, channels
        if spec.journeys and self.journey_id not in spec.journeys:
            self.r.report(a["action"], f"{action!r} is for {', '.join(spec.journeys)} only")
            return None, channels
        other = [c for c in channels if c not in spec.channels]
        if other:
            allowed = ", ".join(spec.channels)
            self.r.report(a["channels"], f"{action!r} does not go out on {other[0]}: {allowed}")
            return action, None
        return action, channels

    def cases(
        self, node: yaml.Node, variables: list[str] | None
    ) -> list[tuple[yaml.Node, Case]] | None:
        """Each case with the node of its goto, where a dangling target is reported."""
        found: list[tuple[yaml.Node, Case] | None] = []
        for item in self.r.sequence(node, "branch", non_empty=True) or ():
            f = self.r.mapping(item, "a branch case", ("when", "goto")) or {}
            when = self.r.condition(f.get("when"), "branch condition", JOURNEY_ROOTS, variables)
            goto = self.r.string(f.get("goto"), "goto")
            found.append((f["goto"], Case(when, goto)) if when and goto else None)
        done = _all(found)
        return list(done) if done else None

    def link(self, node: yaml.Node | None, default: Ref | None) -> Ref | _Missing | None:
        """A written link (None on a problem), else the default (_END: the journey ends)."""
        if node is None:
            return default or _END
        target = self.r.string(node, "step link")
        return Ref(target, *_pos(node)) if target else None

    def channels(self, node: yaml.Node | None) -> tuple[str, ...] | None:
        items = self.r.sequence(node, "channels", non_empty=True)
        found: list[str | None] = []
        for item in items or ():
            channel = self.r.choice(item, "channel", CHANNELS)
            if channel and channel in found:
                self.r.report(item, f"channel {channel!r} is listed twice")
                channel = None
            found.append(channel)
        return None if items is None else _all(found)

    def event(self, node: yaml.Node | None, what: str) -> str | None:
        return self.r.choice(node, what, CURRENT, listed=False)

    def stage(self, node: yaml.Node) -> Stage | None:
        f = self.r.mapping(node, "a lifecycle stage", ("stage", "when"))
        if f is None:
            return None
        name = self.r.name(f.get("stage"), "stage name")
        when = self.r.condition(f.get("when"), "stage condition", LIFECYCLE_ROOTS)
        return Stage(name, when) if name and when else None

    def _duplicates(self, items: list[yaml.Node], key: str, what: str) -> None:
        first: dict[str, int] = {}
        for item in items:
            node = _get(item, key)
            if isinstance(node, yaml.ScalarNode) and node.value in first:
                line = first[node.value]
                self.r.report(node, f"duplicate {what} {node.value!r} (first on line {line})")
            elif isinstance(node, yaml.ScalarNode):
                first[node.value] = node.start_mark.line + 1


class _Missing:
    """The link of a last step that names none: the journey ends there."""


_END = _Missing()
_T = TypeVar("_T")
_Captures = tuple[tuple[str, Expr], ...]
_WAIT_FOR_OPTIONAL = ("match", "on_event", "on_timeout")


def _target(link: Ref | _Missing | None) -> str | None:
    return link.target if isinstance(link, Ref) else None


def _refs(links: Sequence[Ref | _Missing | None]) -> tuple[Ref, ...]:
    return tuple(x for x in links if isinstance(x, Ref))


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _get(node: yaml.Node, key: str) -> yaml.Node | None:
    """The value under ``key`` in a mapping node, read before (or without) validation."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _scalar(node: yaml.Node | None) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def _all(items: list[_T | None]) -> tuple[_T, ...] | None:
    """The items, or None when a part had a problem (and was reported as None)."""
    done = [item for item in items if item is not None]
    return tuple(done) if len(done) == len(items) else None

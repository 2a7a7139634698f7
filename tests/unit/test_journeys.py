"""Journey catalogues: the default loads clean, every rule has a failing example whose
problem points at the offending text, and all problems of a file are reported at once."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from engine.expr import DAY_MS
from engine.journey_loader import default_catalogue, default_catalogue_text, load_catalogue
from engine.journeys import (
    Act,
    Branch,
    Catalogue,
    CatalogueError,
    ExitStep,
    Problem,
    Wait,
    WaitFor,
    canonical,
    stage_of,
)

HEAD = """\
catalogue: test
version: 1
journeys:
"""
"""Lines 1-3 of every small catalogue below; its first journey starts on line 4."""


def load(body: str, head: str = HEAD) -> Catalogue:
    return load_catalogue(head + body, filename="j.yaml")


def problems(body: str, head: str = HEAD) -> list[Problem]:
    with pytest.raises(CatalogueError) as caught:
        load(body, head)
    return caught.value.problems


def only(body: str, head: str = HEAD) -> Problem:
    found = problems(body, head)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def journey(steps: str, extra: str = "", entry: str = "{event: web.add_to_cart}") -> str:
    """One journey whose steps are the given (already indented by 4) YAML lines; the
    first step is on line 9 plus the lines of ``extra``."""
    head = f"  - id: j\n    class: marketing\n    priority: 5\n    entry: {entry}\n{extra}"
    return head + "    steps:\n" + textwrap.indent(textwrap.dedent(steps), "      ")


def test_the_default_catalogue_loads_clean_with_a_stable_digest() -> None:
    cat = default_catalogue()
    assert cat.name == "default" and cat.version == 3
    ids = [j.id for j in cat.journeys]
    assert ids == [
        "support_recovery",
        "cart_recovery",
        "sales_assist",
        "onboarding",
        "cross_sell",
        "win_back",
    ]
    assert [s.name for s in cat.lifecycle] == [
        "advocacy",
        "retention",
        "purchase",
        "consideration",
        "awareness",
    ]
    assert len(cat.digest) == 64 and default_catalogue().digest == cat.digest
    cart = cat.journey("cart_recovery")
    assert cart.pause_on_open_ticket and cart.reentry.cooldown_ms == 7 * DAY_MS
    assert cat.journey("support_recovery").pause_on_open_ticket is False
    assert cart.step("wait_for_order") == cart.steps[0]
    assert isinstance(cart.steps[0], WaitFor) and cart.steps[0].timeout_ms == 3_600_000


def test_the_digest_ignores_layout_and_comments_but_not_content() -> None:
    body = journey("- id: hi\n  act: {action: cart_reminder, channels: [email]}\n")
    base = load(body)
    assert load("# a comment\n" + body).digest == base.digest
    assert load(body.replace("priority: 5", "priority:    5")).digest == base.digest
    assert load(body.replace("priority: 5", "priority: 6")).digest != base.digest
    assert b'"kind":"Act"' in canonical(base)


def test_the_catalogue_pickles() -> None:
    cat = default_catalogue()
    again = pickle.loads(pickle.dumps(cat))
    assert again == cat and again.digest == cat.digest
    err = CatalogueError([Problem("f", 1, 2, "m")])
    assert pickle.loads(pickle.dumps(err)).problems == err.problems


def test_defaults_resolve_links_and_falling_off_the_end_ends_the_journey() -> None:
    cat = load(
        journey(
            """\
            - id: a
              act: {action: cart_reminder, channels: [email]}
            - id: b
              wait: 90s
            - id: c
              branch:
                - {when: "profile.orders > 0", goto: a}
            - id: d
              wait_for: {event: purchase.order_placed, timeout: 1d}
            """
        )
    )
    a, b, c, d = cat.journeys[0].steps
    assert isinstance(a, Act) and a.next == "b"
    assert isinstance(b, Wait) and (b.duration_ms, b.next) == (90_000, "c")
    assert isinstance(c, Branch) and c.otherwise == "d" and c.cases[0].goto == "a"
    assert isinstance(d, WaitFor) and (d.on_event, d.on_timeout) == (None, None)
    assert cat.journeys[0].reentry.policy == "if_not_active"


def test_problems_print_as_file_line_column_message() -> None:
    err = CatalogueError([Problem("a.yaml", 3, 7, "one"), Problem("a.yaml", 9, 1, "two")])
    assert str(err) == "a.yaml:3:7: one\na.yaml:9:1: two"


@pytest.mark.parametrize(
    ("body", "line", "marker", "message"),
    [
        pytest.param(
            journey("- {id: s, exit: true}\n").replace("priority", "prority"),
            6,
            "prority",
            "unknown key 'prority' in a journey (did you mean 'priority'?)",
            id="misspelled key",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n").replace("    priority: 5\n", ""),
            4,
            "id: j",
            "a journey is missing 'priority'",
            id="missing key",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n").replace("5", "'5'"),
            6,
            "'5'",
            "priority must be a whole number from 0 to 1000, found '5'",
            id="wrong type",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n").replace("5", "1001"),
            6,
            "1001",
            "priority must be a whole number from 0 to 1000",
            id="priority out of range",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n", entry="{event: web.add_to_carts}"),
            7,
            "web.add_to_carts",
            "unknown entry event 'web.add_to_carts' (did you mean 'web.add_to_cart'?)",
            id="unknown entry event",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n", "    exit: [{event: purchase.order}]\n"),
            8,
            "purchase.order",
            "unknown exit event 'purchase.order'",
            id="unknown exit event",
        ),
        pytest.param(
            journey("- id: s\n  wait_for: {event: web.nope, timeout: 1h}\n"),
            10,
            "web.nope",
            "unknown wait_for event 'web.nope'",
            id="unknown wait_for event",
        ),
        pytest.param(
            journey("- id: s\n  act: {action: cart_remindr, channels: [email]}\n"),
            10,
            "cart_remindr",
            "unknown action 'cart_remindr' (did you mean 'cart_reminder'?)",
            id="unknown action",
        ),
        pytest.param(
            journey("- id: s\n  act: {action: cart_reminder, channels: [fax]}\n"),
            10,
            "fax",
            "unknown channel 'fax'; known: email, sms, push, inapp, agent",
            id="unknown channel",
        ),
        pytest.param(
            journey("- {id: s, wait: 1h}\n- {id: s, exit: true}\n"),
            10,
            "s, exit",
            "duplicate step id 's' (first on line 9)",
            id="duplicate step id",
        ),
        pytest.param(
            journey("- {id: s, wait: 1h, next: dne}\n- {id: done, exit: true}\n"),
            9,
            "dne",
            "no step named 'dne' (did you mean 'done'?)",
            id="dangling next",
        ),
        pytest.param(
            journey("- id: s\n  wait_for: {event: web.login, timeout: 1h, on_timeout: gone}\n"),
            10,
            "gone",
            "no step named 'gone'",
            id="dangling on_timeout",
        ),
        pytest.param(
            journey("- id: s\n  branch: [{when: 'true', goto: elsewhere}]\n"),
            10,
            "elsewhere",
            "no step named 'elsewhere'",
            id="dangling goto",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n- {id: lost, wait: 1h}\n"),
            10,
            "{id: lost",
            "step 'lost' is unreachable from the first step 's'",
            id="unreachable step",
        ),
        pytest.param(
            journey(
                "- {id: a, act: {action: cart_reminder, channels: [email]}}\n"
                "- id: b\n  branch: [{when: 'profile.orders == 0', goto: a}]\n",
            ),
            9,
            "{id: a",
            "loop without a wait: a -> b -> a; add a wait or wait_for step to it",
            id="loop without a wait",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n", "    reentry: {policy: after}\n"),
            8,
            "{policy",
            "reentry policy 'after' needs a cooldown, such as cooldown: 7d",
            id="after without cooldown",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n", "    reentry: {policy: never, cooldown: 1d}\n"),
            8,
            "1d",
            "cooldown applies only to policy 'after', not 'never'",
            id="cooldown without after",
        ),
        pytest.param(
            journey("- {id: s, wait: 10}\n"),
            9,
            "10",
            "wait must be a duration such as 30m, 1h or 7d, found '10'",
            id="duration without unit",
        ),
        pytest.param(
            journey("- {id: s, exit: true, wait: 1h}\n"),
            9,
            "{id: s",
            "a step does exactly one of act, wait, wait_for, branch, exit; found wait and exit",
            id="two kinds in one step",
        ),
        pytest.param(
            journey("- {id: s, exit: true, next: s}\n"),
            9,
            "s}",
            "'next' does not apply to an exit step",
            id="next on an exit step",
        ),
        pytest.param(
            journey("- {id: s, exit: true}\n", "    capture: {p: event.product_id}\n")
            + "      - {id: t, branch: [{when: 'journey.q > 1', goto: s}]}\n",
            11,
            "journey.q",
            "unknown journey variable 'q'; captured: p",
            id="unknown journey variable",
        ),
    ],
)
def test_each_rule_reports_its_problem_at_the_offending_node(
    body: str, line: int, marker: str, message: str
) -> None:
    # The column is where ``marker`` starts on the line; other problems that follow
    # from the same mistake (a key both unknown and missing) may be reported too.
    column = (HEAD + body).splitlines()[line - 1].index(marker) + 1
    found = [p for p in problems(body) if message in p.message]
    assert len(found) == 1, problems(body)
    assert (found[0].file, found[0].line, found[0].column) == ("j.yaml", line, column), found


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("version: 0\njourneys: [{}]\n", 2, 10, "version must be a whole number of at least 1"),
        ("version: 1\njourneys: []\n", 3, 11, "journeys must not be empty"),
        ("version: true\njourneys: x\n", 2, 10, "version must be a whole number"),
        ("version: 1\njourney: []\n", 3, 1, "unknown key 'journey' in the catalogue"),
        ("journeys: [1]\n", 1, 1, "the catalogue is missing 'version'"),
    ],
)
def test_catalogue_level_rules(text: str, line: int, column: int, message: str) -> None:
    found = problems(text, head="catalogue: test\n")
    matching = [p for p in found if message in p.message]
    assert [(p.line, p.column) for p in matching] == [(line, column)], found


def test_duplicate_journey_ids() -> None:
    one = journey("- {id: s, exit: true}\n")
    found = only(one + one)
    assert (found.line, found.column) == (10, 9)
    assert found.message == "duplicate journey id 'j' (first on line 4)"


def column_of(body: str, line: int, marker: str) -> int:
    return (HEAD + body).splitlines()[line - 1].index(marker) + 1


@pytest.mark.parametrize(
    ("when", "marker", "message"),
    [
        ("event.price >== 3", "= 3", "unexpected '=': use '==' to compare"),
        ('"event.price >== 3"', "= 3", "unexpected '=': use '==' to compare"),
        ("'event.price >== 3'", "= 3", "unexpected '=': use '==' to compare"),
        ("'usr.x'", "usr", "unknown name 'usr'"),
        ("'eval(1)'", "eval", "unknown function 'eval'"),
        ("'journey.x > 1'", "journey", "unknown name 'journey'"),  # nothing captured yet
        ("'''a'' == event.x ='", "='", "unexpected '='"),  # after an escape
    ],
)
def test_condition_errors_point_into_plain_and_quoted_scalars(
    when: str, marker: str, message: str
) -> None:
    body = journey("- {id: s, exit: true}\n", entry=f"{{event: web.login, when: {when}}}")
    found = only(body)
    assert (found.line, found.column) == (7, column_of(body, 7, marker)), found
    assert found.message.startswith(message), found


def test_lifecycle_conditions_read_only_the_profile_and_now() -> None:
    head = "catalogue: test\nversion: 1\nlifecycle: [{stage: x, when: 'event.price > 1'}]\n"
    found = only("journeys:\n" + journey("- {id: s, exit: true}\n"), head=head)
    assert (found.line, found.column) == (3, 31), found
    assert "unknown name 'event'; known names: now, profile" in found.message


def test_block_scalar_condition_errors_land_on_the_right_line() -> None:
    body = journey(
        """\
        - id: s
          branch:
            - when: |
                profile.orders > 1
                  and (profile.cart <=
                    )
              goto: s
          else: t
        - {id: t, wait: 1h, next: s}
        """
    )
    found = only(body)
    assert (found.line, found.column) == (14, column_of(body, 14, ")")), found
    assert found.message == "expected a value after '<=', found ')'"


def test_multi_line_plain_scalar_condition_errors_land_on_the_right_line() -> None:
    body = journey(
        """\
        - id: s
          branch:
            - when: profile.orders > 1
                and profile.cart ==
              goto: s
        """
    )
    found = only(body)
    assert (found.line, found.column) == (12, column_of(body, 12, "==") + 2), found
    assert found.message == "expected a value after '=='"


def test_every_problem_in_a_file_is_reported() -> None:
    body = journey(
        """\
        - id: s
          act: {action: nope, channels: [email, email]}
        - {id: s, wait: 5x}
        """,
        "    reentry: {policy: sometimes}\n    capture: {Bad: 'event.'}\n",
        entry="{event: web.nope, when: 'event.price >'}",
    )
    found = problems(body.replace("class: marketing", "class: marketting"))
    assert [(p.line, p.column) for p in found] == sorted((p.line, p.column) for p in found)
    messages = "\n".join(p.message for p in found)
    for expected in [
        "unknown journey class 'marketting'",
        "unknown entry event 'web.nope'",
        "expected a value after '>'",
        "unknown reentry policy 'sometimes'",
        "journey variable 'Bad' must be lower-case",
        "expected a field name after '.'",
        "unknown action 'nope'",
        "channel 'email' is listed twice",
        "duplicate step id 's'",
        "wait must be a duration",
    ]:
        assert expected in messages, messages
    assert len(found) == 10, messages


def test_yaml_syntax_errors_and_empty_files() -> None:
    with pytest.raises(CatalogueError) as caught:
        load_catalogue("version: [1\n", filename="y.yaml")
    [problem] = caught.value.problems
    assert problem.file == "y.yaml" and problem.message.startswith("YAML: ")
    with pytest.raises(CatalogueError, match="the file is empty"):
        load_catalogue("# nothing\n")


def test_aliases_are_refused_rather_than_expanded() -> None:
    text = HEAD + journey("- &s {id: s, exit: true}\n- *s\n")
    with pytest.raises(CatalogueError, match="aliases"):
        load_catalogue(text)


def test_an_act_may_name_an_action_the_catalogue_defines() -> None:
    body = journey("- id: s\n  act: {action: gift, channels: [email]}\n")
    gift = "actions:\n  - {id: gift, class: marketing, channels: [email, sms], value: 2.5}\n"
    cat = load_catalogue(HEAD + body + gift)
    assert [(a.action_id, a.channels, a.value) for a in cat.actions] == [
        ("gift", ("email", "sms"), 2.5)
    ]
    assert "unknown action 'gift'" in only(body).message


def test_exit_steps_and_lifecycle_stages() -> None:
    cat = default_catalogue()
    assert isinstance(cat.journey("cart_recovery").steps[-1], ExitStep)
    now = 1_700_000_000_000
    assert stage_of(cat, {"orders": 7, "cart": {}}, now) == "advocacy"
    assert stage_of(cat, {"orders": 1}, now) == "retention"
    assert stage_of(cat, {"orders": 0, "cart": {"p1": 12.0}}, now) == "purchase"
    assert stage_of(cat, {"orders": 0, "cart": {}, "web_events": 3}, now) == "consideration"
    assert stage_of(cat, {}, now) == "awareness"
    no_stages = load(journey("- {id: s, exit: true}\n"))
    assert stage_of(no_stages, {"orders": 9}, now) is None


@pytest.mark.parametrize(
    ("action", "channels", "message"),
    [
        (
            "support_followup",
            "[email]",
            "'support_followup' does not go out on email: agent",
        ),
        (
            "cart_reminder",
            "[agent]",
            "'cart_reminder' does not go out on agent: email, push",
        ),
    ],
)
def test_an_act_goes_out_only_on_channels_its_action_allows(
    action: str, channels: str, message: str
) -> None:
    text = f"""\
catalogue: t
version: 1
journeys:
  - id: j
    class: service
    priority: 1
    entry: {{event: web.signup}}
    steps:
      - id: a
        act: {{action: {action}, channels: {channels}}}
"""
    with pytest.raises(CatalogueError) as err:
        load_catalogue(text, filename="c.yaml")
    column = text.splitlines()[9].index("[") + 1
    assert [str(p) for p in err.value.problems] == [f"c.yaml:10:{column}: {message}"]


def test_a_condition_on_an_unknown_profile_field_is_placed_with_a_suggestion() -> None:
    text = default_catalogue_text().replace("profile.orders >= 5", "profile.order >= 5")
    with pytest.raises(CatalogueError) as err:
        load_catalogue(text, filename="c.yaml")
    [problem] = err.value.problems
    line = text.splitlines()[problem.line - 1]
    assert line[problem.column - 1 :].startswith("profile.order >= 5")
    assert problem.message == "unknown profile field 'order' (did you mean 'orders'?)"

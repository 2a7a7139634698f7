from __future__ import annotations

from models.simulator import SEGMENTS, Population


def test_population_is_reproducible_under_a_seed() -> None:
    a, b = Population(50, seed=3), Population(50, seed=3)
    assert [a.activity(1000) for _ in range(100)] == [b.activity(1000) for _ in range(100)]


def test_oracle_is_at_least_random_and_chosen_lies_between_bounds() -> None:
    pop = Population(200, seed=4)
    for c in pop.customers[:50]:
        decision = {
            "customer_id": c.customer_id,
            "action": "discount_offer",
            "channel": "sms",
            "action_class": "marketing",
            "candidates": [
                {"action": a, "channel": ch, "eligible": True}
                for a, ch in [("discount_offer", "sms"), ("product_recommendation", "push")]
            ],
        }
        expected = pop.expected(decision)
        assert expected is not None
        chosen, rand, oracle = expected
        both = [
            pop.true_propensity(c.customer_id, "discount_offer", "sms"),
            pop.true_propensity(c.customer_id, "product_recommendation", "push"),
        ]
        assert chosen == both[0]
        assert (rand, oracle) == (sum(both) / 2, max(both))


def test_segments_answer_differently() -> None:
    pop = Population(300, seed=5)
    deal = next(c for c in pop.customers if c.segment == "deal_seeker" and c.device == "desktop")
    browser = next(c for c in pop.customers if c.segment == "browser" and c.device == "desktop")
    assert pop.true_propensity(deal.customer_id, "discount_offer", "email") > (
        pop.true_propensity(browser.customer_id, "discount_offer", "email")
    )


def test_logins_carry_attributes_and_the_tier_tracks_the_segment_loosely() -> None:
    pop = Population(600, seed=6)
    events = [ev for _ in range(6000) for ev in pop.activity(1000)]
    logins = [ev for ev in events if ev["type"] == "login"]
    assert logins and all({"timezone", "country", "tier"} <= set(ev) for ev in logins)
    gold = {s: sum(c.tier == "gold" for c in pop.customers if c.segment == s) for s in SEGMENTS}
    assert gold["loyal"] > gold["browser"] > 0 and gold["loyal"] > gold["deal_seeker"] > 0


def test_some_customers_answer_csat_and_nps_surveys() -> None:
    pop = Population(300, seed=7)
    kinds = [ev["type"] for _ in range(20_000) for ev in pop.activity(1000)]
    assert kinds.count("csat_submitted") > 0 and kinds.count("nps_submitted") > 0
    assert kinds.count("csat_submitted") < kinds.count("ticket_resolved")


def test_a_conversion_is_clicked_then_reported_or_bought_and_silence_says_nothing() -> None:
    pop = Population(400, seed=8)
    kinds: dict[bool, list[list[str]]] = {True: [], False: []}
    for i, c in enumerate(pop.customers):
        d = {"decision_id": f"d{i}", "customer_id": c.customer_id, "channel": "email"}
        converts = pop.answer({**d, "action": "product_recommendation"}, 1000)
        got = pop.due(10**12)
        assert [ev["time"] for ev in got] == sorted(ev["time"] for ev in got)
        kinds[converts].append([ev["type"] for ev in got])
    assert pop.scheduled == 0 and kinds[True] and kinds[False]
    for seq in kinds[True]:
        assert seq[:3] == ["delivered", "opened", "clicked"]
        assert seq[3:] in (["converted"], ["order_placed"])
    bought = sum(seq[-1] == "order_placed" for seq in kinds[True])
    assert 0 < bought < len(kinds[True])
    ends = [seq[-1] for seq in kinds[False]]
    assert {"dismissed", "delivered", "bounced"} <= set(ends) | {"opened"}
    assert all("clicked" not in seq for seq in kinds[False])


def test_reactions_come_in_their_own_time() -> None:
    pop = Population(50, seed=9)
    c = pop.customers[0]
    d = {"decision_id": "d1", "customer_id": c.customer_id, "channel": "push"}
    pop.answer({**d, "action": "discount_offer"}, 1_000_000)
    assert pop.due(999_999) == [] and pop.scheduled > 0
    assert pop.due(1_000_000 + 10**10) and pop.scheduled == 0

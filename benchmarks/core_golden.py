"""A digest of everything the functional core emits for a fixed, seeded stream.

Optimising the core must not change a byte of its output: run this before and after a
change and compare the digests. The stream is the simulated one of
``benchmarks.core_throughput`` under a fixed clock, run twice: with the benchmark's
``LogisticHeads`` and profiles kept as objects, and with the worker's ``UpliftHeads``, a
holdout group and profiles round-tripped through their stored bytes as the worker's
table does (so ``Profile.decode`` is covered). Every send (topic, key, value, headers,
partition), every profile write (encoded), link, timer, status and lesson goes into
the digest.

    .venv/bin/python -m benchmarks.core_golden --events 20000

Prints one line per run and the combined digest; writes no file.
"""

from __future__ import annotations

import argparse
import hashlib

import orjson

from engine.decide import DecideConfig
from engine.journey_loader import default_catalogue
from engine.journeys import Catalogue
from engine.pipeline import Core
from engine.profile import Profile
from engine.records import Record
from models.policy import LogisticHeads, Policy
from models.simulator import Population
from models.uplift import UpliftHeads
from topics.catalogue import TopicNames


class ByteState:
    """The worker's tables, profiles stored encoded (``codec``) or as objects."""

    def __init__(self, codec: bool) -> None:
        self.codec = codec
        self.profiles: dict[str, Profile | bytes] = {}
        self.identities: dict[str, str] = {}
        self.catalogue: Catalogue = default_catalogue()

    def profile(self, key: str) -> Profile | None:
        stored = self.profiles.get(key)
        if isinstance(stored, bytes):
            return Profile.decode(stored)
        return stored

    def linked(self, anonymous_id: str) -> str | None:
        return self.identities.get(anonymous_id)


def digest(events: int, *, policy: Policy, cfg: DecideConfig, codec: bool, seed: int) -> str:
    names = TopicNames("cx.")
    pop = Population(5_000, seed=seed, time_scale=0)
    state = ByteState(codec)
    core = Core(policy, names, "identity", "stitched", "timers", cfg)
    now_ms = 1_800_000_000_000
    offsets: dict[str, int] = {}
    pending: list[dict[str, object]] = []
    h = hashlib.sha256()
    done = 0
    while done < events:
        batch = pop.activity(now_ms) if not pending else [pending.pop()]
        for ev in batch:
            topic = names.source(str(ev.pop("source")))
            offsets[topic] = offsets.get(topic, -1) + 1
            key = str(ev["customer_id"]).encode()
            rec = Record(topic, 0, offsets[topic], key, orjson.dumps(ev))
            result = core.ingest(rec, state, now_ms=now_ms)
            h.update(result.status.encode())
            for s in result.sends:
                h.update(
                    orjson.dumps(
                        [s.topic, s.key, s.value, s.headers, s.partition], default=bytes.hex
                    )
                )
            for name, profile in sorted(result.writes.items()):
                raw = profile.encode() if profile is not None else b"-"
                h.update(name.encode() + b"=" + raw)
                if profile is None:
                    state.profiles.pop(name, None)
                else:
                    state.profiles[name] = raw if codec else profile
            state.identities.update(result.links)
            h.update(orjson.dumps([sorted(result.links.items()), sorted(result.timers.items())]))
            h.update(repr([(x.arm, x.reward, x.log_loss) for x in result.lessons]).encode())
            if result.decision is not None and result.decision.acts:
                answers = pop.respond(result.decision.to_dict(), now_ms)
                pending += list(reversed(answers))
            done += 1
        now_ms += 5
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    runs = {
        "logistic": digest(
            args.events, policy=LogisticHeads(), cfg=DecideConfig(), codec=False, seed=args.seed
        ),
        "uplift+holdout+codec": digest(
            args.events,
            policy=UpliftHeads(),
            cfg=DecideConfig(holdout_share=0.1),
            codec=True,
            seed=args.seed,
        ),
    }
    for name, d in runs.items():
        print(f"{name}: {d}")
    print("combined:", hashlib.sha256("".join(runs.values()).encode()).hexdigest())


if __name__ == "__main__":
    main()

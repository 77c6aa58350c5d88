"""Conversational retrieval benchmark: months of dated chat sessions between two people, with
questions whose evidence are turns.

    PYTHONPATH=layers/memlayer:. .venv/bin/python -m bench.retrieval.dialogue [--embedder hash]

Each user talks with a friend in ~30 dated sessions over about eight months (every turn is a
memory with `source.conversation_id` = the session and `occurred_at` = when it was said; all
were imported on one later day, so `created_at` says nothing about time). Among small talk
that reuses the same words, storylines leave facts behind, and plans change:

- single-hop: one turn answers ("What is the name of my sister's dog?");
- multi-hop: the answer is spread over 2-3 consecutive turns of one session, and the turn
  holding the answer shares few words with the question ("Which company is my coworker
  Priya joining?" — "She accepted an offer from Corvel in Leeds", two turns after the name);
- temporal: the same subject comes up in several sessions and only the session's date tells
  which one is meant ("What did I decide about the lease in March?", "What did I say about
  the car last week?", asked at a reference time after the sessions);
- open-domain: a paraphrase with almost no shared words ("What new hobby did I pick up?").

Modes: keyword, semantic, hybrid (the index as it ranks today) and hybrid + time + neighbours
(memlayer.search.conversation on top of hybrid: the period the query names boosts memories
that happened in it; the best hits bring their neighbouring turns). recall@5/10/20 per kind.
The constants of search/conversation.py are chosen on the tuning users (`--tune`), which are
not among the reported ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.retrieval.run import embed, embed_queries, make_embedder
from memlayer.search import conversation
from memlayer.search.conversation import (
    boost_period,
    expansion_candidates,
    turn_window,
    with_neighbours,
)
from memlayer.search.fusion import Hit
from memlayer.search.index import IndexedDoc, UserIndex
from memlayer.search.timeexpr import resolve
from memlayer.services.retrieval import TIME_BOOST_DEPTH

RESULTS = Path(__file__).resolve().parent.parent / "results" / "dialogue.json"
KINDS = ("single-hop", "multi-hop", "temporal", "open-domain")
MODES = ("keyword", "semantic", "hybrid", "hybrid+time+neighbours")
KS = (5, 10, 20)
IMPORTED_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp()
TUNING_SEEDS = range(100, 106)
REPORTED_SEEDS = range(1, 13)

_PEOPLE = ["Ana", "Ben", "Chloe", "Dmitri", "Esra", "Felix", "Gita", "Hugo", "Ines", "Jonas"]
_SISTERS = ["Maya", "Lena", "Sofia", "Nadia", "Clara", "Rosa"]
_PETS = ["Biscuit", "Pepper", "Mochi", "Rufus", "Olive", "Pickles"]
_COWORKERS = ["Priya", "Marta", "Yuki", "Keira", "Selma", "Dana"]
_COMPANIES = ["Corvel", "Brightwave", "Tallis Labs", "Northbeam", "Quillon", "Heliotrope"]
_CITIES = ["Lisbon", "Porto", "Leeds", "Ghent", "Krakow", "Bologna", "Valencia", "Tallinn"]
_STREETS = ["Elm Street", "Harbour Road", "Mill Lane", "Castle Avenue", "Station Road"]
_HOODS = ["Riverside", "Old Town", "Northgate", "Parkview", "Westfield"]
_RESTAURANTS = ["Casa Lume", "The Copper Pot", "Taberna Azul", "Noodle Yard", "Forno Vivo"]
_FOODS = ["grilled octopus", "seafood rice", "custard tarts", "mushroom risotto", "dumplings"]
_CONFERENCES = ["PyData", "KubeCon", "DevOpsDays", "RustConf", "DataEng Summit"]
_HOBBIES = [
    "I finally signed up for pottery classes on Thursday evenings, wheel and all.",
    "I joined the bouldering gym near work and went three times already.",
    "I started singing in a community choir, rehearsals are on Mondays.",
    "I've been playing chess online every night and joined a local club.",
]
_INSTRUMENTS = ["cello", "piano", "ukulele", "saxophone"]
_FILLER = [
    "Did you watch the new episode of {show}? I stayed up way too late again.",
    "Work was busy this week, the {project} deadline moved again.",
    "The weather has been {weather} all week, I barely left the flat.",
    "I made {dish} for dinner, it turned out better than last time.",
    "Are we still on for {activity} on {weekday}?",
    "My mum called, she says hi and asks when you're visiting.",
    "I keep forgetting to reply to the email about the {topic}.",
    "Traffic was terrible on the way home, the car barely moved.",
    "I need a trip somewhere warm, this month has been long.",
    "The conference room at work was booked all day, we took calls in the kitchen.",
    "Our landlord finally fixed the heating in the flat.",
    "I read an article about {topic} and thought of you.",
    "Sounds good, let's decide later.",
    "Ha, that's so true.",
    "Did you end up going to the market on Saturday?",
    "I'm so tired, I'll call you tomorrow.",
    "We should plan something for your birthday.",
    "My sister is visiting next weekend, it's been ages.",
]
_SLOTS = {
    "show": ["Severance", "The Bear", "Slow Horses", "Shogun"],
    "project": ["billing", "migration", "dashboard", "onboarding"],
    "weather": ["grey and rainy", "freezing", "weirdly warm", "windy"],
    "dish": ["lentil soup", "a curry", "lasagna", "tacos"],
    "activity": ["the cinema", "a run", "board games", "brunch"],
    "weekday": ["Friday", "Saturday", "Sunday"],
    "topic": ["the budget", "the team offsite", "our insurance", "the school"],
}


@dataclass
class Question:
    text: str
    kind: str
    evidence: set[str]
    now: float  # when it is asked (epoch seconds)


@dataclass
class DialogueCorpus:
    docs: list[IndexedDoc]
    session_of: dict[str, str]  # memory id -> its session (conversation)
    occurred: dict[str, float]
    sessions: dict[str, list[str]]  # session -> its turns in order
    questions: list[Question] = field(default_factory=list)


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.user, self.friend = self.rng.sample(_PEOPLE, 2)
        self.seed = seed
        self.sessions: list[list[tuple[str, str]]] = []  # (speaker, text) per session
        self.dates: list[datetime] = []
        self.evidence: dict[str, list[tuple[int, int]]] = {}  # storyline -> (session, turn)

    def schedule(self, count: int) -> None:
        day = datetime(2025, 1, 6, 19, 0, tzinfo=UTC) + timedelta(days=self.rng.randint(0, 20))
        for _ in range(count):
            self.dates.append(day)
            self.sessions.append([self._filler() for _ in range(self.rng.randint(6, 10))])
            day += timedelta(days=self.rng.randint(6, 10))

    def _filler(self) -> tuple[str, str]:
        template = self.rng.choice(_FILLER)
        text = template.format(**{k: self.rng.choice(v) for k, v in _SLOTS.items()})
        return self.rng.choice((self.user, self.friend)), text

    def place(self, name: str, session: int, lines: Sequence[tuple[str, str]]) -> None:
        """Puts consecutive turns into a session at a random point; records their places."""
        turns = self.sessions[session]
        at = self.rng.randint(1, len(turns) - 1)
        turns[at:at] = list(lines)
        self.evidence[name] = [(session, at + i) for i in range(len(lines))]
        # later placements in the same session shift what was recorded after `at`
        for other, places in self.evidence.items():
            if other != name:
                self.evidence[other] = [
                    (s, t + len(lines) if s == session and t >= at else t) for s, t in places
                ]

    def month(self, session: int) -> str:
        return self.dates[session].strftime("%B")


def make_dialogue_corpus(seed: int, sessions: int = 30) -> DialogueCorpus:
    b = _Builder(seed)
    rng = b.rng
    b.schedule(sessions)
    user, friend = b.user, b.friend
    picks = {
        "sister": rng.choice(_SISTERS),
        "pet": rng.choice(_PETS),
        "coworker": rng.choice(_COWORKERS),
        "company": rng.choice(_COMPANIES),
        "street": rng.choice(_STREETS),
        "restaurant": rng.choice(_RESTAURANTS),
        "food": rng.choice(_FOODS),
        "conference": rng.choice(_CONFERENCES),
        "instrument": rng.choice(_INSTRUMENTS),
    }
    city1, city2, city3, city4 = rng.sample(_CITIES, 4)
    hood1, hood2 = rng.sample(_HOODS, 2)
    hobby_line = rng.choice(_HOBBIES)
    # Sessions far enough apart that their months differ.
    lease = sorted(rng.sample(range(0, sessions, 6), 3))
    trip = sorted(rng.sample([s for s in range(1, sessions, 6) if s not in lease], 2))
    car = sorted(rng.sample([s for s in range(2, sessions - 1, 4) if s not in lease + trip], 2))
    free = [s for s in range(sessions) if s not in lease + trip + car]
    dog, conf, cowork, hob, music = rng.sample(free, 5)

    b.place(
        "lease-1",
        lease[0],
        [
            (
                user,
                f"Not sure whether to renew the lease on the flat on {picks['street']}, "
                "the rent goes up in spring.",
            )
        ],
    )
    b.place(
        "lease-2",
        lease[1],
        [(user, f"I decided about the lease: we're not renewing it, we'll move to {hood1}.")],
    )
    b.place(
        "lease-3",
        lease[2],
        [(user, f"Signed the new lease in {hood2} today instead, the {hood1} place fell through.")],
    )
    b.place(
        "trip-1",
        trip[0],
        [(user, f"We're planning a trip to {city1} for the long weekend, the flights look cheap.")],
    )
    b.place(
        "trip-2",
        trip[1],
        [(user, f"Change of plans on the trip: {city1} is off, we're going to {city2} instead.")],
    )
    b.place(
        "car-1", car[0], [(user, "The car made a strange rattling noise again on the motorway.")]
    )
    b.place(
        "car-2",
        car[1],
        [(user, "The mechanic said the car needs new brakes and a timing belt, not cheap.")],
    )
    b.place(
        "dog",
        dog,
        [
            (
                user,
                f"My sister {picks['sister']} adopted a rescue dog, she named him {picks['pet']}.",
            )
        ],
    )
    b.place(
        "conference",
        conf,
        [
            (user, f"I'm flying to {city3} for the {picks['conference']} conference in two weeks."),
            (
                friend,
                f"Oh nice, you have to eat at {picks['restaurant']} while you're there, "
                f"their {picks['food']} is unreal.",
            ),
        ],
    )
    b.place(
        "coworker",
        cowork,
        [
            (
                user,
                f"My coworker {picks['coworker']} is leaving the company at the end of the month.",
            ),
            (friend, "Really? Where is she going?"),
            (user, f"She accepted an offer from {picks['company']} in {city4}, a big step up."),
        ],
    )
    b.place("hobby", hob, [(user, hobby_line)])
    b.place(
        "music",
        music,
        [(user, f"Had my first {picks['instrument']} lesson, my fingers hurt but I love it.")],
    )

    docs: list[IndexedDoc] = []
    session_of: dict[str, str] = {}
    occurred: dict[str, float] = {}
    by_session: dict[str, list[str]] = {}
    ids: dict[tuple[int, int], str] = {}
    counter = itertools.count()
    for s, lines in enumerate(b.sessions):
        conv = f"s{seed}-{s:02d}"
        for t, (speaker, text) in enumerate(lines):
            mid = f"{seed:04d}{next(counter):06d}"
            ids[(s, t)] = mid
            when = (b.dates[s] + timedelta(minutes=2 * t)).timestamp()
            docs.append(
                IndexedDoc(
                    memory_id=mid,
                    text=f"{speaker}: {text}",
                    kind="chat",
                    created_at=IMPORTED_AT,
                    occurred_at=when,
                )
            )
            session_of[mid] = conv
            occurred[mid] = when
            by_session.setdefault(conv, []).append(mid)

    def ev(*names: str) -> set[str]:
        return {ids[place] for name in names for place in b.evidence[name]}

    after_all = (b.dates[-1] + timedelta(days=3)).timestamp()
    week_after_car = (b.dates[car[1]] + timedelta(days=7)).timestamp()
    questions = [
        Question(
            f"What is the name of my sister {picks['sister']}'s dog?",
            "single-hop",
            ev("dog"),
            after_all,
        ),
        Question(
            f"What did {friend} say I should eat on my conference trip?",
            "multi-hop",
            ev("conference"),
            after_all,
        ),
        Question(
            f"Which company is my coworker {picks['coworker']} joining?",
            "multi-hop",
            ev("coworker"),
            after_all,
        ),
        Question(
            f"What did I decide about the lease in {b.month(lease[1])}?",
            "temporal",
            ev("lease-2"),
            after_all,
        ),
        Question(
            f"What was I thinking about the lease back in {b.month(lease[0])}?",
            "temporal",
            ev("lease-1"),
            after_all,
        ),
        Question(
            f"Where was I planning to go in {b.month(trip[0])}?",
            "temporal",
            ev("trip-1"),
            after_all,
        ),
        Question(
            "What did I say about the car last week?", "temporal", ev("car-2"), week_after_car
        ),
        Question("What new hobby did I pick up?", "open-domain", ev("hobby"), after_all),
        Question(
            "Which musical instrument am I learning to play?", "open-domain", ev("music"), after_all
        ),
    ]
    return DialogueCorpus(docs, session_of, occurred, by_session, questions)


def rank(
    corpus: DialogueCorpus,
    index: UserIndex,
    question: Question,
    qvec: Any,
    mode: str,
    weight: float,
    params: dict[str, float] | None = None,
) -> list[Hit]:
    base = "hybrid" if mode == "hybrid+time+neighbours" else mode
    period = None
    text = question.text
    if mode == "hybrid+time+neighbours":
        period = resolve(question.text, datetime.fromtimestamp(question.now, UTC))
        text = period.strip_from(text) if period else text
    hits = index.search(
        text,
        qvec,
        mode=base,  # type: ignore[arg-type]
        # as deep as `ranked()` searches a query that names a time, and as recall@20 needs
        limit=max(max(KS), TIME_BOOST_DEPTH) if period else max(KS),
        now=question.now,
        highlights=False,
        semantic_weight=weight,
    )
    if mode != "hybrid+time+neighbours":
        return hits
    p = params or {}
    if period is not None:
        hits = boost_period(
            hits, period, corpus.occurred.get, boost=p.get("boost", conversation.PERIOD_BOOST)
        )
    # what the search port's `turns_around` reads for the product
    top = int(p.get("top", conversation.NEIGHBOUR_HITS))
    radius = int(p.get("radius", conversation.NEIGHBOUR_RADIUS))
    windows = {
        mid: turn_window(corpus.sessions[corpus.session_of[mid]], mid, radius)
        for mid in expansion_candidates(hits, top=top, radius=radius)
        if mid in corpus.session_of
    }
    return with_neighbours(
        hits, windows, top=top, share=p.get("share", conversation.NEIGHBOUR_SHARE)
    )


@dataclass
class _Prepared:
    corpus: DialogueCorpus
    index: UserIndex
    qvecs: Any
    weight: float


def prepare(seeds: Sequence[int], embedder_name: str) -> list[_Prepared]:
    out = []
    for seed in seeds:
        corpus = make_dialogue_corpus(seed)
        embedder = make_embedder(embedder_name, 384)
        vectors = embed(embedder, [d.text for d in corpus.docs])
        for doc, vec in zip(corpus.docs, vectors, strict=True):
            doc.vector = vec
        index = UserIndex.build(corpus.docs, int(embedder.dimensions))
        qvecs = embed_queries(embedder, [q.text for q in corpus.questions])
        out.append(_Prepared(corpus, index, qvecs, float(getattr(embedder, "fusion_weight", 1.0))))
    return out


def evaluate(
    prepared: Sequence[_Prepared], modes: Sequence[str], params: dict[str, float] | None
) -> dict[str, dict[str, dict[str, float]]]:
    """recall@k per mode and kind (and "all"), averaged over the questions of all users."""
    found: dict[str, dict[str, dict[int, list[float]]]] = {
        m: {k: {n: [] for n in KS} for k in (*KINDS, "all")} for m in modes
    }
    for p in prepared:
        for question, qvec in zip(p.corpus.questions, p.qvecs, strict=True):
            for mode in modes:
                hits = rank(p.corpus, p.index, question, qvec, mode, p.weight, params)
                ranked = [h.memory_id for h in hits]
                for n in KS:
                    share = len(question.evidence & set(ranked[:n])) / len(question.evidence)
                    found[mode][question.kind][n].append(share)
                    found[mode]["all"][n].append(share)
    return {
        mode: {
            kind: {f"recall@{n}": round(statistics.fmean(v), 4) for n, v in by_k.items() if v}
            for kind, by_k in by_kind.items()
        }
        for mode, by_kind in found.items()
    }


def tune(embedder_name: str) -> dict[str, float]:
    """The constants of search/conversation.py that maximise recall@10 on the tuning users."""
    prepared = prepare(TUNING_SEEDS, embedder_name)
    best: tuple[tuple[float, float], dict[str, float]] = ((-1.0, -1.0), {})
    grid = itertools.product((0.5, 1.0, 2.0, 4.0), (1, 2, 3), (1, 2), (0.5, 0.9))
    for boost, top, radius, share in grid:
        params = {"boost": boost, "top": top, "radius": radius, "share": share}
        result = evaluate(prepared, ["hybrid+time+neighbours"], params)
        overall = result["hybrid+time+neighbours"]["all"]
        score = (overall["recall@10"], overall["recall@5"])  # ties go to the better top 5
        if score > best[0]:
            best = (score, params)
    return best[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", default="hash", choices=["hash", "local", "e5", "concept"])
    parser.add_argument("--tune", action="store_true", help="grid-search the constants first")
    args = parser.parse_args(argv)
    params = tune(args.embedder) if args.tune else None
    results = evaluate(prepare(REPORTED_SEEDS, args.embedder), MODES, params)
    print(
        f"| mode ({args.embedder}) | "
        + " | ".join(f"{k} @5/@10/@20" for k in (*KINDS, "all"))
        + " |"
    )
    print("| --- |" + " ---: |" * (len(KINDS) + 1))
    for mode in MODES:
        cells = [
            "/".join(f"{results[mode][k][f'recall@{n}']:.2f}" for n in KS) for k in (*KINDS, "all")
        ]
        print(f"| {mode} | " + " | ".join(cells) + " |")
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[args.embedder] = {
        "users": len(REPORTED_SEEDS),
        "questions_per_user": len(make_dialogue_corpus(REPORTED_SEEDS[0]).questions),
        "tuned_on_seeds": list(TUNING_SEEDS),
        "params": params
        or {
            "boost": conversation.PERIOD_BOOST,
            "top": conversation.NEIGHBOUR_HITS,
            "radius": conversation.NEIGHBOUR_RADIUS,
            "share": conversation.NEIGHBOUR_SHARE,
        },
        "recall": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reproducible synthetic memories and queries with known answers (no downloads).

Each user owns notes, chat exchanges and shared links spread over topics. A topic is a set of
concepts and each concept a synonym group ("oven|stove|cooker"), so a text and a query can say
the same thing with different words. Queries come in three flavours:

- paraphrase: the target's three concepts in *other* synonyms (half the time one word is
  kept), no names — keyword search sees at most one word; a semantic model that knows
  synonyms sees all three.
- keyword: a rare name or code from the target plus one concept word — exact words win, and an
  embedding dilutes a one-off name.
- mixed: a name plus paraphrased concepts; both signals carry part of the answer.

Targets are made to be findable only by the combination of their concepts (distractors share
one or two of them), some targets have a second relevant memory, some are saved twice (same
URL shared twice, same text saved twice: they share a dedupe key and count as one answer), and
~4% of memories are not embedded yet (no vector), targets included.

`ConceptEmbedder` is the default embedder of the benchmark: deterministic, it maps each word of
a synonym group to a shared concept direction (plus topic and word-specific parts), so it plays
the role of a semantic model that knows these synonyms; names and other words get hashed
directions of lower weight. It knows the tables below — that is the point of a synthetic
benchmark — so its numbers say how the *ranking* combines signals, not how good a real model is.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

import numpy as np

from memlayer.search.index import IndexedDoc

# topic -> synonym groups (single words; the first is the "plain" word)
TOPICS: dict[str, list[str]] = {
    "cooking": [
        "oven|stove|cooker",
        "recipe|dish|meal",
        "bake|roast|grill",
        "chicken|poultry|hen",
        "spicy|fiery|peppery",
        "sauce|gravy|dressing",
        "dessert|pudding|sweets",
        "knife|blade|cleaver",
    ],
    "travel": [
        "flight|airfare|plane",
        "hotel|lodging|inn",
        "passport|visa|documents",
        "luggage|baggage|suitcase",
        "beach|coast|seaside",
        "itinerary|schedule|route",
        "museum|gallery|exhibit",
        "train|railway|rail",
    ],
    "fitness": [
        "workout|exercise|training",
        "running|jogging|sprinting",
        "muscle|strength|power",
        "stretch|flexibility|mobility",
        "weights|dumbbells|barbell",
        "cardio|endurance|stamina",
        "injury|strain|sprain",
        "protein|nutrition|diet",
    ],
    "finance": [
        "budget|spending|expenses",
        "savings|nestegg|reserve",
        "loan|mortgage|credit",
        "invoice|bill|receipt",
        "salary|paycheck|wages",
        "stocks|shares|equities",
        "taxes|levy|irs",
        "bank|lender|creditunion",
    ],
    "programming": [
        "bug|defect|glitch",
        "deploy|release|ship",
        "database|datastore|sql",
        "function|method|routine",
        "server|backend|host",
        "test|assertion|spec",
        "slow|laggy|sluggish",
        "refactor|restructure|cleanup",
    ],
    "health": [
        "doctor|physician|clinician",
        "medicine|medication|pills",
        "headache|migraine|pain",
        "sleep|insomnia|rest",
        "appointment|visit|checkup",
        "allergy|sensitivity|reaction",
        "vaccine|shot|immunization",
        "anxiety|stress|worry",
    ],
    "gardening": [
        "garden|yard|backyard",
        "tomato|tomatoes|nightshade",
        "seeds|seedlings|sprouts",
        "water|irrigate|sprinkle",
        "soil|compost|mulch",
        "pests|aphids|bugs",
        "prune|trim|clip",
        "flowers|blooms|blossoms",
    ],
    "music": [
        "guitar|strings|acoustic",
        "song|track|tune",
        "concert|gig|show",
        "practice|rehearse|drill",
        "chord|harmony|progression",
        "piano|keyboard|keys",
        "band|ensemble|group",
        "lyrics|verses|words",
    ],
    "home": [
        "leak|drip|seepage",
        "plumber|pipefitter|tradesman",
        "roof|shingles|gutter",
        "paint|coat|primer",
        "furnace|heater|boiler",
        "rent|lease|tenancy",
        "furniture|sofa|couch",
        "repair|fix|mend",
    ],
    "cars": [
        "car|automobile|vehicle",
        "tires|wheels|rims",
        "mechanic|garage|workshop",
        "engine|motor|powertrain",
        "insurance|coverage|policy",
        "fuel|gas|petrol",
        "brakes|braking|pads",
        "battery|alternator|charging",
    ],
    "pets": [
        "dog|puppy|hound",
        "cat|kitten|feline",
        "vet|veterinarian|animalclinic",
        "walk|stroll|hike",
        "food|kibble|treats",
        "grooming|bath|brushing",
        "leash|harness|collar",
        "behavior|barking|chewing",
    ],
    "reading": [
        "book|novel|paperback",
        "author|writer|novelist",
        "library|bookshop|bookstore",
        "chapter|section|passage",
        "fantasy|scifi|speculative",
        "biography|memoir|autobiography",
        "review|critique|opinion",
        "poetry|poems|verse",
    ],
    "work": [
        "meeting|sync|standup",
        "deadline|duedate|cutoff",
        "manager|boss|supervisor",
        "promotion|raise|advancement",
        "project|initiative|workstream",
        "presentation|slides|deck",
        "colleague|coworker|teammate",
        "feedback|evaluation|appraisal",
    ],
    "family": [
        "kids|children|youngsters",
        "school|classroom|teacher",
        "birthday|anniversary|celebration",
        "grandma|grandmother|granny",
        "vacation|holiday|getaway",
        "homework|assignment|worksheet",
        "babysitter|nanny|caregiver",
        "dinner|supper|feast",
    ],
    "photography": [
        "camera|dslr|mirrorless",
        "lens|zoom|telephoto",
        "exposure|aperture|shutter",
        "portrait|headshot|closeup",
        "landscape|scenery|vista",
        "edit|retouch|lightroom",
        "tripod|stand|mount",
        "lighting|flash|strobe",
    ],
    "learning": [
        "course|class|lecture",
        "language|spanish|vocabulary",
        "exam|quiz|assessment",
        "notes|summary|outline",
        "tutor|mentor|coach",
        "study|revise|cram",
        "certificate|diploma|credential",
        "online|remote|virtual",
    ],
}

FILLER = [
    "yesterday",
    "today",
    "tomorrow",
    "remember",
    "maybe",
    "really",
    "think",
    "next",
    "week",
    "weekend",
    "later",
    "again",
    "soon",
    "quick",
    "idea",
    "thought",
    "plan",
    "try",
    "check",
    "look",
    "ask",
    "call",
    "friend",
    "good",
    "better",
    "great",
    "small",
    "big",
    "new",
    "old",
    "first",
    "last",
    "morning",
    "evening",
    "note",
    "important",
    "remind",
    "keep",
    "find",
    "start",
    "finish",
]
SITES = ["example.com", "blog.example.org", "docs.sample.net", "news.test", "wiki.demo.io"]
PROVIDERS = ["chatgpt", "claude", "gemini"]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ren",
    "sa",
    "tor",
    "vel",
    "qui",
    "zan",
    "bri",
    "dov",
    "elk",
    "fan",
    "gru",
    "hol",
    "ix",
    "jur",
    "kem",
    "lun",
    "mor",
]
_WORD = re.compile(r"[a-z0-9]+")


# Sixteen hand-written topics are too few concepts for 100k memories (every combination of
# three concepts would recur hundreds of times), so more topics are generated: made-up words,
# three per concept, 24 concepts per topic. They read as jargon; the embedder treats them
# exactly like the real synonym groups.
GENERATED_TOPICS = 48
GENERATED_GROUPS = 24
_WORD_SYLLABLES = [
    "ba",
    "de",
    "fi",
    "go",
    "hu",
    "la",
    "me",
    "ni",
    "po",
    "ru",
    "sa",
    "te",
    "vi",
    "wo",
    "xa",
    "yo",
    "zu",
    "ce",
    "do",
]


def _generated_topics() -> dict[str, list[str]]:
    rng = random.Random(20240601)
    seen = {w for groups in TOPICS.values() for g in groups for w in g.split("|")}
    out: dict[str, list[str]] = {}
    for t in range(GENERATED_TOPICS):
        groups = []
        for _ in range(GENERATED_GROUPS):
            words = []
            while len(words) < 3:
                w = "".join(rng.choice(_WORD_SYLLABLES) for _ in range(rng.randint(2, 4))) + "x"
                if w not in seen:
                    seen.add(w)
                    words.append(w)
            groups.append("|".join(words))
        out[f"topic{t:02d}"] = groups
    return out


ALL_TOPICS: dict[str, list[str]] = {**TOPICS, **_generated_topics()}


def _groups() -> list[tuple[str, int, list[str]]]:
    out = []
    for topic_no, (_topic, groups) in enumerate(ALL_TOPICS.items()):
        for g in groups:
            out.append((g, topic_no, g.split("|")))
    return out


GROUPS = _groups()
WORD_TO_GROUP: dict[str, int] = {w: gi for gi, (_, _, ws) in enumerate(GROUPS) for w in ws}
TOPIC_GROUPS: list[list[int]] = [
    [gi for gi, (_, t, _) in enumerate(GROUPS) if t == topic_no]
    for topic_no in range(len(ALL_TOPICS))
]
TOPIC_NAMES = list(ALL_TOPICS)


def _ulid(ts: float, rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(ts * 1000) << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(alphabet[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass
class Query:
    text: str
    relevant: set[str]  # dedupe groups (see Corpus.group_of)
    flavour: str


@dataclass
class Corpus:
    user: str
    docs: list[IndexedDoc]
    queries: list[Query]
    group_of: dict[str, str] = field(default_factory=dict)  # memory_id -> answer group


class CorpusBuilder:
    """One user's memories as a generator adds them: each gets a creation time in the last two
    years, a ULID of that time, a dedupe key (notes: their text's hash) and an answer group
    (its own id unless it answers a query); ~4% are not embedded yet."""

    def __init__(self, rng: random.Random, now: float) -> None:
        self.rng = rng
        self.now = now
        self.docs: list[IndexedDoc] = []
        self.group_of: dict[str, str] = {}

    def add(
        self,
        text: str,
        title: str | None,
        kind: str,
        provider: str | None,
        tags: tuple[str, ...],
        dedupe: str | None,
        *,
        answer: str | None = None,
    ) -> str:
        r = self.rng
        created = self.now - r.uniform(0, 730) * 86400
        mid = _ulid(created, r)
        if dedupe is None and kind == "note":
            dedupe = hashlib.sha256(text.encode()).hexdigest()[:32]
        self.docs.append(
            IndexedDoc(
                memory_id=mid,
                text=text,
                title=title,
                tags=tags,
                kind=kind,
                provider=provider,
                status="ready" if r.random() > 0.04 else "pending",
                created_at=created,
                dedupe_key=dedupe,
            )
        )
        self.group_of[mid] = answer or mid
        return mid

    def trim(self, n_docs: int) -> set[str]:
        """Keeps the first `n_docs` memories; returns the answer groups still present."""
        self.docs = self.docs[:n_docs]
        kept = {d.memory_id for d in self.docs}
        self.group_of = {m: a for m, a in self.group_of.items() if m in kept}
        return set(self.group_of.values())

    def corpus(self, user: str, queries: list[Query]) -> Corpus:
        order = list(range(len(self.docs)))
        self.rng.shuffle(order)
        return Corpus(
            user=user,
            docs=[self.docs[i] for i in order],
            queries=queries,
            group_of=self.group_of,
        )


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.entities: list[str] = []

    def entity(self) -> str:
        r = self.rng
        name = "".join(r.choice(SYLLABLES) for _ in range(r.randint(2, 3)))
        return name.capitalize()

    def code(self) -> str:
        r = self.rng
        return f"{r.choice(['INV', 'PR', 'TKT', 'ORD', 'REF'])}-{r.randint(1000, 99999)}"

    def word(self, group: int, avoid: str | None = None) -> str:
        words = GROUPS[group][2]
        choices = [w for w in words if w != avoid] or words
        return self.rng.choice(choices)

    def sentence(self, groups: list[int], extra: list[str] | None = None) -> str:
        r = self.rng
        parts = [self.word(g) for g in groups]
        parts += r.sample(FILLER, r.randint(2, 5))
        parts += extra or []
        r.shuffle(parts)
        return " ".join(parts)

    def memory(
        self,
        groups: list[int],
        *,
        kind: str | None = None,
        extra: list[str] | None = None,
        chosen: dict[int, str] | None = None,
    ) -> tuple[str, str | None, str, str | None, tuple[str, ...], str | None]:
        """(text, title, kind, provider, tags, dedupe_key) for a memory about `groups`."""
        r = self.rng
        kind = kind or r.choices(["note", "exchange", "share"], weights=[5, 3, 2])[0]
        chosen = chosen or {}
        words = [chosen.get(g) or self.word(g) for g in groups]
        topic = GROUPS[groups[0]][1]
        other_topic = r.randrange(len(ALL_TOPICS))
        background = [r.choice(TOPIC_GROUPS[topic]), r.choice(TOPIC_GROUPS[other_topic])]
        body = words + [self.word(g) for g in background] + (extra or [])
        r.shuffle(body)
        filler = r.sample(FILLER, r.randint(4, 9))
        text_words = body + filler
        r.shuffle(text_words)
        tags = tuple(sorted({TOPIC_NAMES[topic]} | ({"todo"} if r.random() < 0.1 else set())))
        if kind == "note":
            text = " ".join(text_words).capitalize() + "."
            title = None if r.random() < 0.5 else " ".join(words[:2]).capitalize()
            return text, title, kind, None, tags, None
        if kind == "exchange":
            half = len(text_words) // 2
            provider = r.choice(PROVIDERS)
            text = (
                "User: how should I " + " ".join(text_words[:half]) + "?\n"
                "Assistant: " + " ".join(text_words[half:]).capitalize() + "."
            )
            return text, None, kind, provider, tags, None
        slug = "-".join([*words[:2], str(r.randint(1, 9999))])
        url = f"https://{r.choice(SITES)}/{slug}"
        title = " ".join(words[:3]).title()
        text = f"{title}. " + " ".join(text_words) + f". {url}"
        return text, title, "share", None, tags, url


def make_corpus(
    n_docs: int,
    *,
    seed: int = 0,
    n_queries: int = 200,
    user: str | None = None,
    now: float = 1_767_225_600.0,  # 2026-01-01
) -> Corpus:
    """A user's `n_docs` memories and `n_queries` queries with known answers."""
    g = _Gen(seed)
    r = g.rng
    built = CorpusBuilder(r, now)
    add = built.add
    queries: list[Query] = []

    n_queries = min(n_queries, max(1, n_docs // 12))
    flavours = ["paraphrase", "keyword", "mixed"]
    for qi in range(n_queries):
        flavour = flavours[qi % 3]
        topic = r.randrange(len(ALL_TOPICS))
        groups = r.sample(TOPIC_GROUPS[topic], 3)
        name = g.entity() if r.random() < 0.6 else g.code()
        chosen = {gr: g.word(gr) for gr in groups}
        answer = f"q{qi}"
        kind = r.choices(["note", "exchange", "share"], weights=[5, 3, 2])[0]
        text, title, kind, provider, tags, dedupe = g.memory(
            groups, kind=kind, extra=[name], chosen=chosen
        )
        add(text, title, kind, provider, tags, dedupe, answer=answer)
        if r.random() < 0.15:  # saved twice: same text (note) or same URL shared again
            if kind == "share":
                add(text.replace(". ", ", ", 1), title, kind, provider, tags, dedupe, answer=answer)
            else:
                add(text, title, kind, provider, tags, dedupe, answer=answer)
        relevant = {answer}
        if r.random() < 0.2:  # a second, different memory about the same thing
            t2 = g.memory(groups, kind="exchange", extra=[name], chosen=chosen)
            add(*t2, answer=answer + "b")
            relevant.add(answer + "b")
        # hard distractors: same name with other concepts, and two of the three concepts
        for _ in range(2):
            other = r.sample([x for x in TOPIC_GROUPS[topic] if x not in groups], 2)
            add(*g.memory(other, extra=[name]))
            add(*g.memory(r.sample(groups, 2) + other[:1]))
        if flavour == "paraphrase":  # at most one word shared with the target
            keep = r.choice(groups) if r.random() < 0.5 else None
            words = [chosen[gr] if gr == keep else g.word(gr, avoid=chosen[gr]) for gr in groups]
            qtext = " ".join(words)
        elif flavour == "keyword":
            gr = r.choice(groups)
            qtext = f"{name} {chosen[gr]}"
        else:
            gr1, gr2 = r.sample(groups, 2)
            qtext = f"{name} {g.word(gr1, avoid=chosen[gr1])} {g.word(gr2, avoid=chosen[gr2])}"
        if r.random() < 0.5:  # people pad queries with everyday words
            qtext = f"{qtext} {r.choice(FILLER)}"
        queries.append(Query(text=qtext, relevant=relevant, flavour=flavour))
    while len(built.docs) < n_docs:  # background distractors
        topic = r.randrange(len(ALL_TOPICS))
        extra = [g.entity()] if r.random() < 0.3 else []
        add(*g.memory(r.sample(TOPIC_GROUPS[topic], r.randint(2, 3)), extra=extra))
    answers = built.trim(n_docs)
    queries = [q for q in queries if q.relevant <= answers]
    return built.corpus(user or f"user{seed}", queries)


def _seed_of(text: str, salt: str) -> int:
    return int.from_bytes(hashlib.blake2b((salt + text).encode(), digest_size=8).digest(), "little")


class ConceptEmbedder:
    """Deterministic synonym-aware embedder for this dataset (see the module docstring)."""

    CONCEPT = 1.0
    TOPIC = 0.6
    WORD = 0.35
    OTHER = 0.45

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions
        self._cache: dict[str, np.ndarray] = {}
        rng = np.random.default_rng(7)
        self._topic = rng.standard_normal((len(ALL_TOPICS), dimensions)).astype(np.float32)
        self._concept = rng.standard_normal((len(GROUPS), dimensions)).astype(np.float32)
        self._stop = {"user", "assistant", "how", "should", "i", "https", "com", "the"}

    def _rand(self, word: str) -> np.ndarray:
        rng = np.random.default_rng(_seed_of(word, "w"))
        return rng.standard_normal(self.dimensions).astype(np.float32)

    def word_vector(self, word: str) -> np.ndarray:
        vec = self._cache.get(word)
        if vec is None:
            group = WORD_TO_GROUP.get(word)
            if word in self._stop:
                vec = np.zeros(self.dimensions, np.float32)
            elif group is not None:
                topic = GROUPS[group][1]
                vec = (
                    self.CONCEPT * self._concept[group]
                    + self.TOPIC * self._topic[topic]
                    + self.WORD * self._rand(word)
                )
            else:
                vec = self.OTHER * self._rand(word)
            self._cache[word] = vec
        return vec

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            if words:
                out[i] = np.sum([self.word_vector(w) for w in words], axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        return out / norms

    async def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_sync(texts)

"""How a keyword list and a semantic list become one ranking: reciprocal-rank fusion with
coverage weighting, a mild recency boost, near-duplicate collapse and the relevance floor.

Shared by every search backend (the in-memory `UserIndex` and the Postgres backend): a
backend produces the two best-first lists, keyed however it likes, and `combine` ranks. Here
too the words every backend and caller shares: `SearchMode`, `SearchFilters`, `Hit` (this
module needs no numpy, so a function that never searches does not load it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from memlayer.text import highlight_terms

SearchMode = Literal["hybrid", "semantic", "keyword"]
K = TypeVar("K", bound=Hashable)

# Reciprocal-rank fusion constant. The classic k=60 flattens rank differences so much that a
# weak partial keyword match reorders the semantic top 10; k=3 keeps the top ranks decisive
# (chosen on held-out users of bench/retrieval, both corpora; see the README).
RRF_K = 3
RECENCY_WEIGHT = 0.05  # at most +5% to a fused score, for a memory that happened just now
RECENCY_HALF_LIFE_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Applied before any ranking cut. `tags` matches memories having any of them."""

    kinds: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    provider: str | None = None
    since: float | None = None  # occurred_at >= since (when it happened, not when saved)
    until: float | None = None  # occurred_at < until

    def __post_init__(self) -> None:
        for name in ("kinds", "tags"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    @property
    def empty(self) -> bool:
        return (
            self.kinds is None
            and self.tags is None
            and self.provider is None
            and self.since is None
            and self.until is None
        )


@dataclass(frozen=True, slots=True)
class Hit:
    memory_id: str
    score: float  # 0..1
    highlights: list[str] = field(default_factory=list)
    semantic_rank: int | None = None  # 1-based rank in the semantic list, if in it
    keyword_rank: int | None = None  # 1-based rank in the keyword list, if in it
    similarity: float | None = None  # cosine to the query, if in the semantic list
    neighbour_of: str | None = None  # listed as a turn next to this hit (search/conversation.py)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What ranking needs to know of one listed memory."""

    memory_id: str
    text: str
    occurred_at: float  # when it happened (epoch seconds): what recency means
    dedupe_key: str | None  # canonical URL or content hash; equal keys collapse


def ranks(scored: Iterable[tuple[float, K]]) -> dict[K, int]:
    """1-based ranks of a best-first list; equal scores share a rank ("1, 2, 2, 4"), so that
    fusion, not list order, decides between ties (two copies of one text, say)."""
    out: dict[K, int] = {}
    rank, previous = 0, None
    for position, (score, key) in enumerate(scored, 1):
        if score != previous:
            rank, previous = position, score
        out[key] = rank
    return out


def fuse(
    kw_rank: Mapping[K, int],
    sem_rank: Mapping[K, int],
    coverage: Mapping[K, float],
    occurred_at: Callable[[K], float],
    *,
    now: float,
    semantic_weight: float,
) -> list[tuple[float, K]]:
    """RRF of both lists (a keyword hit weighted by its coverage, the semantic list by
    `semantic_weight`) with the recency boost, scaled so the best possible score is 1."""
    semantic_weight = max(0.0, float(semantic_weight))
    list_weight = (1.0 if kw_rank else 0.0) + (semantic_weight if sem_rank else 0.0)
    if list_weight <= 0:
        return []
    best_possible = list_weight / (RRF_K + 1) * (1.0 + RECENCY_WEIGHT)
    fused: dict[K, float] = {}
    for key, rank in sem_rank.items():
        fused[key] = semantic_weight / (RRF_K + rank)
    for key, rank in kw_rank.items():
        fused[key] = fused.get(key, 0.0) + coverage.get(key, 1.0) / (RRF_K + rank)
    out = []
    for key, score in fused.items():
        age_days = max(0.0, now - occurred_at(key)) / 86400.0
        boost = 1.0 + RECENCY_WEIGHT * 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)
        out.append((score * boost / best_possible, key))
    out.sort(key=lambda t: (-t[0], t[1]))
    return out


def combine(
    keyword: list[tuple[float, K]],
    semantic: list[tuple[float, K]],
    candidate: Callable[[K], Candidate],
    *,
    mode: SearchMode,
    coverage: Mapping[K, float],
    terms: Iterable[str],
    limit: int,
    collapse: bool = True,
    highlights: bool = True,
    max_highlight_len: int = 200,
    now: float | None = None,
    semantic_weight: float = 1.0,
    min_similarity: float | None = None,
    occurred_at: Callable[[K], float] | None = None,
) -> list[Hit]:
    """The final hits from a keyword list (score: BM25 or another text rank, best first) and
    a semantic list (score: cosine, best first).

    keyword mode: score = rank score / best. semantic: score = max(cosine, 0). hybrid: `fuse`.
    With `collapse`, memories sharing a dedupe key show once (the best-scoring one). With
    `min_similarity`, a memory that matches none of the query's words must have at least that
    cosine to be returned (ranking alone fills every list, related or not). `occurred_at`
    answers the recency boost without building a whole `candidate` for every listed key."""
    kw_rank = ranks(keyword)
    sem_rank = ranks(semantic)
    similarity = {key: cosine for cosine, key in semantic}
    ranked: list[tuple[float, K]]
    if mode == "keyword":
        top = keyword[0][0] if keyword else 1.0
        ranked = [(s / top, key) for s, key in keyword]
    elif mode == "semantic":
        ranked = [(max(0.0, min(1.0, s)), key) for s, key in semantic]
    else:
        ranked = fuse(
            kw_rank,
            sem_rank,
            coverage,
            occurred_at or (lambda key: candidate(key).occurred_at),
            now=time.time() if now is None else now,
            semantic_weight=semantic_weight,
        )
    hits: list[Hit] = []
    seen: set[str] = set()
    term_set = set(terms)
    for score, key in ranked:
        if (
            min_similarity is not None
            and key not in kw_rank
            and similarity.get(key, -1.0) < min_similarity
        ):
            continue
        doc = candidate(key)
        if collapse and doc.dedupe_key is not None:
            if doc.dedupe_key in seen:
                continue
            seen.add(doc.dedupe_key)
        hits.append(
            Hit(
                memory_id=doc.memory_id,
                score=round(float(score), 6),
                highlights=highlight_terms(doc.text, term_set, max_highlight_len)
                if highlights
                else [],
                semantic_rank=sem_rank.get(key),
                keyword_rank=kw_rank.get(key),
                similarity=similarity.get(key),
            )
        )
        if len(hits) >= limit:
            break
    return hits

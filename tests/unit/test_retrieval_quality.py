"""The benchmark's quality claims, as a regression check (no timing: that is bench/'s job).

Runs bench/retrieval on small corpora with the deterministic embedders: hybrid must find more
of the answers in its top 10 than either list alone where the vectors carry meaning, must not
fall below keyword search with the lexical hashing embedder, and semantic search must return
exactly the float32 brute-force top 10."""

from __future__ import annotations

import pytest

from bench.retrieval.dataset import make_corpus
from bench.retrieval.natural import make_natural_corpus
from bench.retrieval.run import evaluate, make_embedder


def _quality(make, embedder_name: str, users: int) -> tuple[dict[str, float], float]:
    embedder = make_embedder(embedder_name, 384)
    recall = {"keyword": 0.0, "semantic": 0.0, "hybrid": 0.0}
    exact = 0.0
    for user in range(users):
        run = evaluate(
            make(1_000, seed=1000 * user + 3, n_queries=300),
            embedder,
            vector_store="int8",
            max_queries=300,
            latency_queries=1,
        )
        for mode in recall:
            recall[mode] += run["quality"][mode]["recall@10"] / users
        exact += run["semantic_vs_bruteforce"]["identical_top10"] / users
    return recall, exact


def test_hybrid_beats_both_lists_when_vectors_carry_meaning() -> None:
    recall, exact = _quality(make_corpus, "concept", users=3)
    assert recall["hybrid"] > max(recall["keyword"], recall["semantic"]) + 0.01, recall
    assert exact == pytest.approx(1.0)


@pytest.mark.parametrize("make", [make_corpus, make_natural_corpus], ids=["synthetic", "natural"])
def test_hybrid_keeps_keyword_quality_with_the_hashing_embedder(make) -> None:
    recall, exact = _quality(make, "hash", users=2)
    assert recall["hybrid"] >= recall["keyword"] - 0.005, recall
    assert recall["hybrid"] > recall["semantic"], recall
    assert exact == pytest.approx(1.0)

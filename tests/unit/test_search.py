"""memlayer.search: tokenizer, BM25, exact semantic search, hybrid fusion, filters, updates."""

from __future__ import annotations

import numpy as np
import pytest

from memlayer.search import index as index_module
from memlayer.search.fusion import Hit, SearchFilters
from memlayer.search.index import IndexedDoc, UserIndex
from memlayer.text import highlight, stem, tokenize

DIM = 16
NOW = 1_767_225_600.0


def _vec(*hot: int, dim: int = DIM, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    for h in hot:
        v[h] += 1.0
    if noise:
        v += np.random.default_rng(seed).normal(0, noise, dim).astype(np.float32)
    return v


def _doc(mid: str, text: str, **kw) -> IndexedDoc:
    kw.setdefault("created_at", NOW - 100 * 86400)
    return IndexedDoc(memory_id=mid, text=text, **kw)


def _ids(hits: list[Hit]) -> list[str]:
    return [h.memory_id for h in hits]


# --- tokenizer ---------------------------------------------------------------------------


def test_tokenizer_folds_case_unicode_and_word_forms():
    assert tokenize("Running RUNS run") == ["run", "run", "run"]
    assert tokenize("notes noted note") == [stem("note")] * 3
    assert tokenize("studies studied studying") == [stem("study")] * 3
    assert tokenize("quickly") == tokenize("quick")
    assert tokenize("boxes") == tokenize("box")
    assert tokenize("Café NAÏVE") == tokenize("cafe naive")
    assert tokenize("Anna's") == ["anna"]


def test_tokenizer_drops_stopwords_and_splits_punctuation():
    assert tokenize("the and of is") == []
    assert tokenize("foo-bar_baz/qux.com") == ["foo", "bar", "baz", "qux", "com"]
    assert tokenize("https://www.example.com/path") == ["exampl", "com", "path"]
    assert tokenize("") == []


def test_tokenizer_cjk_bigrams():
    terms = tokenize("東京タワー")
    assert terms == ["東京", "京タ", "タワ", "ワー"]
    assert set(tokenize("東京")) <= set(terms)


# --- keyword -------------------------------------------------------------------------------


def test_bm25_prefers_more_matches_rare_terms_and_titles():
    docs = [
        _doc("a", "python python python snake tutorial"),
        _doc("b", "python snake"),
        _doc("c", "a tutorial about gardens and tomatoes and more tomatoes"),
        _doc("d", "completely unrelated words about weather"),
        _doc("e", "some body text", title="Python tutorial"),
    ]
    index = UserIndex.build(docs, DIM)
    hits = index.search("python", mode="keyword", limit=10)
    assert set(_ids(hits)) == {"a", "b", "e"}  # only matching docs, nothing else
    assert hits[0].score == 1.0 and all(0 < h.score <= 1 for h in hits)
    # rare term ("tomatoes": one doc) outweighs a common one ("tutorial": three docs)
    assert _ids(index.search("tomato tutorial", mode="keyword", limit=1)) == ["c"]
    # title counts more than the same word once in body text of a longer doc
    ranks = _ids(index.search("tutorial", mode="keyword", limit=5))
    assert ranks.index("e") < ranks.index("c")
    assert all(h.keyword_rank == i for i, h in enumerate(hits, 1))


def test_keyword_matches_word_forms_and_tags():
    docs = [
        _doc("a", "I was running to the studio", tags=("Fitness",)),
        _doc("b", "quiet reading evening"),
    ]
    index = UserIndex.build(docs, DIM)
    assert _ids(index.search("runs", mode="keyword")) == ["a"]
    assert _ids(index.search("fitness", mode="keyword")) == ["a"]


# --- semantic ------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["int8", "float32"])
def test_semantic_equals_float32_brute_force(store):
    rng = np.random.default_rng(42)
    n, dim = 3000, 64  # above index._GATHER_MAX, so unfiltered queries take the int8 scan
    # clustered vectors make close calls near the cut, where a compact store could slip
    centers = rng.standard_normal((20, dim)).astype(np.float32)
    mat = centers[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    kinds = ["note" if i % 3 else "share" for i in range(n)]
    docs = [
        IndexedDoc(memory_id=f"m{i:05d}", text=f"doc {i}", kind=kinds[i], vector=mat[i])
        for i in range(n)
    ]
    index = UserIndex.build(docs, dim, vector_store=store)
    unit = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    share = np.asarray([k == "share" for k in kinds])
    assert n > index_module._GATHER_MAX
    for qi in range(25):
        q = centers[qi % 20] + 0.3 * rng.standard_normal(dim).astype(np.float32)
        scores = unit @ (q / np.linalg.norm(q))
        for k, filt, mask in ((10, None, None), (50, SearchFilters(kinds=("share",)), share)):
            s = scores if mask is None else np.where(mask, scores, -np.inf)
            want = [f"m{i:05d}" for i in np.argsort(-s, kind="stable")[:k]]
            hits = index.search("", q, mode="semantic", limit=k, filters=filt, collapse=False)
            assert _ids(hits) == want
            assert all(h.semantic_rank == r for r, h in enumerate(hits, 1))
    if store == "int8":  # exact vectors live in the spill file; RAM holds 1 byte a dimension
        assert index.disk_bytes() == n * dim * 4
        in_ram = UserIndex.build(docs, dim, vector_store="float32")
        saved = in_ram.memory_bytes() - index.memory_bytes()
        assert saved >= n * dim * 4 - n * dim - n * 8
        assert in_ram.disk_bytes() == 0


def test_docs_without_vectors_are_found_by_keyword_and_hybrid_only():
    docs = [
        _doc("ready", "kayak trip planning", vector=_vec(1)),
        _doc("pending", "kayak rental receipt", status="pending", vector=None),
    ]
    index = UserIndex.build(docs, DIM)
    q = _vec(1)
    assert "pending" in _ids(index.search("kayak", mode="keyword"))
    assert "pending" in _ids(index.search("kayak", q, mode="hybrid"))
    assert _ids(index.search("kayak", q, mode="semantic")) == ["ready"]


def test_dimension_mismatch_is_rejected():
    with pytest.raises(ValueError, match="dimensions"):
        UserIndex.build([_doc("a", "x", vector=np.ones(3, np.float32))], DIM)
    index = UserIndex.build([_doc("a", "x", vector=_vec(0))], DIM)
    with pytest.raises(ValueError, match="dimensions"):
        index.search("x", np.ones(3, np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.upsert(_doc("b", "y", vector=np.ones(3, np.float32)))
    assert "b" not in index


# --- hybrid --------------------------------------------------------------------------------


def test_hybrid_fuses_both_lists():
    docs = [
        # matches the words but not the meaning
        _doc("kw", "guitar strings guitar strings", vector=_vec(5)),
        # matches the meaning but not the words
        _doc("sem", "acoustic instrument practice", vector=_vec(1, noise=0.05)),
        # matches both: must come first
        _doc("both", "guitar strings practice", vector=_vec(1, noise=0.1, seed=1)),
        _doc("none", "tax return paperwork", vector=_vec(9)),
    ]
    # semantic neighbours without the words push "kw" down the semantic list
    docs += [_doc(f"f{i}", f"filler {i}", vector=_vec(1, noise=0.5, seed=i + 2)) for i in range(10)]
    index = UserIndex.build(docs, DIM)
    q = _vec(1)
    hits = index.search("guitar strings", q, mode="hybrid", now=NOW)
    assert hits[0].memory_id == "both"
    assert hits[0].keyword_rank is not None and hits[0].semantic_rank is not None
    assert {"kw", "sem"} <= set(_ids(hits))
    assert all(0 < h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # no query vector: hybrid falls back to keyword ranking
    no_vec = index.search("guitar strings", None, mode="hybrid", now=NOW)
    assert _ids(no_vec) == _ids(index.search("guitar strings", mode="keyword"))


def test_recency_is_a_mild_tiebreak():
    old = NOW - 400 * 86400
    docs = [
        _doc("old", "board game night", created_at=old, vector=_vec(2)),
        _doc("new", "board game night", created_at=NOW - 3600, vector=_vec(2)),
    ]
    index = UserIndex.build(docs, DIM)
    hits = index.search("board game", _vec(2), mode="hybrid", now=NOW, collapse=False)
    assert _ids(hits) == ["new", "old"]
    assert hits[0].score / hits[1].score < 1.06  # a nudge, not a re-ranking


def test_recency_follows_when_it_happened_not_when_it_was_saved():
    """A history imported today keeps its age: what was said last year is not "recent"."""
    docs = [
        _doc("said_last_year", "board game night", created_at=NOW, occurred_at=NOW - 400 * 86400),
        _doc("said_yesterday", "board game night", created_at=NOW - 7200, occurred_at=NOW - 86400),
    ]
    index = UserIndex.build(docs, DIM)
    hits = index.search("board game", _vec(2), mode="hybrid", now=NOW, collapse=False)
    assert _ids(hits) == ["said_yesterday", "said_last_year"]


def test_semantic_weight_sets_how_much_the_vector_list_counts():
    docs = [
        # every query word, no vector yet: first in the keyword list, absent from the semantic
        _doc("words", "passport renewal form", created_at=NOW - 90 * 86400),
        # nearest vector, no query word, and newer: with equal list weights recency decides
        _doc("meaning", "travel document paperwork", vector=_vec(3), created_at=NOW - 3600),
        _doc("other", "grocery list", vector=_vec(7)),
    ]
    index = UserIndex.build(docs, DIM)
    equal = index.search("passport renewal", _vec(3), now=NOW, collapse=False)
    assert _ids(equal)[:2] == ["meaning", "words"]
    tiebreak = index.search(
        "passport renewal", _vec(3), now=NOW, collapse=False, semantic_weight=0.25
    )
    assert _ids(tiebreak)[:2] == ["words", "meaning"]
    assert tiebreak[0].score == pytest.approx(1 / (1 + 0.25), rel=0.06)
    assert all(0 < h.score <= 1 for h in tiebreak)
    # the offline hashing embedder is lexical, so hybrid search weights it down
    from memlayer.ai.embeddings import Embedder, HashEmbedder

    assert HashEmbedder.fusion_weight < Embedder.fusion_weight == 1.0


def test_hits_carry_their_cosine_similarity():
    docs = [
        _doc("near", "alpha", vector=_vec(2)),
        _doc("far", "beta", vector=_vec(2, 5)),
        _doc("words", "gamma delta"),  # not embedded yet
    ]
    index = UserIndex.build(docs, DIM)
    hits = {h.memory_id: h for h in index.search("gamma", _vec(2), now=NOW)}
    assert hits["near"].similarity == pytest.approx(1.0)
    assert hits["far"].similarity == pytest.approx(2**-0.5)
    assert hits["words"].similarity is None and hits["words"].keyword_rank == 1


def test_min_similarity_keeps_word_matches_and_close_vectors():
    docs = [
        _doc("close", "travel document paperwork", vector=_vec(3, noise=0.1)),
        _doc("unrelated", "grocery list", vector=_vec(7)),
        _doc("words", "passport photo booth", vector=_vec(9)),  # shares a word, far vector
        *(_doc(f"far{i}", f"filler {i}", vector=_vec(7, 8, seed=i)) for i in range(30)),
    ]
    index = UserIndex.build(docs, DIM)
    ranked = index.search("passport", _vec(3), now=NOW, limit=5)
    assert len(ranked) == 5  # ranking fills the list ...
    assert any(h.keyword_rank is None and h.similarity < 0.5 for h in ranked)
    related = index.search("passport", _vec(3), now=NOW, limit=5, min_similarity=0.5)
    assert set(_ids(related)) == {"words", "close"}  # ... the floor keeps what is related
    assert next(h for h in related if h.memory_id == "close").similarity > 0.9


def test_equal_scores_share_a_rank():
    ranked = [(0.9, 0, 4), (0.5, 0, 1), (0.5, 1, 0), (0.2, 0, 2)]
    assert index_module._ranks(ranked) == {(0, 4): 1, (0, 1): 2, (1, 0): 2, (0, 2): 4}


def test_duplicates_collapse_to_best_scoring():
    docs = [
        _doc("s1", "great article on sourdough", dedupe_key="https://x.test/sourdough"),
        _doc("s2", "sourdough sourdough starter", dedupe_key="https://x.test/sourdough"),
        _doc("n1", "sourdough baking note"),
    ]
    index = UserIndex.build(docs, DIM)
    hits = index.search("sourdough", mode="keyword")
    assert _ids(hits) == ["s2", "n1"]
    assert len(index.search("sourdough", mode="keyword", collapse=False)) == 3


# --- filters -------------------------------------------------------------------------------


def test_filters_apply_before_the_cut():
    day = 86400.0
    docs = [
        _doc("n1", "budget plan budget", kind="note", created_at=NOW - 10 * day, vector=_vec(0)),
        _doc(
            "c1",
            "budget chat",
            kind="exchange",
            provider="claude",
            tags=("money",),
            created_at=NOW - 5 * day,
            vector=_vec(0, noise=0.2),
        ),
        _doc("s1", "budget link", kind="share", tags=("Work", "money"), created_at=NOW - day),
    ]
    index = UserIndex.build(docs, DIM)
    q = _vec(0)
    # unfiltered, n1 wins; with a filter the best *matching* doc comes back even at limit=1
    assert _ids(index.search("budget", mode="keyword", limit=1)) == ["n1"]
    assert _ids(
        index.search("budget", mode="keyword", limit=1, filters=SearchFilters(kinds=["share"]))
    ) == ["s1"]
    assert _ids(index.search("budget", q, limit=1, filters=SearchFilters(provider="claude"))) == [
        "c1"
    ]
    tagged = index.search("budget", mode="keyword", filters=SearchFilters(tags=("work", "nope")))
    assert _ids(tagged) == ["s1"]
    recent = SearchFilters(since=NOW - 7 * day)
    assert set(_ids(index.search("budget", q, filters=recent))) == {"c1", "s1"}
    window = SearchFilters(since=NOW - 7 * day, until=NOW - 2 * day)
    assert _ids(index.search("budget", q, mode="semantic", filters=window)) == ["c1"]
    assert index.search("budget", filters=SearchFilters(kinds=("file",))) == []


def test_time_filters_compare_when_it_happened_through_updates_and_compaction():
    """since/until read `occurred_at` (created_at when a memory has none), in the main
    segment, the delta segment and after compaction folds the two together."""
    day = 86400.0
    imported = NOW - day
    docs = [
        _doc("old", "lease notes", created_at=imported, occurred_at=NOW - 200 * day),
        _doc("mid", "lease notes", created_at=imported, occurred_at=NOW - 100 * day),
        _doc("new", "lease notes", created_at=imported),  # no occurred_at: created_at
    ]
    index = UserIndex.build(docs, DIM)
    before_mid = SearchFilters(until=NOW - 150 * day)
    spring = SearchFilters(since=NOW - 150 * day, until=NOW - 50 * day)
    assert _ids(index.search("lease", mode="keyword", filters=before_mid)) == ["old"]
    assert _ids(index.search("lease", mode="keyword", filters=spring)) == ["mid"]
    assert _ids(index.search("lease", mode="keyword", filters=SearchFilters(since=NOW - 2 * day)))[
        :1
    ] == ["new"]
    # an edit of when it happened lands in the delta segment
    index.upsert(_doc("new", "lease notes", created_at=imported, occurred_at=NOW - 120 * day))
    assert set(_ids(index.search("lease", mode="keyword", filters=spring))) == {"mid", "new"}
    index.compact()
    assert set(_ids(index.search("lease", mode="keyword", filters=spring))) == {"mid", "new"}
    assert _ids(index.search("lease", mode="keyword", filters=before_mid)) == ["old"]


# --- updates -------------------------------------------------------------------------------


def test_remove_and_upsert_are_reflected():
    docs = [_doc(f"m{i}", f"note number {i} about lamps", vector=_vec(i % DIM)) for i in range(20)]
    index = UserIndex.build(docs, DIM)
    assert index.remove("m3") is True and index.remove("m3") is False
    assert "m3" not in _ids(index.search("lamps", mode="keyword", limit=50))
    assert len(index) == 19

    index.upsert(_doc("m4", "now about telescopes", vector=_vec(15)))
    assert "m4" not in _ids(index.search("lamps", mode="keyword", limit=50))
    assert _ids(index.search("telescopes", mode="keyword")) == ["m4"]
    assert index.search("", _vec(15), mode="semantic", limit=3)[0].memory_id in {"m4", "m15"}

    index.upsert(_doc("new", "brand new telescope memory", vector=_vec(7)))
    assert set(_ids(index.search("telescope", mode="keyword"))) == {"m4", "new"}
    index.remove("new")
    assert _ids(index.search("telescope", mode="keyword")) == ["m4"]


def test_many_upserts_compact_and_match_a_fresh_build():
    rng = np.random.default_rng(3)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]

    def make(i: int) -> IndexedDoc:
        text = " ".join(rng.choice(words, 6))
        return _doc(f"m{i:04d}", text, vector=rng.standard_normal(DIM).astype(np.float32))

    base = [make(i) for i in range(300)]
    index = UserIndex.build(base, DIM)
    latest = {d.memory_id: d for d in base}
    for i in range(250, 900):  # updates 50 existing ids, adds 600: crosses the compaction point
        doc = make(i)
        index.upsert(doc)
        latest[doc.memory_id] = doc
    for mid in ("m0001", "m0500"):
        index.remove(mid)
        latest.pop(mid)
    fresh = UserIndex.build(latest.values(), DIM)
    q = rng.standard_normal(DIM).astype(np.float32)
    assert len(index) == len(fresh) == len(latest)
    for mode in ("keyword", "semantic", "hybrid"):
        got = index.search("bravo golf", q, mode=mode, limit=20, now=NOW)
        want = fresh.search("bravo golf", q, mode=mode, limit=20, now=NOW)
        assert {h.memory_id for h in got} == {h.memory_id for h in want}, mode


# --- highlights ----------------------------------------------------------------------------


def test_highlight_marks_matches_and_escapes_the_rest():
    text = "<script>alert(1)</script> Running notes & more running"
    [snippet] = highlight(text, "run")
    assert "<script>" not in snippet and "&lt;script&gt;" in snippet
    assert "<mark>Running</mark>" in snippet and "<mark>running</mark>" in snippet
    assert "&amp;" in snippet
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0


def test_highlight_windows_and_fallback():
    long_text = ("filler words here. " * 30) + "the telescope arrived today. " + ("more. " * 40)
    snippets = highlight(long_text, "telescope", max_len=80)
    assert len(snippets) == 1 and "<mark>telescope</mark>" in snippets[0]
    assert snippets[0].startswith("\u2026") and len(snippets[0]) < 140
    fallback = highlight(long_text, "nothingmatches", max_len=60)
    assert len(fallback) == 1 and "<mark>" not in fallback[0] and len(fallback[0]) <= 62
    assert highlight("", "x") == []


def test_search_returns_highlights_for_hits():
    index = UserIndex.build([_doc("a", "Notes on <b>bold</b> lamps")], DIM)
    [hit] = index.search("lamp", mode="keyword")
    assert hit.highlights == ["Notes on &lt;b&gt;bold&lt;/b&gt; <mark>lamps</mark>"]

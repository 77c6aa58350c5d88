"""memlayer.search.context: the chat-context block, and the token counts it is fitted with."""

from __future__ import annotations

import math
import re

import pytest

from memlayer import text as text_module
from memlayer.search.context import ContextCandidate, build_context
from memlayer.text import count_tokens, estimate_tokens

SAMPLES = [
    "The quick brown fox jumps over the lazy dog. It was a sunny afternoon in late September.",
    "Remember to call Dr. Kowalczyk about the MRI results on 2024-03-18 at 14:30.",
    "def get_user(user_id: int) -> dict:\n    return db.query(User).filter(User.id == user_id)\n",
    "https://docs.example.com/api/v2/users?id=12345&sort=desc#section-3",
    "Python（派森）语言是一种功能强大而完善的通用型计算机程序设计语言，",  # noqa: RUF001
    "Python の開発は、1990 年ごろから開始されています。",
    "파이썬은 배우기 쉽고, 강력한 프로그래밍 언어입니다.",
    "getHTTPResponseCode(xmlParser, JSONEncoder) 3.14159 0xDEADBEEF",
    "Naïve café déjà vu — résumé, Zürich; 東京 emoji 🎉🚀",
    "    \n\n\t  indented\n\n\n    lines   with    spaces",
]


def _lower_bound(text: str) -> int:
    """Tokens any GPT-style BPE must spend: pretokenizers split at whitespace, so every
    whitespace-separated word is at least one token, and numbers go in groups of <= 3 digits."""
    words = len(text.split())
    digits = sum(math.ceil(len(d) / 3) - 1 for d in re.findall(r"\d+", text))
    return words + max(0, digits)


@pytest.mark.parametrize("text", SAMPLES)
def test_token_counts_never_fall_below_a_lower_bound(text):
    assert count_tokens(text) >= _lower_bound(text)
    assert estimate_tokens(text) >= _lower_bound(text)
    assert estimate_tokens(text) >= len(text.encode("utf-8")) / 8  # not absurdly low either


def test_empty_text_has_no_tokens():
    assert count_tokens("") == 0 and estimate_tokens("") == 0
    assert estimate_tokens("a") >= 1


def test_estimate_is_never_below_real_bpe_counts():
    toktok = pytest.importorskip("toktok")
    texts = [*SAMPLES, " ".join(SAMPLES), "\n\n".join(SAMPLES * 3)]
    for encoding in ("cl100k_base", "o200k_base"):
        exact = toktok.batch_count(texts, encoding)
        for text, n in zip(texts, exact, strict=True):
            assert estimate_tokens(text) >= n, (encoding, text[:40])
            assert estimate_tokens(text) <= 4 * n + 4  # conservative, not useless


def test_count_tokens_uses_exact_counter_when_available():
    if text_module.token_counter_name() == "cl100k_base":
        toktok = pytest.importorskip("toktok")
        assert count_tokens(SAMPLES[0]) == toktok.batch_count([SAMPLES[0]], "cl100k_base")[0]
    else:
        assert count_tokens(SAMPLES[0]) == estimate_tokens(SAMPLES[0])


# --- build_context -------------------------------------------------------------------------


def _memories(n: int = 8) -> list[ContextCandidate]:
    out = []
    for i in range(n):
        text = " ".join(
            f"Memory {i} talks about topic{i} and the garden irrigation schedule, sentence {j}."
            for j in range(4 + i * 3)
        )
        out.append(
            ContextCandidate(
                id=f"m{i}",
                title=f"Title {i}",
                text=text,
                occurred_at=1_767_225_600.0 + i,
                source_url=f"https://example.com/{i}" if i % 2 else None,
                provider="chatgpt" if i % 3 == 0 else None,
            )
        )
    return out


@pytest.mark.parametrize("provider", ["claude", "chatgpt", None])
@pytest.mark.parametrize("budget", [40, 90, 150, 300, 700, 2000, 20000])
def test_context_respects_max_tokens(provider, budget):
    mems = _memories()
    block = build_context("irrigation schedule", mems, provider=provider, max_tokens=budget)
    assert block.tokens == count_tokens(block.context)
    assert block.tokens <= budget
    order = [m.id for m in mems]
    assert block.memory_ids == sorted(block.memory_ids, key=order.index)  # relevance order kept
    for mid in block.memory_ids:  # each included memory shows up (tagged by id in XML)
        shown = f'id="{mid}"' if provider == "claude" else f"Title {mid[1:]}"
        assert shown in block.context
    if budget >= 300:
        assert block.memory_ids, "a roomy budget must include something"
    if budget >= 20000:
        assert block.memory_ids == order  # everything fits whole
        assert all(m.text in block.context for m in mems)


def test_budget_too_small_gives_empty_block():
    block = build_context("x", _memories(2), provider="claude", max_tokens=10)
    assert block.context == "" and block.memory_ids == [] and block.tokens == 0


@pytest.mark.parametrize("provider", ["claude", "chatgpt"])
def test_a_tight_budget_compacts_the_framing_before_dropping_the_best_memory(provider):
    filler = " ".join(f"unrelated sentence number {i} about nothing much." for i in range(40))
    best = ContextCandidate(
        id="best",
        title="Cabin notes",
        text=filler + " The wifi password for the cabin is in the blue notebook. " + filler,
        occurred_at=1_767_225_600.0,
        source_url="https://example.com/cabin",
    )
    roomy = build_context("cabin wifi password", [best], provider=provider, max_tokens=400)
    assert "Saved memories" in roomy.context  # the full framing while there is room
    block = build_context("cabin wifi password", [best], provider=provider, max_tokens=60)
    assert block.memory_ids == ["best"]
    assert 0 < block.tokens <= 60
    assert "wifi password" in block.context  # the relevant excerpt, not the start of the text
    assert "Saved memories" not in block.context


def test_long_memory_is_trimmed_to_an_excerpt_around_the_query():
    filler = " ".join(f"unrelated sentence number {i} about nothing much." for i in range(300))
    text = filler + " The wifi password for the cabin is in the blue notebook. " + filler
    mem = ContextCandidate(id="long", title=None, text=text, occurred_at=None)
    block = build_context("cabin wifi password", [mem], provider="chatgpt", max_tokens=120)
    assert block.memory_ids == ["long"]
    assert block.tokens <= 120
    assert "wifi password" in block.context
    assert "\u2026" in block.context


def test_formats_per_provider_and_escapes_xml():
    mem = ContextCandidate(
        id="m1",
        title='Tags <b> & "quotes"',
        text="if a < b and c > d: </memory> injected",
        occurred_at=1_767_225_600.0,
        source_url="https://x.test/?a=1&b=2",
    )
    claude = build_context("q", [mem], provider="claude", max_tokens=500).context
    assert claude.startswith("<memories>") and claude.rstrip().endswith("</memories>")
    assert '<memory id="m1" date="2026-01-01"' in claude
    assert "&lt;/memory&gt;" in claude and claude.count("</memory>") == 1
    assert 'source="https://x.test/?a=1&amp;b=2"' in claude
    md = build_context("q", [mem], provider="chatgpt", max_tokens=500).context
    assert md.startswith("## Relevant memories")
    assert '### 1. Tags <b> & "quotes" (2026-01-01, https://x.test/?a=1&b=2)' in md
    assert "</memory> injected" in md  # markdown keeps text as is


def test_memories_already_in_the_conversation_are_skipped():
    a = ContextCandidate("a", None, "The  Quick brown fox\njumps over the lazy dog today.")
    b = ContextCandidate(
        "b",
        None,
        "Our team offsite is planned for the second week of June in Lisbon near the river.",
    )
    c = ContextCandidate("c", None, "Grandma's lemon cake needs three eggs and a cup of sugar.")
    conversation = (
        "user: earlier you said the quick brown FOX jumps over the lazy dog today. "
        "assistant: yes. also our team offsite is planned for the second week of june in "
        "lisbon, near the river bank."
    )
    block = build_context(
        "anything", [a, b, c], provider="claude", conversation_text=conversation, max_tokens=800
    )
    assert block.memory_ids == ["c"]
    # without the conversation all three are included
    assert build_context("anything", [a, b, c], max_tokens=800).memory_ids == ["a", "b", "c"]


def test_duplicate_and_blank_memories_are_ignored():
    a = ContextCandidate("a", None, "some text worth keeping")
    blank = ContextCandidate("z", None, "   ")
    block = build_context("text", [a, a, blank], max_tokens=500)
    assert block.memory_ids == ["a"]


def test_context_budget_holds_with_the_estimator_too(monkeypatch):
    monkeypatch.setattr(text_module, "_exact_counter", lambda: None)
    assert text_module.token_counter_name() == "estimate"
    for budget in (60, 200, 900):
        block = build_context("garden", _memories(), provider="claude", max_tokens=budget)
        assert block.tokens == estimate_tokens(block.context) <= budget
        assert block.memory_ids or budget < 100

"""The memory-context block prepended to a chat prompt, fitted to a token budget
(`memlayer.text.count_tokens`: exact cl100k_base with toktok installed, else a deliberately high
estimate; Claude's tokenizer is not public, so leave some headroom in `max_tokens` for Claude).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from memlayer.text import count_tokens, query_terms, tokenize, words


@dataclass(frozen=True, slots=True)
class ContextCandidate:
    id: str
    title: str | None
    text: str
    occurred_at: float | datetime | str | None = None  # the date shown: when it happened
    source_url: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class ContextBlock:
    context: str
    memory_ids: list[str] = field(default_factory=list)
    tokens: int = 0


SHINGLE = 5  # words per shingle when testing "the conversation already has this"
CONTAINED_OVERLAP = 0.6  # share of a memory's shingles found in the conversation
MIN_EXCERPT_TOKENS = 24  # below this a trimmed memory is not worth including
_XML_PROVIDERS = frozenset({"claude", "anthropic"})
_ELLIPSIS = "\u2026"


def _norm_words(text: str) -> list[str]:
    """Folded words without punctuation: "The  FOX, jumps" -> ["the", "fox", "jumps"]."""
    return words(text)


def _shingles(words: list[str]) -> set[int]:
    if len(words) < SHINGLE:
        return set()
    return {hash(tuple(words[i : i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}


class _Conversation:
    def __init__(self, text: str | None) -> None:
        words = _norm_words(text or "")
        self.joined = " " + " ".join(words) + " "
        self.shingles = _shingles(words)

    def contains(self, text: str) -> bool:
        words = _norm_words(text)
        if not words or len(self.joined) <= 2:
            return False
        if " " + " ".join(words) + " " in self.joined:
            return True
        mine = _shingles(words)
        if not mine:
            return False
        return len(mine & self.shingles) / len(mine) >= CONTAINED_OVERLAP


def _date(value: float | datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float):
        dt = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        return str(value)[:10] or None
    return dt.astimezone(UTC).strftime("%Y-%m-%d")


def _is_xml(provider: str | None) -> bool:
    return (provider or "").strip().lower() in _XML_PROVIDERS


@dataclass(frozen=True, slots=True)
class _Framing:
    """How much boilerplate surrounds the memories: the full framing explains the block and
    labels each memory; the compact one, used when the budget cannot hold the best memory
    with the full framing, keeps only what identifies a memory (its id or title)."""

    header: str
    footer: str
    xml: bool
    compact: bool


_XML_FULL = _Framing(
    "<memories>\n<instructions>Saved memories of the user (notes, past chats, shared links), "
    "most relevant first. Use them when they help; they may be outdated.</instructions>\n",
    "</memories>",
    xml=True,
    compact=False,
)
_MD_FULL = _Framing(
    "## Relevant memories\n"
    "Saved memories of the user (notes, past chats, shared links), most relevant first. "
    "Use them when they help; they may be outdated.\n\n",
    "---",
    xml=False,
    compact=False,
)
_XML_COMPACT = _Framing("<memories>\n", "</memories>", xml=True, compact=True)
_MD_COMPACT = _Framing("## Memories\n", "", xml=False, compact=True)


def _entry(mem: ContextCandidate, body: str, number: int, framing: _Framing) -> str:
    title = " ".join(mem.title.split()) if mem.title else None
    if framing.xml:
        attrs = [f'id="{html.escape(mem.id)}"']
        if not framing.compact:
            date = _date(mem.occurred_at)
            if date:
                attrs.append(f'date="{html.escape(date)}"')
            if title:
                attrs.append(f'title="{html.escape(title)}"')
            if mem.source_url:
                attrs.append(f'source="{html.escape(mem.source_url)}"')
            if mem.provider:
                attrs.append(f'from="{html.escape(mem.provider)}"')
        return f"<memory {' '.join(attrs)}>\n{html.escape(body, quote=False)}\n</memory>\n"
    if framing.compact:
        return f"- {title}: {body}\n" if title else f"- {body}\n"
    date = _date(mem.occurred_at)
    meta = [m for m in (date, mem.provider and f"from {mem.provider}", mem.source_url) if m]
    head = f"### {number}. {title or f'Memory {number}'}" + (
        f" ({', '.join(meta)})" if meta else ""
    )
    return f"{head}\n{body}\n\n"


class _Excerpts:
    """Excerpts of one memory's text centred on its densest run of query matches."""

    def __init__(self, text: str, terms: set[str]) -> None:
        self.text = " ".join(text.split())
        self.positions = (
            [m.start() for m in re.finditer(r"\S+", self.text) if set(tokenize(m.group())) & terms]
            if terms
            else []
        )

    def _start(self, chars: int) -> int:
        positions = self.positions
        if not positions:
            return 0
        best, best_count, j = positions[0], 0, 0
        for i, p in enumerate(positions):  # sliding window: most matches within ~chars
            j = max(j, i)
            while j + 1 < len(positions) and positions[j + 1] - p <= chars * 0.8:
                j += 1
            if j - i + 1 > best_count:
                best, best_count = p, j - i + 1
        start = max(0, best - chars // 5)
        if start:
            space = self.text.rfind(" ", 0, start + 1)
            start = space + 1 if space >= max(0, start - 20) else start
        return start

    def get(self, chars: int) -> str:
        """About `chars` characters, with an ellipsis where the text was cut."""
        text = self.text
        if len(text) <= chars:
            return text
        start = self._start(chars)
        end = min(len(text), start + chars)
        if end < len(text):
            space = text.rfind(" ", start, end)
            if space > start + chars // 2:
                end = space
        piece = text[start:end].strip()
        return (_ELLIPSIS if start > 0 else "") + piece + (_ELLIPSIS if end < len(text) else "")


def _fit_excerpt(
    mem: ContextCandidate, terms: set[str], number: int, framing: _Framing, budget: int
) -> str | None:
    """The longest excerpt entry within `budget` tokens (None if not even a small one fits)."""
    if budget < MIN_EXCERPT_TOKENS:
        return None
    excerpts = _Excerpts(mem.text, terms)
    lo, hi = 0, min(len(excerpts.text), budget * 8)  # no token is longer than ~8 characters
    best: str | None = None
    while lo < hi:  # binary search on the excerpt's length in characters
        mid = (lo + hi + 1) // 2
        entry = _entry(mem, excerpts.get(mid), number, framing)
        if count_tokens(entry) <= budget:
            best, lo = entry, mid
        else:
            hi = mid - 1
    if best is None or lo < 40:
        return None
    return best


def build_context(
    query: str,
    memories: Sequence[ContextCandidate],
    *,
    provider: str | None = None,
    conversation_text: str | None = None,
    max_tokens: int,
) -> ContextBlock:
    """One block of memories to prepend to a chat prompt, at most `max_tokens` tokens.

    Memories come in relevance order and keep it. Each goes in whole if it fits, else as an
    excerpt around the query's words if a useful one fits. Memories the conversation already
    contains (same text up to case/whitespace, or >= 60% of their 5-word shingles) are left
    out. XML-ish tags for claude/anthropic, markdown otherwise. When the full framing leaves
    no room for the most relevant memory, the compact framing is used, so a tight budget
    shrinks the boilerplate before it drops the memory. `tokens` is `count_tokens(context)`;
    an empty block (no memory fits) has context "" and 0 tokens."""
    xml = _is_xml(provider)
    conversation = _Conversation(conversation_text)
    candidates: list[ContextCandidate] = []
    seen: set[str] = set()
    for mem in memories:
        if mem.id in seen or not (mem.text or "").strip() or conversation.contains(mem.text):
            continue
        seen.add(mem.id)
        candidates.append(mem)
    if not candidates:
        return ContextBlock("", [], 0)
    terms = set(query_terms(query or ""))
    fallback = ContextBlock("", [], 0)
    for framing in (_XML_FULL, _XML_COMPACT) if xml else (_MD_FULL, _MD_COMPACT):
        block = _assemble(candidates, terms, framing, max_tokens)
        if block.memory_ids[:1] == [candidates[0].id]:
            return block
        if block.memory_ids and not fallback.memory_ids:
            fallback = block
    return fallback


def _assemble(
    candidates: Sequence[ContextCandidate], terms: set[str], framing: _Framing, max_tokens: int
) -> ContextBlock:
    used = count_tokens(framing.header + framing.footer) + 2  # joins may merge differently
    if used >= max_tokens:
        return ContextBlock("", [], 0)
    entries: list[str] = []
    ids: list[str] = []
    for mem in candidates:
        number = len(entries) + 1
        remaining = max_tokens - used - 1
        entry = _entry(mem, mem.text.strip(), number, framing)
        cost = count_tokens(entry)
        if cost > remaining:
            trimmed = _fit_excerpt(mem, terms, number, framing, remaining)
            if trimmed is None:
                continue
            entry, cost = trimmed, count_tokens(trimmed)
        entries.append(entry)
        ids.append(mem.id)
        used += cost + 1
    while entries:
        context = framing.header + "".join(entries) + framing.footer
        tokens = count_tokens(context)
        if tokens <= max_tokens:
            return ContextBlock(context, ids, tokens)
        entries.pop()  # joins cost more than counted: drop the least relevant entry
        ids.pop()
    return ContextBlock("", [], 0)

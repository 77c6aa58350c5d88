"""Token counting and the memory-context block prepended to a chat prompt.

Token counts: `count_tokens` is exact for OpenAI's cl100k_base when the `toktok` package
(toktok-rs on PyPI: a Rust BPE with cl100k/o200k compiled into the wheel, so it needs no
download; imports in ~5 ms, loads the encoding in ~0.3 s once per process) is installed.
Without it, `estimate_tokens` is used: a deliberately high estimate built from the BPE
pretokenizer's piece classes (see its docstring), checked against cl100k_base and o200k_base
on English prose, code, URLs and Chinese/Japanese/Korean text. Claude's tokenizer is not
public; leave some headroom in `max_tokens` when the block goes to Claude.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from memlayer.search.text import query_terms, tokenize, words

# --------------------------------------------------------------------------------------------
# token counting
# --------------------------------------------------------------------------------------------

_CJK_CHARS = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef"
)
_PIECES = re.compile(
    rf"(?P<cjk>[{_CJK_CHARS}]+)"
    r"|(?P<alpha>[A-Za-z]+)"
    r"|(?P<digit>[0-9]+)"
    r"|(?P<space> (?=[^\s0-9]))"
    r"|(?P<ws>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_CASE_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


def _cjk_cost(run: str) -> int:
    """Tokens charged for a CJK run. cl100k spends ~1.3 a character on common Chinese text
    (1-3 each), ~1.1 on kana, ~1.6 on Hangul (1-3 each); o200k less."""
    weight = 0.0
    for ch in run:
        if "\u3040" <= ch <= "\u30ff":
            weight += 1.5  # kana
        elif "\uac00" <= ch <= "\ud7ff" or ch <= "\u11ff" or "\ua960" <= ch <= "\ua97f":
            weight += 2.5  # Hangul syllables and jamo
        else:
            weight += 2.0  # Han, CJK punctuation, full-width forms
    return math.ceil(weight)


def _lower_cost(part: str) -> int:
    n = len(part)
    if n <= 3:
        return 1
    vowels = sum(part.count(v) for v in "aeiouy")
    return math.ceil(n / 2) if vowels * 5 < n else math.ceil(n / 3)


def _alpha_cost(run: str) -> int:
    """Tokens charged for a run of ASCII letters, by case part (see `estimate_tokens`)."""
    if run.islower():
        return _lower_cost(run)
    cost = 0
    for part in _CASE_PARTS.findall(run):
        n = len(part)
        if part.isupper():
            cost += 1 if n == 1 else math.ceil(n / 2)
        elif part[0].isupper():
            cost += max(1, math.ceil(n / 2.5))
        else:
            cost += _lower_cost(part)
    return cost


def estimate_tokens(text: str) -> int:
    """A token count meant never to be below what cl100k_base or o200k_base give.

    It walks the text in the pieces BPE pretokenizers cut it into (a token never crosses a
    piece) and charges each piece what BPE spends on such pieces at worst in practice:
    - ASCII letter runs, split at case changes ("getHTTPCode" -> get, HTTP, Code): lowercase
      one token up to 3 letters, else one per 3 letters (English averages 4-5 letters a
      token); acronyms one per 2 letters; Capitalized words (often names) one per 2.5;
    - digit runs: one token per 3 digits, exactly what both encodings do;
    - a single space before a letter or symbol is free (it merges into the next piece);
      other whitespace costs one per newline plus one per 4 other characters;
    - other ASCII characters (punctuation, symbols): one each (a byte is at most one token);
    - CJK: 1.5 a kana, 2 a Han character or CJK symbol, 2.5 a Hangul syllable;
    - any other character (accented letters, Cyrillic, emoji): its UTF-8 byte count, the
      most BPE can ever spend on it.
    Plus a margin of 1 + 1 per 8 letter runs for the odd name or code. Measured on ~330k
    chunks (lines, paragraphs, whole files) of English prose, Python code, URLs and the
    Chinese/Japanese/Korean samples shipped with CPython, it is 1.5-2x the cl100k count and
    never below cl100k or o200k; it is not a proof for arbitrary strings (random letters,
    base64), where BPE can spend up to a token per byte."""
    if not text:
        return 0
    total = 1
    runs = 0
    for m in _PIECES.finditer(text):
        kind = m.lastgroup
        piece = m.group()
        if kind == "alpha":
            total += _alpha_cost(piece)
            runs += 1
        elif kind == "digit":
            total += math.ceil(len(piece) / 3)
        elif kind == "space":
            continue
        elif kind == "ws":
            newlines = piece.count("\n")
            total += newlines + math.ceil((len(piece) - newlines) / 4)
            if text[m.end() : m.end() + 1].isdigit():
                total += 1  # the space before a number is a token of its own
        elif kind == "cjk":
            total += _cjk_cost(piece)
        else:
            total += 1 if piece.isascii() else len(piece.encode("utf-8"))
    return total + runs // 8


@lru_cache(maxsize=1)
def _exact_counter() -> Callable[[str], int] | None:
    try:
        import toktok

        toktok.batch_count(["probe"], "cl100k_base")
    except Exception:  # not installed or unusable: fall back to the estimate
        return None

    def count(text: str) -> int:
        return int(toktok.batch_count([text], "cl100k_base", threads=1)[0])

    return count


def token_counter_name() -> str:
    """ "cl100k_base" when counts are exact, else "estimate"."""
    return "cl100k_base" if _exact_counter() is not None else "estimate"


def count_tokens(text: str) -> int:
    """Tokens in `text`: exact cl100k_base with toktok installed, else `estimate_tokens`."""
    if not text:
        return 0
    exact = _exact_counter()
    return exact(text) if exact is not None else estimate_tokens(text)


# --------------------------------------------------------------------------------------------
# the context block
# --------------------------------------------------------------------------------------------


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

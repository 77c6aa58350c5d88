"""Small text helpers shared by the AI modules (no heavy imports)."""

from __future__ import annotations

import re
from collections.abc import Iterable


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WS = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")
_TOKEN = re.compile(r"[a-z][a-z0-9+#]*(?:[.\-][a-z0-9]+)*", re.UNICODE)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARK = re.compile(r"^\s{0,3}(?:#{1,6}|>+|[-*+]|\d+[.)])\s+", re.MULTILINE)
_EMPHASIS = re.compile(r"\*{1,3}|`+|~~|(?<!\w)__?|__?(?!\w)")

STOPWORDS: frozenset[str] = word_set(
    """
    a about above after again against all almost also although always am among an and any
    anyone anything are around as at back be became because become been before being below
    between both but by can cannot could did do does doing done down during each either else
    enough etc even ever every few for from further get gets getting got had has have having he
    her here hers herself him himself his how however i if in into is it its itself just least
    less let like made make makes many may me might more most much must my myself near need
    needs neither never no nor not now of off often on once one only or other others otherwise
    our ours ourselves out over own per perhaps please put quite rather really same see seem
    seems several shall she should since so some something sometimes still such than that the
    their theirs them themselves then there therefore these they thing things this those though
    through thus to too toward under until up upon us use used uses using very via was way we
    well were what whatever when where whether which while who whom whose why will with within
    without would yet you your yours yourself yourselves able across actually already another
    anyway became best better come comes could does don doesn didn isn wasn aren won can't don't
    new first second last next many lot lots want wants go goes going gone know knows known
    say says said tell told think thought take takes took give gives gave look looks looking
    keep keeps kept
    http https www com org net html htm amp nbsp click here read more share subscribe sign
    cookie cookies privacy terms copyright rights reserved menu home page login log
    """
)


def clean_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def strip_markdown(text: str) -> str:
    """Drop the markdown markup that reads badly in a title (#, >, emphasis, link targets)."""
    text = _LINE_MARK.sub("", _LINK.sub(r"\1", text))
    return clean_whitespace(_EMPHASIS.sub("", text))


def truncate_words(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """`text` cut to at most `limit` characters, at a word boundary when one is near."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    space = cut.rfind(" ")
    if space >= len(cut) * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-\u2013\u2014") + ellipsis


def truncate_middle(text: str, limit: int, *, head_share: float = 0.8) -> str:
    """Keep the head and tail of very long text (most of the meaning of a page or prompt is at
    its start, a conclusion at its end) with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    head_len = int(limit * head_share)
    tail_len = max(0, limit - head_len)
    head = text[:head_len]
    cut = head.rfind(" ")
    if cut > head_len * 0.9:
        head = head[:cut]
    tail = text[len(text) - tail_len :] if tail_len else ""
    cut = tail.find(" ")
    if 0 <= cut < tail_len * 0.1:
        tail = tail[cut + 1 :]
    omitted = len(text) - len(head) - len(tail)
    return f"{head}\n\n[… {omitted} characters omitted …]\n\n{tail}"


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(clean_whitespace(text)) if s.strip()]


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens; keeps tech spellings like c++, c#, node.js, gpt-4."""
    return _TOKEN.findall(text.lower())


def neutralize_tags(text: str, names: Iterable[str]) -> str:
    """Defuse anything in untrusted `text` that looks like one of our prompt delimiters
    (`<name ...>` or `</name>`), so data cannot close its block and pose as instructions."""
    pattern = "|".join(re.escape(name) for name in names)
    return re.sub(rf"<(\s*/?\s*)({pattern})\b", r"&lt;\1\2", text, flags=re.IGNORECASE)

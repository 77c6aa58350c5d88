"""Text analysis for keyword search: tokenizer, light stemmer, stopwords and highlighting.

`tokenize` is what both the index and the query go through, so word forms meet in the middle:

- Unicode: NFKC, casefold, Latin diacritics removed ("Café" -> "cafe"); CJK runs (Han, kana,
  Hangul) have no spaces between words, so they become overlapping character bigrams.
- Punctuation splits words ("foo-bar", "snake_case", URLs); inner apostrophes are dropped
  ("don't" -> "dont") and a possessive "'s" goes ("Anna's" -> "anna").
- A light, deterministic stemmer maps plurals and -ing/-ed/-ly forms (and a final -e) to one
  stem: "notes", "noted", "note" -> "not"; "running", "runs" -> "run"; "studies",
  "studied", "studying" -> "study". It is not a dictionary stemmer: irregular forms
  ("ran") stay apart, and a few unrelated words may share a stem, which BM25 shrugs off.
- English stopwords are dropped.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

STOPWORDS: frozenset[str] = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren",
        "arent",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "couldn",
        "couldnt",
        "did",
        "didn",
        "didnt",
        "do",
        "does",
        "doesn",
        "doesnt",
        "doing",
        "don",
        "dont",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "hadn",
        "hadnt",
        "has",
        "hasn",
        "hasnt",
        "have",
        "haven",
        "havent",
        "having",
        "he",
        "hed",
        "hell",
        "her",
        "here",
        "heres",
        "hers",
        "herself",
        "hes",
        "him",
        "himself",
        "his",
        "how",
        "hows",
        "i",
        "id",
        "ill",
        "im",
        "ive",
        "if",
        "in",
        "into",
        "is",
        "isn",
        "isnt",
        "it",
        "its",
        "itself",
        "lets",
        "me",
        "more",
        "most",
        "mustn",
        "mustnt",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "shan",
        "shant",
        "she",
        "shed",
        "shell",
        "shes",
        "should",
        "shouldn",
        "shouldnt",
        "so",
        "some",
        "such",
        "than",
        "that",
        "thats",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "theres",
        "these",
        "they",
        "theyd",
        "theyll",
        "theyre",
        "theyve",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "wasn",
        "wasnt",
        "we",
        "wed",
        "well",
        "were",
        "weren",
        "werent",
        "weve",
        "what",
        "whats",
        "when",
        "whens",
        "where",
        "wheres",
        "which",
        "while",
        "who",
        "whos",
        "whom",
        "why",
        "whys",
        "will",
        "with",
        "won",
        "wont",
        "would",
        "wouldn",
        "wouldnt",
        "you",
        "youd",
        "youll",
        "youre",
        "youve",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "s",
        "t",
        "d",
        "ll",
        "m",
        "re",
        "ve",
        "also",
        "just",
        "http",
        "https",
        "www",
    ]
)

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
_ASCII_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_COMBINING_LATIN = re.compile("[\u0300-\u036f]")
_VOWELS = frozenset("aeiouy")
_NO_UNDOUBLE = frozenset("lsz")
_STEM_CACHE: dict[str, str | tuple[str, ...]] = {}
_STEM_CACHE_LIMIT = 400_000


def fold(text: str) -> str:
    """Case- and accent-folded form of `text` (NFKC, casefold, Latin diacritics stripped)."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed != text:
        text = unicodedata.normalize("NFC", _COMBINING_LATIN.sub("", decomposed))
    return text.replace("\u2019", "'")


def _has_vowel(word: str) -> bool:
    return any(c in _VOWELS for c in word)


def stem(word: str) -> str:
    """Light suffix stripper for lowercase words (see the module docstring)."""
    if len(word) <= 3 or not word.isalpha() or not word.isascii():
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix):
            base = word[: -len(suffix)]
            if len(base) >= 3 and _has_vowel(base):
                word = base
                last = word[-1]
                if len(word) >= 4 and last == word[-2] and last not in _VOWELS | _NO_UNDOUBLE:
                    word = word[:-1]
            break
    if word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    if word.endswith("e") and len(word) > 3:
        word = word[:-2] if word.endswith("ee") and len(word) > 4 else word[:-1]
    if word.endswith("i") and len(word) > 3:
        word = word[:-1] + "y"
    return word


def _cjk_terms(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _analyze(word: str) -> str | tuple[str, ...]:
    """Terms for one folded word: a string ("" for a stopword) or a tuple (CJK bigrams)."""
    if "'" in word:
        if word.endswith("'s"):
            word = word[:-2]
        word = word.replace("'", "")
    if not word.isascii() and _HAS_CJK.search(word):
        terms: list[str] = []
        pos = 0
        for m in _CJK_RUN.finditer(word):
            if m.start() > pos:
                head = _analyze(word[pos : m.start()])
                terms.extend([head] if isinstance(head, str) else head)
            terms.extend(_cjk_terms(m.group()))
            pos = m.end()
        if pos < len(word):
            tail = _analyze(word[pos:])
            terms.extend([tail] if isinstance(tail, str) else tail)
        return tuple(t for t in terms if t)
    if word in STOPWORDS:
        return ""
    return stem(word)


def _term_of(word: str) -> str | tuple[str, ...]:
    term = _STEM_CACHE.get(word)
    if term is None:
        term = _analyze(word)
        if len(_STEM_CACHE) >= _STEM_CACHE_LIMIT:
            _STEM_CACHE.clear()
        _STEM_CACHE[word] = term
    return term


def words(text: str) -> list[str]:
    """The folded words of `text`, before stopwords and stemming."""
    if not text:
        return []
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    return _WORD.findall(fold(text))


def tokenize(text: str) -> list[str]:
    """Index/query terms of `text`, in order, with repeats."""
    if not text:
        return []
    if text.isascii():  # fast path: every ASCII word maps to one string ("" = stopword)
        found = _ASCII_WORD.findall(text.lower())
        terms = list(map(_STEM_CACHE.get, found))
        if None in terms:
            terms = [_term_of(w) if t is None else t for t, w in zip(terms, found, strict=True)]
        return [t for t in terms if t]  # type: ignore[misc]
    out: list[str] = []
    for word in words(text):
        term = _term_of(word)
        if isinstance(term, str):
            if term:
                out.append(term)
        else:
            out.extend(term)
    return out


def query_terms(query: str | Iterable[str]) -> list[str]:
    """Unique terms of a query (a string or a list of words), in first-seen order."""
    terms = tokenize(query) if isinstance(query, str) else [t for q in query for t in tokenize(q)]
    return list(dict.fromkeys(terms))


# --- highlighting -----------------------------------------------------------------------

_SNIPPET_LEAD = 40
_ELLIPSIS = "\u2026"


def _match_spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cjk_terms = [t for t in terms if _HAS_CJK.search(t)]
    for m in _WORD.finditer(text):
        term = _term_of(fold(m.group()))
        if isinstance(term, str):
            if term and term in terms:
                spans.append(m.span())
        elif cjk_terms:
            continue  # CJK handled below by substring search
        elif any(t in terms for t in term):
            spans.append(m.span())
    if cjk_terms:
        folded_ok = len(fold(text)) == len(text)
        hay = fold(text) if folded_ok else text
        for t in cjk_terms:
            start = hay.find(t)
            while start != -1:
                spans.append((start, start + len(t)))
                start = hay.find(t, start + 1)
    if not spans:
        return []
    spans.sort()
    merged = [spans[0]]
    for s, e in spans[1:]:
        ps, pe = merged[-1]
        if s <= pe:
            merged[-1] = (ps, max(pe, e))
        else:
            merged.append((s, e))
    return merged


def _word_start(text: str, pos: int) -> int:
    """Move `pos` back to the start of the word it falls in (bounded)."""
    limit = max(0, pos - 15)
    while pos > limit and not text[pos - 1].isspace():
        pos -= 1
    return pos


def _word_end(text: str, pos: int) -> int:
    limit = max(0, pos - 15)
    end = pos
    while end > limit and end < len(text) and not text[end].isspace():
        end -= 1
    return end if end > limit else pos


def _render(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> str:
    parts: list[str] = [_ELLIPSIS] if start > 0 else []
    pos = start
    for s, e in spans:
        s, e = max(s, start), min(e, end)
        if s >= e:
            continue
        parts.append(html.escape(text[pos:s]))
        parts.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    parts.append(html.escape(text[pos:end]))
    if end < len(text):
        parts.append(_ELLIPSIS)
    return "".join(parts).strip()


def highlight(
    text: str,
    query: str | Iterable[str],
    max_len: int = 200,
    *,
    max_snippets: int = 3,
) -> list[str]:
    """Snippets of `text` (each about `max_len` characters of source text) around the words
    that match the query, matches wrapped in `<mark>…</mark>`, everything else HTML-escaped.

    The query is a string or a list of words; it goes through `tokenize`, so "Running" in the
    text matches the query "runs". With no match, the one snippet is the start of the text (so
    a semantic-only hit still shows something); an empty text gives []."""
    return highlight_terms(text, set(query_terms(query)), max_len, max_snippets=max_snippets)


def highlight_terms(
    text: str, terms: set[str], max_len: int = 200, *, max_snippets: int = 3
) -> list[str]:
    """`highlight` for terms that already went through `tokenize`."""
    if not text:
        return []
    text = text.strip()
    max_len = max(20, max_len)
    spans = _match_spans(text, terms) if terms else []
    if not spans:
        end = len(text) if len(text) <= max_len else _word_end(text, max_len)
        return [_render(text, 0, end, [])]
    snippets: list[str] = []
    i = 0
    prev_end = 0
    while i < len(spans) and len(snippets) < max_snippets:
        first_start = spans[i][0]
        start = (
            0 if first_start <= _SNIPPET_LEAD else _word_start(text, first_start - _SNIPPET_LEAD)
        )
        start = max(start, prev_end)
        end = min(len(text), start + max_len)
        if end < len(text):
            end = _word_end(text, end)
        end = max(end, min(len(text), spans[i][1]))
        covered = []
        while i < len(spans) and spans[i][0] < end:
            covered.append(spans[i])
            i += 1
        snippets.append(_render(text, start, end, covered))
        prev_end = end
    return snippets

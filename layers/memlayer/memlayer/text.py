"""Text handling for the whole package: one analyzer, one stemmer, one token counter, one
truncation.

Matching — keyword search (index and query, both backends' highlighting), the offline hashing
embedder's features, the offline chat's choice of passage — goes through `tokenize`, so word
forms meet in the middle:

- Unicode: NFKC, casefold, Latin diacritics removed ("Café" -> "cafe"); CJK runs (Han, kana,
  Hangul) have no spaces between words, so they become overlapping character bigrams.
- Punctuation splits words ("foo-bar", "snake_case", URLs); inner apostrophes are dropped
  ("don't" -> "dont") and a possessive "'s" goes ("Anna's" -> "anna").
- `STOPWORDS` (English function words) are dropped.
- `stem` is Snowball's English stemmer (PyStemmer's C build): "notes", "noted", "note" ->
  "note"; "running", "runs" -> "run"; "studies", "studying" -> "studi". Postgres's `english`
  text search configuration (the supabase backend's keyword leg) stems with an older Snowball
  release, so the lexemes it matched are the terms highlighted here except for the few words
  Snowball 3 stopped over-stemming ("organization", "university"; tests/postgres keeps the
  list). Irregular forms ("ran") stay apart.

Naming things — offline tags and topics, a tag's spelling-insensitive identity — needs real
words, not stems ("organization" stems to "organ"): `name_tokens` keeps tech spellings (c++,
c#, node.js) and `singular` only folds plurals ("libraries" -> "library").

`count_tokens` is the one token count (exact cl100k_base with toktok, else `estimate_tokens`);
`truncate` is the one cut to a size (bytes as stored, tokens, ...): the longest prefix that
fits, never inside a character.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import Stemmer  # PyStemmer: Snowball's C stemmers, imports in ~1 ms


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS: frozenset[str] = word_set(
    """
    a about above after again against all also am an and any are aren arent as at be because
    been before being below between both but by can cannot could couldn couldnt d did didn
    didnt do does doesn doesnt doing don dont down during each few for from further had hadn
    hadnt has hasn hasnt have haven havent having he hed hell her here heres hers herself
    hes him himself his how hows i id if ill im in into is isn isnt it its itself ive just
    lets ll m me more most mustn mustnt my myself no nor not of off on once only or other
    ought our ours ourselves out over own re s same shan shant she shed shell shes should
    shouldn shouldnt so some such t than that thats the their theirs them themselves then
    there theres these they theyd theyll theyre theyve this those through to too under until
    up ve very was wasn wasnt we wed well were weren werent weve what whats when whens where
    wheres which while who whom whos why whys will with won wont would wouldn wouldnt you
    youd youll your youre yours yourself yourselves youve
    http https www
    """
)

# Words that carry no subject on top of the stopwords: more function words, generic verbs,
# vague nouns and the boilerplate of web pages (menus, cookie banners, footers). Offline tags
# and topics are never made of them and the hashing embedder leaves them out of its features;
# keyword search keeps them ("privacy policy" is a fine query).
FILLER_WORDS: frozenset[str] = STOPWORDS | word_set(
    """
    able across actually almost already although always among amp another anyone anything
    anyway around back became become best better click com come comes cookie cookies
    copyright done either else enough etc even ever every first gave get gets getting give
    gives go goes going gone got home however htm html keep keeps kept know known knows last
    least less let like log login look looking looks lot lots made make makes many may menu
    might much must nbsp near need needs neither net never new next now often one org others
    otherwise page per perhaps please privacy put quite rather read really reserved rights
    said say says second see seem seems several shall share sign since something sometimes
    still subscribe take takes tell terms therefore thing things think though thought thus
    told took toward upon us use used uses using via want wants way whatever whether whose
    within without yet
    """
)

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
# Also the "has CJK" test (.search): each class this size costs ~3 ms to compile at cold start.
_CJK_RUN = re.compile(f"[{_CJK}]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_NAME_TOKEN = re.compile(r"[a-z][a-z0-9+#]*(?:[.\-][a-z0-9]+)*", re.UNICODE)
_COMBINING_LATIN = re.compile("[\u0300-\u036f]")
_STEMMER = Stemmer.Stemmer("english")
_TERM_CACHE: dict[str, str | tuple[str, ...]] = {}
_TERM_CACHE_LIMIT = 400_000


# --- the analyzer ------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case- and accent-folded form of `text` (NFKC, casefold, Latin diacritics stripped)."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed != text:
        text = unicodedata.normalize("NFC", _COMBINING_LATIN.sub("", decomposed))
    return text.replace("\u2019", "'")


def stem(word: str) -> str:
    """Snowball English stem of a folded word (see the module docstring)."""
    return str(_STEMMER.stemWord(word))


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
    if not word.isascii() and _CJK_RUN.search(word):
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
    term = _TERM_CACHE.get(word)
    if term is None:
        term = _analyze(word)
        if len(_TERM_CACHE) >= _TERM_CACHE_LIMIT:
            _TERM_CACHE.clear()
        _TERM_CACHE[word] = term
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
        terms = list(map(_TERM_CACHE.get, found))
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


def content_terms(text: str) -> list[str]:
    """`tokenize` without the terms of `FILLER_WORDS`: what a text is about."""
    return [t for t in tokenize(text) if t not in _FILLER_TERMS]


def query_terms(query: str | Iterable[str]) -> list[str]:
    """Unique terms of a query (a string or a list of words), in first-seen order."""
    terms = tokenize(query) if isinstance(query, str) else [t for q in query for t in tokenize(q)]
    return list(dict.fromkeys(terms))


_FILLER_TERMS = frozenset(t for word in FILLER_WORDS - STOPWORDS for t in tokenize(word))


# --- words for naming things -------------------------------------------------------------

# Words whose trailing "s" is not a plural.
_NOT_PLURAL = word_set(
    """analysis axis aws bias business chaos class css dns express gas glass gps ios js
    kubernetes less lens macos news nodejs physics process progress redis sass series species
    status tennis success windows"""
)
_NOT_PLURAL_ENDINGS = ("ss", "us", "ics", "ous", "sis")


def name_tokens(text: str) -> list[str]:
    """Lowercase word tokens that keep tech spellings (c++, c#, node.js, gpt-4): what offline
    tags and topics are made of."""
    return _NAME_TOKEN.findall(text.lower())


def singular_forms(word: str) -> tuple[str, ...]:
    """Plausible singulars of a lowercase `word`, most likely first ("caches" -> "cache",
    "cach"); the word itself when it is not an English plural."""
    if len(word) <= 3 or word in _NOT_PLURAL or not word.endswith("s"):
        return (word,)
    if word.endswith(_NOT_PLURAL_ENDINGS):
        return (word,)
    if word.endswith("ies") and len(word) > 4:
        return (word[:-3] + "y", word[:-1])
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return (word[:-2], word[:-1])
    return (word[:-1],)


def singular(word: str) -> str:
    """A light English singular: enough to make "apis"/"api" or "libraries"/"library" meet,
    while the result stays a word a person would write as a tag."""
    return singular_forms(word)[0]


# --- prose -------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARK = re.compile(r"^\s{0,3}(?:#{1,6}|>+|[-*+]|\d+[.)])\s+", re.MULTILINE)
_EMPHASIS = re.compile(r"\*{1,3}|`+|~~|(?<!\w)__?|__?(?!\w)")


def clean_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def strip_markdown(text: str) -> str:
    """Drop the markdown markup that reads badly in a title (#, >, emphasis, link targets)."""
    text = _LINE_MARK.sub("", _LINK.sub(r"\1", text))
    return clean_whitespace(_EMPHASIS.sub("", text))


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(clean_whitespace(text)) if s.strip()]


def neutralize_tags(text: str, names: Iterable[str]) -> str:
    """Defuse anything in untrusted `text` that looks like one of our prompt delimiters
    (`<name ...>` or `</name>`), so data cannot close its block and pose as instructions."""
    pattern = "|".join(re.escape(name) for name in names)
    return re.sub(rf"<(\s*/?\s*)({pattern})\b", r"&lt;\1\2", text, flags=re.IGNORECASE)


# --- truncation --------------------------------------------------------------------------


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def truncate(text: str, limit: int, measure: Callable[[str], int] = utf8_size) -> str:
    """The longest prefix of `text` whose `measure` (UTF-8 bytes unless told: bytes as stored,
    tokens) is at most `limit`. It cuts between characters, never inside one, so the result
    always encodes; `measure` must grow with the prefix."""
    if measure(text) <= limit:
        return text
    low, high = 0, len(text) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


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


# --- token counting ----------------------------------------------------------------------

# Exact counts come from `toktok` (toktok-rs on PyPI: a Rust BPE with cl100k/o200k compiled
# into the wheel, so it needs no download; imports in ~5 ms, loads the encoding in ~0.3 s once
# per process). Claude's tokenizer is not public: leave headroom in a budget meant for Claude.

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


# --- highlighting ------------------------------------------------------------------------

_SNIPPET_LEAD = 40
_ELLIPSIS = "\u2026"


def _match_spans(text: str, terms: set[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cjk_terms = [t for t in terms if _CJK_RUN.search(t)]
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


_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` (a JSON document) with every character `unstorable` refuses dropped from its
    string values: for a provider's answer, where there is no caller to refuse. Any surrogate
    code point in a `str` has no UTF-8 form (a pair only exists in UTF-16), so all go. Keys stay
    as they are: a model validates them, and a cleaned key could pass for a field's name."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.sub("", value)
    if isinstance(value, dict):
        return {key: storable(child) for key, child in value.items()}
    if isinstance(value, list):
        return [storable(child) for child in value]
    return value


def unstorable(value: Any) -> str | None:
    """Where `value` (a JSON document) holds a string no storage keeps, and why ("path:
    reason"), or None: an unpaired UTF-16 surrogate (JSON can carry one as an escape; it has
    no UTF-8 form) or U+0000 (Postgres's text and jsonb cannot hold it; refused on every
    backend, so both answer alike)."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        node, loc = stack.pop()
        why = None
        if isinstance(node, str):
            if "\x00" in node:
                why = "a string holds U+0000 (NUL), which no text is stored with"
            elif not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    why = "a string holds an unpaired surrogate (not valid Unicode)"
        elif isinstance(node, dict):
            stack += [(key, loc) for key in node]
            stack += [(child, [*loc, str(key)]) for key, child in node.items()]
        elif isinstance(node, list):
            stack += [(child, [*loc, str(index)]) for index, child in enumerate(node)]
        if why:
            return f"{'.'.join(loc) or 'body'}: {why}"
    return None

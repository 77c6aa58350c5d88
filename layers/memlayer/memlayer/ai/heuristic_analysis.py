"""The heuristic analyzer: a deterministic analysis from the text itself (headings, frequent
terms, the link's host, sentiment words). Fast, no network, no heavy dependencies: the analysis
when no Anthropic key is configured, and what Claude's analysis falls back to."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from memlayer.ai.analysis import (
    CATEGORIES,
    MAX_TITLE,
    MAX_TOPICS,
    Analysis,
    AnalysisOutcome,
)
from memlayer.ai.tags import TagIndex, reconcile_tags, span_key
from memlayer.text import (
    FILLER_WORDS,
    clean_whitespace,
    name_tokens,
    singular,
    split_sentences,
    strip_markdown,
    truncate_words,
    word_set,
)

# Stored on every analysis it makes (`analysis.model`); kept from when it was called "offline".
HEURISTIC_MODEL = "offline-v1"


_SHORT_TERMS = frozenset({"ai", "ml", "ui", "ux", "js", "c#", "c++", "f#", "os", "db", "vr", "ar"})

_CATEGORY_KEYWORDS: dict[str, frozenset[str]] = {
    "programming": word_set(
        """python javascript typescript java rust golang c++ c# ruby php kotlin swift code coding
        function api bug debug debugging compiler git github repository repo library framework
        sql database algorithm variable class method programming developer react django flask
        fastapi node.js nodejs npm pip package module refactor test unit-test pytest script
        syntax runtime async await lambda json yaml regex frontend backend endpoint stack
        exception error deploy deployment docker kubernetes terraform query schema"""
    ),
    "technology": word_set(
        """ai software hardware cloud computer internet app device smartphone tech gpu cpu chip
        robot robotics network server security cybersecurity blockchain crypto llm model
        machine-learning neural gpt openai anthropic claude chatbot browser extension linux
        windows macos android ios startup saas platform digital data automation vr ar
        semiconductor laptop"""
    ),
    "science": word_set(
        """science research study experiment physics chemistry biology astronomy space planet
        quantum molecule cell gene genome dna evolution climate theory hypothesis scientist
        laboratory nasa telescope particle neuroscience mathematics math equation paper journal
        peer-reviewed"""
    ),
    "business": word_set(
        """business company startup market marketing sales customer revenue strategy management
        ceo founder product growth brand hiring team leadership enterprise b2b b2c competitor
        pricing partnership negotiation meeting client contract"""
    ),
    "finance": word_set(
        """finance money invest investing investment stock stocks bond market fund etf portfolio
        bank banking loan mortgage interest rate inflation tax budget saving savings retirement
        dividend trading trader crypto bitcoin price earnings valuation debt credit"""
    ),
    "health": word_set(
        """health medical medicine doctor patient disease symptom treatment therapy exercise
        workout fitness diet nutrition sleep mental anxiety depression stress vaccine hospital
        drug clinical wellness weight heart blood cancer"""
    ),
    "education": word_set(
        """education learn learning course lesson student teacher school university college
        tutorial study exam homework curriculum lecture degree class training skill book
        reading"""
    ),
    "news": word_set(
        """news breaking report reported government election president minister policy law
        court war announced announcement official officials today yesterday reuters
        press"""
    ),
    "entertainment": word_set(
        """movie film music song album game gaming video tv series show episode actor actress
        celebrity netflix youtube spotify concert anime book novel podcast streaming
        trailer"""
    ),
    "personal": word_set(
        """my i'm family friend friends birthday wedding home personal diary journal feeling
        feel life relationship kid kids partner wife husband mom dad remember reminder"""
    ),
    "productivity": word_set(
        """productivity todo task tasks workflow habit habits focus note notes notion calendar
        schedule planning plan goal goals time-management organize organization checklist
        email inbox meeting prioritize"""
    ),
    "design": word_set(
        """design designer ui ux figma layout typography font color palette logo icon
        illustration prototype wireframe css style visual graphic interface accessibility
        branding"""
    ),
    "travel": word_set(
        """travel trip flight flights hotel airbnb vacation holiday destination tour tourist
        itinerary passport visa beach city country airport booking journey"""
    ),
    "food": word_set(
        """food recipe recipes cook cooking bake baking meal dinner lunch breakfast restaurant
        ingredient ingredients dish cuisine kitchen chef vegan vegetarian coffee wine
        taste"""
    ),
}
_CATEGORY_STEMS = {
    category: frozenset(singular(word) for word in words)
    for category, words in _CATEGORY_KEYWORDS.items()
}
_HOST_CATEGORY = {
    "github.com": "programming",
    "gitlab.com": "programming",
    "stackoverflow.com": "programming",
    "pypi.org": "programming",
    "npmjs.com": "programming",
    "docs.python.org": "programming",
    "developer.mozilla.org": "programming",
    "arxiv.org": "science",
    "nature.com": "science",
    "youtube.com": "entertainment",
    "netflix.com": "entertainment",
    "imdb.com": "entertainment",
    "spotify.com": "entertainment",
    "bloomberg.com": "finance",
    "reuters.com": "news",
    "bbc.co.uk": "news",
    "bbc.com": "news",
    "nytimes.com": "news",
    "figma.com": "design",
    "dribbble.com": "design",
    "booking.com": "travel",
    "tripadvisor.com": "travel",
    "allrecipes.com": "food",
}

_POSITIVE = word_set(
    """good great excellent amazing awesome love loved lovely like liked best better wonderful
    fantastic happy glad pleased enjoy enjoyed enjoyable beautiful brilliant helpful useful
    impressive success successful win won perfect recommend recommended easy fast elegant
    clean powerful delightful favorite favourite exciting excited nice solid reliable
    thanks thank grateful improve improved improvement clear fun"""
)
_NEGATIVE = word_set(
    """bad terrible awful horrible hate hated worst worse poor disappointing disappointed
    broken bug buggy crash crashed crashes error errors fail failed failure fails slow
    annoying frustrating frustrated confusing confused problem problems issue issues wrong
    difficult hard painful ugly useless sad angry upset scam risk risky dangerous worried
    concern concerns unfortunately sucks regret lost loss expensive"""
)
_NEGATIONS = frozenset({"not", "no", "never", "isn't", "wasn't", "don't", "didn't", "without"})
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(slots=True)
class _Terms:
    words: list[tuple[str, float]]  # (term, score), best first
    phrases: list[tuple[str, float]]  # bigrams "machine learning", best first
    stems: Counter[str]
    keys: Counter[str]  # tag keys of 1-3 word spans (when asked), for spotting existing tags
    word_count: int


def _collect_terms(text: str, title: str, *, span_keys: bool = False) -> _Terms:
    tokens = name_tokens(text)
    title_stems = {singular(t) for t in name_tokens(title)}
    lead_stems = {singular(t) for t in tokens[:40]}

    def usable(token: str) -> bool:
        if token in FILLER_WORDS or token.isdigit():
            return False
        return len(token) >= 3 or token in _SHORT_TERMS

    stems: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    bigrams: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    previous: str | None = None
    for position, token in enumerate(tokens):
        stem = singular(token)
        if span_keys:
            for span in (1, 2, 3):
                if position + 1 >= span:
                    keys[span_key(tokens[position + 1 - span : position + 1])] += 1
        if not usable(token) or len(token) > 40:
            previous = None
            continue
        stems[stem] += 1
        first_seen.setdefault(stem, position)
        if previous is not None:
            bigrams[f"{previous} {stem}"] += 1
            first_seen.setdefault(f"{previous} {stem}", position)
        previous = stem

    def score(term: str, count: int) -> float:
        parts = term.split()
        bonus = 1.5 if all(p in title_stems for p in parts) else 0.0
        bonus += 0.5 if all(p in lead_stems for p in parts) else 0.0
        return count + bonus

    words = sorted(
        ((w, score(w, c)) for w, c in stems.items()),
        key=lambda item: (-item[1], first_seen[item[0]]),
    )
    phrases = sorted(
        ((b, score(b, c)) for b, c in bigrams.items() if c >= 2),
        key=lambda item: (-item[1], first_seen[item[0]]),
    )
    return _Terms(words, phrases, stems, keys, len(tokens))


def _title(text: str, title_hint: str | None, url: str | None) -> str:
    if title_hint and clean_whitespace(title_hint):
        return truncate_words(clean_whitespace(title_hint), MAX_TITLE)
    head = text[:5000]
    heading = _HEADING.search(head)
    if heading and strip_markdown(heading.group(1)):
        return truncate_words(strip_markdown(heading.group(1)), 120)
    for line in head.splitlines():
        line = strip_markdown(line)
        if not line:
            continue
        sentences = split_sentences(line)
        first = sentences[0] if sentences and len(sentences[0]) >= 12 else line
        return truncate_words(first.rstrip(" .:;,"), 100)
    if url:
        parts = urlsplit(url)
        path = [p for p in parts.path.split("/") if p]
        label = path[-1].replace("-", " ").replace("_", " ") if path else ""
        host = parts.netloc.removeprefix("www.")
        if host:
            return truncate_words(f"{host}: {label}" if label else host, MAX_TITLE)
    return "Untitled memory"


def _description(text: str, title: str) -> str:
    body = strip_markdown(_HEADING.sub(" ", text[:8000]))
    sentences = split_sentences(body)
    if sentences and clean_whitespace(sentences[0]).rstrip(" .") == title.rstrip(" .…"):
        sentences = sentences[1:]
    out = ""
    for sentence in sentences[:3]:
        candidate = f"{out} {sentence}".strip()
        if out and len(candidate) > 300:
            break
        out = candidate
        if len(out) >= 160:
            break
    return truncate_words(out, 300) if out else ""


def _category(stems: Counter[str], url: str | None) -> tuple[str, int]:
    scores: dict[str, float] = {}
    for category, words in _CATEGORY_STEMS.items():
        hits = sum(count for stem, count in stems.items() if stem in words)
        if hits:
            scores[category] = float(hits)
    if url:
        host = urlsplit(url).netloc.lower().removeprefix("www.")
        hinted = _HOST_CATEGORY.get(host) or next(
            (c for h, c in _HOST_CATEGORY.items() if host.endswith("." + h)), None
        )
        if hinted:
            scores[hinted] = scores.get(hinted, 0.0) + 3.0
    if not scores:
        return "other", 0
    # Ties resolve by the fixed category order, so the result is deterministic.
    best = max(CATEGORIES[:-1], key=lambda c: (scores.get(c, 0.0), -CATEGORIES.index(c)))
    hits = int(scores.get(best, 0.0))
    return (best, hits) if hits >= 2 or len(scores) == 1 else ("other", hits)


def _sentiment(text: str) -> str:
    tokens = name_tokens(text[:20000].replace("n't", " not"))
    positive = negative = 0
    for i, token in enumerate(tokens):
        polarity = 1 if token in _POSITIVE else -1 if token in _NEGATIVE else 0
        if not polarity:
            continue
        if any(t in _NEGATIONS for t in tokens[max(0, i - 2) : i]):
            polarity = -polarity
        if polarity > 0:
            positive += 1
        else:
            negative += 1
    threshold = 1 + len(tokens) // 150
    balanced = abs(positive - negative) < max(positive, negative) / 2
    if positive >= threshold and negative >= threshold and balanced:
        return "mixed"
    if positive - negative >= threshold:
        return "positive"
    if negative - positive >= threshold:
        return "negative"
    return "neutral"


def _taggable(word: str) -> bool:
    """Sentiment words and -ly adverbs describe tone, not subject: keep them out of tags."""
    return not (word in _POSITIVE or word in _NEGATIVE or (word.endswith("ly") and len(word) > 5))


class HeuristicAnalyzer:
    """Deterministic heuristics: fast, no network, no heavy dependencies."""

    model = HEURISTIC_MODEL
    remote = False

    def analyze_sync(
        self,
        text: str,
        *,
        title_hint: str | None = None,
        url: str | None = None,
        existing_tags: Iterable[str] | TagIndex = (),
    ) -> Analysis:
        text = text or ""
        title = _title(text, title_hint, url) or "Untitled memory"
        description = _description(text, title)
        index = existing_tags if isinstance(existing_tags, TagIndex) else TagIndex(existing_tags)
        terms = _collect_terms(text[:200_000], title, span_keys=bool(len(index)))

        proposed: list[str] = []
        # 1. The user's own tags that the text mentions, most mentioned first.
        for key, _ in terms.keys.most_common():
            match = index.lookup(key)
            if match and match not in proposed:
                proposed.append(match)
        # 2. Repeated two-word phrases, then the best words not already inside a phrase.
        phrases = [p for p, _ in terms.phrases[:3]]
        in_phrases = {part for phrase in phrases for part in phrase.split()}
        words = [(w, s) for w, s in terms.words if w not in in_phrases and _taggable(w)]
        frequent = [w for w, s in words if s >= 2]
        filler = [w for w, _ in words if w not in frequent]
        proposed.extend(p.replace(" ", "-") for p in phrases)
        proposed.extend((frequent + filler[: max(0, 4 - len(frequent))])[:6])
        tags = reconcile_tags(proposed, index, limit=6)

        topics = phrases + [w for w, _ in words[: max(0, 5 - len(phrases))]]

        category, hits = _category(terms.stems, url)
        confidence = 0.3
        confidence += 0.05 if category != "other" else 0.0
        confidence += 0.05 if hits >= 4 else 0.0
        confidence += 0.05 if terms.word_count >= 50 else 0.0
        confidence += 0.05 if len(tags) >= 3 else 0.0
        return Analysis(
            title=title,
            description=description,
            tags=tags,
            category=category,
            sentiment=_sentiment(text),
            key_topics=topics[:MAX_TOPICS],
            confidence=round(min(confidence, 0.5), 2),
            model=HEURISTIC_MODEL,
        )

    async def analyze(
        self,
        text: str,
        *,
        title_hint: str | None = None,
        url: str | None = None,
        existing_tags: Iterable[str] = (),
    ) -> AnalysisOutcome:
        analysis = self.analyze_sync(
            text, title_hint=title_hint, url=url, existing_tags=existing_tags
        )
        return AnalysisOutcome(analysis=analysis)

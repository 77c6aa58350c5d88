"""What a memory's analysis is: title, description, tags, category, sentiment and topics, the
outcome of one analysis, and the `Analyzer` interface.

The analyzers: `memlayer.ai.claude_analysis.ClaudeAnalyzer` (Claude through a forced tool call)
and `memlayer.ai.heuristic_analysis.HeuristicAnalyzer` (deterministic heuristics, no network:
the analysis with no key, and Claude's fallback). `memlayer.ai.analyzers.get_analyzer(settings)`
picks one per container.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from memlayer.ai.tags import normalize_tag
from memlayer.lazy_model import LazyModel
from memlayer.text import clean_whitespace, storable

Category = Literal[
    "technology",
    "programming",
    "science",
    "business",
    "finance",
    "health",
    "education",
    "news",
    "entertainment",
    "personal",
    "productivity",
    "design",
    "travel",
    "food",
    "other",
]
Sentiment = Literal["positive", "neutral", "negative", "mixed"]
CATEGORIES: tuple[str, ...] = get_args(Category)
SENTIMENTS: tuple[str, ...] = get_args(Sentiment)

MAX_TITLE = 200
MAX_DESCRIPTION = 1000
MAX_TAGS = 10
MAX_TOPICS = 8
MAX_TOPIC_LENGTH = 100


class Analysis(LazyModel):
    """The analysis stored on a memory. Tags are normalised (lowercase, hyphenated)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str = Field(max_length=MAX_DESCRIPTION)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    category: Category
    sentiment: Sentiment
    key_topics: list[str] = Field(default_factory=list, max_length=MAX_TOPICS)
    confidence: float = Field(ge=0.0, le=1.0)
    model: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # A provider's JSON may carry a NUL or a lone surrogate as an escape: no backend stores
        # them (Postgres refuses the save), so they are dropped rather than failing the record.
        return storable(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _normalize_tags(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out: list[str] = []
        for tag in value:
            if not isinstance(tag, str):
                return value  # let the type check report it
            norm = normalize_tag(tag)
            if norm and norm not in out:
                out.append(norm)
        return out

    @field_validator("key_topics", mode="before")
    @classmethod
    def _clean_topics(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out: list[str] = []
        for topic in value:
            if not isinstance(topic, str):
                return value
            topic = clean_whitespace(topic)[:MAX_TOPIC_LENGTH]
            if topic and topic.lower() not in (t.lower() for t in out):
                out.append(topic)
        return out


@dataclass(frozen=True, slots=True)
class AnalysisOutcome:
    """One analysis and what it cost. `provider_calls` counts `messages.create` invocations (the
    SDK's internal retries are not counted separately); `fallback_reason` is set when a provider
    was asked but the heuristic analysis was used instead."""

    analysis: Analysis
    input_tokens: int = 0
    output_tokens: int = 0
    provider_calls: int = 0
    fallback_reason: str | None = None


class Analyzer(Protocol):
    model: str
    remote: bool  # waits on a provider over the network (a local one answers in milliseconds)

    async def analyze(
        self,
        text: str,
        *,
        title_hint: str | None = None,
        url: str | None = None,
        existing_tags: Iterable[str] = (),
    ) -> AnalysisOutcome: ...

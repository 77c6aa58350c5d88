"""Which analyzer a container uses: Claude when an Anthropic key is configured, the heuristic
analyzer otherwise."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from memlayer import secrets
from memlayer.ai.claude_analysis import ClaudeAnalyzer
from memlayer.ai.heuristic_analysis import HeuristicAnalyzer
from memlayer.ai.resilience import breaker_for

if TYPE_CHECKING:
    from memlayer.settings import Settings


@lru_cache(maxsize=8)
def _build_analyzer(
    api_key: str | None,
    model: str,
    base_url: str | None,
    timeout: float,
    max_retries: int,
) -> ClaudeAnalyzer | HeuristicAnalyzer:
    if not api_key:
        return HeuristicAnalyzer()
    return ClaudeAnalyzer(
        api_key,
        model,
        base_url,
        timeout=timeout,
        max_retries=max_retries,
        breaker=breaker_for("anthropic"),
    )


def get_analyzer(settings: Settings) -> ClaudeAnalyzer | HeuristicAnalyzer:
    """The container's analyzer: Claude when ANTHROPIC_API_KEY is set, heuristic otherwise."""
    secret = secrets.value("anthropic_api_key", settings)
    key = secret.get_secret_value() if secret else None
    return _build_analyzer(
        key,
        settings.analysis_model,
        settings.anthropic_base_url,
        float(settings.provider_timeout_seconds),
        int(settings.provider_max_retries),
    )

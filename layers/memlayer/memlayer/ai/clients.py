"""The one factory for the providers' SDK clients: Anthropic (analysis, chat) and OpenAI
(embeddings, chat). Callers hold each client in a `PerLoop` (ai/resilience.py): its httpx pool
belongs to the event loop it was built on."""

from __future__ import annotations

from typing import Any, Literal

Provider = Literal["anthropic", "openai"]


def provider_client(
    provider: Provider,
    *,
    api_key: str,
    base_url: str | None,
    timeout: float,
    max_retries: int,
    http_client: Any = None,
) -> Any:
    """A new async client of `provider`'s SDK (`http_client`, an httpx.AsyncClient, when
    given: tests route it to their fakes)."""
    options: dict[str, Any] = {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": timeout,
        "max_retries": max_retries,
        "http_client": http_client,
    }
    if provider == "anthropic":
        import anthropic  # lazy: ~1-2 s of import time kept off cold starts that never call it

        return anthropic.AsyncAnthropic(**options)
    import openai  # lazy, as above

    return openai.AsyncOpenAI(**options)

"""Health: dependencies reachable, and which AI providers are live or offline."""

from __future__ import annotations

import time
from functools import lru_cache
from importlib import resources

from memlayer import secrets
from memlayer.api.health import Health
from memlayer.settings import get_settings
from memlayer.storage import get_store

CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, Health]] = {}


async def check() -> Health:
    cached = _cache.get("health")
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    settings = get_settings()
    store = get_store()
    table = "ok" if await store.ping() else "unreachable"
    services = {
        "storage": store.backend,  # dynamodb or supabase
        "table": table,  # the DynamoDB table or the Postgres database
        "analysis": "anthropic" if secrets.configured("anthropic_api_key", settings) else "offline",
        "embeddings": settings.resolved_embeddings_provider,
        "chat": settings.resolved_chat_provider,
    }
    result = Health(status="healthy" if table == "ok" else "degraded", services=services)
    _cache["health"] = (time.monotonic(), result)
    return result


@lru_cache(maxsize=1)
def openapi_document() -> bytes:
    return resources.files("memlayer").joinpath("openapi.json").read_bytes()

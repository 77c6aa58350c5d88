"""Data access. `get_store()` and `get_search_index()` return the backend `STORAGE_BACKEND`
names (dynamodb or supabase), built once per container."""

from __future__ import annotations

from functools import lru_cache

from memlayer.settings import get_settings
from memlayer.storage.base import SearchIndex, Store


@lru_cache(maxsize=1)
def get_store() -> Store:
    # lazy: a container loads only its configured backend (postgres.py pulls in asyncpg and
    # numpy), and only on first use, not during init
    if get_settings().storage_backend == "supabase":
        from memlayer.storage.postgres import PostgresStore

        return PostgresStore.from_settings()
    from memlayer.storage.dynamo import DynamoStore

    return DynamoStore.from_settings()


@lru_cache(maxsize=1)
def get_search_index() -> SearchIndex:
    # lazy, as in `get_store`: the DynamoDB index pulls in numpy
    store = get_store()
    if get_settings().storage_backend == "supabase":
        from memlayer.storage.postgres import PostgresSearch, PostgresStore

        assert isinstance(store, PostgresStore)
        return PostgresSearch(store)
    from memlayer.storage.dynamo import DynamoStore
    from memlayer.storage.dynamo_search import InMemorySearch

    assert isinstance(store, DynamoStore)
    return InMemorySearch(store)


__all__ = ["SearchIndex", "Store", "get_search_index", "get_store"]

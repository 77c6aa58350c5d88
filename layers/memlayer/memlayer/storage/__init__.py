"""Data access. `get_store()` returns the configured implementation of `Store`."""

from __future__ import annotations

from functools import lru_cache

from memlayer.storage.base import Store


@lru_cache(maxsize=1)
def get_store() -> Store:
    from memlayer.storage.dynamo import DynamoStore

    return DynamoStore.from_settings()


__all__ = ["Store", "get_store"]

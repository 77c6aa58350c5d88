"""What the records of one worker invocation share: a value looked up once for the whole batch
(the user's live WebSocket connections, their tag vocabulary) instead of once per record.

`memlayer.worker` opens the scope around each batch. Outside one (HTTP functions, services
called directly) every lookup runs each time, as before."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_shared: contextvars.ContextVar[dict[Hashable, asyncio.Future[Any]] | None] = (
    contextvars.ContextVar("memlayer_invocation", default=None)
)


@contextmanager
def scope() -> Iterator[None]:
    """Lookups inside (and in the tasks started inside) share their values."""
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


async def once(key: Hashable, lookup: Callable[[], Awaitable[T]]) -> T:
    """`lookup()`'s value, looked up once per invocation for `key`: every record asking gets
    the same object. A lookup that failed is not shared: each record asking then looks up
    on its own, so a failure is only ever its own."""
    shared = _shared.get()
    if shared is None:
        return await lookup()
    future = shared.get(key)
    if future is None:
        future = shared[key] = asyncio.ensure_future(lookup())
    try:
        value: T = await asyncio.shield(future)
    except Exception:
        if shared.get(key) is future:
            del shared[key]
        return await lookup()
    return value

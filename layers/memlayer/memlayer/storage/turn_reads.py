"""Reads asked for in the same turn of the event loop, made together: the records of a worker's
batch each read their memory and job first, and both backends answer such reads with one
request (DynamoDB a BatchGetItem, Postgres one statement per user) instead of one each. If
the batched read fails, each key is read on its own, so each caller gets its own outcome (and
the error, if it is one, from its own read)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TurnReads(Generic[K, V]):
    """`read(key)` waits for the end of the current loop turn; then the keys asked for in it
    (a key asked twice is read once) go to `read_many` — one call per `group` of keys, so a
    batch never mixes what must be read apart, such as two users' rows — or, for a group of
    one or when `read_many` fails, to `read_one` each. `read_many` answers every key it got."""

    def __init__(
        self,
        read_many: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        read_one: Callable[[K], Awaitable[V]],
        group: Callable[[K], Hashable] = lambda _: None,
    ) -> None:
        self._read_many = read_many
        self._read_one = read_one
        self._group = group
        # per event loop: the local cloud runs functions on several threads, each with its own
        self._pending: dict[asyncio.AbstractEventLoop, dict[K, asyncio.Future[V]]] = {}
        self._reading: set[asyncio.Task[None]] = set()

    async def read(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = {}
            loop.call_soon(self._start, loop)
        future = pending.get(key)
        if future is None:
            future = pending[key] = loop.create_future()
        return await asyncio.shield(future)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        groups: dict[Hashable, dict[K, asyncio.Future[V]]] = {}
        for key, future in self._pending.pop(loop).items():
            groups.setdefault(self._group(key), {})[key] = future
        for pending in groups.values():
            task = loop.create_task(self._read_group(pending))
            self._reading.add(task)  # referenced until done, so it is not collected
            task.add_done_callback(self._reading.discard)

    async def _read_group(self, pending: dict[K, asyncio.Future[V]]) -> None:
        found: Mapping[K, V] | None = None
        if len(pending) > 1:
            with contextlib.suppress(Exception):  # then each key on its own, below
                found = await self._read_many(list(pending))
        if found is None:
            await asyncio.gather(*(self._read_alone(k, f) for k, f in pending.items()))
            return
        for key, future in pending.items():
            future.set_result(found[key])

    async def _read_alone(self, key: K, future: asyncio.Future[V]) -> None:
        try:
            future.set_result(await self._read_one(key))
        except Exception as exc:
            future.set_exception(exc)

"""One event loop per thread, kept for the container's lifetime, so SDK clients cached across
invocations stay bound to a live loop. Lambda runs one thread; the local cloud runs several
functions in one process, each invocation on a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # again each time: an `asyncio.run` in between unsets it
    return loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    return thread_loop().run_until_complete(coro)

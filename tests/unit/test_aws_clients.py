"""Clients are built once per container, even when its first requests ask at the same time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from memlayer.aws import BuiltOnce


def test_threads_asking_at_once_share_one_build_per_key() -> None:
    builds: list[str] = []
    start = threading.Barrier(8)

    @BuiltOnce
    def build(service: str) -> object:
        builds.append(service)
        time.sleep(0.05)  # a client takes a while to build: long enough for the others to ask
        return object()

    def ask(i: int) -> object:
        start.wait()
        return build("sqs" if i % 2 else "s3")

    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(ask, range(8)))

    assert sorted(builds) == ["s3", "sqs"]
    assert len({id(c) for c in clients}) == 2
    build.cache_clear()
    assert build("sqs") is not clients[1] and builds.count("sqs") == 2

"""The request rate limiter (GCRA, one conditional write) against moto's DynamoDB, on an
explicit clock: no window boundary lets more than the limit through, and what it tells a
refused caller to wait is exactly when the next request passes."""

from __future__ import annotations

import asyncio
from typing import Any

from memlayer.ids import new_id

LIMIT = 10
PERIOD = 60.0


def take(store: Any, key: str, now: float, owner: str | None = None) -> float:
    wait: float = asyncio.run(
        store.take_rate(key, limit=LIMIT, period=PERIOD, owner=owner, now=now)
    )
    return wait


def test_no_burst_across_a_minute_boundary(cloud: object) -> None:
    from memlayer.storage import get_store

    store, key = get_store(), f"ip#{new_id()}"
    start = 1_800_000_000 - 0.5  # half a second before a minute starts
    passed = [take(store, key, start + i * 0.01) == 0 for i in range(LIMIT * 2)]
    # the old fixed windows let LIMIT through before :00 and LIMIT more right after
    after = [take(store, key, start + 1 + i * 0.01) == 0 for i in range(LIMIT * 2)]
    assert sum(passed) == LIMIT
    assert sum(after) == 0


def test_the_wait_is_exact_and_the_rate_is_steady(cloud: object) -> None:
    from memlayer.storage import get_store

    store, key, user = get_store(), f"user#{new_id()}", f"user-{new_id()}"
    now = 1_800_000_000.0
    assert all(take(store, key, now, owner=user) == 0 for _ in range(LIMIT))
    wait = take(store, key, now, owner=user)
    assert abs(wait - PERIOD / LIMIT) < 1e-6
    assert take(store, key, now + wait - 0.01, owner=user) > 0
    assert take(store, key, now + wait, owner=user) == 0
    # then one request per interval, for ten minutes: never more than LIMIT in any minute
    times = [now + wait + k * (PERIOD / LIMIT) / 2 for k in range(1, 200)]
    granted = [t for t in times if take(store, key, t, owner=user) == 0]
    for t in granted:
        assert sum(1 for other in granted if t - PERIOD < other <= t) <= LIMIT
    assert len(granted) >= 95  # about one every interval of the ~100 intervals


def test_an_idle_bucket_refills_to_the_limit_and_no_more(cloud: object) -> None:
    from memlayer.storage import get_store

    store, key = get_store(), f"ip#{new_id()}"
    now = 1_800_000_000.0
    take(store, key, now)
    later = now + 3_600  # an hour idle: the bucket holds LIMIT again, not 60 x LIMIT
    assert sum(take(store, key, later) == 0 for _ in range(LIMIT * 3)) == LIMIT

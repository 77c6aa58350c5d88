"""Per-user quotas (resolved from defaults and admin overrides) and request-rate limits."""

from __future__ import annotations

import asyncio
import math
import time

from memlayer.errors import QuotaExceeded, RateLimited
from memlayer.models import Limits
from memlayer.settings import get_settings
from memlayer.storage import get_store
from memlayer.storage.base import Profile
from memlayer.storage.errors import LimitReached

_LIMIT_WORDING = {
    "daily_writes": "daily write limit reached",
    "max_memories": "memory count limit reached",
    "max_bytes": "storage limit reached",
    "memory_size": "memory is larger than the storage limit",
}


def default_limits() -> Limits:
    settings = get_settings()
    return Limits(
        daily_writes=settings.default_daily_writes,
        max_memories=settings.default_max_memories,
        max_bytes=settings.default_max_bytes,
    )


def limits_of(profile: Profile) -> Limits:
    return default_limits().overridden(profile.limits_override)


def quota_exceeded(exc: LimitReached) -> QuotaExceeded:
    """The HTTP error for a limit storage refused a write at (429 with Retry-After)."""
    return QuotaExceeded(_LIMIT_WORDING[exc.which], retry_after=exc.retry_after)


async def limits_for(user_id: str) -> Limits:
    return limits_of(await get_store().get_profile(user_id))


async def check_rate(user_id: str, client_ip: str) -> None:
    """Per-user and per-IP request rates (each a token bucket refilled evenly over a minute,
    counted atomically in the store); 0 disables a limit."""
    settings = get_settings()
    now = time.time()
    store = get_store()
    checks = (
        (f"user#{user_id}", settings.rate_limit_per_user_per_min, user_id),
        (f"ip#{client_ip}", settings.rate_limit_per_ip_per_min, None),
    )
    active = [check for check in checks if check[1]]
    waits = await asyncio.gather(
        *(
            store.take_rate(key, limit=limit, period=60, owner=owner, now=now)
            for key, limit, owner in active
        )
    )
    for (key, limit, _), wait in zip(active, waits, strict=True):
        if wait > 0:
            raise RateLimited(
                f"more than {limit} requests a minute per {key.split('#')[0]}",
                retry_after=math.ceil(wait),
            )

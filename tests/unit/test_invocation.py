"""`memlayer.invocation.once`: the records of one invocation share a look-up; a failed one is
not shared."""

from __future__ import annotations

import asyncio

import pytest

from memlayer import invocation


def test_records_of_one_invocation_share_a_look_up_and_outside_one_nothing_is_shared() -> None:
    looked_up: list[str] = []

    async def look_up() -> list[str]:
        looked_up.append("call")
        await asyncio.sleep(0)
        return ["conn-1"]

    async def batch() -> list[list[str]]:
        with invocation.scope():
            return list(
                await asyncio.gather(*(invocation.once(("conns", "u1"), look_up) for _ in range(5)))
            )

    values = asyncio.run(batch())
    assert looked_up == ["call"]
    assert all(value is values[0] for value in values)  # the same object
    asyncio.run(batch())
    assert len(looked_up) == 2  # a new invocation looks up again

    async def unscoped() -> None:
        await asyncio.gather(*(invocation.once(("conns", "u1"), look_up) for _ in range(3)))

    asyncio.run(unscoped())
    assert len(looked_up) == 5


def test_a_failed_shared_look_up_is_made_again_by_each_record_on_its_own() -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) == 1:
            raise ConnectionError("transient")
        return "tags"

    async def batch() -> list[str]:
        with invocation.scope():
            return list(await asyncio.gather(*(invocation.once("tags", flaky) for _ in range(3))))

    assert asyncio.run(batch()) == ["tags"] * 3  # nobody failed for the shared attempt
    assert len(attempts) == 4  # the shared one, then each record's own


def test_a_record_whose_own_look_up_fails_fails_alone() -> None:
    async def broken() -> str:
        raise ConnectionError("down")

    async def batch() -> None:
        with invocation.scope():
            await invocation.once("k", broken)

    with pytest.raises(ConnectionError):
        asyncio.run(batch())

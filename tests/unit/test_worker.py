"""memlayer.worker.BatchCall: records of one batch share one call and each gets its own
outcome back."""

from __future__ import annotations

import asyncio

import pytest

from memlayer.messages import PoisonMessage
from memlayer.worker import BatchCall


def _run_batch(call, makers):
    async def scenario():
        batch = BatchCall(len(makers), call)
        return await asyncio.gather(*(batch.submit(m) for m in makers), return_exceptions=True)

    return asyncio.run(scenario())


def _item(value, *, after=0.0):
    async def make():
        await asyncio.sleep(after)
        return value

    return make


async def _poison():
    raise PoisonMessage("unreadable")


def test_one_call_for_the_batch_and_each_record_its_own_outcome():
    calls = []

    async def call(items):
        calls.append(items)
        return {1: RuntimeError("c failed")}

    outcomes = _run_batch(call, [_item("a"), _poison, _item("c"), _item("d")])
    assert calls == [["a", "c", "d"]]  # the unreadable record dropped out of the call
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], PoisonMessage)
    assert isinstance(outcomes[2], RuntimeError) and str(outcomes[2]) == "c failed"


def test_a_failed_call_fails_every_record_in_it_and_no_record_waits_forever():
    async def call(items):
        raise ConnectionError("provider down")

    outcomes = _run_batch(call, [_item("a"), _item("b")])
    assert [type(o) for o in outcomes] == [ConnectionError, ConnectionError]
    assert [type(o) for o in _run_batch(call, [_poison, _poison])] == [PoisonMessage] * 2


@pytest.mark.parametrize("size", [1, 5])
def test_nothing_runs_before_every_record_submitted(size):
    seen = []

    async def call(items):
        seen.append(len(items))
        return {}

    # the slowest record is waited for, however late it comes
    makers = [_item(i, after=0.05 if i == size - 1 else 0.0) for i in range(size)]
    assert _run_batch(call, makers) == [None] * size
    assert seen == [size]


def test_a_record_with_nothing_to_submit_drops_out_without_failing():
    calls = []

    async def call(items):
        calls.append(items)
        return {}

    assert _run_batch(call, [_item(None), _item("b", after=0.01), _item(None)]) == [None] * 3
    assert calls == [["b"]]
    assert _run_batch(call, [_item(None), _item(None)]) == [None, None]
    assert calls == [["b"]]  # nothing to call with

"""The search index snapshot's format: what is written is read back exactly, and anything cut
short, altered or another user's is refused rather than indexed."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from memlayer.ids import new_id, utcnow
from memlayer.models import MemoryRecord
from memlayer.storage.index_snapshot import FORMAT, Snapshot, decode, encode


def _record(user_id: str, text: str) -> MemoryRecord:
    now = utcnow()
    return MemoryRecord(
        user_id=user_id,
        id=new_id(),
        content=text,
        kind="note",
        status="ready",
        occurred_at=now,
        created_at=now,
        updated_at=now,
        content_hash=str(hash(text)),
        size_bytes=len(text),
    )


def _snapshot(user_id: str = "u@x") -> Snapshot:
    records = [_record(user_id, f"note {i} ü") for i in range(5)]
    rng = np.random.default_rng(7)
    vectors = {r.id: rng.standard_normal(8).astype("<f2") for r in records[::2]}
    return Snapshot(user_id, "gen", 42, 1_796_000_000.25, "hash-v2/8", 8, records, vectors)


def test_a_snapshot_reads_back_exactly() -> None:
    snapshot = _snapshot()
    back = decode(encode(snapshot), "u@x")
    assert back.records == snapshot.records
    assert (back.generation, back.version, back.synced_at) == ("gen", 42, 1_796_000_000.25)
    assert (back.space, back.dimensions) == ("hash-v2/8", 8)
    assert back.vectors.keys() == snapshot.vectors.keys()
    for memory_id, vector in snapshot.vectors.items():
        assert back.vectors[memory_id].tobytes() == vector.tobytes()
    empty = Snapshot("u@x", "gen", 1, 0.0, "s", 8, [], {})
    assert decode(encode(empty), "u@x").records == []


def test_what_is_not_a_whole_snapshot_of_the_user_is_refused() -> None:
    data = encode(_snapshot())
    with pytest.raises(ValueError, match="another user"):
        decode(data, "someone-else")
    with pytest.raises(ValueError):
        decode(data[:-3], "u@x")  # the vectors cut short
    with pytest.raises(ValueError):
        decode(data + b"\0\0", "u@x")
    with pytest.raises(ValueError):
        decode(b"not a snapshot", "u@x")
    records_at = len(FORMAT) + 4 + int.from_bytes(data[len(FORMAT) : len(FORMAT) + 4], "little")
    garbled = data[: records_at + 4] + b"\xff" * 8 + data[records_at + 12 :]
    with pytest.raises((ValueError, zlib.error)):  # what `read` takes for "not usable"
        decode(garbled, "u@x")
    # records of another user inside a snapshot stamped as this user's
    foreign = _snapshot("u@x")
    foreign.records[1] = _record("intruder", "not theirs")
    with pytest.raises(ValueError, match="another user"):
        decode(encode(foreign), "u@x")

"""A user's warm search index persisted as one object, so that a new container starts from it
instead of reading every memory and vector item of the user (the DynamoDB backend's cold load:
at 10,000 memories 21 Query pages, 26 MB of DynamoDB JSON).

A snapshot is the state a warm index had after a sync: the user's records and the vectors it
indexed (float16, as stored), stamped with the profile's `generation` and `data_version` and
the time that sync started reading. It is a cache and never trusted as current: the loader
(storage/dynamo_search.py) takes it only for the same user, generation and embedding space,
and then brings it up to date from the change log exactly as a warm index is (a snapshot too
old for the log, or too far behind it, is not used). It lives in the uploads bucket at
`blobs.index_snapshot_key(user)`; deleting a memory deletes it, erasing the user deletes the
folder, and the bucket's lifecycle expires one nothing rewrote.

Reading and writing it are best effort: a snapshot that is missing, unreadable or malformed
only means the slower load from the table."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import TypeAdapter

from memlayer import aws, blobs
from memlayer.models import MemoryRecord
from memlayer.observability import logger

if TYPE_CHECKING:
    import numpy as np

FORMAT = b"memlayer-index-snapshot-1\n"
_HEADER_LENGTH = struct.Struct("<I")
_RECORDS = TypeAdapter(list[MemoryRecord])
# A snapshot larger than this is not read (100k memories are ~100 MB).
MAX_BYTES = 1 << 30
# S3 answers AccessDenied instead of NoSuchKey to a caller without s3:ListBucket, which the
# search functions do not get (it would list every user's folder).
_ABSENT = {"NoSuchKey", "404", "NotFound", "AccessDenied", "403"}


@dataclass
class Snapshot:
    user_id: str
    generation: str  # PROFILE.generation the state belongs to
    version: int  # PROFILE.data_version read before the sync
    synced_at: float  # epoch seconds when the sync started reading
    space: str  # embedding space of the vectors
    dimensions: int
    records: list[MemoryRecord]
    vectors: dict[str, np.ndarray]  # memory id -> float16 row, for the memories that had one


def encode(snapshot: Snapshot) -> bytes:
    """FORMAT, a 4-byte header length, the JSON header, the records (zlib-compressed JSON), a
    byte per record (1: it has a vector), then the vectors as one float16 matrix."""
    import numpy as np  # lazy: the functions that only delete a snapshot never load it

    records = zlib.compress(_RECORDS.dump_json(snapshot.records), 1)
    rows = [snapshot.vectors[r.id] for r in snapshot.records if r.id in snapshot.vectors]
    has_vector = np.fromiter(
        (r.id in snapshot.vectors for r in snapshot.records), bool, len(snapshot.records)
    )
    matrix = (
        np.stack(rows).astype("<f2") if rows else np.zeros((0, snapshot.dimensions), dtype="<f2")
    )
    if matrix.shape[1] != snapshot.dimensions:
        raise ValueError(f"vectors have {matrix.shape[1]} dimensions, not {snapshot.dimensions}")
    header = json.dumps(
        {
            "user_id": snapshot.user_id,
            "generation": snapshot.generation,
            "version": snapshot.version,
            "synced_at": snapshot.synced_at,
            "space": snapshot.space,
            "dimensions": snapshot.dimensions,
            "records": len(snapshot.records),
            "records_bytes": len(records),
            "vectors": len(rows),
        }
    ).encode()
    return b"".join(
        (
            FORMAT,
            _HEADER_LENGTH.pack(len(header)),
            header,
            records,
            has_vector.astype(np.uint8).tobytes(),
            matrix.tobytes(),
        )
    )


def decode(data: bytes, user_id: str) -> Snapshot:
    """The snapshot in `data`; ValueError when it is malformed or not all `user_id`'s."""
    import numpy as np  # lazy, as in `encode`

    if not data.startswith(FORMAT):
        raise ValueError("not a snapshot of this format")
    at = len(FORMAT)
    (length,) = _HEADER_LENGTH.unpack_from(data, at)
    at += _HEADER_LENGTH.size
    header = json.loads(data[at : at + length])
    at += length
    if header["user_id"] != user_id:
        raise ValueError("the snapshot is another user's")
    count, dims, with_vectors = header["records"], header["dimensions"], header["vectors"]
    records = _RECORDS.validate_json(zlib.decompress(data[at : at + header["records_bytes"]]))
    at += header["records_bytes"]
    has_vector = np.frombuffer(data, dtype=np.uint8, count=count, offset=at).astype(bool)
    at += count
    if len(data) - at != with_vectors * dims * 2 or int(has_vector.sum()) != with_vectors:
        raise ValueError("the snapshot's vectors are cut short or miscounted")
    if len(records) != count or any(r.user_id != user_id for r in records):
        raise ValueError("the snapshot's records are miscounted or another user's")
    matrix = np.frombuffer(data, dtype="<f2", offset=at).reshape(with_vectors, dims)
    ids = [r.id for r, has in zip(records, has_vector, strict=True) if has]
    return Snapshot(
        user_id=user_id,
        generation=header["generation"],
        version=int(header["version"]),
        synced_at=float(header["synced_at"]),
        space=header["space"],
        dimensions=dims,
        records=records,
        vectors=dict(zip(ids, matrix, strict=True)),
    )


async def read(user_id: str) -> Snapshot | None:
    """The user's snapshot; None when there is none or it cannot be used (logged)."""
    try:
        blob = await blobs.get_bytes(blobs.index_snapshot_key(user_id), max_bytes=MAX_BYTES)
    except Exception as exc:
        if aws.error_code(exc) not in _ABSENT:
            logger.warning("search index snapshot not readable", error=repr(exc))
        return None
    if blob is None or blob.truncated:
        return None
    try:
        return await asyncio.to_thread(decode, blob.data, user_id)
    except (ValueError, KeyError, TypeError, struct.error, zlib.error) as exc:
        logger.warning("search index snapshot not usable", error=repr(exc))
        return None


async def write(snapshot: Snapshot) -> int:
    """Stores the snapshot (replacing the user's previous one); its size in bytes, 0 when
    it could not be written (logged)."""
    try:
        data = await asyncio.to_thread(encode, snapshot)
        key = blobs.index_snapshot_key(snapshot.user_id)
        await blobs.put_bytes(key, data, content_type="application/octet-stream")
    except Exception as exc:
        logger.warning("search index snapshot not written", error=repr(exc))
        return 0
    return len(data)


async def discard(user_id: str) -> None:
    """Deletes the user's snapshot (best effort: a snapshot left behind is still never used
    past a change it does not reflect, and the bucket's lifecycle expires it)."""
    try:
        await blobs.delete_keys([blobs.index_snapshot_key(user_id)])
    except Exception as exc:
        logger.warning("search index snapshot not deleted", error=repr(exc))

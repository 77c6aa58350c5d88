"""The user's own account: usage and limits (`GET /v1/me`) and erasing everything
(`DELETE /v1/me`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from memlayer import blobs, dlq
from memlayer.api.account import EraseReceipt, Me
from memlayer.ids import utcnow
from memlayer.observability import logger
from memlayer.services.limits import limits_of
from memlayer.storage import get_store
from memlayer.supabase_auth import delete_auth_user

RECEIPT_KINDS = ("memories", "uploads", "jobs", "api_keys", "vectors", "connections", "captures")


async def me(user_id: str) -> Me:
    profile = await get_store().get_profile(user_id)
    return Me(user_id=user_id, usage=profile.usage, limits=limits_of(profile))


def user_prefixes(user_id: str) -> tuple[str, str, str]:
    """The S3 folders holding one user's objects: uploads, exports, the search index's
    snapshot (the user id is quoted, so no id can name another user's folder)."""
    return blobs.upload_prefix(user_id), blobs.export_prefix(user_id), blobs.index_prefix(user_id)


def mentions_user(body: str, user_id: str) -> bool:
    """Whether a queue message is about this user: a `user_id` field naming them, or an S3
    object key under one of their prefixes (S3 event notifications)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    prefixes = user_prefixes(user_id)

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("user_id") == user_id:
                return True
            return any(walk(value) for value in node.values())
        if isinstance(node, list):
            return any(walk(value) for value in node)
        # S3 event keys arrive URL-encoded.
        return isinstance(node, str) and (
            node.startswith(prefixes) or unquote_plus(node).startswith(prefixes)
        )

    return walk(document)


async def erase(user_id: str) -> EraseReceipt:
    """Deletes every record of the user (memories, vectors, jobs, uploads, API keys,
    connections, pending captures, counters), their objects in S3 (uploads, exports, the
    search index snapshot), their dead-lettered
    messages and, when Supabase Auth is configured, the Supabase Auth user (`auth_user: 1` in
    the receipt). Safe to repeat: a failed erase is finished by calling it again.

    Kept: limits an admin set for the user (policy about the account, not the user's data),
    so erasing cannot lift a restriction. Messages still in the work queues carry only ids;
    their workers find nothing to act on and drop them."""
    store = get_store()
    profile = await store.get_profile(user_id)
    counts = await get_store().erase_user(user_id)
    files = 0
    for prefix in user_prefixes(user_id):
        files += await blobs.delete_prefix(prefix)
    dead_letters = await dlq.sweep(
        list(dlq.dead_letter_queues().values()), lambda body: mentions_user(body, user_id)
    )
    if profile.limits_override:
        await store.set_limits(user_id, profile.limits_override)
    deleted = {kind: counts.get(kind, 0) for kind in RECEIPT_KINDS}
    deleted["other"] = sum(n for kind, n in counts.items() if kind not in RECEIPT_KINDS)
    deleted["files"] = files
    deleted["dead_letters"] = dead_letters
    # Last: a failure here leaves the data erased and the erase repeatable.
    if await delete_auth_user(user_id):
        deleted["auth_user"] = 1
    completed: datetime = utcnow()
    logger.info("account erased", deleted=deleted)
    return EraseReceipt(deleted=deleted, completed_at=completed)

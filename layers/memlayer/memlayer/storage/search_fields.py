"""What every search backend indexes of a memory, derived the same way for all of them, and
how a backend asks for vectors from an older embedding space to be replaced."""

from __future__ import annotations

from dataclasses import dataclass

from memlayer import queues
from memlayer.content.extract import normalize_url
from memlayer.messages import ReembedTask
from memlayer.models import MemoryRecord, display_title
from memlayer.observability import logger

_reembed_requested: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class SearchFields:
    title: str | None
    tags: tuple[str, ...]  # the memory's own tags, then the analysis's
    dedupe_key: str  # canonical URL, else a hash of the text: equal keys collapse in results


def search_fields(record: MemoryRecord) -> SearchFields:
    analysis = record.analysis
    url = record.source.canonical_url or record.source.url
    return SearchFields(
        title=display_title(analysis, record.source),
        tags=tuple(dict.fromkeys([*record.tags, *(analysis.tags if analysis else [])])),
        dedupe_key=normalize_url(url) if url else record.content_hash,
    )


async def request_reembed(user_id: str, space: str, stale: int) -> None:
    """Ready memories whose vectors come from another embedding space (provider, model or
    dimensions changed) are re-embedded through the embed queue, never mixed; asked once per
    user and space in a container."""
    if (user_id, space) in _reembed_requested:
        return
    logger.info("re-embedding memories from an older vector space", stale=stale)
    await queues.send("tasks", ReembedTask(user_id=user_id))
    _reembed_requested.add((user_id, space))

"""What every search backend indexes of a memory, derived the same way for all of them."""

from __future__ import annotations

from dataclasses import dataclass

from memlayer.models import MemoryRecord


@dataclass(frozen=True)
class SearchFields:
    title: str | None
    tags: tuple[str, ...]  # the memory's own tags, then the analysis's
    dedupe_key: str  # canonical URL, else a hash of the text: equal keys collapse in results


def search_fields(record: MemoryRecord) -> SearchFields:
    from memlayer.pipeline.extract import normalize_url
    from memlayer.services.memories import content_hash

    analysis = record.analysis
    url = record.source.canonical_url or record.source.url
    return SearchFields(
        title=(analysis.title if analysis else None) or record.source.title,
        tags=tuple(dict.fromkeys([*record.tags, *(analysis.tags if analysis else [])])),
        dedupe_key=normalize_url(url) if url else content_hash(record.content),
    )

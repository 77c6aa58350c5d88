"""In-memory ranking of one user's memories: keyword (BM25), semantic (exact cosine) and hybrid
(reciprocal-rank fusion), plus chat-context assembly; the text analysis and highlighting are
memlayer.text. No storage here: the storage layer loads `IndexedDoc`s and the caller caches the
built `UserIndex` per user."""

from memlayer.search.index import Hit, IndexedDoc, SearchFilters, SearchMode, UserIndex

__all__ = [
    "Hit",
    "IndexedDoc",
    "SearchFilters",
    "SearchMode",
    "UserIndex",
]

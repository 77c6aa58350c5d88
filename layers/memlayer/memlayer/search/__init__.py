"""In-memory ranking of one user's memories: keyword (BM25), semantic (exact cosine) and hybrid
(reciprocal-rank fusion), plus highlighting and chat-context assembly. No storage here: the
storage layer loads `IndexedDoc`s and the caller caches the built `UserIndex` per user."""

from memlayer.search.index import Hit, IndexedDoc, SearchFilters, SearchMode, UserIndex
from memlayer.search.text import highlight, tokenize

__all__ = [
    "Hit",
    "IndexedDoc",
    "SearchFilters",
    "SearchMode",
    "UserIndex",
    "highlight",
    "tokenize",
]

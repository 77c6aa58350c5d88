"""In-memory ranking of one user's memories: keyword (BM25), semantic (exact cosine) and hybrid
(reciprocal-rank fusion), plus chat-context assembly; the text analysis and highlighting are
memlayer.text. No storage here: the storage layer loads `IndexedDoc`s and the caller caches the
built `UserIndex` per user.

`fusion` holds what every backend shares (`SearchMode`, `SearchFilters`, `Hit`, the fusion)
and needs no numpy; `index` (`UserIndex`, `IndexedDoc`) does. Nothing is imported here, so a
function that only names the shared types never loads numpy."""

"""A user's in-memory search index: BM25 keyword search, exact cosine search, hybrid fusion.

Pure ranking: the storage layer loads a user's memories as `IndexedDoc`s, `UserIndex.build`
indexes them, and the caller keeps the index warm per user (invalidated by a version) and
can apply `upsert`/`remove` in place.

Layout (all numpy; a "segment" is an immutable block of rows):

- keyword: a CSR inverted index per segment — for each term id a slice of doc rows (int32)
  and term frequencies (uint16; title and tags count `FIELD_BOOST` times) — plus each row's
  BM25 length norm. A query touches only its terms' postings.
- vectors: in the main segment, int8 codes with a per-row scale (`v ~ scale * codes`, 1 byte
  per dimension) are what a query scans; the exact float32 unit vectors are spilled to an
  unlinked temporary file (memory-mapped; on Lambda that is /tmp), read only for the few
  candidates of each query. Each row also keeps `err = |v - scale*codes|`, so the exact
  cosine lies in `approx ± err*|q|` (Cauchy-Schwarz). The candidates are every row whose
  upper bound reaches the k-th best lower bound; the true top-k cannot lie outside them, so
  re-ranking them exactly gives the float32 brute-force top-k (recall 1.0, not "usually").
  `vector_store="float32"` keeps plain float32 in RAM instead (4x the memory, scans ~2x
  faster).
- updates: `upsert`/`remove` tombstone rows of the main segment and keep new or changed
  documents in a small delta segment (float32, rebuilt lazily on the next search); when the
  delta grows past ~6% of the main segment everything is rebuilt into one main segment.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from memlayer.search.fusion import Candidate, Hit, SearchFilters, SearchMode, combine, ranks
from memlayer.text import query_terms, tokenize

_Ranked = list[tuple[float, int, int]]  # (score, segment, row), best first
VectorStore = Literal["int8", "float32"]

K1 = 1.2
B = 0.75
FIELD_BOOST = 2  # title and tag terms count this many times
_CHUNK = 512  # rows per block when scanning int8 codes (fits in L2)
_BUILD_BLOCK = 8192  # rows per block when normalizing/quantizing at build
_GATHER_MAX = 2048  # at most this many allowed rows: exact scores without the int8 scan
_ERR_EPS = 1e-4  # slack for float32 rounding in the approximate scan (the bound stays valid)


@dataclass(slots=True)
class IndexedDoc:
    """What the index needs of one memory (the storage layer builds these)."""

    memory_id: str  # ULID: sorts by creation time
    text: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    kind: str = "note"
    provider: str | None = None
    status: str = "ready"
    created_at: float = 0.0  # epoch seconds
    occurred_at: float | None = None  # when it happened (epoch seconds); None: created_at
    dedupe_key: str | None = None  # canonical URL or content hash; equal keys collapse
    vector: np.ndarray | None = None  # float32 embedding; None while not embedded yet


def _normalize_tag(tag: str) -> str:
    return " ".join(tag.strip().lower().split())


class _Vocab(defaultdict[str, int]):
    """term -> id; a missing term gets the next id (so mapping a token list stays in C)."""

    def __init__(self) -> None:
        super().__init__()
        self.default_factory = self.__len__


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest finite scores, best first (ties: lower index first)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    if finite.size > k:
        vals = scores[finite]
        part = np.argpartition(-vals, k - 1)[:k]
        finite = finite[part]
    order = np.lexsort((finite, -scores[finite]))
    return finite[order]


def _list_depth(mode: SearchMode, limit: int, collapse: bool) -> int:
    """How deep each list is ranked: hybrid fuses from well past `limit` (a hit may be far down
    one list and high in the other); a single list needs `limit`, plus room for collapsed
    duplicates."""
    if mode == "hybrid":
        return max(limit * 4 + 32, 100)
    return limit + (limit + 32 if collapse else 0)


def _ranks(ranked: _Ranked) -> dict[tuple[int, int], int]:
    return ranks((score, (si, row)) for score, si, row in ranked)


class _Segment:
    """An immutable block of documents with its own postings and vectors."""

    def __init__(
        self,
        docs: Sequence[IndexedDoc],
        vocab: _Vocab,
        dimensions: int,
        *,
        vector_store: VectorStore,
        spill_dir: str | None,
        avgdl: float | None,
        codes: dict[str, dict[str | None, int]],
    ) -> None:
        n = len(docs)
        self.n = n
        self.dimensions = dimensions
        self.ids = [d.memory_id for d in docs]
        self.texts = [d.text or "" for d in docs]
        self.titles = [d.title for d in docs]
        self.tags = [tuple(_normalize_tag(t) for t in d.tags) for d in docs]
        self.statuses = [d.status for d in docs]
        self.dedupe = [d.dedupe_key for d in docs]
        self.created = np.fromiter((float(d.created_at) for d in docs), np.float64, n)
        self.occurred = np.fromiter(
            (float(d.created_at if d.occurred_at is None else d.occurred_at) for d in docs),
            np.float64,
            n,
        )
        kind_codes, provider_codes = codes["kind"], codes["provider"]
        self.kind = np.fromiter(
            (kind_codes.setdefault(d.kind, len(kind_codes)) for d in docs), np.int32, n
        )
        self.provider = np.fromiter(
            (provider_codes.setdefault(d.provider, len(provider_codes)) for d in docs),
            np.int32,
            n,
        )
        self.alive = np.ones(n, dtype=bool)
        tag_rows: dict[str, list[int]] = {}
        for row, tags in enumerate(self.tags):
            for tag in set(tags):
                tag_rows.setdefault(tag, []).append(row)
        self.tag_rows = {t: np.asarray(r, dtype=np.int32) for t, r in tag_rows.items()}
        self._build_postings(docs, vocab, avgdl)
        self._build_vectors(docs, vector_store, spill_dir)

    # -- keyword ------------------------------------------------------------------------

    def _build_postings(
        self, docs: Sequence[IndexedDoc], vocab: _Vocab, avgdl: float | None
    ) -> None:
        n = self.n
        lookup = vocab.__getitem__
        text_ids: list[int] = []
        field_ids: list[int] = []
        text_lens = np.zeros(n, dtype=np.int64)
        field_lens = np.zeros(n, dtype=np.int64)
        for row, d in enumerate(docs):
            toks = tokenize(d.text) if d.text else []
            text_ids.extend(map(lookup, toks))
            text_lens[row] = len(toks)
            fields = " ".join((d.title or "", *d.tags)) if d.tags else d.title
            ftoks = tokenize(fields) if fields else []
            if ftoks:
                field_ids.extend(map(lookup, ftoks))
                field_lens[row] = len(ftoks)
        rows = np.concatenate(
            [
                np.repeat(np.arange(n, dtype=np.int64), text_lens),
                np.repeat(np.arange(n, dtype=np.int64), field_lens),
            ]
        )
        terms = np.concatenate(
            [np.asarray(text_ids, dtype=np.int64), np.asarray(field_ids, dtype=np.int64)]
        )
        weights = np.concatenate(
            [
                np.ones(len(text_ids), dtype=np.int64),
                np.full(len(field_ids), FIELD_BOOST, dtype=np.int64),
            ]
        )
        dl = (text_lens + FIELD_BOOST * field_lens).astype(np.float64)
        if avgdl is None:
            avgdl = float(dl.mean()) if n and dl.sum() > 0 else 1.0
        self.avgdl = avgdl
        self.norm = (K1 * (1.0 - B + B * dl / avgdl)).astype(np.float32)
        self.vocab_size = len(vocab)
        if terms.size:
            keys = terms * max(n, 1) + rows
            uniq, inverse = np.unique(keys, return_inverse=True)
            tf = np.bincount(inverse.ravel(), weights=weights, minlength=uniq.size)
            post_terms = uniq // max(n, 1)
            self.post_doc = (uniq % max(n, 1)).astype(np.int32)
            self.post_tf = np.minimum(tf, 65535).astype(np.uint16)
            counts = np.bincount(post_terms, minlength=self.vocab_size)
        else:
            self.post_doc = np.empty(0, dtype=np.int32)
            self.post_tf = np.empty(0, dtype=np.uint16)
            counts = np.zeros(self.vocab_size, dtype=np.int64)
        self.indptr = np.zeros(self.vocab_size + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])

    def df(self, term_id: int) -> int:
        if term_id >= self.vocab_size:
            return 0
        return int(self.indptr[term_id + 1] - self.indptr[term_id])

    def bm25(self, weighted_terms: list[tuple[int, float]]) -> np.ndarray:
        scores = np.zeros(self.n, dtype=np.float32)
        for term_id, idf in weighted_terms:
            if term_id >= self.vocab_size:
                continue
            s, e = self.indptr[term_id], self.indptr[term_id + 1]
            if s == e:
                continue
            rows = self.post_doc[s:e]
            tf = self.post_tf[s:e].astype(np.float32)
            scores[rows] += np.float32(idf * (K1 + 1.0)) * tf / (tf + self.norm[rows])
        return scores

    def has_term(self, term_id: int, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` contain the term (postings are sorted by row)."""
        if term_id >= self.vocab_size:
            return np.zeros(rows.shape, dtype=bool)
        posting = self.post_doc[self.indptr[term_id] : self.indptr[term_id + 1]]
        if posting.size == 0:
            return np.zeros(rows.shape, dtype=bool)
        at = np.searchsorted(posting, rows)
        at[at >= posting.size] = posting.size - 1
        return posting[at] == rows

    # -- vectors ------------------------------------------------------------------------

    def _build_vectors(
        self, docs: Sequence[IndexedDoc], vector_store: VectorStore, spill_dir: str | None
    ) -> None:
        """Normalize, quantize and store vectors block by block, so building needs only the
        final arrays plus one block of temporaries (not several float32 copies of all)."""
        n, dim = self.n, self.dimensions
        self.vector_store = vector_store
        self.has_vec = np.zeros(n, dtype=bool)
        self._spill = None
        self.codes: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.err: np.ndarray | None = None
        codes_all = np.zeros((0, dim), dtype=np.int8)
        scale_all = err_all = np.zeros(0, dtype=np.float32)
        target: np.ndarray | None = None
        if vector_store == "float32":
            self.unit = target = np.zeros((n, dim), dtype=np.float32)
        else:
            self.codes = codes_all = np.zeros((n, dim), dtype=np.int8)
            self.scale = scale_all = np.ones(n, dtype=np.float32)
            self.err = err_all = np.full(n, _ERR_EPS, dtype=np.float32)
            if n:
                # The exact vectors go to an unlinked temp file (freed with the index): page
                # cache holds what queries touch, and the kernel may drop it under pressure.
                # blocks are appended to the file, not mapped while dirty
                self._spill = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115
        block = np.zeros((min(_BUILD_BLOCK, max(n, 1)), dim), dtype=np.float32)
        for s in range(0, n, _BUILD_BLOCK):
            e = min(s + _BUILD_BLOCK, n)
            raw = block[: e - s]
            raw.fill(0.0)
            present = np.zeros(e - s, dtype=bool)
            for i, d in enumerate(docs[s:e]):
                if d.vector is None:
                    continue
                v = np.asarray(d.vector, dtype=np.float32).reshape(-1)
                if v.shape[0] != dim:
                    raise ValueError(
                        f"memory {d.memory_id}: vector has {v.shape[0]} dimensions, not {dim}"
                    )
                raw[i] = v
                present[i] = True
            norms = np.linalg.norm(raw, axis=1)
            ok = present & np.isfinite(norms) & (norms > 0)
            raw[~ok] = 0.0
            raw[ok] /= norms[ok, None]
            self.has_vec[s:e] = ok
            if target is not None:
                target[s:e] = raw
            elif self._spill is not None:
                self._spill.write(raw.tobytes())
            if self.codes is None:
                continue
            absmax = np.abs(raw).max(axis=1)
            scale = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
            codes = np.rint(raw / scale[:, None]).astype(np.int8)
            raw -= codes.astype(np.float32) * scale[:, None]  # raw is now the residual
            codes_all[s:e] = codes
            scale_all[s:e] = scale
            err_all[s:e] = np.linalg.norm(raw, axis=1) + _ERR_EPS
        if self._spill is not None:
            self._spill.flush()
            self.unit = np.memmap(self._spill, dtype=np.float32, mode="r", shape=(n, dim))
        elif self.codes is not None:
            self.unit = np.zeros((0, dim), dtype=np.float32)

    def semantic(self, q: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best allowed rows by exact float32 cosine, best first, and their scores."""
        allowed = allowed & self.has_vec
        count = int(allowed.sum())
        k = min(k, count)
        if k == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if count <= _GATHER_MAX or (self.codes is None and count < self.n // 4):
            # a narrow filter: score the few allowed rows exactly instead of scanning all
            rows = np.flatnonzero(allowed)
            scores = np.asarray(self.unit[rows]) @ q
            best = _top(scores, k)
            return rows[best], scores[best]
        if self.codes is None:
            scores = self.unit @ q
            scores[~allowed] = -np.inf
            best = _top(scores, k)
            return best, scores[best]
        assert self.err is not None
        approx = self._scan(q)
        qnorm = float(np.linalg.norm(q))
        slack = self.err * np.float32(qnorm)
        lower = np.where(allowed, approx - slack, -np.inf)
        kth = np.partition(lower, self.n - k)[self.n - k]
        cand = np.flatnonzero(allowed & (approx + slack >= kth))
        cand.sort()
        exact = np.asarray(self.unit[cand]) @ q
        best = _top(exact, k)
        return cand[best], exact[best]

    def _scan(self, q: np.ndarray) -> np.ndarray:
        assert self.codes is not None and self.scale is not None
        n = self.n
        out = np.empty(n, dtype=np.float32)
        buf = np.empty((min(_CHUNK, n), self.dimensions), dtype=np.float32)
        for s in range(0, n, _CHUNK):
            e = min(s + _CHUNK, n)
            block = buf[: e - s]
            np.copyto(block, self.codes[s:e], casting="unsafe")
            np.dot(block, q, out=out[s:e])
        out *= self.scale
        return out

    # -- filters ------------------------------------------------------------------------

    def allowed(
        self, filters: SearchFilters | None, codes: dict[str, dict[str | None, int]]
    ) -> np.ndarray:
        mask = self.alive.copy()
        if filters is None or filters.empty:
            return mask
        if filters.kinds is not None:
            wanted = [codes["kind"][k] for k in filters.kinds if k in codes["kind"]]
            mask &= np.isin(self.kind, np.asarray(wanted, dtype=np.int32))
        if filters.provider is not None:
            code = codes["provider"].get(filters.provider, -1)
            mask &= self.provider == code
        if filters.since is not None:
            mask &= self.occurred >= filters.since
        if filters.until is not None:
            mask &= self.occurred < filters.until
        if filters.tags is not None:
            tagged = np.zeros(self.n, dtype=bool)
            for tag in filters.tags:
                rows = self.tag_rows.get(_normalize_tag(tag))
                if rows is not None:
                    tagged[rows] = True
            mask &= tagged
        return mask

    def doc(self, row: int) -> IndexedDoc:
        vec = np.array(self.unit[row], dtype=np.float32) if self.has_vec[row] else None
        return IndexedDoc(
            memory_id=self.ids[row],
            text=self.texts[row],
            title=self.titles[row],
            tags=self.tags[row],
            kind="",  # filled by the owner, which knows the code tables
            provider=None,
            status=self.statuses[row],
            created_at=float(self.created[row]),
            occurred_at=float(self.occurred[row]),
            dedupe_key=self.dedupe[row],
            vector=vec,
        )

    def memory_bytes(self) -> int:
        arrays: list[np.ndarray | None] = [
            self.created,
            self.occurred,
            self.kind,
            self.provider,
            self.alive,
            self.norm,
            self.post_doc,
            self.post_tf,
            self.indptr,
            self.has_vec,
            *self.tag_rows.values(),
        ]
        if self.codes is not None:
            arrays += [self.codes, self.scale, self.err]
        elif isinstance(self.unit, np.ndarray) and not isinstance(self.unit, np.memmap):
            arrays.append(self.unit)
        total = sum(int(a.nbytes) for a in arrays if a is not None)
        seen: set[int] = set()  # shared objects ("ready", a repeated tag) count once

        def size(obj: object) -> int:
            if obj is None or id(obj) in seen:
                return 0
            seen.add(id(obj))
            return sys.getsizeof(obj)

        for values in (self.ids, self.texts, self.titles, self.statuses, self.dedupe):
            total += sys.getsizeof(values) + sum(size(v) for v in values)
        total += sys.getsizeof(self.tags)
        for tags in self.tags:
            total += size(tags) + sum(size(t) for t in tags)
        return total

    def disk_bytes(self) -> int:
        return int(self.n * self.dimensions * 4) if self._spill is not None else 0

    def close(self) -> None:
        if self._spill is not None:
            self.unit = np.zeros((0, self.dimensions), dtype=np.float32)
            self._spill.close()
            self._spill = None


class UserIndex:
    """One user's searchable memories. Not thread-safe for concurrent writes (Lambda isn't)."""

    def __init__(
        self,
        dimensions: int,
        *,
        vector_store: VectorStore = "int8",
        spill_dir: str | None = None,
    ) -> None:
        if vector_store not in ("int8", "float32"):
            raise ValueError(f"vector_store must be 'int8' or 'float32', not {vector_store!r}")
        self.dimensions = int(dimensions)
        self.vector_store: VectorStore = vector_store
        self.spill_dir = spill_dir
        self._codes: dict[str, dict[str | None, int]] = {"kind": {}, "provider": {}}
        self._vocab = _Vocab()
        self._main: _Segment | None = None
        self._main_pos: dict[str, int] = {}
        self._delta_docs: dict[str, IndexedDoc] = {}
        self._delta: _Segment | None = None
        self._delta_dirty = False
        self.build_seconds = 0.0

    # -- building -----------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        docs: Iterable[IndexedDoc],
        dimensions: int,
        *,
        vector_store: VectorStore = "int8",
        spill_dir: str | None = None,
    ) -> UserIndex:
        """Index `docs` (later duplicates of a memory_id win). The index copies what it
        needs: the caller's vectors are not kept."""
        index = cls(dimensions, vector_store=vector_store, spill_dir=spill_dir)
        index._rebuild(list({d.memory_id: d for d in docs}.values()))
        return index

    def _rebuild(self, docs: list[IndexedDoc]) -> None:
        started = time.perf_counter()
        if self._main is not None:
            self._main.close()
        self._vocab = _Vocab()
        self._codes = {"kind": {}, "provider": {}}
        self._main = _Segment(
            docs,
            self._vocab,
            self.dimensions,
            vector_store=self.vector_store,
            spill_dir=self.spill_dir,
            avgdl=None,
            codes=self._codes,
        )
        self._main_pos = {d.memory_id: row for row, d in enumerate(docs)}
        self._delta_docs = {}
        self._delta = None
        self._delta_dirty = False
        self.build_seconds = time.perf_counter() - started

    def upsert(self, doc: IndexedDoc) -> None:
        """Add or replace one memory. Cheap: it lands in the delta segment."""
        if doc.vector is not None and np.asarray(doc.vector).size != self.dimensions:
            raise ValueError(
                f"memory {doc.memory_id}: vector has {np.asarray(doc.vector).size} "
                f"dimensions, not {self.dimensions}"
            )
        self._tombstone_main(doc.memory_id)
        self._delta_docs.pop(doc.memory_id, None)
        self._delta_docs[doc.memory_id] = doc
        self._delta_dirty = True
        main_n = self._main.n if self._main is not None else 0
        if len(self._delta_docs) > max(512, main_n // 16):
            self.compact()

    def remove(self, memory_id: str) -> bool:
        """Drop one memory; False when it was not indexed."""
        if self._delta_docs.pop(memory_id, None) is not None:
            self._delta_dirty = True
            self._tombstone_main(memory_id)
            return True
        return self._tombstone_main(memory_id)

    def _tombstone_main(self, memory_id: str) -> bool:
        row = self._main_pos.pop(memory_id, None)
        if row is None or self._main is None:
            return False
        self._main.alive[row] = False
        return True

    def compact(self) -> None:
        """Fold the delta segment and tombstones into one freshly built main segment."""
        docs: list[IndexedDoc] = []
        main = self._main
        if main is not None:
            kinds = {code: k for k, code in self._codes["kind"].items()}
            providers = {code: p for p, code in self._codes["provider"].items()}
            for row in np.flatnonzero(main.alive):
                doc = main.doc(int(row))
                doc.kind = str(kinds[int(main.kind[row])])
                doc.provider = providers[int(main.provider[row])]
                docs.append(doc)
        docs.extend(self._delta_docs.values())
        self._rebuild(docs)

    def _segments(self) -> list[_Segment]:
        if self._delta_dirty:
            if self._delta is not None:
                self._delta.close()
            self._delta = None
            if self._delta_docs:
                self._delta = _Segment(
                    list(self._delta_docs.values()),
                    self._vocab,
                    self.dimensions,
                    vector_store="float32",
                    spill_dir=None,
                    avgdl=self._main.avgdl if self._main is not None and self._main.n else None,
                    codes=self._codes,
                )
            self._delta_dirty = False
        return [s for s in (self._main, self._delta) if s is not None]

    # -- introspection --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._main_pos) + len(self._delta_docs)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._main_pos or memory_id in self._delta_docs

    def memory_bytes(self) -> int:
        """Resident bytes of the index (numpy arrays plus the Python strings it keeps)."""
        total = sys.getsizeof(self._vocab) + sum(sys.getsizeof(t) for t in self._vocab)
        total += sys.getsizeof(self._main_pos)
        return total + sum(s.memory_bytes() for s in self._segments())

    def disk_bytes(self) -> int:
        """Bytes of exact vectors spilled to the temp directory (int8 store only)."""
        return sum(s.disk_bytes() for s in self._segments())

    def close(self) -> None:
        for seg in (self._main, self._delta):
            if seg is not None:
                seg.close()

    def admitted(self, memory_ids: Iterable[str], filters: SearchFilters | None) -> set[str]:
        """Those of `memory_ids` that are indexed and pass `filters`."""
        wanted = set(memory_ids)
        found: set[str] = set()
        for seg in self._segments():
            mask = seg.allowed(filters, self._codes)
            if seg is self._main:
                rows = [(m, self._main_pos[m]) for m in wanted if m in self._main_pos]
            else:
                rows = [(m, row) for row, m in enumerate(seg.ids) if m in wanted]
            found.update(m for m, row in rows if mask[row])
        return found

    # -- searching ------------------------------------------------------------------------

    def _weighted_terms(
        self, terms: list[str], segments: list[_Segment]
    ) -> list[tuple[int, float]]:
        total = sum(s.n for s in segments)
        out = []
        for term in terms:
            term_id = self._vocab.get(term)
            if term_id is None:
                continue
            df = sum(s.df(term_id) for s in segments)
            if df == 0:
                continue
            out.append((term_id, math.log(1.0 + (total - df + 0.5) / (df + 0.5))))
        return out

    def _keyword_list(
        self, terms: list[str], segments: list[_Segment], masks: list[np.ndarray], depth: int
    ) -> tuple[_Ranked, list[tuple[int, float]]]:
        weighted = self._weighted_terms(terms, segments)
        if not weighted:
            return [], weighted
        found: list[tuple[float, int, int]] = []
        for si, (seg, mask) in enumerate(zip(segments, masks, strict=True)):
            scores = seg.bm25(weighted)
            scores[~mask | (scores <= 0)] = -np.inf
            for row in _top(scores, depth):
                found.append((float(scores[row]), si, int(row)))
        found.sort(key=lambda t: (-t[0], t[1], t[2]))
        return found[:depth], weighted

    def _coverage(
        self, keyword: _Ranked, weighted: list[tuple[int, float]], segments: list[_Segment]
    ) -> dict[tuple[int, int], float]:
        """Share of the query's IDF mass each keyword hit contains (1.0 = every term)."""
        total = sum(idf for _, idf in weighted) or 1.0
        out: dict[tuple[int, int], float] = {}
        for si, seg in enumerate(segments):
            rows = np.asarray([row for _, s, row in keyword if s == si], dtype=np.int32)
            if rows.size == 0:
                continue
            mass = np.zeros(rows.size, dtype=np.float64)
            for term_id, idf in weighted:
                mass += idf * seg.has_term(term_id, rows)
            out.update({(si, int(r)): float(m) / total for r, m in zip(rows, mass, strict=True)})
        return out

    def _semantic_list(
        self, qvec: np.ndarray, segments: list[_Segment], masks: list[np.ndarray], depth: int
    ) -> _Ranked:
        found: list[tuple[float, int, int]] = []
        for si, (seg, mask) in enumerate(zip(segments, masks, strict=True)):
            rows, scores = seg.semantic(qvec, mask, depth)
            found.extend((float(s), si, int(r)) for r, s in zip(rows, scores, strict=True))
        found.sort(key=lambda t: (-t[0], t[1], t[2]))
        return found[:depth]

    def _unit_query_vector(self, query_vector: np.ndarray | None) -> np.ndarray | None:
        """The query vector scaled to length 1 (None when there is none, or it is zero or not
        finite: the semantic list is then empty)."""
        if query_vector is None:
            return None
        qvec = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if qvec.shape[0] != self.dimensions:
            raise ValueError(f"query vector has {qvec.shape[0]} dimensions, not {self.dimensions}")
        norm = float(np.linalg.norm(qvec))
        return qvec / np.float32(norm) if norm > 0 and math.isfinite(norm) else None

    def _ranked_lists(
        self,
        mode: SearchMode,
        terms: list[str],
        qvec: np.ndarray | None,
        segments: list[_Segment],
        masks: list[np.ndarray],
        depth: int,
    ) -> tuple[_Ranked, _Ranked, dict[tuple[int, int], float]]:
        """The keyword list, the semantic list (each best first, at most `depth` long) and,
        for hybrid, each keyword hit's share of the query's IDF."""
        keyword: _Ranked = []
        semantic: _Ranked = []
        coverage: dict[tuple[int, int], float] = {}
        if mode in ("hybrid", "keyword") and terms:
            keyword, weighted = self._keyword_list(terms, segments, masks, depth)
            if mode == "hybrid" and keyword:
                coverage = self._coverage(keyword, weighted, segments)
        if mode in ("hybrid", "semantic") and qvec is not None:
            semantic = self._semantic_list(qvec, segments, masks, depth)
        return keyword, semantic, coverage

    def search(
        self,
        query_text: str,
        query_vector: np.ndarray | None = None,
        *,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        filters: SearchFilters | None = None,
        collapse: bool = True,
        highlights: bool = True,
        now: float | None = None,
        max_highlight_len: int = 200,
        semantic_weight: float = 1.0,
        min_similarity: float | None = None,
    ) -> list[Hit]:
        """Rank this user's memories for a query.

        keyword: BM25 (score = BM25 / best BM25). semantic: exact cosine over memories that
        have a vector (score = max(cosine, 0)). hybrid: reciprocal-rank fusion (k=`RRF_K`) of
        both lists — a keyword hit weighted by the share of the query's IDF it contains, the
        semantic list by `semantic_weight` (how much meaning the embedder carries: 1 for a
        real model) — with a mild recency boost (score = fused / best possible), keyword
        alone when there is no query vector. With `collapse`, memories sharing a dedupe_key
        show once (the best-scoring one). With `min_similarity`, a memory that matches none
        of the query's words must have at least that cosine to be returned (ranking alone
        fills every list, related or not)."""
        if mode not in ("hybrid", "semantic", "keyword"):
            raise ValueError(f"unknown search mode {mode!r}")
        limit = max(0, int(limit))
        if limit == 0:
            return []
        segments = self._segments()
        if not segments:
            return []
        terms = query_terms(query_text or "")
        qvec = self._unit_query_vector(query_vector) if mode != "keyword" else None
        masks = [seg.allowed(filters, self._codes) for seg in segments]
        depth = _list_depth(mode, limit, collapse)
        keyword, semantic, coverage = self._ranked_lists(mode, terms, qvec, segments, masks, depth)

        def candidate(key: tuple[int, int]) -> Candidate:
            seg, row = segments[key[0]], key[1]
            return Candidate(
                seg.ids[row], seg.texts[row], float(seg.occurred[row]), seg.dedupe[row]
            )

        return combine(
            [(score, (si, row)) for score, si, row in keyword],
            [(score, (si, row)) for score, si, row in semantic],
            candidate,
            mode=mode,
            coverage=coverage,
            terms=terms,
            limit=limit,
            collapse=collapse,
            highlights=highlights,
            max_highlight_len=max_highlight_len,
            now=now,
            semantic_weight=semantic_weight,
            min_similarity=min_similarity,
            occurred_at=lambda key: float(segments[key[0]].occurred[key[1]]),
        )

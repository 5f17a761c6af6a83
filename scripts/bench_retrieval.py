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
from operator import itemgetter
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select, text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue  # noqa: E402
from orchestrator.context import Context  # noqa: E402
from orchestrator.db.connection import make_engine, make_sessionmaker  # noqa: E402
from orchestrator.db.models import Base  # noqa: E402
from orchestrator.db.retrieval_models import Chunk, ChunkSet, File, VectorStore, VectorStoreFile  # noqa: E402
from orchestrator.domain.ids import new_id  # noqa: E402
from orchestrator.files import ingestion, search, uploads, vector_stores  # noqa: E402
from orchestrator.files.retrieval import terms as term_text  # noqa: E402
from orchestrator.files.retrieval.bm25 import Postings  # noqa: E402
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
    store_id, seconds = ingest(ctx, tenant_id, data, STATIC)
    count = _chunk_count(ctx, store_id)
    print(
        f"  store of {count} chunks ({len(data) / 1e6:.0f} MB of text) ingested in {seconds:.0f} s",
        flush=True,
    )
    return store_id


STATIC = {"type": "static", "static": {"max_chunk_size_tokens": CHUNK_TOKENS, "chunk_overlap_tokens": 0}}
# Chunks written per transaction by `add_bulk_files`.
BULK_BATCH = 20_000


def bulk_store(ctx: Context, tenant_id: str, words: list[str], chunks: int, per_file: int) -> str:
    """A store of `chunks` chunks in files of `per_file`, written straight into the tables: one small file
    ingested through the product, then `add_bulk_files`. Minutes for a million chunks, where ingesting their
    1 GB of text takes the better part of an hour; what search reads is the same (rows, postings)."""
    store_id, _ = ingest(ctx, tenant_id, corpus(words, 0.002, seed=chunks), STATIC)
    started = time.perf_counter()
    add_bulk_files(ctx, store_id, words, chunks, per_file, seed=chunks)
    print(
        f"  store of {_chunk_count(ctx, store_id)} chunks in {chunks // per_file + 1} files written in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return store_id


def add_bulk_files(
    ctx: Context, store_id: str, words: list[str], chunks: int, per_file: int, seed: int
) -> None:
    """Add completed files of `per_file` chunks (`chunks` in all) to the store, copying its first file's rows
    (files, chunk_sets, vector_store_files) with COPY for the chunks. Each chunk is words drawn as `corpus`
    draws them, without punctuation, so its postings come from each word's term (checked against
    Postings.build, the ingestion path, on the first file)."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, len(words) + 1)
    cdf = np.cumsum(weights) / weights.sum()
    word_terms = [term_text.term_ids(word) for word in words]
    has_term = np.array([len(found) == 1 for found in word_terms])
    term_of = np.array([found[0] if found else 0 for found in word_terms], dtype=np.int64)
    mean_bytes = float((np.array([len(word) + 1 for word in words]) * weights).sum() / weights.sum())
    per_chunk = max(1, round(CHUNK_TOKENS * 5.3 / mean_bytes))  # ~5.3 bytes of this corpus per cl100k token
    tables = {name: Base.metadata.tables[name] for name in ("files", "chunk_sets", "vector_store_files")}
    with ctx.uow() as uow:
        member = (
            uow.session.execute(
                select(tables["vector_store_files"])
                .where(VectorStoreFile.vector_store_id == store_id)
                .limit(1)
            )
            .mappings()
            .one()
        )
        chunk_set = (
            uow.session.execute(select(tables["chunk_sets"]).where(ChunkSet.id == member["chunk_set_id"]))
            .mappings()
            .one()
        )
        file = uow.session.execute(select(tables["files"]).where(File.id == member["id"])).mappings().one()
    checked = False
    per_batch = max(per_file, BULK_BATCH // per_file * per_file)
    for batch_start in range(0, chunks, per_batch):
        sizes = [
            min(per_file, chunks - start)
            for start in range(batch_start, min(chunks, batch_start + per_batch), per_file)
        ]
        total = sum(sizes)
        draws = np.searchsorted(cdf, rng.random((total, per_chunk)))
        texts = [" ".join(itemgetter(*row)(words)) for row in draws.tolist()]
        lengths = has_term[draws].sum(axis=1).astype(np.uint32)
        with ctx.uow() as uow:
            sequence = uow.session.scalar(text("SELECT pg_get_serial_sequence('chunks', 'id')"))
            last = uow.session.scalar(
                text("SELECT setval(:s, nextval(:s) + :n - 1)"), {"s": sequence, "n": total}
            )
            ids = np.arange(last - total + 1, last + 1, dtype=np.int64)
            files, sets, members, rows, offset = [], [], [], [], 0
            for size in sizes:
                file_id, set_id = new_id("file", "-"), new_id("cs")
                span = slice(offset, offset + size)
                postings = Postings.from_terms(
                    ids[span], lengths[span], term_of[draws[span]][has_term[draws[span]]]
                )
                if not checked:
                    built = Postings.build(ids[span], texts[span])
                    assert all(
                        np.array_equal(getattr(built, a), getattr(postings, a))
                        for a in ("terms", "df", "docs", "tfs", "lengths")
                    )
                    checked = True
                size_bytes = sum(len(t) for t in texts[span])
                files.append({**file, "id": file_id, "bytes": size_bytes, "text_bytes": size_bytes})
                sets.append(
                    {
                        **chunk_set,
                        "id": set_id,
                        "file_id": file_id,
                        "chunk_count": size,
                        "usage_bytes": size_bytes,
                        "postings": postings.encode(),
                    }
                )
                members.append({**member, "id": file_id, "chunk_set_id": set_id, "usage_bytes": size_bytes})
                rows.extend(
                    (
                        int(ids[offset + seq]),
                        set_id,
                        file["tenant_id"],
                        seq,
                        texts[offset + seq],
                        CHUNK_TOKENS,
                    )
                    for seq in range(size)
                )
                offset += size
            for name, values in (("files", files), ("chunk_sets", sets), ("vector_store_files", members)):
                uow.session.execute(insert(tables[name]), values)
            raw = uow.session.connection().connection.dbapi_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(
                    "COPY chunks (id, chunk_set_id, tenant_id, seq, text, tokens) FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            uow.commit()
    with ctx.uow() as uow:
        for table in (
            "chunks",
            "chunk_sets",
            "files",
            "vector_store_files",
        ):  # as autovacuum would, after as many
            uow.session.execute(text(f"ANALYZE {table}"))
        uow.commit()


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

"""In-process benchmark of search's in-memory side: BM25 (retrieval/bm25.py) and hybrid with exact vectors.

    .venv/bin/python scripts/bench_lexical.py [--sizes 100000,1000000] [--queries 200] [--set-chunks 100]

For each size in chunks: synthetic chunks of `--terms` term occurrences (after stop words: about a 200-token
chunk) drawn from a Zipf-like vocabulary of 200,000 terms, `--set-chunks` chunks per chunk set (a file);
reports the postings' size, the merge ("rebuild") time and the merged index's memory, what a change of the
store costs (one more file: its segment and the index over both; one file removed: masked), then p50/p99 of
lexical search (1–4 query terms drawn from the same distribution, so common words occur) at 10 and 50
results (the candidates search asks for: 50 and 200), hybrid (the same plus a 384-dimension float32 matrix
product and fusion), and 5 queries side by side against 1. Also the tokenizer's rate on real text
(`Postings.build`, what ingestion adds per chunk set). No database: the HTTP path adds its queries.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.files.retrieval.bm25 import Index, Postings, Segment  # noqa: E402
from orchestrator.files.retrieval.fusion import fuse  # noqa: E402
from orchestrator.files.vector_index import Matrix, stack  # noqa: E402

VOCABULARY = 200_000
DIMENSIONS = 384


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def zipf_terms(rng: np.random.Generator, count: int) -> np.ndarray:
    ranks = np.minimum(rng.zipf(1.15, size=count), VOCABULARY)
    return (ranks * 2654435761).astype(np.int64)  # spread like hashes


def parts_for(rng: np.random.Generator, chunks: int, per_set: int, terms: int) -> list[Postings]:
    parts, next_id = [], 0
    for start in range(0, chunks, per_set):
        n = min(per_set, chunks - start)
        lengths = rng.integers(terms // 2, terms * 3 // 2, size=n).astype(np.uint32)
        parts.append(
            Postings.from_terms(np.arange(next_id, next_id + n), lengths, zipf_terms(rng, int(lengths.sum())))
        )
        next_id += n
    return parts


def percentiles(times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"


def timed(work, queries) -> list[float]:
    times = []
    for query in queries:
        start = time.perf_counter()
        work(query)
        times.append(time.perf_counter() - start)
    return times


def tokenizer_rate() -> None:
    text = " ".join(p.read_text(errors="ignore") for p in (ROOT / "docs").glob("*.md"))
    words = re.findall(r"\S+", text)
    chunks = [" ".join(words[i : i + 150]) for i in range(0, len(words), 150)]
    start = time.perf_counter()
    Postings.build(range(len(chunks)), chunks)
    took = time.perf_counter() - start
    print(
        f"tokenize + postings of real text: {len(chunks)} chunks of 150 words in {took * 1000:.0f} ms "
        f"({len(chunks) / took:,.0f} chunks/s, {len(text.encode()) / took / 1e6:.1f} MB/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--set-chunks", type=int, default=100)
    parser.add_argument("--terms", type=int, default=110)
    parser.add_argument("--no-hybrid", action="store_true")
    args = parser.parse_args()
    tokenizer_rate()
    rng = np.random.default_rng(1)
    for size in [int(s) for s in args.sizes.split(",")]:
        measure(rng, size, args)


def store_change(
    rng, parts: list[Postings], segment: Segment, queries: list, args: argparse.Namespace
) -> None:
    """What lexical_index does when a file comes or goes: a segment of the new file beside the merged one,
    or the removed file masked out; and search over the result."""
    (added,) = parts_for(rng, args.set_chunks, args.set_chunks, args.terms)
    start = time.perf_counter()
    grown = Index([segment, Segment.merge([added])])
    took = time.perf_counter() - start
    dead = np.zeros(len(parts), dtype=bool)
    dead[len(parts) // 2] = True
    start = time.perf_counter()
    shrunk = Index([segment], [dead])
    print(
        f"  one file added: {took * 1000:,.1f} ms (its segment and the index over both); one removed: "
        f"{(time.perf_counter() - start) * 1000:,.1f} ms (masked)"
    )
    print(
        f"  lexical, 50 candidates, two segments: {percentiles(timed(lambda q: grown.search(q, 50), queries))}"
    )
    print(
        f"  lexical, 50 candidates, a file masked: {percentiles(timed(lambda q: shrunk.search(q, 50), queries))}"
    )


def measure(rng: np.random.Generator, size: int, args: argparse.Namespace) -> None:
    before = rss_mb()
    parts = parts_for(rng, size, args.set_chunks, args.terms)
    part_mb = sum(part.nbytes for part in parts) / 1e6
    encoded_mb = sum(len(part.encode()) for part in parts[:50]) / 50 * len(parts) / 1e6
    start = time.perf_counter()
    segment = Segment.merge(parts)
    index = Index([segment])
    rebuild = time.perf_counter() - start
    print(
        f"\n{size:,} chunks in {len(parts):,} sets: postings {part_mb:,.0f} MB in memory "
        f"(~{encoded_mb:,.0f} MB stored), {len(segment.docs):,} postings, {len(segment.terms):,} terms; "
        f"merge {rebuild * 1000:,.0f} ms; merged index {(segment.nbytes + index.nbytes) / 1e6:,.0f} MB; "
        f"RSS +{rss_mb() - before:,.0f} MB"
    )
    queries = [np.unique(zipf_terms(rng, int(rng.integers(1, 5)))) for _ in range(args.queries)]
    store_change(rng, parts, segment, queries, args)
    for limit in (50, 200):
        times = timed(lambda q, limit=limit: index.search(q, limit), queries)
        print(f"  lexical, {limit} candidates: {percentiles(times)}")
    allowed = np.zeros(len(parts), dtype=bool)
    allowed[::2] = True
    times = timed(lambda q: index.search(q, 50, allowed), queries)
    print(f"  lexical, half the files filtered out: {percentiles(times)}")

    pool = ThreadPoolExecutor(max_workers=5)  # as search's, kept for the process

    def five_lexical(i: int) -> list:
        return list(pool.map(lambda j: index.search(queries[j], 50), range(i, min(i + 5, len(queries)))))

    one = timed(lambda i: index.search(queries[i], 50), range(0, len(queries), 5))
    together = timed(five_lexical, range(0, len(queries), 5))
    ratio = statistics.median(together) / statistics.median(one)
    print(f"  5 lexical queries in one call: {percentiles(together)} ({ratio:.2f}x one)")
    if args.no_hybrid:
        return
    vectors = rng.standard_normal((size, DIMENSIONS), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ends = np.cumsum([len(p.chunk_ids) for p in parts])
    matrices = [
        Matrix(index.chunk_ids[end - len(p.chunk_ids) : end], vectors[end - len(p.chunk_ids) : end])
        for p, end in zip(parts, ends, strict=True)
    ]
    started = time.perf_counter()
    stacked = stack(matrices, tuple(map(str, range(len(parts)))))
    print(f"  vectors stacked (with their code past 20,000 rows) in {time.perf_counter() - started:.1f} s")
    query_vectors = rng.standard_normal((len(queries), DIMENSIONS), dtype=np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)

    def hybrid(i: int) -> dict:
        lexical = [(hit.chunk_id, hit.relevance) for hit in index.search(queries[i], 50)]
        return fuse([lexical, stacked.nearest(query_vectors[i], 50)])

    def five(i: int) -> list:
        # As search does: the semantic lists in one matrix product, the lexical ones side by side.
        batch = list(range(i, min(i + 5, len(queries))))
        semantic = stacked.nearest_many(query_vectors[batch], 50)
        lexical = list(pool.map(lambda j: index.search(queries[j], 50), batch))
        return [
            fuse([[(hit.chunk_id, hit.relevance) for hit in hits], near])
            for hits, near in zip(lexical, semantic, strict=True)
        ]

    times = timed(hybrid, range(len(queries)))
    print(f"  hybrid, 50 candidates: {percentiles(times)}")
    one = timed(hybrid, range(0, len(queries), 5))
    together = timed(five, range(0, len(queries), 5))
    print(
        f"  5 hybrid queries in one call: {percentiles(together)} "
        f"({statistics.median(together) / statistics.median(one):.2f}x one, {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()

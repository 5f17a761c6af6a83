"""Retrieval quality: labelled collections in BEIR's format, loaded into a vector store through the official
SDK, searched with `vector_stores.search`, and scored with trec_eval's measures beside a reference BM25 over
the same documents. Shared by the quality benchmark (scripts/bench_quality.py) and the test suite.

A collection is BEIR's three files: `corpus.jsonl` ({"_id", "title", "text"} a line), `queries.jsonl`
({"_id", "text"}) and `qrels/test.tsv` (query-id, corpus-id, score; a header line).
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MEASURES = {"ndcg_cut.10", "recall.10", "recall.50"}
# The SDK's batch call takes at most this many files (a larger batch is a 400).
BATCH_FILES = 500


@dataclass
class Collection:
    name: str
    corpus: dict[str, dict]  # doc id → {"title", "text"}
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id → {doc id: grade}


# --- BEIR files ----------------------------------------------------------------------------------------


def load_beir(folder: Path, name: str | None = None) -> Collection:
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            corpus[str(row["_id"])] = {"title": row.get("title", ""), "text": row.get("text", "")}
    queries = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / "test.tsv").open(encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows)
        for query_id, doc_id, score in rows:
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    # BEIR evaluates the queries that have judgements only.
    queries = {q: text for q, text in queries.items() if q in qrels}
    return Collection(name or folder.name, corpus, queries, qrels)


def write_beir(collection: Collection, folder: Path) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc_id, doc in collection.corpus.items():
            out.write(json.dumps({"_id": doc_id, **doc}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in collection.queries.items():
            out.write(json.dumps({"_id": query_id, "text": text}, ensure_ascii=False) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id, judged in collection.qrels.items():
            for doc_id, grade in judged.items():
                out.write(f"{query_id}\t{doc_id}\t{grade}\n")


def sample(collection: Collection, queries: int, documents: int, seed: int = 7) -> Collection:
    """At most `queries` queries and a corpus of their relevant documents filled up with others drawn at
    random to `documents` (never fewer than the relevant ones): a collection small enough to ingest through
    today's API in minutes, judged exactly as the whole one."""
    rng = random.Random(seed)
    chosen = sorted(collection.queries)
    if len(chosen) > queries:
        chosen = sorted(rng.sample(chosen, queries))
    relevant = {
        d for q in chosen for d, grade in collection.qrels[q].items() if grade > 0 and d in collection.corpus
    }
    others = sorted(set(collection.corpus) - relevant)
    fill = rng.sample(others, max(0, min(len(others), documents - len(relevant))))
    keep = relevant | set(fill)
    return Collection(
        collection.name,
        {d: doc for d, doc in collection.corpus.items() if d in keep},
        {q: collection.queries[q] for q in chosen},
        {q: {d: g for d, g in collection.qrels[q].items() if d in keep} for q in chosen},
    )


def document_text(doc: dict) -> str:
    return f"{doc['title']}\n\n{doc['text']}\n" if doc.get("title") else f"{doc['text']}\n"


# --- scoring -------------------------------------------------------------------------------------------


def evaluate(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean nDCG@10, recall@10 and recall@50 over the judged queries (trec_eval's definitions; a query
    with nothing retrieved scores 0)."""
    import pytrec_eval

    per_query = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)
    names = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@50": "recall_50"}
    return {
        label: sum(per_query.get(q, {}).get(key, 0.0) for q in qrels) / len(qrels)
        for label, key in names.items()
    }


def ranked(doc_ids: Iterable[str]) -> dict[str, float]:
    """A run's scores from an order: trec_eval sorts by score, so the order the engine returned is kept."""
    return {doc_id: 1000.0 - rank for rank, doc_id in enumerate(doc_ids)}


def reference_bm25(collection: Collection, k: int = 50) -> dict[str, dict[str, float]]:
    """Okapi BM25 over the same document texts: bm25s (Lucene's IDF), k1 1.2, b 0.75, English stop words and
    the Snowball English stemmer, each document scored whole."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    doc_ids = list(collection.corpus)
    texts = [document_text(collection.corpus[d]) for d in doc_ids]
    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    query_ids = list(collection.queries)
    tokens = bm25s.tokenize(
        [collection.queries[q] for q in query_ids], stopwords="en", stemmer=stemmer, show_progress=False
    )
    results, scores = retriever.retrieve(tokens, k=min(k, len(doc_ids)), show_progress=False)
    run = {}
    for row, query_id in enumerate(query_ids):
        run[query_id] = {
            doc_ids[i]: float(s) for i, s in zip(results[row], scores[row], strict=True) if s > 0
        }
    return run


# --- through the API -----------------------------------------------------------------------------------


def load_store(client, collection: Collection, name: str, uploaders: int = 4) -> tuple[str, dict[str, str]]:
    """A vector store holding each document of the collection as a file `<doc id>.txt`, attached by file
    batches and polled until every file is completed; returns its id and file id → doc id."""
    doc_ids = list(collection.corpus)

    def upload(doc_id: str) -> str:
        data = document_text(collection.corpus[doc_id]).encode()
        return client.files.create(file=(f"{doc_id}.txt", data), purpose="assistants").id

    with ThreadPoolExecutor(uploaders) as pool:
        file_ids = list(pool.map(upload, doc_ids))
    store = client.vector_stores.create(name=name)
    for start in range(0, len(file_ids), BATCH_FILES):
        batch = client.vector_stores.file_batches.create_and_poll(
            store.id, file_ids=file_ids[start : start + BATCH_FILES], poll_interval_ms=1000
        )
        if batch.file_counts.completed != len(file_ids[start : start + BATCH_FILES]):
            raise RuntimeError(f"{name}: batch ended {batch.status} with {batch.file_counts}")
    return store.id, dict(zip(file_ids, doc_ids, strict=True))


def search_run(
    client,
    store_id: str,
    collection: Collection,
    files: dict[str, str],
    workers: int = 4,
    took: list[float] | None = None,
    **options,
) -> dict[str, dict[str, float]]:
    """Each query through `vector_stores.search` (max_num_results 50), `workers` at a time; a document ranks
    where its best chunk does. Each search's seconds are appended to `took`."""

    def search(query_id: str) -> tuple[str, dict[str, float]]:
        started = time.perf_counter()
        page = client.vector_stores.search(
            store_id, query=collection.queries[query_id], max_num_results=50, **options
        )
        if took is not None:
            took.append(time.perf_counter() - started)
        order = list(dict.fromkeys(files[hit.file_id] for hit in page.data))
        return query_id, ranked(order)

    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(search, list(collection.queries)))

"""The local reranker's quality gain and latency, in-process: a reference BM25's top 50 per query, then
the product's local reranker (files/rerank.py, `ORCHESTRATOR_RERANK_MODEL=local-minilm`), side by side.

    .venv/bin/python scripts/bench_rerank.py BEIR_DIR [BEIR_DIR ...] [--queries N]

A BEIR directory holds corpus.jsonl, queries.jsonl and qrels/test.tsv. Prints nDCG@10 of BM25 alone, of the
bi-encoder's similarity alone and of the product's blend (files/rerank.py), and the milliseconds one
reranking of 50 candidates takes (the query and each candidate embedded: nothing is cached). The search
through the API, fusion included, is scripts/bench_quality.py's.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import pathlib
import time
from types import SimpleNamespace

import numpy as np

from orchestrator.files import rerank
from orchestrator.settings import Settings

CANDIDATES = 50


@dataclasses.dataclass(frozen=True)
class Hit:
    doc_id: str
    text: str
    score: float


def load(root: pathlib.Path):
    corpus = {d["_id"]: f"{d.get('title', '')} {d['text']}".strip() for d in _lines(root / "corpus.jsonl")}
    qrels: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for number, line in enumerate((root / "qrels" / "test.tsv").read_text().splitlines()):
        if number and line.strip():
            query_id, doc_id, grade = line.split("\t")[:3]
            qrels[query_id][doc_id] = int(grade)
    queries = {q["_id"]: q["text"] for q in _lines(root / "queries.jsonl") if q["_id"] in qrels}
    return corpus, queries, qrels


def _lines(path: pathlib.Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bm25(corpus: dict[str, str]):
    import bm25s

    ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(list(corpus.values()), stopwords="en", show_progress=False), show_progress=False
    )

    def top(query: str) -> list[Hit]:
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        tokens = [[t for t in tokens[0] if t in retriever.vocab_dict]]
        if not tokens[0]:
            return []
        found, scores = retriever.retrieve(tokens, k=min(CANDIDATES, len(ids)), show_progress=False)
        return [
            Hit(ids[i], corpus[ids[i]], float(s)) for i, s in zip(found[0], scores[0], strict=True) if s > 0
        ]

    return top


def ndcg(ranked: list[str], grades: dict[str, int], k: int = 10) -> float:
    gain = sum((2 ** grades.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sum(
        (2**g - 1) / math.log2(i + 2) for i, g in enumerate(sorted(grades.values(), reverse=True)[:k])
    )
    return gain / ideal if ideal else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("collections", nargs="+")
    parser.add_argument("--queries", type=int, default=0, help="at most this many queries per collection")
    args = parser.parse_args()
    ctx = SimpleNamespace(settings=Settings(database_url="sqlite://", rerank_model="local-minilm"))
    rerank._local(ctx, "warm up", ["the model loads once"])
    print(
        f"{'collection':28} {'queries':>7} {'BM25':>7} {'cosine':>7} {'rerank':>7} {'gain':>7} {'ms/50':>7}"
    )
    for root in map(pathlib.Path, args.collections):
        corpus, queries, qrels = load(root)
        top = bm25(corpus)
        chosen = list(queries)[: args.queries or None]
        rows, seconds, timed = collections.defaultdict(list), 0.0, 0
        for query_id in chosen:
            hits = top(queries[query_id])
            rows["bm25"].append(ndcg([h.doc_id for h in hits], qrels[query_id]))
            if not hits:
                rows["cosine"].append(0.0)
                rows["rerank"].append(0.0)
                continue
            rerank._VECTORS.clear()  # cold: every candidate embedded, as a search of unseen chunks
            started = time.perf_counter()
            similarity = np.array(rerank._local(ctx, queries[query_id], [h.text for h in hits]))
            if len(hits) == CANDIDATES:
                seconds, timed = seconds + time.perf_counter() - started, timed + 1
            # What `reorder` does with the local model's scores (stable: ties keep BM25's order).
            blended = rerank._blend(similarity, np.array([h.score for h in hits]))
            for name, scores in (("cosine", similarity), ("rerank", blended)):
                order = sorted(range(len(hits)), key=lambda i: -scores[i])
                rows[name].append(ndcg([hits[i].doc_id for i in order], qrels[query_id]))
        base, cosine, ranked = (float(np.mean(rows[k])) for k in ("bm25", "cosine", "rerank"))
        latency = f"{1000 * seconds / timed:7.0f}" if timed else "      -"
        print(
            f"{root.name:28} {len(chosen):7} {base:7.4f} {cosine:7.4f} {ranked:7.4f} {ranked - base:+7.4f} {latency}",
            flush=True,
        )


if __name__ == "__main__":
    main()

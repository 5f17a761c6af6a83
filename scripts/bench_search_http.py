"""Search latency through HTTP: `vector_stores.search` with the official SDK against a real `orchestrator api`.

    .venv/bin/python scripts/bench_search_http.py [--sizes 100000[,1000000]] [--queries 300] [--pairs 40]
                                                  [--api-workers 2] [--chunks-per-file 100] [--lexical-cache-mb 1024]
                                                  [--vector-cache-mb 0] [--no-hybrid]
                                                  [--baseline DIR]
    .venv/bin/python scripts/benchmark.py --sections search-http [--search-http-args "..."]

For each size (chunks of 200 tokens), on a throwaway database:

1. one store of files of `--chunks-per-file` chunks, written straight into the tables
   (scripts/bench_retrieval.py's `bulk_store`: a million chunks in minutes), then an `orchestrator api`
   (gunicorn, `--workers 2` as deployed) started against the database with a key;
2. lexical: the first search (loads the store's index into the api worker: "cold", reported apart), warm-up,
   then p50/p99 over `--queries` queries of 1–4 words, `ranking_options={"ranker": "none"}`,
   `max_num_results=10`, one client, one connection (so one api worker, whose caches are warm);
3. the same store given random unit vectors of the local model's 384 dimensions, written straight into the
   rows, and marked embedded by local-minilm (embedding 100,000 chunks on two cores would take hours): hybrid,
   where the api embeds each query with the real model; the first search also loads the model and the matrix;
4. lexical, a change of the store: one file of `--chunks-per-file` chunks added, then one removed, and the
   first search after each (what the change costs the api worker that serves it: its index rebuilt);
5. for each of lexical and hybrid, a 5-query call (`query=[q1..q5]`) against a 1-query call, alternated
   `--pairs` times: the ratio of their medians.

Each figure is printed next to the issue's goal (#23). `--baseline DIR` (another checkout, e.g. from
`git archive main | tar -x -C DIR`) starts a second api with DIR first on PYTHONPATH and sends every query
to both in turn: before/after side by side under the same load. Not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.services.keys import create_key  # noqa: E402
from scripts.bench_retrieval import add_bulk_files, add_random_vectors, bulk_store, make_context, vocabulary  # noqa: E402
from scripts.benchlib import percentile  # noqa: E402
from tests.support.databases import throwaway_database  # noqa: E402
from tests.support.processes import Stack  # noqa: E402

# The goals, in ms: (p50, p99) per size; a 5-query call at most 1.5× one query.
GOALS = {100_000: (30.0, 100.0), 1_000_000: (100.0, None)}
BATCH_RATIO = 1.5


def timed_search(client: openai.OpenAI, store_id: str, query) -> float:
    started = time.perf_counter()
    client.vector_stores.search(store_id, query=query, ranking_options={"ranker": "none"}, max_num_results=10)
    return (time.perf_counter() - started) * 1000


def goal(value: float, limit: float | None) -> str:
    if limit is None:
        return "(no goal)"
    return f"(goal ≤ {limit:.0f} ms: {'met' if value <= limit else 'MISSED'})"


def warm_every_worker(client: openai.OpenAI, store_id: str, queries: list[str]) -> None:
    """Searches on fresh connections until ten in a row are warm: each gunicorn worker loads its own caches,
    and a connection dropped while idle (keep-alive) may come back on the other worker."""
    warm_in_a_row = 0
    for index in range(200):
        # A new client: a new connection, on whichever worker accepts it.
        with openai.OpenAI(base_url=client.base_url, api_key=client.api_key, timeout=300) as fresh:
            took = timed_search(fresh, store_id, queries[index % 20])
        warm_in_a_row = warm_in_a_row + 1 if took < 1000 else 0
        if warm_in_a_row >= 10:
            break
    for query in queries[:20]:
        timed_search(client, store_id, query)


def fresh_queries(asked: list[str], count: int) -> list[str]:
    """`count` queries of 1–4 words of the same vocabulary, none among `asked` nor repeated."""
    words = sorted({word for query in asked for word in query.split()})
    rng, seen, found = random.Random(len(asked) + count), set(asked), []
    while len(found) < count:
        query = " ".join(rng.sample(words, rng.randint(1, 4)))
        if query not in seen:
            seen.add(query)
            found.append(query)
    return found


def measure(
    clients: dict[str, openai.OpenAI], store_id: str, kind: str, size: int, queries: list[str], pairs: int
):
    """Each figure for each api; with two, every query goes to both in turn (alternating which is first), so
    they share the machine's load."""
    for name, client in clients.items():
        cold = timed_search(client, store_id, queries[0])
        loads = "the index" if kind == "lexical" else "the vectors and the model"
        print(f"  {kind}{name}: first search (loads {loads}): {cold:.0f} ms", flush=True)
    for client in clients.values():
        warm_every_worker(client, store_id, queries)
    order = list(clients)
    took: dict[str, list[float]] = {name: [] for name in order}
    for index, query in enumerate(queries):
        for name in order if index % 2 == 0 else order[::-1]:
            took[name].append(timed_search(clients[name], store_id, query))
    p50_goal, p99_goal = GOALS.get(size, (None, None))
    for name in order:
        p50, p99 = percentile(took[name], 50), percentile(took[name], 99)
        label = f"{kind}{name}"
        print(f"  {label}: p50 {p50:.1f} ms {goal(p50, p50_goal)}", flush=True)
        print(f"  {label}: p99 {p99:.1f} ms {goal(p99, p99_goal)}, mean {statistics.mean(took[name]):.1f} ms")
    one: dict[str, list[float]] = {name: [] for name in order}
    five: dict[str, list[float]] = {name: [] for name in order}
    # Queries not asked before, each call its own: an api keeps the vectors of the queries it embedded
    # last, and a call of queries asked before would measure that memory, not the search.
    fresh = fresh_queries(queries, 6 * pairs)
    for index in range(pairs):
        single, batch = fresh[6 * index], fresh[6 * index + 1 : 6 * index + 6]
        for name in order if index % 2 == 0 else order[::-1]:
            one[name].append(timed_search(clients[name], store_id, single))
            five[name].append(timed_search(clients[name], store_id, batch))
    for name in order:
        ratio = statistics.median(five[name]) / statistics.median(one[name])
        print(
            f"  {kind}{name}: 5-query call {statistics.median(five[name]):.1f} ms / 1-query call "
            f"{statistics.median(one[name]):.1f} ms (medians of {pairs}) = {ratio:.2f}× "
            f"(goal ≤ {BATCH_RATIO}×: {'met' if ratio <= BATCH_RATIO else 'MISSED'})",
            flush=True,
        )


def store_change(
    ctx, clients: dict[str, openai.OpenAI], store_id: str, words, per_file: int, queries
) -> None:
    """One file added, then one removed: the first search after each, on each api (every worker of an api
    pays it once; the one connection's worker is measured), against the search before."""
    for change in ("added", "removed"):
        before = {
            name: statistics.median(timed_search(c, store_id, q) for q in queries[:5])
            for name, c in clients.items()
        }
        if change == "added":
            add_bulk_files(ctx, store_id, words, per_file, per_file, seed=len(queries))
        else:
            with ctx.uow() as uow:
                uow.session.execute(
                    text(
                        "DELETE FROM vector_store_files WHERE vector_store_id = :s AND id = (SELECT min(id) FROM vector_store_files WHERE vector_store_id = :s)"
                    ),
                    {"s": store_id},
                )
                uow.commit()
        for name, client in clients.items():
            first = timed_search(client, store_id, queries[0])
            print(
                f"  lexical{name}: first search after one file {change}: {first:.0f} ms (a search before: {before[name]:.1f} ms)",
                flush=True,
            )


def run_size(url: str, words: list[str], size: int, args) -> None:
    print(f"{size:,} chunks (load average {' '.join(f'{v:.1f}' for v in os.getloadavg())})", flush=True)
    ctx = make_context(url, None)
    tenant_id, key = create_key(ctx, f"search-http-{size}")
    store_id = bulk_store(ctx, tenant_id, words, size, args.chunks_per_file)
    rng = random.Random(size)
    queries = [" ".join(rng.sample(words[:3000], rng.randint(1, 4))) for _ in range(args.queries)]
    apis = {"": {}}
    if args.baseline:  # the same api from another checkout (its code first on PYTHONPATH)
        apis = {" (this)": {}, " (baseline)": {"PYTHONPATH": str(Path(args.baseline).resolve())}}
    stacks = []
    with tempfile.TemporaryDirectory(prefix="bench-search-http-") as workdir:
        try:
            clients = {}
            for index, (name, env) in enumerate(apis.items()):
                (Path(workdir) / str(index)).mkdir()
                stack = Stack(
                    url,
                    args.redis_url,
                    Path(workdir) / str(index),
                    ORCHESTRATOR_LOG_LEVEL="WARNING",
                    ORCHESTRATOR_LEXICAL_CACHE_MB=str(args.lexical_cache_mb),
                    **(
                        {"ORCHESTRATOR_VECTOR_CACHE_MB": str(args.vector_cache_mb)}
                        if args.vector_cache_mb
                        else {}
                    ),
                    **env,
                )
                stacks.append(stack)
                stack.start(
                    "api",
                    "api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(stack.port),
                    f"--workers={args.api_workers}",
                )
                stack.wait_healthy(timeout=120)
                clients[name] = openai.OpenAI(
                    base_url=stack.base + "/v1", api_key=key, timeout=300, max_retries=0
                )
            measure(clients, store_id, "lexical", size, queries, args.pairs)
            print(f"  load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
            store_change(ctx, clients, store_id, words, args.chunks_per_file, queries)
            if not args.no_hybrid:
                add_random_vectors(ctx, store_id)
                measure(clients, store_id, "hybrid", size, queries, args.pairs)
        finally:
            for stack in stacks:
                stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000", help="chunks per store, comma separated")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=40, help="alternated 1-query and 5-query calls")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--chunks-per-file", type=int, default=100, help="the store's files' size")
    parser.add_argument(
        "--lexical-cache-mb",
        type=int,
        default=1024,
        help="ORCHESTRATOR_LEXICAL_CACHE_MB of every api (both alike)",
    )
    parser.add_argument(
        "--vector-cache-mb",
        type=int,
        default=0,
        help="ORCHESTRATOR_VECTOR_CACHE_MB of every api (0: its default)",
    )
    parser.add_argument("--no-hybrid", action="store_true", help="lexical only: no local model")
    parser.add_argument(
        "--baseline", default="", help="another checkout's root: its api measured side by side with this one"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    words = vocabulary()
    print(
        f"search through HTTP (openai SDK, one client, ranker none, max_num_results 10, {args.queries} queries, "
        f"api --workers {args.api_workers})",
        flush=True,
    )
    with throwaway_database() as url:
        for size in (int(s) for s in args.sizes.split(",")):
            run_size(url, words, size, args)


if __name__ == "__main__":
    main()

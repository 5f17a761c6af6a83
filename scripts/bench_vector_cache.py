"""In-process benchmark of a store's change in the vector index (files/vector_index.py): before and after side by
side.

    .venv/bin/python scripts/bench_vector_cache.py [--rows 1000000] [--set-chunks 100] [--rounds 2]

A store of `--rows` random 384-dimension unit vectors in chunk sets (files) of `--set-chunks` rows. "Before" is
what the index did until stacks were cut from stacks: every chunk set's matrix kept, and a changed store stacked
and coded again from them (`stack` of every part). "Now" keeps the stack alone and cuts the changed store's
stack from it, coding only the added rows (`restack`). For one file added and one removed, in alternating
rounds: the time to the first search's results (building included; the new file's database read is not, the
same both ways), and the bytes each way holds for the store. No database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.files.vector_index import Matrix, restack, stack  # noqa: E402

DIMENSIONS = 384


def unit_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, DIMENSIONS), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def first_search(build, query: np.ndarray) -> tuple[float, object]:
    """Seconds to build the changed store's stack and answer one query (50 results) from it."""
    start = time.perf_counter()
    built = build()
    built.nearest(query, 50)
    return time.perf_counter() - start, built


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--set-chunks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    files = args.rows // args.set_chunks
    # Each part its own array, as loads made them (and as the old cache kept them beside the stack).
    parts = [
        Matrix(
            np.arange(i * args.set_chunks, (i + 1) * args.set_chunks, dtype=np.int64),
            unit_rows(rng, args.set_chunks),
        )
        for i in range(files)
    ]
    names = tuple(f"f{i:07d}" for i in range(files))
    start = time.perf_counter()
    base = stack(parts, names)
    print(f"{args.rows:,} rows in {files:,} files; first stack and code: {time.perf_counter() - start:.1f} s")
    part_bytes = sum(part.nbytes for part in parts)
    old_stack = base.nbytes - (0 if base.code_rows is None else base.code_rows.nbytes)  # kept no code rows
    print(
        f"  held for the store: before {(part_bytes + old_stack) / 2**20:,.0f} MB (parts {part_bytes / 2**20:,.0f}"
        f" + stack {old_stack / 2**20:,.0f}), now {base.nbytes / 2**20:,.0f} MB (the stack: matrix "
        f"{base.matrix.nbytes / 2**20:,.0f}, codes {(base.nbytes - base.matrix.nbytes) / 2**20:,.0f} and the rest)"
    )
    added = Matrix(
        np.arange(args.rows, args.rows + args.set_chunks, dtype=np.int64), unit_rows(rng, args.set_chunks)
    )
    grown_names = (*names, "g0000000")
    shrunk_names = names[: files // 2] + names[files // 2 + 1 :]
    shrunk_parts = parts[: files // 2] + parts[files // 2 + 1 :]
    query = unit_rows(rng, 1)[0]
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        runs = {
            "added, before": lambda: stack([*parts, added], grown_names),
            "added, now": lambda: restack(base, {"g0000000": added}, grown_names),
            "removed, before": lambda: stack(shrunk_parts, shrunk_names),
            "removed, now": lambda: restack(base, {}, shrunk_names),
        }
        for label, build in runs.items():
            took, built = first_search(build, query)
            results.setdefault(label, []).append(took)
            del built
    for label, times in results.items():
        print(f"  one file {label}: first search {min(times):.2f}–{max(times):.2f} s ({len(times)} runs)")
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

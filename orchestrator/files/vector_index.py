"""Nearest-neighbour search over the vectors of the chunk sets a search reads, cached in memory.

No pgvector here: a completed chunk set's vectors never change, so each process loads them (the rows in
`seq` order) into a unit-length float32 matrix, the sets a search reads together stacked one
under the other, and keeps that stack by exactly those sets, least recently used first out, within
`vector_cache_mb`. Only stacks are kept, so a store's vectors are held once (a stack of its files before a
change stays until it is the least recently used: the sets of an assistant's store with one thread's files and
with another's, say, are both asked for again). When the set changes (a file
added or removed) the new stack is cut from the stack in memory that holds most of its chunk sets (each set is
a contiguous range of its rows) and only the added sets are read from the database, so a store of a million
chunks takes a file in a fraction of a second, not the half minute of reading it all again.

Up to `EXACT_ROWS` rows a search is exact: one matrix product for all of a call's queries and a partial
sort, about a millisecond there. Past it, an exact scan costs ~5 ms per query at 100,000 rows of 384
dimensions and ~70 ms at 1,000,000 on one core, so the stacked matrix also gets a compact code of its
rows (faiss product quantization with 4-bit fast-scan, 1 bit per dimension, 3% of the matrix): a query
scans every row's code, not just a few clusters as an IVF or graph index would, and the `RESCORE_PER_RESULT`
times `limit` best by code are scored exactly from the matrix. Scores are therefore exact; only a row the
code ranked very low can be missed (recall@50 0.99+ on MiniLM vectors at 100,000 and 1,000,000 rows,
docs/performance.md). A row's code depends only on the row and the quantizer (trained on a fixed sample of
the stack), so a changed store's stack keeps its quantizer and the kept rows' codes and encodes only the added
rows; the quantizer is trained again (a few seconds at a million rows) once the store has doubled since. Two
processes that saw a store's changes in a different order may thus hold different codes: their scores are the
same, and only which very-low-ranked row a code misses can differ. Where faiss cannot be installed every
search is exact. The cache holds nothing but what the database holds, so losing it costs only the next load.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.db.connection import on_postgres
from orchestrator.db.retrieval_models import Chunk
from orchestrator.files import budget_cache
from orchestrator.files.budget_cache import BudgetCache, PerProcess
from orchestrator.providers import native_memory
from orchestrator.providers.embeddings import offload

log = logging.getLogger(__name__)

# Stacks of up to this many rows are searched exactly (a millisecond or so); larger ones through a code and
# exact rescoring. Small stores, and every test's, thus rank exactly as brute force does.
EXACT_ROWS = 20_000
# Candidates per wanted result the code offers for exact rescoring (measured: recall@50 0.995 at 1,000,000
# MiniLM rows with 32, 0.98 with 16).
RESCORE_PER_RESULT = 32
# Rows the code is trained on: enough for 16 centroids per group, and a build that stays a few seconds.
TRAINING_ROWS = 65_536
# Chunk sets read per statement (Postgres): each a row of its ids and vectors, about 150 KB for 100 chunks.
LOAD_BATCH = 200
# A stack's quantizer is reused by the stacks cut from it up to this many times the rows it was trained with.
RETRAIN_GROWTH = 2


@dataclass(frozen=True)
class Matrix:
    ids: np.ndarray  # chunk ids, int64
    vectors: np.ndarray  # (len(ids), dimensions) float32, unit rows

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.vectors.nbytes


EMPTY = Matrix(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))


@dataclass(frozen=True, eq=False)
class Stacked:
    """Chunk sets searched together: their matrices one under the other, and which set each row is of;
    `codes`, past `EXACT_ROWS` rows, the rows' compact code (a faiss index whose labels are row numbers), with
    `code_rows` the same codes one row each (what a stack cut from this one reuses) and `trained_on` the rows
    of the stack its quantizer was trained for."""

    matrix: Matrix
    part_of: np.ndarray  # int32 per row, ascending: the position of its chunk set in `parts`
    parts: tuple[str, ...]
    position: dict[str, int] = field(default_factory=dict)
    codes: Any = None
    code_rows: np.ndarray | None = None  # (rows, code bytes) uint8
    trained_on: int = 0
    sizes: np.ndarray = field(init=False)  # rows per part

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", np.bincount(self.part_of, minlength=len(self.parts)))

    def mask(self, allowed: Collection[str]) -> np.ndarray:
        """A boolean per part: the chunk sets in `allowed`."""
        return budget_cache.mask(self.position, len(self.parts), allowed)

    def nearest(
        self, query: np.ndarray, limit: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The `limit` closest rows (cosine) to the unit vector `query`, best first; `allowed`: a boolean
        per part."""
        return self.nearest_many(query[None, :], limit, allowed)[0]

    def nearest_many(
        self, queries: np.ndarray, limit: int, allowed: np.ndarray | None = None
    ) -> list[list[tuple[int, float]]]:
        """`nearest` for several queries (rows) in one pass: the matrix (or its code), the costly part to
        read from memory, is read once for them all."""
        vectors = self.matrix.vectors
        if not len(self.matrix.ids) or vectors.shape[1] != queries.shape[1] or limit <= 0:
            return [[] for _ in queries]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        kept = None if allowed is None else allowed[self.part_of]
        rows = None if kept is None else np.flatnonzero(kept)
        wanted = self._wanted(limit, len(vectors) if rows is None else len(rows))
        # The allowed rows are copied out and scored when few: up to EXACT_ROWS, or (with a code) fewer than
        # the candidates the code would be asked for. Copying most of a big matrix costs more than scoring
        # it all, and a code asked for many times the allowed rows costs more than scoring them.
        if rows is not None and len(rows) > EXACT_ROWS and (self.codes is None or wanted < len(rows)):
            rows = None
        if self.codes is not None and rows is None:
            return self._rescored(queries, limit, self._candidates(queries, wanted, kept))
        return self._best(queries, limit, kept, rows)

    def _wanted(self, limit: int, allowed_rows: int) -> int:
        """Candidates to ask the code for: `RESCORE_PER_RESULT` per result, times as many more as a filter
        leaves out, so about as many allowed ones come back."""
        total = len(self.matrix.ids)
        return min(total, -(-RESCORE_PER_RESULT * limit * total // max(allowed_rows, 1)))

    def _candidates(self, queries: np.ndarray, wanted: int, kept: np.ndarray | None) -> np.ndarray:
        """Each query's rows the code ranks best (`wanted` a query, a row each), -1 where none or not
        allowed."""
        _faiss().omp_set_num_threads(1)  # this thread's: on a busy machine more only spin (measured)
        _, candidates = self.codes.search(queries, wanted)
        if kept is not None:
            candidates[~kept[np.maximum(candidates, 0)]] = -1
        return candidates

    def _rescored(
        self, queries: np.ndarray, limit: int, candidates: np.ndarray
    ) -> list[list[tuple[int, float]]]:
        """Each query's best of its own candidates (rows of `candidates`, -1: none), scored exactly: one
        product per query and candidate, read from the matrix in place. Scoring each query against every
        query's candidates (one matrix product over their union) cost five queries 5 ms more: the union's rows
        copied out, and five times the products, for a recall that is the one query's already (only a row
        another query's code found and this one's missed could have been added)."""
        vectors = np.ascontiguousarray(self.matrix.vectors)
        rows = np.ascontiguousarray(np.maximum(candidates, 0))
        scores = np.empty(rows.shape, dtype=np.float32)
        faiss = _faiss()
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(scores),
            faiss.swig_ptr(queries),
            faiss.swig_ptr(vectors),
            faiss.swig_ptr(rows),
            vectors.shape[1],
            len(queries),
            rows.shape[1],
        )
        scores[candidates < 0] = -np.inf
        if rows.shape[1] > limit:
            top = np.argpartition(-scores, limit - 1, axis=1)[:, :limit]
        else:
            top = np.broadcast_to(np.arange(rows.shape[1]), (len(rows), rows.shape[1]))
        found = []
        for query_rows, query_scores, query_top in zip(rows, scores, top, strict=True):
            best = query_top[np.isfinite(query_scores[query_top])]
            found.append(self._ranked(query_rows[best], query_scores[best]))
        return found

    def _best(
        self, queries: np.ndarray, limit: int, kept: np.ndarray | None, rows: np.ndarray | None
    ) -> list[list[tuple[int, float]]]:
        """Each query's best of `rows` (None: of every allowed row), scored exactly in one product."""
        if rows is not None:
            every = self.matrix.vectors[rows] @ queries.T
        else:
            every = self.matrix.vectors @ queries.T
            if kept is not None:
                every[~kept] = -np.inf
        found = []
        for scores in every.T:
            top = (
                np.argpartition(-scores, limit - 1)[:limit] if len(scores) > limit else np.arange(len(scores))
            )
            top = top[np.isfinite(scores[top])]
            found.append(self._ranked(top if rows is None else rows[top], scores[top]))
        return found

    def _ranked(self, rows: np.ndarray, scores: np.ndarray) -> list[tuple[int, float]]:
        """(chunk id, score), best first, ties by id: the same order whichever way the rows were found."""
        ids = self.matrix.ids[rows]
        order = np.lexsort((ids, -scores))
        return [(int(ids[i]), float(scores[i])) for i in order]

    @property
    def starts(self) -> np.ndarray:
        """Where each part's rows begin (a part's rows are contiguous), and the row count last."""
        return np.concatenate([[0], np.cumsum(self.sizes)])

    def rows(self, parts: Iterable[str]) -> int:
        """How many rows of this stack are of `parts`."""
        positions = [self.position[part] for part in parts if part in self.position]
        return int(self.sizes[positions].sum())

    @property
    def nbytes(self) -> int:
        coded = 0 if self.codes is None else self.codes.ntotal2 * self.codes.M2 // 2 + self.code_rows.nbytes
        return self.matrix.nbytes + self.part_of.nbytes + self.sizes.nbytes + 100 * len(self.parts) + coded


class VectorCache:
    """This process's stacks, within a budget of bytes (least recently used out first)."""

    def __init__(self, budget_bytes: int):
        self._memory = BudgetCache(budget_bytes)
        # The stacks some entry holds (or a search still reads): what a changed set of chunk sets is cut from.
        self._stacks: weakref.WeakSet[Stacked] = weakref.WeakSet()

    def stacked(self, session: Session, chunk_set_ids: Collection[str]) -> Stacked:
        """The stack of exactly these chunk sets, from memory, cut from a stack holding most of them, or
        loaded."""
        # Kept by the set itself, as the lexical index is: hashing 10,000 ids beats sorting them per search.
        key = ("stacked", frozenset(chunk_set_ids))

        def build() -> tuple[Stacked, int]:
            parts = tuple(sorted(key[1]))
            base = self._reusable(parts)
            missing = [part for part in parts if base is None or part not in base.position]
            loaded = load(session, missing) if missing else {}
            rows = sum(len(matrix.ids) for matrix in loaded.values()) + (
                0 if base is None else base.rows(parts)
            )
            if rows > EXACT_ROWS:
                _faiss()  # imported here, not on the thread pool (see embeddings.LocalEmbedder._model)
            # Seconds of CPU for a big store: on an OS thread, so a gevent api serves other requests.
            built = offload(partial(restack, base, loaded, parts))
            loaded_bytes = sum(matrix.nbytes for matrix in loaded.values())
            del loaded
            native_memory.release_after(loaded_bytes)
            if built.nbytes > self._memory.budget:
                log.warning(
                    "the vectors of %d chunk sets take %d MB, more than vector_cache_mb: they are loaded again "
                    "for every search until that setting is raised",
                    len(parts),
                    built.nbytes // 2**20,
                )
            self._stacks.add(built)
            return built, built.nbytes

        return self._memory.built(key, build)

    def _reusable(self, parts: tuple[str, ...]) -> Stacked | None:
        """The stack in memory holding the most rows of `parts`, if any."""
        best, most = None, 0
        for stacked in list(self._stacks):
            rows = stacked.rows(parts)
            if rows > most:
                best, most = stacked, rows
        return best


def stack(
    matrices: list[Matrix],
    parts: tuple[str, ...],
    exact_rows: int | None = None,
    quantizer: Any = None,
) -> Stacked:
    """The chunk sets `parts` (their `matrices`, in the same order) searched as one; with a code past
    `exact_rows` rows (default `EXACT_ROWS`), of `quantizer` (a faiss ProductQuantizer) if given, else one
    trained on these rows."""
    return _stack(matrices, parts, exact_rows, [None] * len(matrices), quantizer, 0)


def restack(
    base: Stacked | None, loaded: dict[str, Matrix], parts: tuple[str, ...], exact_rows: int | None = None
) -> Stacked:
    """The stack of `parts`: those `base` holds cut from it (their rows and, if its quantizer is still fit
    for the new stack, their codes), the others from `loaded`. The same rows in the same order as `stack` of
    them all, so an exact search finds the same."""
    if base is None:
        return stack([loaded.get(part, EMPTY) for part in parts], parts, exact_rows)
    starts = base.starts
    matrices, codes = [], []
    for part in parts:
        i = base.position.get(part)
        if i is None:
            matrices.append(loaded.get(part, EMPTY))
            codes.append(None)
            continue
        rows = slice(starts[i], starts[i + 1])
        matrices.append(Matrix(base.matrix.ids[rows], base.matrix.vectors[rows]))
        codes.append(None if base.code_rows is None else base.code_rows[rows])
    total = sum(len(matrix.ids) for matrix in matrices)
    reused = sum(len(c) for c in codes if c is not None)
    # The quantizer stays while the kept rows are most of the new stack and it has not grown much since the
    # training; past that, the whole stack is coded again (each time the store doubles: amortized per row).
    fit = base.codes is not None and reused * 2 >= total and total <= RETRAIN_GROWTH * base.trained_on
    if not fit:
        return stack(matrices, parts, exact_rows)
    return _stack(matrices, parts, exact_rows, codes, base.codes.pq, base.trained_on)


def _stack(
    matrices: list[Matrix],
    parts: tuple[str, ...],
    exact_rows: int | None,
    codes: list[np.ndarray | None],
    quantizer: Any,
    trained_on: int,
) -> Stacked:
    position = {key: i for i, key in enumerate(parts)}
    dimensions = {matrix.vectors.shape[1] for matrix in matrices if len(matrix.ids)}
    kept = [i for i, matrix in enumerate(matrices) if len(matrix.ids)]
    if len(dimensions) != 1:  # nothing embedded (or, never expected, mixed dimensions: searched apart)
        return Stacked(EMPTY, np.zeros(0, np.int32), parts, position)
    ids = np.concatenate([matrices[i].ids for i in kept])
    vectors = np.concatenate([matrices[i].vectors for i in kept])
    part_of = np.repeat(np.array(kept, dtype=np.int32), [len(matrices[i].ids) for i in kept])
    stacked = Stacked(Matrix(ids, vectors), part_of, parts, position)
    if len(ids) <= (EXACT_ROWS if exact_rows is None else exact_rows) or _faiss() is None:
        return stacked
    if quantizer is None:
        quantizer, trained_on = _trained(vectors), len(ids)
    # A row's code is the quantizer's of that row alone: the kept rows' codes are those a new coding would give.
    code_rows = np.concatenate(
        [quantizer.compute_codes(matrices[i].vectors) if codes[i] is None else codes[i] for i in kept]
    )
    return Stacked(
        stacked.matrix, part_of, parts, position, _fast_scan(quantizer, code_rows), code_rows, trained_on
    )


def _trained(vectors: np.ndarray) -> Any:
    """A product quantizer for faiss's fast scan (4 bits per group of 4 dimensions) trained on a fixed
    sample of the rows, so every process trains the same one for the same rows."""
    faiss = _faiss()
    faiss.omp_set_num_threads(1)
    dimensions = vectors.shape[1]
    groups = next(m for m in range(max(1, dimensions // 4), 0, -1) if dimensions % m == 0)
    quantizer = faiss.ProductQuantizer(dimensions, groups, 4)
    sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), TRAINING_ROWS), replace=False)
    quantizer.train(np.ascontiguousarray(vectors[np.sort(sample)]))
    return quantizer


def _fast_scan(quantizer: Any, code_rows: np.ndarray) -> Any:
    """The fast-scan index (inner product) of rows already coded: packed from an IndexPQ holding the codes,
    a memory copy, where adding the vectors would code them again."""
    faiss = _faiss()
    flat = faiss.IndexPQ(quantizer.d, quantizer.M, quantizer.nbits, faiss.METRIC_INNER_PRODUCT)
    flat.pq = quantizer
    flat.is_trained = True
    flat.add_sa_codes(code_rows)
    return faiss.IndexPQFastScan(flat)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - a dependency, but a platform without its wheel searches exactly
        return None
    return faiss


def load(session: Session, chunk_set_ids: Sequence[str]) -> dict[str, Matrix]:
    """The vectors of these chunk sets, each a matrix of its rows in `seq` order (empty: none embedded)."""
    if on_postgres(session):
        return _load_aggregated(session, chunk_set_ids)
    # SQLite (orchestrator dev's stores): one statement a set; reading 500 sets a statement was no faster, the
    # rows' conversion dominates.
    found: dict[str, Matrix] = {}
    for chunk_set_id in chunk_set_ids:
        rows = session.execute(
            select(Chunk.id, Chunk.vector)
            .where(Chunk.chunk_set_id == chunk_set_id, Chunk.vector.is_not(None))
            .order_by(Chunk.seq)
        ).all()
        found[chunk_set_id] = _matrix(rows)
    return found


def _load_aggregated(session: Session, chunk_set_ids: Sequence[str]) -> dict[str, Matrix]:
    """Postgres: one row per chunk set, its ids and vectors each concatenated in `seq` order by the server,
    fetched in binary on the session's own connection (its transaction). Row by row, the client converted two
    values per chunk; in text, each vector travelled as hex. Measured at 100,000 chunks: 0.15 s of the
    client's CPU against 0.9–1.3 s, and about half the wall time; a million chunks' first load took 23 s."""
    found = dict.fromkeys(chunk_set_ids, EMPTY)
    driver = session.connection().connection.driver_connection
    with driver.cursor(binary=True) as cursor:
        for start in range(0, len(chunk_set_ids), LOAD_BATCH):
            cursor.execute(_AGGREGATED, [list(chunk_set_ids[start : start + LOAD_BATCH])])
            for chunk_set_id, ids, vectors in cursor.fetchall():
                ids = np.frombuffer(ids, dtype=">i8").astype(np.int64)
                found[chunk_set_id] = Matrix(
                    ids, np.frombuffer(vectors, dtype=np.float32).reshape(len(ids), -1)
                )
    return found


# int8send: each id as 8 big-endian bytes, so a set's ids are one value too. Written out rather than built
# with SQLAlchemy because it runs on the driver's own binary cursor; the names come from the model.
_AGGREGATED = f"""
    SELECT {Chunk.chunk_set_id.name},
           string_agg(int8send({Chunk.id.name}), ''::bytea ORDER BY {Chunk.seq.name}),
           string_agg({Chunk.vector.name}, ''::bytea ORDER BY {Chunk.seq.name})
    FROM {Chunk.__tablename__}
    WHERE {Chunk.chunk_set_id.name} = ANY(%s) AND {Chunk.vector.name} IS NOT NULL
    GROUP BY {Chunk.chunk_set_id.name}
"""


def _matrix(rows: list) -> Matrix:
    if not rows:
        return EMPTY
    ids = np.fromiter((row.id for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32).reshape(len(rows), -1)
    return Matrix(ids, vectors)


def nearest(matrices: Iterable[Matrix], query: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """The `limit` chunks closest to the unit vector `query` (cosine similarity), best first."""
    found: list[tuple[int, float]] = []
    for matrix in matrices:
        if not len(matrix.ids) or matrix.vectors.shape[1] != query.shape[0]:
            continue
        scores = matrix.vectors @ query
        if limit <= 0:
            continue
        top = np.argpartition(-scores, limit - 1)[:limit] if len(scores) > limit else np.arange(len(scores))
        found.extend((int(matrix.ids[i]), float(scores[i])) for i in top)
    found.sort(key=lambda item: (-item[1], item[0]))
    return found[:limit]


# This process's cache: `cache(budget_mb)`.
cache = PerProcess(VectorCache)

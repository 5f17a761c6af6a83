"""Okapi BM25 over chunks: one chunk set's postings (computed once, stored in its row), segments (the
postings of some chunk sets merged term-major) and an index searching segments together, all numpy.

    Postings.build(chunk_ids, texts) -> Postings      at ingestion, from the chunks' text (terms.py)
    Postings.encode() / Postings.decode(blob)         the bytes of `chunk_sets.postings`
    Segment.merge([Postings | Segment, ...])          chunk sets merged once, reused across changes
    Segment.without(dead) -> Segment                  less some chunk sets (a removed file's)
    Index([Segment, ...], dead) / Index.merge(parts)  the searched chunk sets together
    Index.search(terms, limit, allowed) -> [Hit]      best first

A chunk's score is Lucene's BM25 (what Elasticsearch and the `bm25s` library's "lucene" method compute):

    score(q, d) = Σ_{t ∈ q} qtf(t) · idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl))
    idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))

(Lucene 8 dropped Okapi's constant factor k1 + 1, which changes no ranking), with N, df and avgdl counted
over the chunk sets searched together (a store's, never another store's), so the same chunk can weigh
differently in two stores, as it would in two Lucene indexes. A segment is a term-major sparse matrix (CSR:
a term's chunks and their frequencies side by side); a query computes its terms' weights from those slices
(the statistics change with every file added, so no weight is stored) and adds them into one array of
scores, term by term in the same order whatever the segments, so a split index scores every chunk exactly
as one merge of the same chunk sets would; the top is a partial sort, ties by chunk id. Its cost is the query
terms' postings plus one pass over the chunks, whatever the number of files or segments; less where the top
can be found without it (one term: its postings alone; common terms beside rarer ones: read only for the
chunks that can still reach the top), with the same results to the bit.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.files.retrieval import terms as term_text

K1 = 1.2
B = 0.75
# A query term held by more than this share of the chunks is common: its postings are read for the
# chunks that may reach the top only (Index._pruned).
COMMON_SHARE = 1 / 64
_MAGIC = b"BM25"
_HEADER = struct.Struct("<4sIII")  # magic, chunks, distinct terms, postings: 16 bytes keep arrays aligned


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    score: float  # BM25
    relevance: float  # 0–1: the share of the query's IDF the chunk holds (fusion's weight, see fusion.py)


@dataclass(frozen=True)
class Postings:
    """One chunk set's inverted lists: for each distinct term (sorted), the chunks holding it (positions in
    `chunk_ids`, ascending) and how often."""

    chunk_ids: np.ndarray  # int64 [n], in seq order
    lengths: np.ndarray  # uint32 [n], terms per chunk
    terms: np.ndarray  # int64 [V], sorted
    df: np.ndarray  # uint32 [V], chunks holding each term
    docs: np.ndarray  # uint32 [P], chunk positions, term by term
    tfs: np.ndarray  # uint16 [P]

    @property
    def nbytes(self) -> int:
        return sum(
            array.nbytes for array in (self.chunk_ids, self.lengths, self.terms, self.df, self.docs, self.tfs)
        )

    @classmethod
    def build(cls, chunk_ids: Sequence[int], texts: Sequence[str]) -> Postings:
        per_chunk = [term_text.term_ids(text) for text in texts]
        lengths = np.fromiter(map(len, per_chunk), dtype=np.uint32, count=len(per_chunk))
        everything = np.fromiter(
            (t for chunk in per_chunk for t in chunk), dtype=np.int64, count=int(lengths.sum())
        )
        return cls.from_terms(chunk_ids, lengths, everything)

    @classmethod
    def from_terms(cls, chunk_ids: Sequence[int], lengths: np.ndarray, everything: np.ndarray) -> Postings:
        """From every chunk's terms one after the other (`lengths[i]` of them for chunk i)."""
        owner = np.repeat(np.arange(len(lengths), dtype=np.uint32), lengths)
        order = np.lexsort((owner, everything))  # by term, then chunk
        sorted_terms, sorted_docs = everything[order], owner[order]
        new_pair = np.ones(len(order), dtype=bool)
        new_pair[1:] = (sorted_terms[1:] != sorted_terms[:-1]) | (sorted_docs[1:] != sorted_docs[:-1])
        starts = np.flatnonzero(new_pair)
        tfs = np.diff(np.append(starts, len(order)))
        pair_terms, docs = sorted_terms[starts], sorted_docs[starts]
        terms, df = np.unique(pair_terms, return_counts=True)
        return cls(
            chunk_ids=np.asarray(chunk_ids, dtype=np.int64),
            lengths=lengths,
            terms=terms.astype(np.int64),
            df=df.astype(np.uint32),
            docs=docs.astype(np.uint32),
            tfs=np.minimum(tfs, np.iinfo(np.uint16).max).astype(np.uint16),
        )

    def encode(self) -> bytes:
        header = _HEADER.pack(_MAGIC, len(self.chunk_ids), len(self.terms), len(self.docs))
        arrays = (self.chunk_ids, self.terms, self.lengths, self.df, self.docs, self.tfs)
        return header + b"".join(array.astype(array.dtype.newbyteorder("<")).tobytes() for array in arrays)

    @classmethod
    def decode(cls, blob: bytes) -> Postings:
        magic, n, v, p = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            raise ValueError("not a postings blob")
        offset, arrays = _HEADER.size, []
        for dtype, count in (("<i8", n), ("<i8", v), ("<u4", n), ("<u4", v), ("<u4", p), ("<u2", p)):
            arrays.append(np.frombuffer(blob, dtype=dtype, count=count, offset=offset))
            offset += np.dtype(dtype).itemsize * count
        chunk_ids, terms, lengths, df, docs, tfs = arrays
        return cls(chunk_ids=chunk_ids, lengths=lengths, terms=terms, df=df, docs=docs, tfs=tfs)


@dataclass(frozen=True)
class Segment:
    """Some chunk sets' postings merged term-major (a term's chunks side by side, ascending), without weights:
    a chunk's weight depends on every chunk searched with it (N, df, avgdl), so it is computed per query from
    these counts and `Index`'s statistics. The unit that is merged once and then reused, as Lucene's."""

    chunk_ids: np.ndarray  # int64 [n], part by part
    lengths: np.ndarray  # uint32 [n]
    part_of: np.ndarray  # int32 [n]: which of its parts each chunk comes from
    parts: int
    terms: np.ndarray  # int64 [U], sorted
    indptr: np.ndarray  # int64 [U + 1]
    docs: np.ndarray  # int32 [P], ascending within a term
    tfs: np.ndarray  # uint16 [P]

    @property
    def nbytes(self) -> int:
        arrays = (self.chunk_ids, self.lengths, self.part_of, self.terms, self.indptr, self.docs, self.tfs)
        return sum(array.nbytes for array in arrays)

    @property
    def df(self) -> np.ndarray:
        return np.diff(self.indptr)

    @classmethod
    def merge(cls, pieces: Sequence[Postings | Segment]) -> Segment:
        """The pieces (a chunk set's postings, or segments) one after the other in one segment."""
        pieces = [_as_segment(piece) for piece in pieces]
        sizes = np.array([len(piece.chunk_ids) for piece in pieces], dtype=np.int64)
        if not pieces:
            return _EMPTY
        bases = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        part_bases = np.concatenate([[0], np.cumsum([piece.parts for piece in pieces])[:-1]]).astype(np.int32)
        # The distinct terms, then each piece's terms' rows among them: per piece, so that the merge holds
        # no array of all the (piece, term) entries (at a million chunks in files of 100, 50 million).
        terms = np.sort(np.concatenate([piece.terms for piece in pieces]))
        terms = terms[
            np.concatenate([[True], terms[1:] != terms[:-1]])
        ]  # np.unique: 20× slower here (numpy 2.4)
        piece_rows = [np.searchsorted(terms, piece.terms).astype(np.int32) for piece in pieces]
        df = np.zeros(len(terms), dtype=np.int64)
        for piece, rows in zip(pieces, piece_rows, strict=True):
            df[rows] += piece.df  # a piece holds a term once: its rows are distinct
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        total = int(indptr[-1])
        wide = np.int64 if total >= 2**31 else np.int32
        # Each piece's runs go after the same term's runs of the pieces before it, which keeps each term's
        # chunks ascending. Piece by piece, so that no array of every posting's place is held beside the
        # output (at a million chunks, 100 million postings).
        docs = np.empty(total, dtype=np.int32)
        # One byte per frequency when none is above 255 (almost always, for chunks of a few hundred tokens).
        narrow = max(int(piece.tfs.max(initial=0)) for piece in pieces) <= np.iinfo(np.uint8).max
        tfs = np.empty(total, dtype=np.uint8 if narrow else np.uint16)
        fill = indptr[:-1].copy()
        for piece, base, rows in zip(pieces, bases, piece_rows, strict=True):
            place = np.repeat((fill[rows] - piece.indptr[:-1]).astype(wide), piece.df)
            place += np.arange(len(piece.docs), dtype=wide)
            shifted = piece.docs.astype(np.int32)
            shifted += np.int32(base)
            docs[place] = shifted
            tfs[place] = piece.tfs
            fill[rows] += piece.df
        return cls(
            chunk_ids=np.concatenate([piece.chunk_ids for piece in pieces]),
            lengths=np.concatenate([piece.lengths for piece in pieces]),
            part_of=np.concatenate(
                [piece.part_of + base for piece, base in zip(pieces, part_bases, strict=True)]
            ),
            parts=int(sum(piece.parts for piece in pieces)),
            terms=terms,
            indptr=indptr,
            docs=docs,
            tfs=tfs,
        )

    def without(self, dead: np.ndarray) -> Segment:
        """This segment less the parts marked in `dead` (a boolean per part), the others renumbered in
        order: one pass over the postings, no sort (what a store's removed files cost once they are many)."""
        live_chunks = ~dead[self.part_of]
        renumber = (np.cumsum(live_chunks) - 1).astype(np.int32)
        kept = live_chunks[self.docs]
        row = np.repeat(np.arange(len(self.terms), dtype=np.int32), self.df)[kept]
        df = np.bincount(row, minlength=len(self.terms))
        indptr = np.zeros(len(self.terms) + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        held = df > 0
        part_renumber = (np.cumsum(~dead) - 1).astype(np.int32)
        return Segment(
            chunk_ids=self.chunk_ids[live_chunks],
            lengths=self.lengths[live_chunks],
            part_of=part_renumber[self.part_of[live_chunks]],
            parts=int((~dead).sum()),
            terms=self.terms[held],
            indptr=np.concatenate([[0], indptr[1:][held]]),
            docs=renumber[self.docs[kept]],
            tfs=self.tfs[kept],
        )


def _as_segment(piece: Postings | Segment) -> Segment:
    if isinstance(piece, Segment):
        return piece
    indptr = np.zeros(len(piece.terms) + 1, dtype=np.int64)
    np.cumsum(piece.df, out=indptr[1:])
    return Segment(
        chunk_ids=piece.chunk_ids,
        lengths=piece.lengths,
        part_of=np.zeros(len(piece.chunk_ids), dtype=np.int32),
        parts=1,
        terms=piece.terms,
        indptr=indptr,
        docs=piece.docs,
        tfs=piece.tfs,
    )


_EMPTY = Segment(
    chunk_ids=np.zeros(0, np.int64),
    lengths=np.zeros(0, np.uint32),
    part_of=np.zeros(0, np.int32),
    parts=0,
    terms=np.zeros(0, np.int64),
    indptr=np.zeros(1, np.int64),
    docs=np.zeros(0, np.int32),
    tfs=np.zeros(0, np.uint16),
)


class Index:
    """Segments searched together, as one index: N, avgdl and each query term's df counted over all their
    live chunks, so the scores are those of one segment merged from the same chunk sets, whatever the split.
    `dead[i]` (a boolean per part of segment i, or None) marks chunk sets left out (a removed file's, still
    in a reused segment): they count for nothing and are never found. Parts are numbered segment after
    segment (what `allowed` follows)."""

    def __init__(
        self,
        segments: Sequence[Segment],
        dead: Sequence[np.ndarray | None] | None = None,
        k1: float = K1,
        b: float = B,
    ):
        self.segments = tuple(segments)
        sizes = [len(segment.chunk_ids) for segment in self.segments]
        self.bases = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        part_bases = np.concatenate([[0], np.cumsum([s.parts for s in self.segments])]).astype(np.int32)
        self.parts = int(part_bases[-1])
        # A chunk set is in one segment: each segment's chunks are a slice of the chunks searched together.
        self.chunk_ids = (
            np.concatenate([s.chunk_ids for s in self.segments]) if segments else _EMPTY.chunk_ids
        )
        self.part_of = (
            np.concatenate([s.part_of + base for s, base in zip(self.segments, part_bases, strict=False)])
            if segments
            else _EMPTY.part_of
        )
        dead = list(dead) if dead is not None else [None] * len(self.segments)
        self.live = [
            None if d is None or not d.any() else ~d[s.part_of]
            for s, d in zip(self.segments, dead, strict=True)
        ]
        self.dead = (
            None
            if all(live is None for live in self.live)
            else ~np.concatenate(
                [
                    np.ones(len(s.chunk_ids), bool) if live is None else live
                    for s, live in zip(self.segments, self.live, strict=True)
                ]
            )
        )
        # Lengths summed as integers: the same avgdl, to the bit, however the chunks are split.
        total_length, self.n = 0, 0
        for segment, live in zip(self.segments, self.live, strict=True):
            lengths = segment.lengths if live is None else segment.lengths[live]
            total_length += int(lengths.sum(dtype=np.int64))
            self.n += len(lengths)
        avgdl = max(total_length / self.n, 1e-9) if self.n else 1.0
        self.norms = [
            (k1 * (1 - b + b * segment.lengths.astype(np.float32) / avgdl)).astype(np.float32)
            for segment in self.segments
        ]

    @classmethod
    def merge(cls, parts: Sequence[Postings | Segment]) -> Index:
        """The parts merged into one segment (what a store's first search builds)."""
        return cls([Segment.merge(parts)])

    @property
    def nbytes(self) -> int:
        """Its own arrays (the segments' are theirs: `Segment.nbytes`)."""
        own = [self.chunk_ids, self.part_of, *self.norms, *(live for live in self.live if live is not None)]
        return sum(array.nbytes for array in own) + (0 if self.dead is None else self.dead.nbytes)

    def _slices(self, query: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Each query term's live df over every segment, and its postings' start and end in each segment."""
        df = np.zeros(len(query), dtype=np.int64)
        slices = []
        for segment, live in zip(self.segments, self.live, strict=True):
            if not len(segment.terms):
                slices.append((np.zeros(len(query), np.int64), np.zeros(len(query), np.int64)))
                continue
            rows = np.minimum(np.searchsorted(segment.terms, query), len(segment.terms) - 1)
            here = segment.terms[rows] == query
            starts = np.where(here, segment.indptr[rows], 0)
            ends = np.where(here, segment.indptr[rows + 1], 0)
            if live is None:
                df += ends - starts
            else:
                for i in np.flatnonzero(here):
                    df[i] += np.count_nonzero(live[segment.docs[starts[i] : ends[i]]])
            slices.append((starts, ends))
        return df, slices

    def search(self, query: np.ndarray, limit: int, allowed: np.ndarray | None = None) -> list[Hit]:
        """The best `limit` chunks for the query's terms (int64, terms.query_terms: a term repeated counts
        as often), best first, ties by chunk id; `allowed`: a boolean per part, the chunk sets the filters
        let through."""
        if not self.n or not len(query) or limit <= 0:
            return []
        query, repeats = np.unique(query, return_counts=True)
        df, slices = self._slices(query)
        known = df > 0
        n = self.n
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        counts = repeats.astype(np.float32)
        # A term no chunk holds weighs what the rarest would: the query asked for it, none has it.
        unknown_idf = float(np.log1p((n + 0.5) / 0.5)) * int(repeats[~known].sum())
        total_idf = float((idf[known] * counts[known]).sum()) + unknown_idf
        if not known.any():
            return []
        terms = np.flatnonzero(known)
        if len(terms) == 1:
            found = self._alone(terms[0], slices, idf, counts, limit, allowed)
        else:
            found = self._pruned(terms, df, slices, idf, counts, limit, allowed)
        if found is None:
            scores = self._scores(terms, slices, idf, counts, allowed)
            top = self._top(scores, limit)
            top_scores = scores[top]
        else:
            top, top_scores = found
        held = np.zeros(len(top), dtype=np.float64)
        segment_of = np.searchsorted(self.bases, top, side="right") - 1
        for i in terms:
            share = float(idf[i] * counts[i])
            for s, (segment, (starts, ends)) in enumerate(zip(self.segments, slices, strict=True)):
                inside = np.flatnonzero(segment_of == s)
                if starts[i] == ends[i] or not len(inside):
                    continue
                postings = segment.docs[starts[i] : ends[i]]
                local = top[inside] - self.bases[s]
                at = np.minimum(np.searchsorted(postings, local), len(postings) - 1)
                held[inside] += (postings[at] == local) * share
        return [
            Hit(int(self.chunk_ids[doc]), float(score), min(float(share), 1.0))
            for doc, score, share in zip(top, top_scores, held / total_idf, strict=True)
        ]

    def _weights(self, s: int, start: int, end: int, idf, count, at: np.ndarray | None = None):
        """A term's postings in segment `s` (`at`: only these of them) and their BM25 weights."""
        docs = self.segments[s].docs[start:end]
        weights = self.segments[s].tfs[start:end]
        if at is not None:
            docs, weights = docs[at], weights[at]
        weights = weights.astype(np.float32)
        saturation = self.norms[s][docs]
        saturation += weights
        np.divide(weights, saturation, out=weights)
        weights *= idf
        if count != 1:
            weights *= count
        return docs, weights

    def _scores(self, terms: np.ndarray, slices, idf, counts, allowed: np.ndarray | None) -> np.ndarray:
        """Every chunk's score from `terms`; 0 for the chunks left out (dead, or not `allowed`)."""
        scores = np.zeros(len(self.chunk_ids), dtype=np.float32)
        untouched = [True] * len(self.segments)
        for i in terms:  # term by term, every segment: each chunk's sum in the same order, however split
            for s, (starts, ends) in enumerate(slices):
                if starts[i] == ends[i]:
                    continue
                docs, weights = self._weights(s, starts[i], ends[i], idf[i], counts[i])
                if untouched[s]:  # its scores are all 0: set, not add (one pass, not two; 0 + w is w exactly)
                    scores[self.bases[s] : self.bases[s + 1]][docs] = weights
                    untouched[s] = False
                else:
                    scores[self.bases[s] : self.bases[s + 1]][docs] += weights
        if self.dead is not None:
            scores[self.dead] = 0
        if allowed is not None:
            scores[~allowed[self.part_of]] = 0
        return scores

    def _alone(self, i: int, slices, idf, counts, limit: int, allowed: np.ndarray | None):
        """The top and its scores for a query of one known term: its postings' weights are the scores, so
        only they are ranked, not an array of every chunk (of a million chunks, a term held by a tenth of them:
        1.0 ms of CPU against 4.8; by a hundredth: 0.3 against 2.9; by half: 4.6 against 8.1)."""
        docs, weights = [], []
        for s, (starts, ends) in enumerate(slices):
            if starts[i] != ends[i]:
                local, weighed = self._weights(s, starts[i], ends[i], idf[i], counts[i])
                docs.append(local + self.bases[s])
                weights.append(weighed)
        if not docs:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        found, scores = np.concatenate(docs), np.concatenate(weights)
        if self.dead is not None:
            scores[self.dead[found]] = 0
        if allowed is not None:
            scores[~allowed[self.part_of[found]]] = 0
        top = self._top(scores, limit, found)
        return found[top], scores[top]

    def _pruned(self, terms, df, slices, idf, counts, limit: int, allowed: np.ndarray | None):
        """The top and its scores, computed without reading the common terms' long postings whole
        (MaxScore): the other terms' scores name a `limit`-th best, and a term adds at most its weight
        (idf × count, as tf / (tf + norm) < 1), so a chunk whose other terms' score falls short of that
        best by more than the common terms' weights together cannot be in the top. Only the chunks left are
        scored, each from every term in the same order as `_scores` adds them: the same floats to the bit.
        None when it cannot apply (no common term, or only common terms, or too few other hits to set a
        best); then every chunk is scored. With `_alone`, at a million chunks of synthetic Zipf text and
        queries of 1–4 terms, 11.3 against 14.4 ms of CPU a query at 50 results, 13.9 against 16.9 at 200,
        the same hits to the bit; at 100,000 chunks no change beyond noise."""
        common = df[terms] > self.n * COMMON_SHARE
        if not common.any() or common.all():
            return None
        partial = self._scores(terms[~common], slices, idf, counts, allowed)
        touched = np.flatnonzero(partial)
        if len(touched) < limit:
            return None
        best = float(np.partition(partial[touched], len(touched) - limit)[len(touched) - limit])
        # Margins for float32 rounding, on the side of keeping a chunk: keeping one too many costs nothing.
        rest = float((idf[terms[common]] * counts[terms[common]]).sum()) * (1 + 1e-4)
        floor = best * (1 - 1e-5) - rest
        if floor <= 0:
            return None
        candidates = touched[partial[touched] >= floor]
        scores = np.zeros(len(candidates), dtype=np.float32)
        segment_of = np.searchsorted(self.bases, candidates, side="right") - 1
        per_segment = []
        for s in range(len(self.segments)):
            inside = np.flatnonzero(segment_of == s)
            per_segment.append((inside, candidates[inside] - self.bases[s]))
        for i in terms:
            for s, ((starts, ends), (inside, local)) in enumerate(zip(slices, per_segment, strict=True)):
                if starts[i] == ends[i] or not len(inside):
                    continue
                postings = self.segments[s].docs[starts[i] : ends[i]]
                at = np.minimum(np.searchsorted(postings, local), len(postings) - 1)
                holds = postings[at] == local
                _, weights = self._weights(s, starts[i], ends[i], idf[i], counts[i], at[holds])
                scores[inside[holds]] += weights
        top = self._top(scores, limit, candidates)
        return candidates[top], scores[top]

    def _top(self, scores: np.ndarray, limit: int, docs: np.ndarray | None = None) -> np.ndarray:
        """The best `limit` chunks with a score, best first, ties by chunk id: the same chunks whatever the
        order of the segments (a partial sort alone would pick among ties at the cut by position). `docs`:
        the chunks `scores` are of, when not all of them; the positions returned are then in `scores`."""
        if len(scores) > limit:
            cut = scores[np.argpartition(-scores, limit - 1)[limit - 1]]
            top = np.flatnonzero(scores >= cut) if cut > 0 else np.flatnonzero(scores)
        else:
            top = np.flatnonzero(scores)
        ids = self.chunk_ids[top if docs is None else docs[top]]
        return top[np.lexsort((ids, -scores[top]))][:limit]

"""Okapi BM25 over chunks: one chunk set's postings (computed once, stored in its row) and a store's index
(the postings of its chunk sets merged, with the weights precomputed), all numpy.

    Postings.build(chunk_ids, texts) -> Postings      at ingestion, from the chunks' text (terms.py)
    Postings.encode() / Postings.decode(blob)         the bytes of `chunk_sets.postings`
    Index.merge([Postings, ...]) -> Index             the searched chunk sets together
    Index.search(terms, limit, allowed) -> [Hit]      best first

A chunk's score is Lucene's BM25 (what Elasticsearch and the `bm25s` library's "lucene" method compute):

    score(q, d) = Σ_{t ∈ q} qtf(t) · idf(t) · tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / avgdl))
    idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))

(Lucene 8 dropped Okapi's constant factor k1 + 1, which changes no ranking), with N, df and avgdl counted over the chunk sets searched together (a store's, never another store's), so
the same chunk can weigh differently in two stores, as it would in two Lucene indexes. The merged index is
a term-major sparse matrix (CSR: a term's chunks and their weights side by side), so a query adds up a few
slices into one array of scores and keeps the top with a partial sort: its cost is the query terms' postings
plus one pass over the chunks, whatever the number of files.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.files.retrieval import terms as term_text

K1 = 1.2
B = 0.75
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
class Index:
    """Chunk sets searched together: their chunks in a row (part by part), and per term its chunks'
    precomputed BM25 weights."""

    chunk_ids: np.ndarray  # int64 [N]
    part_of: np.ndarray  # int32 [N]: which part (position in the merged list) each chunk comes from
    terms: np.ndarray  # int64 [U], sorted
    idf: np.ndarray  # float32 [U]
    indptr: np.ndarray  # int64 [U + 1]
    docs: np.ndarray  # int32 [P], ascending within a term
    weights: np.ndarray  # float32 [P]

    @property
    def nbytes(self) -> int:
        arrays = (self.chunk_ids, self.part_of, self.terms, self.idf, self.indptr, self.docs, self.weights)
        return sum(array.nbytes for array in arrays)

    @classmethod
    def merge(cls, parts: Sequence[Postings], k1: float = K1, b: float = B) -> Index:
        sizes = np.array([len(part.chunk_ids) for part in parts], dtype=np.int64)
        n = int(sizes.sum())
        if not parts or not n:
            empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float32)
            return cls(
                empty_i,
                np.zeros(0, np.int32),
                empty_i,
                empty_f,
                np.zeros(1, np.int64),
                np.zeros(0, np.int32),
                empty_f,
            )
        bases = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        chunk_ids = np.concatenate([part.chunk_ids for part in parts])
        part_of = np.repeat(np.arange(len(parts), dtype=np.int32), sizes)
        lengths = np.concatenate([part.lengths for part in parts]).astype(np.float32)
        # One entry per (part, term): its global term and how many postings it has.
        entry_terms = np.concatenate([part.terms for part in parts])
        entry_df = np.concatenate([part.df for part in parts]).astype(np.int64)
        # One sort of the entries gives the distinct terms and each entry's row.
        order = np.argsort(entry_terms)
        in_order = entry_terms[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = in_order[1:] != in_order[:-1]
        terms = in_order[first]
        entry_row = np.empty(len(order), dtype=np.int64)
        entry_row[order] = np.cumsum(first) - 1
        del order, in_order, first
        # Postings in their parts' order, then placed term-major by moving each entry's run as a block.
        # (Narrow types and in-place arithmetic: at a million chunks these arrays hold 60 million postings.)
        total = int(entry_df.sum())
        wide = np.int64 if total >= 2**31 else np.int32
        docs = np.concatenate(
            [part.docs.astype(np.int32) + np.int32(base) for part, base in zip(parts, bases, strict=True)]
        )
        df = np.bincount(entry_row, weights=entry_df, minlength=len(terms))
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        # Where each entry's run goes: after the same term's runs of the parts before it (a part holds a term
        # once, so a part's rows are distinct), which keeps each term's chunks ascending. A loop over parts,
        # not a stable sort of all the entries: half the time at 300,000 chunks.
        destination = np.empty(len(entry_row), dtype=np.int64)
        fill = indptr[:-1].copy()
        start = 0
        for part in parts:
            end = start + len(part.terms)
            rows = entry_row[start:end]
            destination[start:end] = fill[rows]
            fill[rows] += entry_df[start:end]
            start = end
        destination -= np.concatenate([[0], np.cumsum(entry_df)[:-1]])
        place = np.repeat(destination.astype(wide), entry_df)
        place += np.arange(total, dtype=wide)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = (k1 * (1 - b + b * lengths / max(float(lengths.mean()), 1e-9))).astype(np.float32)
        tfs = np.concatenate([part.tfs for part in parts]).astype(np.float32)
        saturation = norm[docs]
        saturation += tfs
        np.divide(tfs, saturation, out=saturation)
        del tfs
        saturation *= np.repeat(idf[entry_row], entry_df)
        weights = np.empty(total, dtype=np.float32)
        weights[place] = saturation
        del saturation
        sorted_docs = np.empty(total, dtype=np.int32)
        sorted_docs[place] = docs
        return cls(chunk_ids, part_of, terms, idf, indptr, sorted_docs, weights)

    def search(self, query: np.ndarray, limit: int, allowed: np.ndarray | None = None) -> list[Hit]:
        """The best `limit` chunks for the query's terms (int64, terms.query_terms: a term repeated counts
        as often), best first; `allowed`: a boolean per part, the chunk sets the filters let through."""
        n = len(self.chunk_ids)
        if not n or not len(query) or limit <= 0:
            return []
        query, repeats = np.unique(query, return_counts=True)
        rows = np.minimum(np.searchsorted(self.terms, query), len(self.terms) - 1)
        known = self.terms[rows] == query
        rows, counts = rows[known], repeats[known].astype(np.float32)
        # A term no chunk holds weighs what the rarest would: the query asked for it, none has it.
        unknown_idf = float(np.log1p((n + 0.5) / 0.5)) * int(repeats[~known].sum())
        total_idf = float((self.idf[rows] * counts).sum()) + unknown_idf
        if not len(rows):
            return []
        scores = np.zeros(n, dtype=np.float32)
        for row, count in zip(rows, counts, strict=True):
            start, end = self.indptr[row], self.indptr[row + 1]
            scores[self.docs[start:end]] += (
                self.weights[start:end] if count == 1 else count * self.weights[start:end]
            )
        if allowed is not None:
            scores[~allowed[self.part_of]] = 0
        top = np.argpartition(-scores, limit - 1)[:limit] if n > limit else np.arange(n)
        top = top[scores[top] > 0]
        top = top[np.lexsort((self.chunk_ids[top], -scores[top]))]
        held = np.zeros(len(top), dtype=np.float64)
        for row, count in zip(rows, counts, strict=True):
            postings = self.docs[self.indptr[row] : self.indptr[row + 1]]
            at = np.minimum(np.searchsorted(postings, top), len(postings) - 1)
            held += (postings[at] == top) * float(self.idf[row] * count)
        return [
            Hit(int(self.chunk_ids[doc]), float(scores[doc]), min(float(share), 1.0))
            for doc, share in zip(top, held / total_idf, strict=True)
        ]

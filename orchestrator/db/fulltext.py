"""Lexical search over chunks: Postgres full text (tsvector, GIN, ts_rank_cd) or SQLite FTS5 (BM25).

A query matches a chunk holding any of its terms (stemmed, stop words dropped: OR, not AND, so a question
in plain words still finds passages). Ranking is the engine's own (cover density on Postgres, BM25 on
SQLite); each hit also carries its coverage, the share of the query's terms it holds, which fusion uses
as the hit's relevance (retrieval/fusion.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from orchestrator.db.connection import on_postgres
from orchestrator.db.retrieval_models import TEXT_SEARCH_CONFIG

MAX_TERMS = 32
# A term held by more than this share of the searched chunks is dropped from the query like a stop word
# (unless every term is); recorded per chunk set, at ingestion, from this share down.
COMMON_SHARE = 0.2
# Sets smaller than this have no common lexemes recorded: ranking all their matches is cheap anyway.
COMMON_MIN_CHUNKS = 200
# At most this many matches of one query are ranked (exact below it; a query of only common words above).
MAX_RANKED = 20_000
_WORD = re.compile(r"\w+")
# Postgres' English stop words (tsearch_data/english.stop), so both engines drop the same words.
STOP_WORDS = frozenset(
    [
        "i",
        "me",
        "my",
        "myself",
        "we",
        "our",
        "ours",
        "ourselves",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "he",
        "him",
        "his",
        "himself",
        "she",
        "her",
        "hers",
        "herself",
        "it",
        "its",
        "itself",
        "they",
        "them",
        "their",
        "theirs",
        "themselves",
        "what",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "a",
        "an",
        "the",
        "and",
        "but",
        "if",
        "or",
        "because",
        "as",
        "until",
        "while",
        "of",
        "at",
        "by",
        "for",
        "with",
        "about",
        "against",
        "between",
        "into",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "to",
        "from",
        "up",
        "down",
        "in",
        "out",
        "on",
        "off",
        "over",
        "under",
        "again",
        "further",
        "then",
        "once",
        "here",
        "there",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "no",
        "nor",
        "not",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "s",
        "t",
        "can",
        "will",
        "just",
        "don",
        "should",
        "now",
    ]
)


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    coverage: float


def search(session: Session, chunk_set_ids: Collection[str], query: str, limit: int) -> list[Hit]:
    """The best `limit` chunks of these chunk sets for `query`, best first."""
    if not chunk_set_ids or not query.strip():
        return []
    if on_postgres(session):
        return _postgres(session, list(chunk_set_ids), query, limit)
    return _sqlite(session, list(chunk_set_ids), query, limit)


def _postgres(session: Session, chunk_set_ids: list[str], query: str, limit: int) -> list[Hit]:
    lexemes = session.scalars(
        text("SELECT DISTINCT unnest(tsvector_to_array(to_tsvector(CAST(:config AS regconfig), :q)))"),
        {"config": TEXT_SEARCH_CONFIG, "q": query},
    ).all()
    lexemes = _informative(session, chunk_set_ids, sorted(lexemes)[:MAX_TERMS])
    if not lexemes:
        return []
    params = {f"t{i}": _tsquery_literal(lexeme) for i, lexeme in enumerate(lexemes)}
    hits = " + ".join(f"(top.tsv @@ CAST(:t{i} AS tsquery))::int" for i in range(len(lexemes)))
    # Every match is ranked (exact top-k), but only the top `limit` are checked term by term.
    statement = text(
        f"SELECT top.id, ({hits}) AS hits FROM ("
        "SELECT m.id, m.tsv, ts_rank_cd(m.tsv, s.q) AS rank "
        "FROM (SELECT c.id, c.tsv FROM chunks c WHERE c.chunk_set_id IN :sets "
        "AND c.tsv @@ CAST(:query AS tsquery) LIMIT :ranked) AS m "
        "CROSS JOIN (SELECT CAST(:query AS tsquery) AS q) AS s ORDER BY rank DESC, m.id LIMIT :limit"
        ") AS top ORDER BY top.rank DESC, top.id"
    ).bindparams(bindparam("sets", expanding=True))
    rows = session.execute(
        statement,
        {
            **params,
            "query": " | ".join(params.values()),
            "sets": chunk_set_ids,
            "limit": limit,
            "ranked": MAX_RANKED,
        },
    ).all()
    return [Hit(row.id, row.hits / len(lexemes)) for row in rows]


def _informative(session: Session, chunk_set_ids: list[str], lexemes: list[str]) -> list[str]:
    """The lexemes without those most of the searched chunks hold (the rarest kept if all are common)."""
    total = session.scalar(
        text("SELECT coalesce(sum(chunk_count), 0) FROM chunk_sets WHERE id IN :sets").bindparams(
            bindparam("sets", expanding=True)
        ),
        {"sets": chunk_set_ids},
    )
    if not lexemes or total < COMMON_MIN_CHUNKS:
        return lexemes
    held = dict(
        session.execute(
            text(
                "SELECT lexeme, sum(ndoc) FROM chunk_set_lexemes WHERE chunk_set_id IN :sets AND lexeme IN :lexemes "
                "GROUP BY lexeme"
            ).bindparams(bindparam("sets", expanding=True), bindparam("lexemes", expanding=True)),
            {"sets": chunk_set_ids, "lexemes": lexemes},
        ).all()
    )
    kept = [lexeme for lexeme in lexemes if held.get(lexeme, 0) <= COMMON_SHARE * total]
    return kept or [min(lexemes, key=lambda lexeme: held[lexeme])]


def record_common_lexemes(session: Session, chunk_set_id: str, tenant_id: str, chunk_count: int) -> None:
    """Postgres: note the lexemes at least COMMON_SHARE of the set's chunks hold (for `_informative`)."""
    if not on_postgres(session) or chunk_count < COMMON_MIN_CHUNKS:
        return
    rows = f"SELECT tsv FROM chunks WHERE chunk_set_id = '{chunk_set_id.replace(chr(39), chr(39) * 2)}'"
    session.execute(
        text(
            "INSERT INTO chunk_set_lexemes (chunk_set_id, tenant_id, lexeme, ndoc) "
            "SELECT :id, :tenant, word, ndoc FROM ts_stat(:rows) WHERE ndoc >= :floor"
        ),
        {
            "id": chunk_set_id,
            "tenant": tenant_id,
            "rows": rows,
            "floor": max(1, int(COMMON_SHARE * chunk_count)),
        },
    )


def _tsquery_literal(lexeme: str) -> str:
    """A lexeme as a quoted tsquery operand (taken as is, not parsed or stemmed again)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _sqlite(session: Session, chunk_set_ids: list[str], query: str, limit: int) -> list[Hit]:
    terms = sorted({word for word in _WORD.findall(query.lower()) if word not in STOP_WORDS})[:MAX_TERMS]
    if not terms:
        return []
    statement = text(
        "SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
        "WHERE chunks_fts MATCH :match AND c.chunk_set_id IN :sets "
        "ORDER BY bm25(chunks_fts), c.id LIMIT :limit"
    ).bindparams(bindparam("sets", expanding=True))
    match = " OR ".join(f'"{term}"' for term in terms)
    ids = session.scalars(statement, {"match": match, "sets": chunk_set_ids, "limit": limit}).all()
    if not ids:
        return []
    held = dict.fromkeys(ids, 0)
    each = text("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :term AND rowid IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    for term in terms:
        for chunk_id in session.scalars(each, {"term": f'"{term}"', "ids": ids}):
            held[chunk_id] += 1
    return [Hit(chunk_id, held[chunk_id] / len(terms)) for chunk_id in ids]

"""Lexical search by BM25 over postings kept per chunk set, in place of the database's full-text indexes.

`chunk_sets.postings` holds each set's inverted lists (written with its chunks; a set stored before this
gets them computed from its chunks on its first search). What ranking no longer reads goes, so storing
chunks no longer builds it: on Postgres `chunks.tsv` with its GIN index, on SQLite the FTS5 table and its
triggers, and `chunk_set_lexemes` on both. Downgrading rebuilds them from the chunks' text.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SQLITE_FTS_DROP = (
    "DROP TRIGGER IF EXISTS chunks_fts_update",
    "DROP TRIGGER IF EXISTS chunks_fts_delete",
    "DROP TRIGGER IF EXISTS chunks_fts_insert",
    "DROP TABLE IF EXISTS chunks_fts",
)
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')",
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.add_column("chunk_sets", sa.Column("postings", sa.LargeBinary(), nullable=True))
    op.drop_table("chunk_set_lexemes")
    if _postgres():
        op.drop_index("ix_chunks_tsv", table_name="chunks", postgresql_using="gin")
        op.drop_column("chunks", "tsv")
    else:
        for statement in SQLITE_FTS_DROP:
            op.execute(statement)


def downgrade() -> None:
    if _postgres():
        computed = sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True)
        op.add_column("chunks", sa.Column("tsv", postgresql.TSVECTOR(), computed, nullable=False))
        op.create_index("ix_chunks_tsv", "chunks", ["tsv"], unique=False, postgresql_using="gin")
    else:
        for statement in SQLITE_FTS:
            op.execute(statement)
    op.create_table(
        "chunk_set_lexemes",
        sa.Column("chunk_set_id", sa.String(length=64), nullable=False),
        sa.Column("lexeme", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("ndoc", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chunk_set_id"],
            ["chunk_sets.id"],
            name=op.f("fk_chunk_set_lexemes_chunk_set_id_chunk_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chunk_set_id", "lexeme", name=op.f("pk_chunk_set_lexemes")),
    )
    op.drop_column("chunk_sets", "postings")

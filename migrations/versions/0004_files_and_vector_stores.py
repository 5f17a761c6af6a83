"""files and vector stores

On Postgres, chunks carry a stored tsvector with a GIN index; on SQLite (orchestrator dev) an FTS5 table kept
in step by triggers stands in for both (see orchestrator/db/retrieval_models.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:20:05.759977
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# orchestrator dev's lexical index: an external-content FTS5 table over chunks.text, Porter-stemmed.
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
)
SQLITE_FTS_DROP = (
    "DROP TRIGGER IF EXISTS chunks_fts_update",
    "DROP TRIGGER IF EXISTS chunks_fts_delete",
    "DROP TRIGGER IF EXISTS chunks_fts_insert",
    "DROP TABLE IF EXISTS chunks_fts",
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _tsv_column() -> list:
    if not _postgres():
        return []
    computed = sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True)
    return [sa.Column("tsv", postgresql.TSVECTOR(), computed, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "blob_chunks",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_blob_chunks_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key", "seq", name=op.f("pk_blob_chunks")),
    )
    op.create_index(op.f("ix_blob_chunks_tenant_id"), "blob_chunks", ["tenant_id"], unique=False)
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("text_bytes", sa.BigInteger(), nullable=True),
        sa.Column(
            "parse_error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_files_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index(
        "ix_files_expiry",
        "files",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_index("ix_files_page", "files", ["tenant_id", "created_us", "id"], unique=False)
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "expires_after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("last_active_at", sa.BigInteger(), nullable=False),
        sa.Column("embedding_model", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_vector_stores_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vector_stores")),
    )
    op.create_index("ix_vector_stores_page", "vector_stores", ["tenant_id", "created_us", "id"], unique=False)
    op.create_table(
        "chunk_sets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.String(length=64), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("embedding_model", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "last_error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.Column("enqueued_at", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=True),
        sa.Column("usage_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_chunk_sets_file_id_files"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_chunk_sets_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunk_sets")),
        sa.UniqueConstraint("file_id", "max_tokens", "overlap", "embedding_model", name="uq_chunk_sets_cut"),
    )
    op.create_index(
        "ix_chunk_sets_sweep",
        "chunk_sets",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'in_progress'"),
        sqlite_where=sa.text("status = 'in_progress'"),
    )
    op.create_index(op.f("ix_chunk_sets_tenant_id"), "chunk_sets", ["tenant_id"], unique=False)
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("vector_store_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("cancelled_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_vector_store_file_batches_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vector_store_id"],
            ["vector_stores.id"],
            name=op.f("fk_vector_store_file_batches_vector_store_id_vector_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vector_store_file_batches")),
    )
    op.create_index(
        op.f("ix_vector_store_file_batches_tenant_id"),
        "vector_store_file_batches",
        ["tenant_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_vector_store_file_batches_vector_store_id"),
        "vector_store_file_batches",
        ["vector_store_id"],
        unique=False,
    )
    op.create_table(
        "chunks",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("chunk_set_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        *_tsv_column(),
        sa.ForeignKeyConstraint(
            ["chunk_set_id"],
            ["chunk_sets.id"],
            name=op.f("fk_chunks_chunk_set_id_chunk_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chunks")),
        sa.UniqueConstraint("chunk_set_id", "seq", name="uq_chunks_seq"),
    )
    if _postgres():
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
    op.create_table(
        "vector_store_files",
        sa.Column("vector_store_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "last_error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "chunking_strategy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("chunk_set_id", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=True),
        sa.Column("usage_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["vector_store_file_batches.id"],
            name=op.f("fk_vector_store_files_batch_id_vector_store_file_batches"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["chunk_set_id"],
            ["chunk_sets.id"],
            name=op.f("fk_vector_store_files_chunk_set_id_chunk_sets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["id"], ["files.id"], name=op.f("fk_vector_store_files_id_files"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_vector_store_files_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vector_store_id"],
            ["vector_stores.id"],
            name=op.f("fk_vector_store_files_vector_store_id_vector_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("vector_store_id", "id", name=op.f("pk_vector_store_files")),
    )
    op.create_index(
        "ix_vector_store_files_batch", "vector_store_files", ["batch_id", "created_us", "id"], unique=False
    )
    op.create_index("ix_vector_store_files_chunk_set", "vector_store_files", ["chunk_set_id"], unique=False)
    op.create_index("ix_vector_store_files_file", "vector_store_files", ["id"], unique=False)
    op.create_index(
        "ix_vector_store_files_page",
        "vector_store_files",
        ["vector_store_id", "created_us", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_vector_store_files_tenant_id"), "vector_store_files", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_vector_store_files_tenant_id"), table_name="vector_store_files")
    op.drop_index("ix_vector_store_files_page", table_name="vector_store_files")
    op.drop_index("ix_vector_store_files_file", table_name="vector_store_files")
    op.drop_index("ix_vector_store_files_chunk_set", table_name="vector_store_files")
    op.drop_index("ix_vector_store_files_batch", table_name="vector_store_files")
    op.drop_table("vector_store_files")
    op.drop_table("chunk_set_lexemes")
    if _postgres():
        op.drop_index("ix_chunks_tsv", table_name="chunks", postgresql_using="gin")
    else:
        for statement in SQLITE_FTS_DROP:
            op.execute(statement)
    op.drop_table("chunks")
    op.drop_index(
        op.f("ix_vector_store_file_batches_vector_store_id"), table_name="vector_store_file_batches"
    )
    op.drop_index(op.f("ix_vector_store_file_batches_tenant_id"), table_name="vector_store_file_batches")
    op.drop_table("vector_store_file_batches")
    op.drop_index(op.f("ix_chunk_sets_tenant_id"), table_name="chunk_sets")
    op.drop_index(
        "ix_chunk_sets_sweep",
        table_name="chunk_sets",
        postgresql_where=sa.text("status = 'in_progress'"),
        sqlite_where=sa.text("status = 'in_progress'"),
    )
    op.drop_table("chunk_sets")
    op.drop_index("ix_vector_stores_page", table_name="vector_stores")
    op.drop_table("vector_stores")
    op.drop_index("ix_files_page", table_name="files")
    op.drop_index(
        "ix_files_expiry",
        table_name="files",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.drop_table("files")
    op.drop_index(op.f("ix_blob_chunks_tenant_id"), table_name="blob_chunks")
    op.drop_table("blob_chunks")

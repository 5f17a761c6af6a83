"""Tables of files, vector stores and their ingested chunks (sharing `models`' metadata; db/schema.py has both).

    files ─┬─ blob_chunks (the bytes, when they live in the database; the extracted text too)
           └─ chunk_sets ── chunks (text, tokens, vector)
    vector_stores ─┬─ vector_store_files ──▶ files, chunk_sets (one file cut one way, shared)
                   └─ vector_store_file_batches ◀── vector_store_files.batch_id

Deleting a file cascades to its chunk sets, chunks and store files: it leaves every store at once.
Chunk sets outlive the stores that used them (a file added again is ready at once) and go with the file.

Statuses are closed sets the database checks (`closed_set`), each with its table of moves in
domain/retrieval.py.

Lexical search: each chunk set keeps its chunks' BM25 postings in `chunk_sets.postings` (written with the
chunks; files/lexical_index.py), the same on Postgres and SQLite; no full-text index in the database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db.models import Base, closed_set
from orchestrator.domain.retrieval import ChunkSetStatus, FileStatus, StoreFileStatus

IN_PROGRESS_SQL = "status = 'in_progress'"
# SQLite's rowid alias must be INTEGER exactly.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class File(Base):
    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_page", "tenant_id", "created_us", "id"),
        Index(
            "ix_files_expiry",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
            sqlite_where=text("expires_at IS NOT NULL"),
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[FileStatus] = closed_set(FileStatus, "file_status")
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    # Parsed once: the size of the extracted text once it is stored, or why it could not be extracted.
    text_bytes: Mapped[int | None] = mapped_column(BigInteger)
    parse_error: Mapped[dict[str, Any] | None]


class BlobChunk(Base):
    """Bytes stored in the database, in slices of at most 1 MiB (see adapters/blobs.py for why)."""

    __tablename__ = "blob_chunks"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class VectorStore(Base):
    __tablename__ = "vector_stores"
    __table_args__ = (Index("ix_vector_stores_page", "tenant_id", "created_us", "id"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata")
    expires_after: Mapped[dict[str, Any] | None]
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    last_active_at: Mapped[int] = mapped_column(BigInteger)
    # Fixed at creation so a store never mixes vectors of two models; '' = lexical search only.
    embedding_model: Mapped[str] = mapped_column(String(256), default="")


class VectorStoreFileBatch(Base):
    __tablename__ = "vector_store_file_batches"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    vector_store_id: Mapped[str] = mapped_column(
        ForeignKey("vector_stores.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)


class ChunkSet(Base):
    """One file's text cut one way and embedded by one model: the unit of ingestion, leased like a run."""

    __tablename__ = "chunk_sets"
    __table_args__ = (
        UniqueConstraint("file_id", "max_tokens", "overlap", "embedding_model", name="uq_chunk_sets_cut"),
        Index(
            "ix_chunk_sets_sweep",
            "lease_expires_at",
            postgresql_where=text(IN_PROGRESS_SQL),
            sqlite_where=text(IN_PROGRESS_SQL),
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    max_tokens: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[int] = mapped_column(Integer)
    embedding_model: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[ChunkSetStatus] = closed_set(ChunkSetStatus, "chunk_set_status")
    last_error: Mapped[dict[str, Any] | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[float | None] = mapped_column(Double)
    enqueued_at: Mapped[float | None] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    dimensions: Mapped[int | None] = mapped_column(Integer)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # The chunks' lexical postings (retrieval/bm25.py's encoding), stored with the chunks; null for a set
    # stored before they existed, until its first search computes them. Deferred: only search reads them.
    postings: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("chunk_set_id", "seq", name="uq_chunks_seq"),)
    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    chunk_set_id: Mapped[str] = mapped_column(ForeignKey("chunk_sets.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    # float32, unit length, `chunk_sets.dimensions` long; null until embedded (or with no embedding model).
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)


class VectorStoreFile(Base):
    __tablename__ = "vector_store_files"
    __table_args__ = (
        Index("ix_vector_store_files_page", "vector_store_id", "created_us", "id"),
        Index("ix_vector_store_files_batch", "batch_id", "created_us", "id"),
        Index("ix_vector_store_files_chunk_set", "chunk_set_id"),
        Index("ix_vector_store_files_file", "id"),
    )
    vector_store_id: Mapped[str] = mapped_column(
        ForeignKey("vector_stores.id", ondelete="CASCADE"), primary_key=True
    )
    # The file's id: the wire object's `id`.
    id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_us: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[StoreFileStatus] = closed_set(StoreFileStatus, "store_file_status")
    last_error: Mapped[dict[str, Any] | None]
    attributes: Mapped[dict[str, Any]]
    chunking_strategy: Mapped[dict[str, Any]]
    chunk_set_id: Mapped[str] = mapped_column(ForeignKey("chunk_sets.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("vector_store_file_batches.id", ondelete="SET NULL")
    )
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)

"""Files, vector stores, store files and batches as the SDK's types read them (contract §6.2)."""

from __future__ import annotations

from orchestrator.db.retrieval_models import File, VectorStore, VectorStoreFile, VectorStoreFileBatch
from orchestrator.domain.retrieval import batch_status, store_status


def file(row: File) -> dict:
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": row.created_at,
        "filename": row.filename,
        "purpose": row.purpose,
        "status": row.status,
        "expires_at": row.expires_at,
        "status_details": None,
    }


def vector_store(row: VectorStore, file_counts: dict, usage_bytes: int, now: int) -> dict:
    return {
        "id": row.id,
        "object": "vector_store",
        "created_at": row.created_at,
        "name": row.name or "",
        "description": row.description,
        "usage_bytes": usage_bytes,
        "file_counts": file_counts,
        "status": store_status(file_counts, row.expires_at, now).value,
        "expires_after": row.expires_after,
        "expires_at": row.expires_at,
        "last_active_at": row.last_active_at,
        "metadata": row.metadata_,
    }


def store_file(row: VectorStoreFile) -> dict:
    return {
        "id": row.id,
        "object": "vector_store.file",
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": row.status,
        "last_error": row.last_error,
        "usage_bytes": row.usage_bytes,
        "attributes": row.attributes,
        "chunking_strategy": row.chunking_strategy,
    }


def batch(row: VectorStoreFileBatch, file_counts: dict) -> dict:
    return {
        "id": row.id,
        "object": "vector_store.files_batch",
        "created_at": row.created_at,
        "vector_store_id": row.vector_store_id,
        "status": batch_status(file_counts, row.cancelled_at is not None).value,
        "file_counts": file_counts,
    }


def deleted(object_id: str, kind: str) -> dict:
    return {"id": object_id, "object": kind, "deleted": True}

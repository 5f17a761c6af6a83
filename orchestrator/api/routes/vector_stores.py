"""Vector stores, their files, file batches and search (contract §6.1–6.2).

Reads that the SDK's poll helpers make (a store file, a batch) carry `openai-poll-after-ms`.
"""

from __future__ import annotations

from flask import Blueprint

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok, parse_body, route
from orchestrator.api.query import list_query
from orchestrator.api.routes.files import check_file_id
from orchestrator.files import batches, search, store_files, vector_stores
from orchestrator.schemas.pagination import ListQuery
from orchestrator.schemas.vector_stores import (
    CreateFileBatch,
    CreateStoreFile,
    CreateVectorStore,
    ModifyVectorStore,
    SearchVectorStore,
    StoreFileListQuery,
    UpdateStoreFile,
)

bp = Blueprint("vector_stores", __name__)

STORE = "/vector_stores/<vector_store_id>"
STORE_FILE = STORE + "/files/<file_id>"
BATCH = STORE + "/file_batches/<batch_id>"


def _poll_hint() -> dict[str, str]:
    return {"openai-poll-after-ms": str(ctx().settings.poll_after_ms)}


def _ids(vector_store_id: str, file_id: str | None = None, batch_id: str | None = None) -> None:
    check_id(vector_store_id, "vs", "vector_store_id")
    if file_id is not None:
        check_file_id(file_id)
    if batch_id is not None:
        check_id(batch_id, "vsfb", "batch_id")


@route(bp, "/vector_stores", "POST", summary="Create a vector store", body=CreateVectorStore)
def create_store():
    return ok(vector_stores.create(ctx(), tenant(), parse_body(CreateVectorStore)), headers=_poll_hint())


@route(bp, "/vector_stores", "GET", summary="List vector stores", query=ListQuery, returns="list")
def list_stores():
    return ok(vector_stores.list_(ctx(), tenant(), **list_query()))


@route(bp, STORE, "GET", summary="Retrieve a vector store")
def get_store(vector_store_id: str):
    _ids(vector_store_id)
    return ok(vector_stores.get(ctx(), tenant(), vector_store_id), headers=_poll_hint())


@route(bp, STORE, "POST", summary="Modify a vector store", body=ModifyVectorStore)
def modify_store(vector_store_id: str):
    _ids(vector_store_id)
    return ok(vector_stores.modify(ctx(), tenant(), vector_store_id, parse_body(ModifyVectorStore)))


@route(bp, STORE, "DELETE", summary="Delete a vector store", returns="deleted")
def delete_store(vector_store_id: str):
    _ids(vector_store_id)
    return ok(vector_stores.delete(ctx(), tenant(), vector_store_id))


@route(bp, STORE + "/search", "POST", summary="Search a vector store", body=SearchVectorStore, returns="list")
def search_store(vector_store_id: str):
    _ids(vector_store_id)
    body = parse_body(SearchVectorStore)
    return ok(search.search_page(ctx(), tenant(), vector_store_id, body))


@route(bp, STORE + "/files", "POST", summary="Add a file to a vector store", body=CreateStoreFile)
def create_store_file(vector_store_id: str):
    _ids(vector_store_id)
    body = parse_body(CreateStoreFile)
    check_file_id(body.file_id)
    return ok(store_files.create(ctx(), tenant(), vector_store_id, body), headers=_poll_hint())


@route(
    bp,
    STORE + "/files",
    "GET",
    summary="List a vector store's files",
    query=StoreFileListQuery,
    returns="list",
)
def list_store_files(vector_store_id: str):
    _ids(vector_store_id)
    return ok(store_files.list_(ctx(), tenant(), vector_store_id, **list_query(StoreFileListQuery)))


@route(bp, STORE_FILE, "GET", summary="Retrieve a vector store file")
def get_store_file(vector_store_id: str, file_id: str):
    _ids(vector_store_id, file_id)
    return ok(store_files.get(ctx(), tenant(), vector_store_id, file_id), headers=_poll_hint())


@route(bp, STORE_FILE, "POST", summary="Update a vector store file's attributes", body=UpdateStoreFile)
def update_store_file(vector_store_id: str, file_id: str):
    _ids(vector_store_id, file_id)
    body = parse_body(UpdateStoreFile)
    return ok(store_files.update_attributes(ctx(), tenant(), vector_store_id, file_id, body))


@route(bp, STORE_FILE, "DELETE", summary="Remove a file from a vector store", returns="deleted")
def delete_store_file(vector_store_id: str, file_id: str):
    _ids(vector_store_id, file_id)
    return ok(store_files.delete(ctx(), tenant(), vector_store_id, file_id))


@route(bp, STORE_FILE + "/content", "GET", summary="The parsed text of a vector store file", returns="list")
def store_file_content(vector_store_id: str, file_id: str):
    _ids(vector_store_id, file_id)
    return ok(store_files.content(ctx(), tenant(), vector_store_id, file_id))


@route(
    bp,
    STORE + "/file_batches",
    "POST",
    summary="Add files to a vector store in a batch",
    body=CreateFileBatch,
)
def create_batch(vector_store_id: str):
    _ids(vector_store_id)
    body = parse_body(CreateFileBatch)
    for file_id in body.file_ids or [item.file_id for item in body.files or []]:
        check_file_id(file_id)
    return ok(batches.create(ctx(), tenant(), vector_store_id, body), headers=_poll_hint())


@route(bp, BATCH, "GET", summary="Retrieve a file batch")
def get_batch(vector_store_id: str, batch_id: str):
    _ids(vector_store_id, batch_id=batch_id)
    return ok(batches.get(ctx(), tenant(), vector_store_id, batch_id), headers=_poll_hint())


@route(bp, BATCH + "/cancel", "POST", summary="Cancel a file batch")
def cancel_batch(vector_store_id: str, batch_id: str):
    _ids(vector_store_id, batch_id=batch_id)
    return ok(batches.cancel(ctx(), tenant(), vector_store_id, batch_id))


@route(
    bp, BATCH + "/files", "GET", summary="List a file batch's files", query=StoreFileListQuery, returns="list"
)
def list_batch_files(vector_store_id: str, batch_id: str):
    _ids(vector_store_id, batch_id=batch_id)
    query = list_query(StoreFileListQuery)
    return ok(batches.list_files(ctx(), tenant(), vector_store_id, batch_id, **query))

"""`tool_resources` on assistants and threads, and message attachments (contract §6.3).

- `file_search.vector_store_ids` (at most one) must name the tenant's stores; `code_interpreter.file_ids`
  (at most 20) the tenant's files: another tenant's id is as unknown as a made-up one (404).
- The create-time helper `file_search.vector_stores: [{file_ids, chunking_strategy, metadata}]` creates
  the store in the same transaction; the object then shows its id in `vector_store_ids`.
- A message attachment with the file_search tool puts its file into the thread's store, which is created
  when the thread has none, expiring 7 days after its last activity (as hosted).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from orchestrator.context import Context
from orchestrator.db import models, stores
from orchestrator.db.uow import UnitOfWork
from orchestrator.domain.retrieval import THREAD_STORE_DAYS
from orchestrator.files import store_files, uploads, vector_stores
from orchestrator.files.store_files import chunking_of
from orchestrator.schemas.common import CreateMessage, ToolResourceIds, ToolResources, dump

THREAD_STORE_EXPIRY = {"anchor": "last_active_at", "days": THREAD_STORE_DAYS}


def resolve(
    uow: UnitOfWork, ctx: Context, tenant_id: str, resources: ToolResources | ToolResourceIds | None
) -> dict | None:
    """The stored (and echoed) form of `resources`: ids checked, helper stores created."""
    if resources is None:
        return None
    stored = dump(resources)
    if resources.code_interpreter is not None:
        uploads.check_exist(
            uow.session, tenant_id, resources.code_interpreter.file_ids or [], ctx.timestamp()
        )
    search = resources.file_search
    if search is not None:
        store_ids = list(search.vector_store_ids or [])
        vector_stores.check_exist(uow.session, tenant_id, store_ids)
        for helper in getattr(search, "vector_stores", None) or []:
            store = vector_stores.create_in(
                uow,
                ctx,
                tenant_id,
                metadata=helper.metadata,
                file_ids=helper.file_ids or [],
                chunking=chunking_of(helper.chunking_strategy),
            )
            store_ids.append(store.id)
        stored["file_search"] = {"vector_store_ids": store_ids}
    return stored


def attach_files(
    uow: UnitOfWork, ctx: Context, tenant_id: str, thread_id: str, messages: Sequence[CreateMessage] | None
) -> None:
    """Check every attachment's file, and put the file_search ones into the thread's store. The caller
    has added the messages and holds the thread."""
    attachments = [item for message in messages or [] for item in message.attachments or []]
    if not attachments:
        return
    session, now = uow.session, ctx.timestamp()
    uploads.check_exist(session, tenant_id, [item.file_id for item in attachments], now)
    searched = [item.file_id for item in attachments if any(t.type == "file_search" for t in item.tools)]
    if not searched:
        return
    thread = session.get(models.Thread, thread_id)
    store = _thread_store(uow, ctx, thread)
    for file_id in dict.fromkeys(searched):
        store_files.attach(uow, ctx, store, file_id)
    stores.touch(session, [store], now)


def _thread_store(uow: UnitOfWork, ctx: Context, thread: models.Thread):
    """The thread's store (the first of `vector_store_ids`), made when it has none or it was deleted."""
    resources = dict(thread.tool_resources or {})
    current = (resources.get("file_search") or {}).get("vector_store_ids") or []
    store = _existing(uow.session, thread.tenant_id, current[0]) if current else None
    if store is None:
        store = vector_stores.create_in(uow, ctx, thread.tenant_id, expires_after=dict(THREAD_STORE_EXPIRY))
        resources["file_search"] = {"vector_store_ids": [store.id]}
        thread.tool_resources = resources
        uow.session.flush()
    return store


def _existing(session: Session, tenant_id: str, store_id: str):
    from orchestrator.db.retrieval_models import VectorStore

    store = session.get(VectorStore, store_id)
    return store if store is not None and store.tenant_id == tenant_id else None

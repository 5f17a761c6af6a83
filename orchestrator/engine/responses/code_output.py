"""A response's code_interpreter calls and their container (files/containers.py): the container's files go
into the sandbox session before the code runs; the files the code wrote become the container's, and the
figures it showed become image outputs.

    container_files(ctx, tenant_id, container_id) -> [InputFile]     or the response fails: container gone
    kept(ctx, tenant_id, container_id, stored) -> outputs           as `code_interpreter_call.outputs`

An image output's `url` is a data URL (as the hosted API gives it): the bytes live in the item, and the
file the engine stored them in first (engine/hosted.py) is removed, so a figure leaves nothing behind in
the files list. A file the code wrote stays a file of the files wing, owned by the container.
"""

from __future__ import annotations

import base64
from typing import Any

from orchestrator.context import Context
from orchestrator.db.retrieval_models import File
from orchestrator.domain.errors import OrchestratorError
from orchestrator.engine import hosted
from orchestrator.files import containers, uploads
from orchestrator.sandbox.port import InputFile


def container_files(ctx: Context, tenant_id: str, container_id: str) -> list[InputFile]:
    """The container's files for the code about to run; a container deleted or expired since the
    response was made fails the response (its state is gone)."""
    try:
        return containers.input_files(ctx, tenant_id, container_id)
    except OrchestratorError as error:
        raise hosted.HostedToolFailed("server_error", f"The code could not be run: {error.message}") from None


def kept(ctx: Context, tenant_id: str, container_id: str | None, stored: dict[str, Any]) -> list[dict]:
    """A finished call's outputs as the Response shows them (logs; images as data URLs), and what it
    wrote recorded as its container's files."""
    outputs = stored["code_interpreter"]["outputs"]
    images = [o["image"]["file_id"] for o in outputs if o["type"] == "image"]
    urls = {file_id: _data_url(ctx, tenant_id, file_id) for file_id in images}
    with ctx.uow() as uow:
        if container_id:
            containers.record_written(uow, ctx, tenant_id, container_id, stored.get("_files") or {})
        for file_id in images:
            made = uow.session.get(File, file_id)
            if made is not None:
                uploads.remove(uow, ctx, made)
        uow.commit()
    shown = []
    for out in outputs:
        if out["type"] == "logs":
            shown.append({"type": "logs", "logs": out["logs"]})
        elif out["type"] == "image" and urls.get(out["image"]["file_id"]):
            shown.append({"type": "image", "url": urls[out["image"]["file_id"]]})
    return shown


def _data_url(ctx: Context, tenant_id: str, file_id: str) -> str | None:
    try:
        data = uploads.read_bytes(ctx, tenant_id, file_id)
    except OrchestratorError:  # removed by a worker that did this before dying: the redo has its own
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

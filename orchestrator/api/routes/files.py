"""Files (contract §6.1–6.2): a multipart upload that streams to the blob store, and the raw bytes back."""

from __future__ import annotations

import os
import re

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import ok, route, validate
from orchestrator.api.query import list_query
from orchestrator.api.validation import check_text, missing
from orchestrator.domain.errors import InvalidRequest, PayloadTooLarge
from orchestrator.files import uploads
from orchestrator.schemas.files import FileListQuery, FileUpload

bp = Blueprint("files", __name__)

_ID = re.compile(r"file-[A-Za-z0-9_-]{1,59}")
_NESTED = re.compile(r"^(\w+)\[(\w+)\]$")


def check_file_id(value: str, param: str = "file_id") -> str:
    """A file id as OpenAI makes them: `file-` and letters, digits, '-' or '_'."""
    if not _ID.fullmatch(value):
        shown = value.encode("utf-8", "backslashreplace").decode()[:80]
        raise InvalidRequest(
            f"Invalid '{param}': '{shown}'. Expected an ID that begins with 'file-'.",
            param=param,
            code="invalid_value",
        )
    return value


# What a multipart body may hold besides its file: the parts' headers, the boundaries, `purpose` and
# `expires_after`. The upload limit is the file's own size.
FORM_ALLOWANCE = 64 * 1024


@route(bp, "/files", "POST", summary="Upload a file (multipart: file, purpose, expires_after)")
def upload_file():
    limit = ctx().settings.max_upload_bytes
    # Uploads have their own limit; Werkzeug spools the file part to disk past 500 kB while parsing.
    request.max_content_length = limit + FORM_ALLOWANCE
    try:
        upload = request.files.get("file")
        fields = _form_fields()
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    if upload is None:
        raise missing("file")
    if _size(upload.stream) > limit:
        raise _too_large(limit)
    body = validate(FileUpload, fields)
    seconds = body.expires_after.seconds if body.expires_after else None
    name = upload_filename(upload.filename)
    created = uploads.upload(
        ctx(),
        tenant(),
        source=upload.stream,
        filename=name,
        purpose=body.purpose,
        expires_after_seconds=seconds,
    )
    return ok(created)


def _size(stream) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is too large. The maximum is {limit} bytes.", code="request_too_large")


def _form_fields() -> dict:
    """The form as a JSON-like object: `expires_after[seconds]=3600` (the SDK's nesting) becomes nested."""
    fields: dict = {}
    for key, value in request.form.items():
        check_text(value, key)
        nested = _NESTED.match(key)
        if nested:
            outer, inner = nested.groups()
            fields.setdefault(outer, {})[inner] = _number(value) if inner == "seconds" else value
        elif key != "file":
            fields[key] = value
    return fields


def _number(text: str):
    return int(text) if text.strip().lstrip("-").isdigit() else text


def upload_filename(raw: str | None) -> str:
    """An upload's name as the file keeps it: its last path component, at most 255 characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "").strip()
    check_text(name, "file")
    return name[:255] or "upload"


@route(bp, "/files", "GET", summary="List files", query=FileListQuery, returns="list")
def list_files():
    return ok(uploads.list_(ctx(), tenant(), **list_query(FileListQuery)))


@route(bp, "/files/<file_id>", "GET", summary="Retrieve a file")
def get_file(file_id: str):
    check_file_id(file_id)
    return ok(uploads.get(ctx(), tenant(), file_id))


@route(bp, "/files/<file_id>", "DELETE", summary="Delete a file (and remove it from every vector store)")
def delete_file(file_id: str):
    check_file_id(file_id)
    return ok(uploads.delete(ctx(), tenant(), file_id))


@route(bp, "/files/<file_id>/content", "GET", summary="Retrieve a file's bytes", returns="bytes")
def file_content(file_id: str):
    check_file_id(file_id)
    meta, slices = uploads.content(ctx(), tenant(), file_id)
    return download(meta["filename"], meta["bytes"], slices)


def download(filename: str, size: int, slices) -> Response:
    """A file's bytes as an attachment, streamed slice by slice."""
    safe = filename.replace('"', "").encode("ascii", "replace").decode()
    headers = {"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{safe}"'}
    return Response(slices, mimetype="application/octet-stream", headers=headers)

"""Containers and their files, as `client.containers.*` and `client.containers.files.*` call them: where a
response's code_interpreter runs (files/containers.py)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from orchestrator.api.auth import tenant
from orchestrator.api.context import ctx
from orchestrator.api.http import check_id, ok, parse_body, route
from orchestrator.api.query import list_query
from orchestrator.api.routes.files import check_file_id, download, upload_filename
from orchestrator.api.validation import missing
from orchestrator.files import containers
from orchestrator.schemas.containers import AddContainerFile, ContainerListQuery, CreateContainer
from orchestrator.schemas.pagination import ListQuery

bp = Blueprint("containers", __name__)

CONTAINER = "/containers/<container_id>"
CONTAINER_FILE = CONTAINER + "/files/<file_id>"


def _ids(container_id: str, file_id: str | None = None) -> None:
    check_id(container_id, "cntr", "container_id")
    if file_id is not None:
        check_id(file_id, "cfile", "file_id")


@route(bp, "/containers", "POST", summary="Create a container", body=CreateContainer)
def create_container():
    body = parse_body(CreateContainer)
    created = containers.create(
        ctx(),
        tenant(),
        name=body.name,
        file_ids=[check_file_id(file_id, "file_ids") for file_id in body.file_ids or []],
        minutes=body.expires_after.minutes if body.expires_after else None,
        memory_limit=body.memory_limit,
    )
    return ok(created)


@route(bp, "/containers", "GET", summary="List containers", query=ContainerListQuery, returns="list")
def list_containers():
    return ok(containers.list_(ctx(), tenant(), **list_query(ContainerListQuery)))


@route(bp, CONTAINER, "GET", summary="Retrieve a container")
def get_container(container_id: str):
    _ids(container_id)
    return ok(containers.get(ctx(), tenant(), container_id))


@route(bp, CONTAINER, "DELETE", summary="Delete a container (its files and its session)", returns="deleted")
def delete_container(container_id: str):
    _ids(container_id)
    return ok(containers.delete(ctx(), tenant(), container_id))


@route(
    bp,
    CONTAINER + "/files",
    "POST",
    summary="Add a file to a container (multipart: file; or JSON: file_id)",
    body=AddContainerFile,
    object="container.file",
)
def add_container_file(container_id: str):
    _ids(container_id)
    if request.mimetype == "multipart/form-data":
        request.max_content_length = ctx().settings.max_upload_bytes
        upload = request.files.get("file")
        if upload is None:
            raise missing("file")
        added = containers.add_upload(
            ctx(), tenant(), container_id, source=upload.stream, filename=upload_filename(upload.filename)
        )
        return ok(added)
    body = parse_body(AddContainerFile)
    return ok(containers.add_file(ctx(), tenant(), container_id, check_file_id(body.file_id)))


@route(
    bp,
    CONTAINER + "/files",
    "GET",
    summary="List a container's files",
    query=ListQuery,
    returns="list",
    object="container.file",
)
def list_container_files(container_id: str):
    _ids(container_id)
    return ok(containers.list_files(ctx(), tenant(), container_id, **list_query()))


@route(bp, CONTAINER_FILE, "GET", summary="Retrieve a container file", object="container.file")
def get_container_file(container_id: str, file_id: str):
    _ids(container_id, file_id)
    return ok(containers.get_file(ctx(), tenant(), container_id, file_id))


@route(
    bp,
    CONTAINER_FILE,
    "DELETE",
    summary="Delete a container file",
    returns="deleted",
    object="container.file",
)
def delete_container_file(container_id: str, file_id: str):
    _ids(container_id, file_id)
    return ok(containers.delete_file(ctx(), tenant(), container_id, file_id))


@route(bp, CONTAINER_FILE + "/content", "GET", summary="Retrieve a container file's bytes", returns="bytes")
def container_file_content(container_id: str, file_id: str) -> Response:
    _ids(container_id, file_id)
    name, size, slices = containers.file_content(ctx(), tenant(), container_id, file_id)
    return download(name, size, slices)

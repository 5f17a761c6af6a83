"""/openapi.json, generated from the route registry, the pydantic models that validate requests, and the
response schemas of orchestrator/api/openapi_objects.py."""

from __future__ import annotations

import re

from orchestrator.api.http import ROUTES, RouteDoc
from orchestrator.api.openapi_objects import ITEM_ID, KINDS, components, id_param
from orchestrator.api.openapi_relay import RELAYED, UPSTREAM_ERRORS, relay_components

PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
# A path parameter's id prefix, by its name.
ID_PARAMS = {
    "assistant_id": "asst",
    "thread_id": "thread",
    "message_id": "msg",
    "run_id": "run",
    "step_id": "step",
    "vector_store_id": "vs",
    "batch_id": "vsfb",
    "conversation_id": "conv",
    "response_id": "resp",
    "container_id": "cntr",
}
# The kind a route answers, by the last literal segment of its rule.
SEGMENT_KINDS = {
    "assistants": "assistant",
    "threads": "thread",
    "messages": "thread.message",
    "runs": "thread.run",
    "cancel": "thread.run",
    "submit_tool_outputs": "thread.run",
    "steps": "thread.run.step",
    "conversations": "conversation",
    "responses": "response",
    "input_items": "response.item",
    "input_tokens": "response.input_tokens",
    "containers": "container",
}
ERROR = {
    "description": "OpenAI error envelope",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key gets the first response and creates nothing (24 h, per tenant).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


def document() -> dict:
    paths: dict[str, dict] = {}
    schemas: dict[str, dict] = components() | relay_components()
    # The Assistants API first, then the relayed model APIs.
    for doc in sorted(ROUTES, key=lambda route: route.object in RELAYED):
        path = "/v1" + PARAM.sub(r"{\1}", doc.rule)
        paths.setdefault(path, {})[doc.method.lower()] = _operation(doc, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "orchestrator — the Assistants, Responses and Conversations APIs", "version": "2"},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }


def _operation(doc: RouteDoc, schemas: dict) -> dict:
    params = [_path_param(name) for name in PARAM.findall(doc.rule)] + _query_params(doc.query)
    if doc.method == "POST" and doc.idempotent:
        params.append(IDEMPOTENCY_KEY)
    operation = {
        "summary": doc.summary,
        "operationId": f"{doc.method.lower()}_{doc.rule.strip('/').replace('/', '_').replace('<', '').replace('>', '')}",
        "parameters": params,
        "responses": {
            "200": _success(doc),
            "4XX": ERROR,
            "503": {**ERROR, "description": "A dependency is down"},
        },
    }
    if doc.object in RELAYED and doc.method == "POST":
        operation["responses"] |= {
            code: {**ERROR, "description": text} for code, text in UPSTREAM_ERRORS.items()
        }
    if doc.body is not None:
        schema = doc.body.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[doc.body.__name__] = schema
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{doc.body.__name__}"}}
            },
        }
    return operation


def _kind(doc: RouteDoc) -> str | None:
    if doc.object is not None:
        return doc.object
    literal = [segment for segment in doc.rule.strip("/").split("/") if not segment.startswith("<")]
    return SEGMENT_KINDS.get(literal[-1]) if literal else None


def _success(doc: RouteDoc) -> dict:
    if doc.returns == "bytes":
        binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        return {"description": "The raw bytes", "content": binary}
    # Each event of a stream, as OpenAPI 3.2 reads a text/event-stream schema.
    events = {"$ref": f"#/components/schemas/{doc.events}"}
    if doc.returns == "stream" and doc.rule.endswith("/events"):
        return {"description": "The run's events", "content": {"text/event-stream": {"schema": events}}}
    kind = _kind(doc)
    name = KINDS[kind][0] if kind in KINDS else RELAYED.get(kind)
    suffix = {"list": "List", "deleted": "Deleted"}.get(doc.returns, "")
    schema = {"$ref": f"#/components/schemas/{name}{suffix}"} if name else {"type": "object"}
    content = {"application/json": {"schema": schema}}
    if doc.returns == "stream":
        content["text/event-stream"] = {"schema": events}
    description = {"list": "A page of objects", "deleted": "Deletion status"}.get(doc.returns, "The object")
    if doc.returns == "stream":
        description = "The object, or Server-Sent Events when `stream` is true"
    return {"description": description, "content": content}


def _path_param(name: str) -> dict:
    prefix = ID_PARAMS.get(name)
    schema = id_param(prefix) if prefix else ITEM_ID if name == "item_id" else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_params(model) -> list[dict]:
    if model is None:
        return []
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]

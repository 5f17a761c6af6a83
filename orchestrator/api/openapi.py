"""/openapi.json, generated from the route registry and the same pydantic models that validate requests."""

from __future__ import annotations

import re

from orchestrator.api.http import ROUTES

_RESPONSES = {
    "object": {"description": "The object", "content": {"application/json": {"schema": {"type": "object"}}}},
    "list": {
        "description": "A page of objects",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    "deleted": {
        "description": "Deletion status",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    "bytes": {
        "description": "The raw bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "stream": {
        "description": "The object, or Server-Sent Events when `stream` is true",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
}
_ERROR = {
    "description": "OpenAI error envelope",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def document() -> dict:
    paths: dict[str, dict] = {}
    components: dict[str, dict] = {"Error": _error_schema()}
    for doc in ROUTES:
        path = "/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", doc.rule)
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"<(?:\w+:)?(\w+)>", doc.rule)
        ]
        operation = {
            "summary": doc.summary,
            "operationId": f"{doc.method.lower()}_{doc.rule.strip('/').replace('/', '_').replace('<', '').replace('>', '')}",
            "parameters": params + _query_params(doc.query),
            "responses": {"200": _RESPONSES[doc.returns], "4XX": _ERROR},
        }
        if doc.body is not None:
            schema = doc.body.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
            components.update(schema.pop("$defs", {}))
            components[doc.body.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{doc.body.__name__}"}}
                },
            }
        paths.setdefault(path, {})[doc.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "orchestrator — Assistants API v2", "version": "2"},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }


def _query_params(model) -> list[dict]:
    if model is None:
        return []
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _error_schema() -> dict:
    inner = {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        },
    }
    return {"type": "object", "required": ["error"], "properties": {"error": inner}}

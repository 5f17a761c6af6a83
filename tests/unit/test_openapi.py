"""/openapi.json is a well-formed OpenAPI 3.1 document that describes every registered route."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import create_engine

from orchestrator.adapters.ports import InMemoryBus, InMemoryQueue
from orchestrator.api.app import create_app
from orchestrator.api.http import ROUTES
from orchestrator.context import Context
from orchestrator.db.connection import make_sessionmaker
from orchestrator.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def spec() -> dict:
    # The app never touches this engine: /openapi.json needs neither the database nor Redis.
    settings = Settings(database_url="sqlite://")
    context = Context(settings, make_sessionmaker(create_engine("sqlite://")), InMemoryQueue(), InMemoryBus())
    response = create_app(settings, context).test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def openapi_path(rule: str) -> str:
    return "/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_the_document_has_the_openapi_3_1_top_level_shape(spec):
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert isinstance(spec["paths"], dict) and spec["paths"]
    assert all(path.startswith("/") for path in spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} <= {"http", "apiKey"}
    for requirement in spec["security"]:
        assert set(requirement) <= set(schemes)


def test_every_registered_route_is_described(spec):
    for doc in ROUTES:
        path = openapi_path(doc.rule)
        assert path in spec["paths"], doc.rule
        assert doc.method.lower() in spec["paths"][path], f"{doc.method} {doc.rule}"
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert described == {(openapi_path(doc.rule), doc.method.lower()) for doc in ROUTES}


def test_every_operation_is_complete_and_uniquely_named(spec):
    operation_ids = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert method in HTTP_METHODS
            operation_ids.append(operation["operationId"])
            assert operation["summary"]
            assert "200" in operation["responses"] and "4XX" in operation["responses"]
            for response in operation["responses"].values():
                assert response["description"]
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            for parameter in operation["parameters"]:
                assert parameter["in"] in {"path", "query", "header", "cookie"}
                assert "schema" in parameter
                if parameter["in"] == "path":
                    assert parameter["required"] is True
    assert len(operation_ids) == len(set(operation_ids))


def test_routes_with_a_body_model_document_its_request_schema(spec):
    schemas = spec["components"]["schemas"]
    for doc in ROUTES:
        operation = spec["paths"][openapi_path(doc.rule)][doc.method.lower()]
        if doc.body is None:
            assert "requestBody" not in operation
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.removeprefix("#/components/schemas/")]
        assert schema["type"] == "object"
        assert set(schema["properties"]) == {
            info.alias or name for name, info in doc.body.model_fields.items()
        }
        # Relayed bodies (chat completions, embeddings) pass unknown fields on to the upstream.
        relayed = doc.body.model_config.get("extra") == "allow"
        assert schema.get("additionalProperties") is relayed, doc.rule


def test_routes_with_a_query_model_document_each_query_parameter(spec):
    for doc in ROUTES:
        if doc.query is None:
            continue
        operation = spec["paths"][openapi_path(doc.rule)][doc.method.lower()]
        query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert query == set(doc.query.model_fields)


def test_every_reference_resolves_inside_the_document(spec):
    schemas = spec["components"]["schemas"]
    for ref in refs(spec):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_the_error_envelope_is_described_with_its_four_keys(spec):
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"message", "type", "param", "code"}


def resolve(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
    return schema


@pytest.mark.parametrize(
    ("path", "method", "object_", "prefix"),
    [
        ("/v1/assistants", "post", "assistant", "asst"),
        ("/v1/threads/{thread_id}", "get", "thread", "thread"),
        ("/v1/threads/{thread_id}/messages/{message_id}", "post", "thread.message", "msg"),
        ("/v1/threads/{thread_id}/runs/{run_id}/cancel", "post", "thread.run", "run"),
        ("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}", "get", "thread.run.step", "step"),
    ],
)
def test_object_responses_name_their_object_and_id_prefix(spec, path, method, object_, prefix):
    content = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    schema = resolve(spec, content["schema"])
    assert schema["properties"]["object"] == {"const": object_}
    assert schema["properties"]["id"]["pattern"].startswith(f"^{prefix}_")
    assert set(schema["required"]) == set(schema["properties"]) and schema["additionalProperties"] is False


def test_lists_and_deletions_have_their_own_shapes(spec):
    listing = resolve(
        spec,
        spec["paths"]["/v1/assistants"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
    )
    assert listing["properties"]["object"] == {"const": "list"}
    assert resolve(spec, listing["properties"]["data"]["items"])["properties"]["object"] == {
        "const": "assistant"
    }
    deleted = spec["paths"]["/v1/threads/{thread_id}"]["delete"]["responses"]["200"]["content"][
        "application/json"
    ]
    assert resolve(spec, deleted["schema"])["properties"]["object"] == {"const": "thread.deleted"}


def test_streams_document_each_event_with_its_data_schema(spec):
    created = spec["paths"]["/v1/threads/{thread_id}/runs"]["post"]["responses"]["200"]["content"]
    assert set(created) == {"application/json", "text/event-stream"}
    events = resolve(spec, created["text/event-stream"]["schema"])["oneOf"]
    by_name = {e["properties"]["event"]["const"]: e["properties"]["data"] for e in events}
    assert by_name["done"] == {"const": "[DONE]"}
    assert by_name["thread.run.completed"]["contentSchema"] == {"$ref": "#/components/schemas/Run"}
    assert by_name["thread.message.delta"]["contentSchema"] == {"$ref": "#/components/schemas/MessageDelta"}
    only = spec["paths"]["/v1/threads/{thread_id}/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    assert set(only) == {"text/event-stream"}


def test_path_ids_and_the_idempotency_header_are_described(spec):
    operation = spec["paths"]["/v1/threads/{thread_id}/runs"]["post"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["thread_id"]["schema"]["pattern"].startswith("^thread_")
    assert params["Idempotency-Key"]["in"] == "header" and params["Idempotency-Key"]["required"] is False


def test_relayed_model_calls_document_their_stream_their_upstream_failures_and_no_idempotency(spec):
    operation = spec["paths"]["/v1/chat/completions"]["post"]
    assert "Idempotency-Key" not in {p["name"] for p in operation["parameters"]}
    assert {"502", "504"} <= set(operation["responses"])
    content = operation["responses"]["200"]["content"]
    assert resolve(spec, content["application/json"]["schema"])["properties"]["object"] == {
        "const": "chat.completion"
    }
    events = resolve(spec, content["text/event-stream"]["schema"])["anyOf"]
    datas = [e["properties"]["data"] for e in events]
    assert {"const": "[DONE]"} in datas
    assert {"$ref": "#/components/schemas/ChatCompletionChunk"} in [d.get("contentSchema") for d in datas]
    listing = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert resolve(spec, listing["schema"])["properties"]["object"] == {"const": "list"}
    model = spec["paths"]["/v1/models/{model}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert resolve(spec, model["schema"])["properties"]["object"] == {"const": "model"}

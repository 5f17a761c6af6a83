"""The local model's structured output: a JSON value valid against the schema, built from it."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Literal

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from orchestrator.domain.model import ModelRequest, TextDelta
from orchestrator.domain.structured_output import MAX_DEPTH, MAX_NODES, MAX_TEXT, build, reply
from orchestrator.providers.local import LocalModel

TEXT = "plan a trip to Oslo"
KEYWORDS = [
    "type",
    "properties",
    "items",
    "prefixItems",
    "minItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "format",
    "object",
    "array",
    "string",
    "integer",
    "number",
]


def valid(schema: dict, value) -> bool:
    return jsonschema_rs.validator_for(schema).is_valid(value)


def test_an_object_gets_every_property_recursively_with_the_rules_for_each_type():
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "count": {"type": "integer"},
            "score": {"type": "number"},
            "done": {"type": "boolean"},
            "nothing": {"type": "null"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "inner": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        "required": ["title", "count", "score", "done", "nothing", "tags", "inner"],
        "additionalProperties": False,
    }
    value = build(schema, TEXT)
    assert value == {
        "title": TEXT,
        "count": 0,
        "score": 0,
        "done": True,
        "nothing": None,
        "tags": [],
        "inner": {"city": TEXT},
    }
    assert valid(schema, value)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "enum": ["red", "green"]}, "red"),
        ({"const": 7}, 7),
        ({"type": "integer", "minimum": 3}, 3),
        ({"type": "integer", "exclusiveMinimum": 3}, 4),
        ({"type": "integer", "maximum": -2}, -2),
        ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5}, 0.25),
        ({"type": "number", "minimum": 1.5}, 1.5),
        ({"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2}, [1, 1]),
        ({"type": "array", "prefixItems": [{"type": "boolean"}, {"type": "string"}]}, [True, TEXT]),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 0),
        ({"oneOf": [{"type": "boolean"}, {"type": "null"}]}, True),
        ({"type": ["null", "string"]}, TEXT),
        ({"type": "string", "maxLength": 4}, TEXT[:4]),
        ({"type": "string", "minLength": 30}, TEXT.ljust(30, ".")),
        ({"type": "string", "format": "date-time"}, "1970-01-01T00:00:00Z"),
        ({}, TEXT),
    ],
)
def test_each_rule_gives_a_value_the_schema_accepts(schema, expected):
    value = build(schema, TEXT)
    assert value == expected
    assert valid(schema, value)


def test_refs_are_followed_into_defs_and_all_of_merges_its_branches():
    schema = {
        "$defs": {
            "Stop": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "Dated": {"properties": {"day": {"type": "string", "format": "date"}}},
        },
        "type": "object",
        "properties": {
            "first": {"$ref": "#/$defs/Stop"},
            "stops": {"type": "array", "items": {"$ref": "#/$defs/Stop"}, "minItems": 1},
            "both": {"allOf": [{"$ref": "#/$defs/Stop"}, {"$ref": "#/$defs/Dated"}]},
        },
    }
    value = build(schema, TEXT)
    assert value == {
        "first": {"name": TEXT},
        "stops": [{"name": TEXT}],
        "both": {"name": TEXT, "day": "1970-01-01"},
    }
    assert valid(schema, value)


def test_a_schema_that_requires_itself_is_cut_at_the_depth_limit_instead_of_looping():
    schema = {
        "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "$ref": "#/$defs/N",
    }
    value = build(schema, TEXT)
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert value is None and 0 < depth <= MAX_DEPTH


class Leg(BaseModel):
    origin: str
    nights: int = Field(ge=1, le=30)
    kind: Literal["train", "plane"]


class Trip(BaseModel):
    title: str
    legs: list[Leg] = Field(min_length=1)
    budget: float | None
    starts: datetime.datetime
    booking: uuid.UUID
    notes: list[str]


def test_a_pydantic_models_schema_gives_a_document_the_model_parses():
    document = json.loads(
        reply(
            {"type": "json_schema", "json_schema": {"name": "trip", "schema": Trip.model_json_schema()}}, TEXT
        )
    )
    trip = Trip.model_validate(document)
    assert trip.title == TEXT and trip.legs[0] == Leg(origin=TEXT, nights=1, kind="train")
    assert trip.budget == 0 and trip.notes == []


def test_json_object_replies_with_the_message_and_text_formats_are_plain():
    assert json.loads(reply({"type": "json_object"}, TEXT)) == {"reply": TEXT}
    assert reply({"type": "text"}, TEXT) is None
    assert reply(None, TEXT) is None
    assert reply("auto", TEXT) is None


def test_the_local_model_streams_the_document_word_by_word():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}}}
    request = ModelRequest(
        model="local",
        messages=[{"role": "user", "content": TEXT}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    pieces = [c.text for c in LocalModel().stream(request) if isinstance(c, TextDelta)]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"answer": TEXT, "n": 0}


def test_after_tool_outputs_a_structured_reply_is_still_the_document():
    messages = [
        {"role": "user", "content": TEXT},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    request = ModelRequest(model="local", messages=messages, response_format={"type": "json_object"})
    text = "".join(c.text for c in LocalModel().stream(request) if isinstance(c, TextDelta))
    assert json.loads(text) == {"reply": TEXT}


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYWORDS), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_schema_a_client_sends_gives_json_without_failing(schema):
    json.dumps(build(schema, TEXT))


def test_huge_counts_and_lengths_are_bounded():
    schema = {
        "type": "array",
        "minItems": 10**9,
        "items": {"type": "array", "minItems": 10**9, "items": {"type": "string", "minLength": 10**12}},
    }
    assert len(json.dumps(build(schema, TEXT))) < 50 * MAX_NODES + MAX_TEXT * 2

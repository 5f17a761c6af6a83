"""A strict function's parameters: the rules the hosted API checks, against schemas the SDK makes."""

from __future__ import annotations

import pydantic
from openai.lib._pydantic import to_strict_json_schema

from orchestrator.domain.strict_schema import problem


class Address(pydantic.BaseModel):
    street: str
    city: str | None


class Person(pydantic.BaseModel):
    name: str
    tags: list[str]
    home: Address
    others: list[Address]


def test_the_sdks_strict_schema_of_a_nested_model_holds():
    assert problem(to_strict_json_schema(Person)) is None


def test_an_object_without_additional_properties_false_is_named_with_where_it_is():
    schema = to_strict_json_schema(Person)
    del schema["$defs"]["Address"]["additionalProperties"]
    assert problem(schema) == (
        "In context=('$defs', 'Address'), 'additionalProperties' is required to be supplied and to be false."
    )


def test_a_property_missing_from_required_is_named():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert "Missing 'b'" in problem(schema)


def test_a_nested_object_in_an_array_is_checked():
    schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": {"type": "object", "properties": {}}}},
        "required": ["rows"],
        "additionalProperties": False,
    }
    assert problem(schema).startswith("In context=('properties', 'rows', 'items')")


def test_the_root_must_be_an_object():
    assert "root schema must be an object" in problem({"type": "array", "items": {}})
    assert "root schema must be an object" in problem(None)

"""Validation errors are worded as the OpenAI API words them (contract §5). Pure: no database, no server."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestrator.api.app  # noqa: F401  (registers every route in ROUTES)
from orchestrator.api.http import ROUTES, check_id, parse_json, validate
from orchestrator.api.validation import join_alternatives, reject_unstorable_text
from orchestrator.domain.errors import InvalidRequest
from orchestrator.schemas.assistants import CreateAssistant, ModifyAssistant
from orchestrator.schemas.common import CreateMessage
from orchestrator.schemas.messages import MessageListQuery
from orchestrator.schemas.threads import CreateThread, ModifyThread


def error_of(model, data) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate(model, data)
    return caught.value


def fields(error: InvalidRequest) -> tuple[str, str | None, str | None]:
    return error.message, error.param, error.code


def test_seventeen_metadata_pairs_get_the_exact_message_the_real_api_sends():
    error = error_of(CreateThread, {"metadata": {f"k{i}": "v" for i in range(17)}})
    assert fields(error) == (
        "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
        "but got an object with 17 properties instead.",
        "metadata",
        "object_above_max_properties",
    )


def test_sixteen_metadata_pairs_are_accepted():
    assert len(validate(CreateThread, {"metadata": {f"k{i}": "v" for i in range(16)}}).metadata) == 16


def test_a_metadata_key_longer_than_64_characters_is_named_in_the_message():
    key = "k" * 65
    error = error_of(ModifyThread, {"metadata": {key: "v"}})
    assert fields(error) == (
        f"Invalid property name in 'metadata': '{key}' is too long. "
        "Expected a string with maximum length 64, but got a string with length 65 instead.",
        f"metadata.{key}",
        "property_name_above_max_length",
    )


def test_a_metadata_value_longer_than_512_characters_is_a_string_too_long():
    error = error_of(CreateAssistant, {"model": "m", "metadata": {"k": "v" * 513}})
    assert fields(error) == (
        "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, "
        "but got a string with length 513 instead.",
        "metadata.k",
        "string_above_max_length",
    )


def test_metadata_limits_inside_initial_messages_point_at_the_nested_path():
    error = error_of(CreateThread, {"messages": [{"role": "user", "content": "x", "metadata": {"a": 1}}]})
    assert fields(error) == (
        "Invalid type for 'messages[0].metadata.a': expected a string, but got an integer instead.",
        "messages[0].metadata.a",
        "invalid_type",
    )


def test_a_missing_required_field_is_a_missing_required_parameter():
    assert fields(error_of(CreateMessage, {"content": "hi"})) == (
        "Missing required parameter: 'role'.",
        "role",
        "missing_required_parameter",
    )


def test_an_unknown_key_is_an_unknown_parameter():
    assert fields(error_of(CreateThread, {"mesages": []})) == (
        "Unknown parameter: 'mesages'.",
        "mesages",
        "unknown_parameter",
    )


def test_a_bad_enum_value_lists_the_supported_values_in_the_openai_style():
    assert fields(error_of(CreateMessage, {"role": "robot", "content": "x"})) == (
        "Invalid value: 'robot'. Supported values are: 'user' and 'assistant'.",
        "role",
        "invalid_value",
    )


def test_a_number_where_an_enum_string_belongs_is_a_type_error():
    assert fields(error_of(CreateMessage, {"role": 5, "content": "x"})) == (
        "Invalid type for 'role': expected a string, but got an integer instead.",
        "role",
        "invalid_type",
    )


def test_content_of_the_wrong_type_names_both_accepted_types():
    assert fields(error_of(CreateMessage, {"role": "user", "content": 5})) == (
        "Invalid type for 'content': expected a string or an array, but got an integer instead.",
        "content",
        "invalid_type",
    )


def test_empty_content_array_is_an_empty_array_error_not_a_type_error():
    assert fields(error_of(CreateMessage, {"role": "user", "content": []})) == (
        "Invalid 'content': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        "content",
        "empty_array",
    )


def test_a_bad_value_inside_a_content_part_points_at_the_part():
    error = error_of(CreateMessage, {"role": "user", "content": [{"type": "text", "text": 5}]})
    assert (error.param, error.code) == ("content[0].text", "invalid_type")


def test_an_unknown_content_part_type_lists_the_part_types():
    error = error_of(CreateMessage, {"role": "user", "content": [{"type": "video"}]})
    assert fields(error) == (
        "Invalid value: 'video'. Supported values are: 'text', 'image_file', and 'image_url'.",
        "content[0].type",
        "invalid_value",
    )


def test_a_content_part_without_a_type_is_missing_its_type():
    error = error_of(CreateMessage, {"role": "user", "content": [{"text": "x"}]})
    assert (error.param, error.code) == ("content[0].type", "missing_required_parameter")


def test_a_temperature_above_two_is_a_decimal_above_maximum():
    assert fields(error_of(CreateAssistant, {"model": "m", "temperature": 2.5})) == (
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead.",
        "temperature",
        "decimal_above_max_value",
    )


def test_a_negative_top_p_is_a_decimal_below_minimum():
    error = error_of(CreateAssistant, {"model": "m", "top_p": -1})
    assert (error.message, error.code) == (
        "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, but got -1 instead.",
        "decimal_below_min_value",
    )


def test_a_limit_outside_one_to_a_hundred_is_an_integer_range_error():
    assert fields(error_of(MessageListQuery, {"limit": "0"})) == (
        "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        "limit",
        "integer_below_min_value",
    )
    assert error_of(MessageListQuery, {"limit": "101"}).code == "integer_above_max_value"


def test_a_limit_that_is_not_a_number_is_an_invalid_type():
    assert fields(error_of(MessageListQuery, {"limit": "ten"})) == (
        "Invalid type for 'limit': expected an integer, but got a string instead.",
        "limit",
        "invalid_type",
    )


def test_a_bad_order_lists_asc_and_desc():
    assert error_of(MessageListQuery, {"order": "up"}).message == (
        "Invalid value: 'up'. Supported values are: 'asc' and 'desc'."
    )


def test_more_than_128_assistant_tools_is_an_array_too_long():
    tools = [{"type": "code_interpreter"}] * 129
    assert fields(error_of(CreateAssistant, {"model": "m", "tools": tools})) == (
        "Invalid 'tools': array too long. Expected an array with maximum length 128, "
        "but got an array with length 129 instead.",
        "tools",
        "array_above_max_length",
    )


def test_a_response_format_of_the_wrong_type_names_string_and_object():
    assert error_of(CreateAssistant, {"model": "m", "response_format": 1}).message == (
        "Invalid type for 'response_format': expected a string or an object, but got an integer instead."
    )


def test_a_json_schema_response_format_without_its_schema_is_missing_it():
    error = error_of(CreateAssistant, {"model": "m", "response_format": {"type": "json_schema"}})
    assert (error.param, error.code) == ("response_format.json_schema", "missing_required_parameter")


def test_a_function_name_with_a_space_does_not_match_the_pattern():
    tools = [{"type": "function", "function": {"name": "two words"}}]
    error = error_of(CreateAssistant, {"model": "m", "tools": tools})
    assert (error.param, error.code) == ("tools[0].function.name", "invalid_value")
    assert "does not match pattern" in error.message


def test_vector_store_ids_and_the_vector_stores_helper_are_exclusive():
    resources = {"file_search": {"vector_store_ids": ["vs_1"], "vector_stores": [{"file_ids": []}]}}
    error = error_of(CreateThread, {"tool_resources": resources})
    assert error.param == "tool_resources.file_search"
    assert "only one of 'vector_store_ids' or 'vector_stores'" in error.message


def test_modify_takes_tool_resource_ids_but_not_the_vector_stores_helper():
    resources = {"file_search": {"vector_stores": [{"file_ids": []}]}}
    assert error_of(ModifyThread, {"tool_resources": resources}).code == "unknown_parameter"
    assert error_of(ModifyAssistant, {"tool_resources": resources}).code == "unknown_parameter"
    assert validate(ModifyThread, {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}})


def test_static_chunking_overlap_may_not_exceed_half_the_chunk_size():
    helper = {
        "chunking_strategy": {
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 51},
        }
    }
    error = error_of(CreateThread, {"tool_resources": {"file_search": {"vector_stores": [helper]}}})
    assert error.param == "tool_resources.file_search.vector_stores[0].chunking_strategy.static"


def test_explicit_null_is_accepted_for_every_optional_field():
    body = {"messages": None, "metadata": None, "tool_resources": None}
    assert validate(CreateThread, body).messages is None
    message = {"role": "user", "content": "x", "attachments": None, "metadata": None}
    assert validate(CreateMessage, message).attachments is None
    assistant = {"model": "m", **{name: None for name in CreateAssistant.model_fields if name != "model"}}
    assert validate(CreateAssistant, assistant).model == "m"


def test_nul_characters_are_refused_with_the_path_to_them():
    with pytest.raises(InvalidRequest) as caught:
        reject_unstorable_text({"messages": [{"content": "a\x00b"}]})
    assert caught.value.param == "messages[0].content"
    assert "NUL" in caught.value.message


def test_a_nul_character_in_a_key_is_refused_too():
    with pytest.raises(InvalidRequest):
        reject_unstorable_text({"metadata": {"a\x00": "b"}})


def test_lone_surrogates_are_refused():
    with pytest.raises(InvalidRequest) as caught:
        reject_unstorable_text({"name": "x\ud800"})
    assert "lone surrogate" in caught.value.message


def test_nesting_deeper_than_the_limit_is_refused_without_recursion():
    deep: object = "leaf"
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(InvalidRequest) as caught:
        reject_unstorable_text({"x": deep})
    assert "nested too deeply" in caught.value.message


@pytest.mark.parametrize(
    "raw", [b"{", b"NaN", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e999}', b"\xff\xfe\x00", b"[" * 100_000]
)
def test_bodies_that_are_not_strict_json_get_the_could_not_parse_message(raw):
    with pytest.raises(InvalidRequest) as caught:
        parse_json(raw)
    assert caught.value.message.startswith("We could not parse the JSON body of your request.")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("undefined", "Invalid 'thread_id': 'undefined'. Expected an ID that begins with 'thread'."),
        ("asst_abc", "Invalid 'thread_id': 'asst_abc'. Expected an ID that begins with 'thread'."),
        ("threadabc", "Invalid 'thread_id': 'threadabc'. Expected an ID that begins with 'thread'."),
    ],
)
def test_an_id_with_the_wrong_prefix_gets_the_real_api_message(value, message):
    with pytest.raises(InvalidRequest) as caught:
        check_id(value, "thread", "thread_id")
    assert (caught.value.message, caught.value.param) == (message, "thread_id")


@pytest.mark.parametrize(
    "value", ["thread_" + "a" * 60, "thread_a\x00b", "thread_a b", "thread_é", "thread_a\ud800"]
)
def test_ids_that_are_too_long_or_contain_odd_characters_are_refused(value):
    with pytest.raises(InvalidRequest):
        check_id(value, "thread", "thread_id")


def test_a_well_formed_id_passes():
    assert check_id("thread_abc-DEF_123", "thread", "thread_id") == "thread_abc-DEF_123"


def test_alternatives_are_joined_in_the_openai_list_style():
    assert join_alternatives(["'a'"], "and") == "'a'"
    assert join_alternatives(["'a'", "'b'"], "and") == "'a' and 'b'"
    assert join_alternatives(["'a'", "'b'", "'c'"], "and") == "'a', 'b', and 'c'"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
BODY_MODELS = sorted({doc.body for doc in ROUTES if doc.body is not None}, key=lambda model: model.__name__)
KEYS = sorted({name for model in BODY_MODELS for name in model.model_fields} | {"type", "text", "function"})


@pytest.mark.parametrize("model", BODY_MODELS, ids=lambda model: model.__name__)
@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=5))
def test_any_json_object_either_validates_or_gets_a_worded_invalid_request(model, body):
    try:
        validate(model, body)
    except InvalidRequest as error:
        assert error.status == 400
        assert error.message and error.type == "invalid_request_error"
        assert error.param is None or isinstance(error.param, str)

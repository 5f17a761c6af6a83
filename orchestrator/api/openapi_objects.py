"""JSON Schemas of what the API answers (contract §3, services/wire.py): the objects, their lists and
deletion statuses, the error envelope and the Server-Sent Events of a run stream, with id formats.

They are exact where the SDK depends on a field (ids, `object`, statuses, timestamps) and open where the
contract leaves room (tool definitions and content parts keep unknown keys).
"""

from __future__ import annotations

from orchestrator.domain.lifecycle import MessageStatus, Role, RunStatus, StepStatus, StepType

# Objects by the kind a route returns: its schema's name and its ids' prefix (None: ids of any prefix).
KINDS = {
    "assistant": ("Assistant", "asst"),
    "thread": ("Thread", "thread"),
    "thread.message": ("Message", "msg"),
    "thread.run": ("Run", "run"),
    "thread.run.step": ("RunStep", "step"),
    "conversation": ("Conversation", "conv"),
    "conversation.item": ("ConversationItem", None),
    "response": ("Response", "resp"),
    "response.item": ("ResponseItem", None),
    "response.input_tokens": ("ResponseInputTokens", None),
    "container": ("Container", "cntr"),
    "container.file": ("ContainerFile", "cfile"),
}

STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIMESTAMP = {"type": "integer", "minimum": 0, "description": "Unix seconds"}
NULLABLE_TIMESTAMP = {"type": ["integer", "null"], "minimum": 0}
METADATA = {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 16}
NUMBER_OR_NULL = {"type": ["number", "null"]}


def id_of(prefix: str) -> dict:
    """An id as the API hands it out: the prefix, an underscore, letters and digits."""
    return {"type": "string", "pattern": f"^{prefix}_[A-Za-z0-9]+$", "maxLength": 64}


# An item's id: the prefix of its type (msg_, fc_, …) or whatever id the client gave it (plain, ≤ 64).
ITEM_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": 64}


def id_param(prefix: str) -> dict:
    """An id as a path accepts it (then 404 if there is no such object): check_id's rule."""
    return {"type": "string", "pattern": f"^{prefix}_[A-Za-z0-9_-]*$", "maxLength": 64}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def enum(values) -> dict:
    return {"type": "string", "enum": [str(v) for v in values]}


def obj(properties: dict, *, open_: bool = False) -> dict:
    """An object whose properties are all present."""
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": open_,
    }


TOOL = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": enum(["function", "file_search", "code_interpreter"])},
}
USAGE = nullable(
    obj({"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER}, open_=True)
)
ERROR_DETAIL = nullable(obj({"code": STRING, "message": STRING}, open_=True))
CONTENT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": enum(["text", "image_file", "image_url", "refusal"])},
}
TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": id_of("call"),
        "type": {"const": "function"},
        "function": obj({"name": STRING, "arguments": STRING}, open_=True),
    },
}
REQUIRED_ACTION = nullable(
    obj(
        {
            "type": {"const": "submit_tool_outputs"},
            "submit_tool_outputs": obj({"tool_calls": {"type": "array", "items": TOOL_CALL}}),
        }
    )
)
OPEN = {"type": "object"}
ANY = {}


def _assistant() -> dict:
    return obj(
        {
            "id": id_of("asst"),
            "object": {"const": "assistant"},
            "created_at": TIMESTAMP,
            "name": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "model": STRING,
            "instructions": {"type": ["string", "null"]},
            "tools": {"type": "array", "items": TOOL},
            "tool_resources": OPEN,
            "metadata": METADATA,
            "temperature": NUMBER_OR_NULL,
            "top_p": NUMBER_OR_NULL,
            "response_format": ANY,
            "reasoning_effort": {"type": ["string", "null"]},
        }
    )


def _thread() -> dict:
    return obj(
        {
            "id": id_of("thread"),
            "object": {"const": "thread"},
            "created_at": TIMESTAMP,
            "metadata": METADATA,
            "tool_resources": OPEN,
        }
    )


def _message() -> dict:
    return obj(
        {
            "id": id_of("msg"),
            "object": {"const": "thread.message"},
            "created_at": TIMESTAMP,
            "thread_id": id_of("thread"),
            "status": enum(MessageStatus),
            "incomplete_details": nullable(OPEN),
            "completed_at": NULLABLE_TIMESTAMP,
            "incomplete_at": NULLABLE_TIMESTAMP,
            "role": enum(Role),
            "content": {"type": "array", "items": CONTENT_PART},
            "assistant_id": nullable(id_of("asst")),
            "run_id": nullable(id_of("run")),
            "attachments": {"type": "array", "items": OPEN},
            "metadata": METADATA,
        }
    )


def _run() -> dict:
    return obj(
        {
            "id": id_of("run"),
            "object": {"const": "thread.run"},
            "created_at": TIMESTAMP,
            "thread_id": id_of("thread"),
            "assistant_id": id_of("asst"),
            "status": enum(RunStatus),
            "required_action": REQUIRED_ACTION,
            "last_error": ERROR_DETAIL,
            "expires_at": NULLABLE_TIMESTAMP,
            "started_at": NULLABLE_TIMESTAMP,
            "cancelled_at": NULLABLE_TIMESTAMP,
            "failed_at": NULLABLE_TIMESTAMP,
            "completed_at": NULLABLE_TIMESTAMP,
            "incomplete_details": nullable(OPEN),
            "model": STRING,
            "instructions": STRING,
            "tools": {"type": "array", "items": TOOL},
            "metadata": METADATA,
            "usage": USAGE,
            "temperature": NUMBER_OR_NULL,
            "top_p": NUMBER_OR_NULL,
            "max_prompt_tokens": {"type": ["integer", "null"]},
            "max_completion_tokens": {"type": ["integer", "null"]},
            "truncation_strategy": obj({"type": enum(["auto", "last_messages"])}, open_=True),
            "tool_choice": ANY,
            "parallel_tool_calls": BOOLEAN,
            "response_format": ANY,
            "reasoning_effort": {"type": ["string", "null"]},
        }
    )


def _step() -> dict:
    return obj(
        {
            "id": id_of("step"),
            "object": {"const": "thread.run.step"},
            "created_at": TIMESTAMP,
            "assistant_id": id_of("asst"),
            "thread_id": id_of("thread"),
            "run_id": id_of("run"),
            "type": enum(StepType),
            "status": enum(StepStatus),
            "step_details": {"type": "object", "required": ["type"], "properties": {"type": enum(StepType)}},
            "last_error": ERROR_DETAIL,
            "expired_at": NULLABLE_TIMESTAMP,
            "cancelled_at": NULLABLE_TIMESTAMP,
            "failed_at": NULLABLE_TIMESTAMP,
            "completed_at": NULLABLE_TIMESTAMP,
            "metadata": METADATA,
            "usage": USAGE,
        }
    )


def _conversation() -> dict:
    return obj(
        {
            "id": id_of("conv"),
            "object": {"const": "conversation"},
            "created_at": TIMESTAMP,
            "metadata": METADATA,
        }
    )


def _container() -> dict:
    expires_after = obj({"anchor": {"const": "last_active_at"}, "minutes": {"type": "integer", "minimum": 1}})
    return obj(
        {
            "id": id_of("cntr"),
            "object": {"const": "container"},
            "name": STRING,
            "created_at": TIMESTAMP,
            "status": enum(["running", "expired"]),
            "expires_after": expires_after,
            "last_active_at": TIMESTAMP,
            "memory_limit": enum(["1g", "4g", "16g", "64g"]),
            "network_policy": obj({"type": {"const": "disabled"}}),
        }
    )


def _conversation_item() -> dict:
    """An item as stored (types/conversations/conversation_item.py): any type with an id; a message has
    its role, status and content parts."""
    message = {
        "required": ["role", "status", "content"],
        "properties": {
            "role": enum(["user", "assistant", "system", "developer"]),
            "status": enum(["in_progress", "completed", "incomplete"]),
            "content": {"type": "array", "items": {"type": "object", "required": ["type"]}},
        },
    }
    return {
        "type": "object",
        "required": ["id", "type"],
        "properties": {"id": ITEM_ID, "type": STRING},
        "if": {"properties": {"type": {"const": "message"}}},
        "then": message,
    }


RESPONSE_STATUS = ["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]


def _response() -> dict:
    """A Response (contract §4): exact where the SDK's helpers read (`output`, `status`, `usage`), open
    for what it echoes."""
    usage = obj({"input_tokens": INTEGER, "output_tokens": INTEGER, "total_tokens": INTEGER}, open_=True)
    return obj(
        {
            "id": id_of("resp"),
            "object": {"const": "response"},
            "created_at": {"type": "number", "minimum": 0},
            "status": enum(RESPONSE_STATUS),
            "model": STRING,
            "output": {"type": "array", "items": {"$ref": "#/components/schemas/ResponseItem"}},
            "parallel_tool_calls": BOOLEAN,
            "tools": {"type": "array", "items": OPEN},
            "error": nullable(obj({"code": STRING, "message": STRING})),
            "incomplete_details": nullable(obj({"reason": STRING})),
            "usage": nullable(usage),
            "background": BOOLEAN,
            "store": BOOLEAN,
            "metadata": METADATA,
        },
        open_=True,
    )


# The events of a Response's stream (contract §7.2) this server sends: every data object has `type` and
# `sequence_number`; the lifecycle ones carry the whole Response.
RESPONSE_EVENTS = (
    [f"response.{status}" for status in ("created", *RESPONSE_STATUS)]
    + [f"response.{what}.{when}" for what in ("output_item", "content_part") for when in ("added", "done")]
    + ["response.output_text.delta", "response.output_text.done", "response.output_text.annotation.added"]
    + ["response.function_call_arguments.delta", "response.function_call_arguments.done"]
    + [f"response.file_search_call.{when}" for when in ("in_progress", "searching", "completed")]
    + [f"response.code_interpreter_call.{when}" for when in ("in_progress", "interpreting", "completed")]
    + ["response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done", "error"]
)


def response_stream_event_schema() -> dict:
    """One event of a Response's stream: `event` its type and `data` its JSON, with `type` and
    `sequence_number` (dense from 0); no `id:` lines, and comment blocks (`: keep-alive`) between events."""
    variants = []
    for name in RESPONSE_EVENTS:
        fields = {"type": {"const": name}, "sequence_number": {"type": "integer", "minimum": 0}}
        if name.removeprefix("response.") in ("created", *RESPONSE_STATUS):
            fields["response"] = {"$ref": "#/components/schemas/Response"}
        data = {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": obj(fields, open_=True),
        }
        variants.append(obj({"event": {"const": name}, "data": data}))
    return {"description": response_stream_event_schema.__doc__, "oneOf": variants}


def _container_file() -> dict:
    return obj(
        {
            "id": id_of("cfile"),
            "object": {"const": "container.file"},
            "bytes": {"type": "integer", "minimum": 0},
            "container_id": id_of("cntr"),
            "created_at": TIMESTAMP,
            "path": {"type": "string", "pattern": "^/mnt/data/"},
            "source": enum(["user", "assistant"]),
        }
    )


def _list_of(name: str, prefix: str | None) -> dict:
    ref = {"$ref": f"#/components/schemas/{name}"}
    ids = id_of(prefix) if prefix else ITEM_ID
    return obj(
        {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref},
            "first_id": nullable(ids),
            "last_id": nullable(ids),
            "has_more": BOOLEAN,
        }
    )


def _deleted(kind: str, prefix: str) -> dict:
    return obj({"id": id_of(prefix), "object": {"const": f"{kind}.deleted"}, "deleted": {"const": True}})


def _delta(kind: str, prefix: str) -> dict:
    return obj({"id": id_of(prefix), "object": {"const": f"{kind}.delta"}, "delta": OPEN})


def error_schema() -> dict:
    inner = obj(
        {
            "message": STRING,
            "type": STRING,
            "param": {"type": ["string", "null"]},
            "code": {"type": ["string", "null"]},
        }
    )
    return obj({"error": inner})


# The events of a run stream (contract §4): event name → the schema of its `data`.
STREAM_EVENTS = {
    **{f"thread.run.{status}": "Run" for status in RunStatus} | {"thread.run.created": "Run"},
    **{f"thread.run.step.{s}": "RunStep" for s in ("created", "in_progress", *StepStatus)},
    **{f"thread.message.{s}": "Message" for s in ("created", *MessageStatus)},
    "thread.created": "Thread",
    "thread.message.delta": "MessageDelta",
    "thread.run.step.delta": "RunStepDelta",
}


def stream_event_schema() -> dict:
    """One event of a run stream as an SSE parser reads it (OpenAPI 3.2's reading of a text/event-stream
    schema): `id` the event's sequence number, `event` its name, `data` its JSON; the stream ends with
    `event: done` / `data: [DONE]`, and comment lines (`: keep-alive`) may come between events."""
    sequence = {"type": "string", "pattern": "^[0-9]+$"}
    variants = [
        obj(
            {
                "id": sequence,
                "event": {"const": name},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": f"#/components/schemas/{schema}"},
                },
            }
        )
        for name, schema in sorted(STREAM_EVENTS.items())
    ]
    done = obj({"event": {"const": "done"}, "data": {"const": "[DONE]"}})
    done["properties"]["id"] = sequence
    variants.append(done)
    return {"description": stream_event_schema.__doc__, "oneOf": variants}


def components() -> dict[str, dict]:
    schemas = {
        "Assistant": _assistant(),
        "Thread": _thread(),
        "Message": _message(),
        "Run": _run(),
        "RunStep": _step(),
        "Conversation": _conversation(),
        "ConversationItem": _conversation_item(),
        "Response": _response(),
        "ResponseItem": _conversation_item(),
        "ResponseInputTokens": obj({"object": {"const": "response.input_tokens"}, "input_tokens": INTEGER}),
        "ResponseStreamEvent": response_stream_event_schema(),
        "MessageDelta": _delta("thread.message", "msg"),
        "RunStepDelta": _delta("thread.run.step", "step"),
        "Container": _container(),
        "ContainerFile": _container_file(),
        "Error": error_schema(),
        "RunStreamEvent": stream_event_schema(),
    }
    for kind, (name, prefix) in KINDS.items():
        schemas[f"{name}List"] = _list_of(name, prefix)
        if prefix is not None:
            schemas[f"{name}Deleted"] = _deleted(kind, prefix)
    # A deleted response answers as a response (contract §1), not a `response.deleted`.
    schemas["ResponseDeleted"] = obj(
        {"id": id_of("resp"), "object": {"const": "response"}, "deleted": BOOLEAN}
    )
    return schemas

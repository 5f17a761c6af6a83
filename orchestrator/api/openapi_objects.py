"""JSON Schemas of what the API answers (contract §3, services/wire.py): the objects, their lists and
deletion statuses, the error envelope and the Server-Sent Events of a run stream, with id formats.

They are exact where the SDK depends on a field (ids, `object`, statuses, timestamps) and open where the
contract leaves room (tool definitions and content parts keep unknown keys).
"""

from __future__ import annotations

from orchestrator.domain.lifecycle import MessageStatus, Role, RunStatus, StepStatus, StepType

# Objects by the kind a route returns: its schema's name and its ids' prefix.
KINDS = {
    "assistant": ("Assistant", "asst"),
    "thread": ("Thread", "thread"),
    "thread.message": ("Message", "msg"),
    "thread.run": ("Run", "run"),
    "thread.run.step": ("RunStep", "step"),
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


def _list_of(name: str, prefix: str) -> dict:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return obj(
        {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref},
            "first_id": nullable(id_of(prefix)),
            "last_id": nullable(id_of(prefix)),
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
        "MessageDelta": _delta("thread.message", "msg"),
        "RunStepDelta": _delta("thread.run.step", "step"),
        "Container": _container(),
        "ContainerFile": _container_file(),
        "Error": error_schema(),
        "RunStreamEvent": stream_event_schema(),
    }
    for kind, (name, prefix) in KINDS.items():
        schemas[f"{name}List"] = _list_of(name, prefix)
        schemas[f"{name}Deleted"] = _deleted(kind, prefix)
    return schemas

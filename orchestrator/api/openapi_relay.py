"""JSON Schemas of what the relayed model APIs answer: a chat completion and its stream's chunks, an
embeddings list, a model and the models list. Exact where the SDK reads a field, open elsewhere: an
upstream's answer is passed on as it sent it, with whatever fields of its own it adds."""

from __future__ import annotations

from orchestrator.api.openapi_objects import INTEGER, OPEN, STRING, nullable, obj

# The kinds these routes answer (RouteDoc.object) → their schemas' names.
RELAYED = {
    "chat.completion": "ChatCompletion",
    "embedding.list": "EmbeddingList",
    "model": "Model",
    "model.list": "ModelList",
}
UPSTREAM_ERRORS = {
    "502": "The upstream model endpoint failed or could not be reached (the error names its route)",
    "504": "The upstream model endpoint stayed silent past its route's timeout",
}
NULLABLE_STRING = {"type": ["string", "null"]}
USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "total_tokens"],
    "properties": {"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER},
}


def _opened(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _tool_calls() -> dict:
    call = _opened(
        {
            "id": STRING,
            "type": {"const": "function"},
            "function": _opened({"name": STRING, "arguments": STRING}, []),
        },
        ["id", "function"],
    )
    return {"type": "array", "items": call}


def _completion() -> dict:
    message = _opened(
        {"role": {"const": "assistant"}, "content": NULLABLE_STRING, "tool_calls": _tool_calls()},
        ["role", "content"],
    )
    choice = _opened(
        {"index": INTEGER, "message": message, "finish_reason": NULLABLE_STRING},
        ["index", "message", "finish_reason"],
    )
    return _answer("chat.completion", choice)


def _chunk() -> dict:
    choice = _opened({"index": INTEGER, "delta": OPEN, "finish_reason": NULLABLE_STRING}, ["index", "delta"])
    return _answer("chat.completion.chunk", choice)


def _answer(kind: str, choice: dict) -> dict:
    """A completion or one of its chunks: the same envelope around their choices."""
    properties = {
        "id": STRING,
        "object": {"const": kind},
        "created": INTEGER,
        "model": STRING,
        "choices": {"type": "array", "items": choice},
        "usage": nullable(USAGE),
    }
    return _opened(properties, ["id", "object", "created", "model", "choices"])


def chunk_event_schema() -> dict:
    """One event of a chat completion stream as an SSE parser reads it (no `event:` line, so `message`):
    a chunk, an error that ended the stream, or the closing `[DONE]`."""

    def event(data: dict) -> dict:
        return obj({"event": {"const": "message"}, "data": data})

    def json_of(name: str) -> dict:
        return {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": f"#/components/schemas/{name}"},
        }

    variants = [event(json_of("ChatCompletionChunk")), event(json_of("Error")), event({"const": "[DONE]"})]
    return {"description": chunk_event_schema.__doc__, "anyOf": variants}


def _embeddings() -> dict:
    vector = {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}
    item = _opened(
        {"object": {"const": "embedding"}, "index": INTEGER, "embedding": vector},
        ["object", "index", "embedding"],
    )
    return _opened(
        {
            "object": {"const": "list"},
            "data": {"type": "array", "items": item},
            "model": STRING,
            "usage": USAGE,
        },
        ["object", "data", "model"],
    )


def _model() -> dict:
    return obj({"id": STRING, "object": {"const": "model"}, "created": INTEGER, "owned_by": STRING})


def relay_components() -> dict[str, dict]:
    return {
        "ChatCompletion": _completion(),
        "ChatCompletionChunk": _chunk(),
        "ChatCompletionStreamEvent": chunk_event_schema(),
        "EmbeddingList": _embeddings(),
        "Model": _model(),
        "ModelList": obj(
            {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
            }
        ),
    }

"""A small OpenAI-compatible chat-completions server for tests: streams SSE chunks the way OpenAI does,
and misbehaves on demand.

Start it in-process (`with FakeUpstream() as fake: ... fake.url`) or as its own process
(`python -m tests.support.fake_upstream --port 8099`); point the product at it with
`OPENAI_BASE_URL=<url>` and any `OPENAI_API_KEY`. Any path ending in `/chat/completions` is served,
so Azure-style `/openai/deployments/<name>/chat/completions?api-version=...` works too.

What it replies, decided from the conversation:

- after tool results (the last message is a `tool` message): "Tool results: <out1> | <out2>";
- with `[[tools]]` in the last user message and function tools offered: calls them (tool_choice none →
  none, a named function → that one, parallel_tool_calls false → the first only), each call's arguments
  streamed in three fragments; the arguments are the first JSON object in the message, else `{}`;
- otherwise "Echo: <the last user message>", one word per chunk.

Without `stream` the same reply comes whole, as one `chat.completion` (with `n` copies of its choice).

Directives in the last user message (several may be combined):

    [[429]] [[500]] [[400]] ...  answer every request for this prompt with that HTTP status
    [[429x2]]                    only the first 2 requests for this prompt; then the normal reply
    [[stall:S]]                  send the headers, then nothing for S seconds before the first chunk
                                 (without `stream`: nothing at all for S seconds)
    [[stall-mid:S]]              send the first chunk, then nothing for S seconds
    [[slow:S]]                   sleep S seconds between chunks
    [[long]]                     a 300-word reply (for cancel and mid-stream tests)
    [[length]]                   stop after two words with finish_reason "length"
    [[nousage]]                  no usage chunk
    [[error-event]]              an SSE error event after the first chunk
    [[nul]]                      a U+0000 at the end of every text piece and every arguments fragment

max_tokens / max_completion_tokens are honoured: one word is one token, and the reply stops there with
finish_reason "length". A usage chunk is sent when the request asks for it (stream_options.include_usage).
`POST …/rerank` answers as a reranker would (`rerank`: Cohere's shape or TEI's, by the body), and
`POST …/embeddings` answers with deterministic 64-dimension vectors (always floats; token arrays are read
as their numbers): a bag of words hashed into buckets,
where the words of a `SYNONYMS` group share one bucket (so "automobile" is near "car" for semantic
search while sharing no word with it). `requests` records every request; `disconnects` counts streams whose client went away before the end,
and `left` lists their prompts.

`models_file(unreachable_port)` is a models file (docs/models.md) routing `stub…` names here, with a route
for each way the relay can fail or bend a request (the shared test stack uses it).
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from orchestrator.providers.local import first_json_object

_STATUS = re.compile(r"\[\[(\d{3})(?:x(\d+))?\]\]")
_TIMED = re.compile(r"\[\[(stall|stall-mid|slow):([\d.]+)\]\]")
_DIRECTIVE = re.compile(r"\s*\[\[[^\]]*\]\]\s*")


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's signature
        pass


class FakeUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.left: list[str] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = make_server(host, port, self._app, threaded=True, request_handler=_QuietHandler)
        # Don't wait for streams still sleeping or open when the server stops.
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._serve, name="fake-upstream", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeUpstream:
        self._thread.start()
        return self

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.05)  # a quick shutdown

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._seen.clear()
            self.disconnects = 0
            self.disconnected.clear()
            self.left.clear()

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def sent(self, marker: str) -> list[Recorded]:
        """The requests whose body mentions `marker`."""
        with self._lock:
            return [r for r in self.requests if marker in json.dumps(r.body)]

    def models_file(self, unreachable_port: int) -> str:
        """Routes for the relay's tests: `stub-slow…` times out after 1 s, `stub-down…` goes to a port
        nobody listens on, `stub-azure…` is an Azure route, `stub-renamed` bends the request (another
        upstream name, `max_tokens`, no images), `stub-rerank` / `stub-tei-rerank` are rerankers (before the
        catch-all, which would take them), and `stub` / `stub-…` come here plainly."""
        here = f"base_url: {self.url}\n    api_key: sk-fake"
        return f"""routes:
  - match: "stub-slow*"
    {here}
    timeout_seconds: 1
  - match: "stub-down*"
    base_url: http://127.0.0.1:{unreachable_port}/v1
  - match: "stub-azure*"
    azure_endpoint: {self.root}
    api_version: "2024-10-21"
    api_key: sk-fake
  - match: "stub-renamed"
    {here}
    model: upstream-name
    max_tokens_param: max_tokens
    images: false
  - match: "stub-rerank"
    {here}
    kind: rerank
    model: upstream-reranker
  - match: "stub-tei-rerank"
    {here}
    kind: tei-rerank
  - match: ["stub", "stub-*"]
    {here}
"""

    # --- WSGI ----------------------------------------------------------------------------------------

    def _app(self, environ, start_response):
        return self._respond(Request(environ))(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if request.method == "POST" and request.path.endswith("/embeddings"):
            body = request.get_json(silent=True) or {}
            with self._lock:
                self.requests.append(Recorded(request.path, dict(request.args), dict(request.headers), body))
            return Response(json.dumps(embeddings(body)), mimetype="application/json")
        if request.method == "POST" and request.path.endswith("/rerank"):
            body = request.get_json(silent=True) or {}
            with self._lock:
                self.requests.append(Recorded(request.path, dict(request.args), dict(request.headers), body))
            return Response(json.dumps(rerank(body)), mimetype="application/json")
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return _error(404, f"No route {request.method} {request.path}", "not_found")
        body = request.get_json(silent=True) or {}
        with self._lock:
            self.requests.append(Recorded(request.path, dict(request.args), dict(request.headers), body))
            prompt = _last_user_text(body.get("messages") or [])
            self._seen[prompt] += 1
            seen = self._seen[prompt]
        status = _scripted_status(prompt, seen)
        if status is not None:
            return _error(status, f"Scripted failure {status} from the fake upstream.", _code(status))
        reply = _Reply(body, prompt)
        if not body.get("stream"):
            if reply.stall and self._stopping.wait(reply.stall):
                return _error(503, "The fake upstream is stopping.", "server_error")
            return Response(json.dumps(reply.whole()), mimetype="application/json")
        return Response(
            self._guarded(reply.events(), prompt, request.environ.get("werkzeug.socket")),
            mimetype="text/event-stream",
            direct_passthrough=True,
        )

    def _guarded(self, events: Iterator[tuple[float, str]], prompt: str = "", sock=None) -> Iterator[bytes]:
        finished = False
        try:
            yield b""  # the headers go out now, as a real server sends them before the first token
            for pause, data in events:
                if pause and not self._pause(pause, sock):
                    return
                if data == "[DONE]":
                    finished = True
                yield f"data: {data}\n\n".encode()
        finally:
            if not finished and not self._stopping.is_set():
                with self._lock:
                    self.disconnects += 1
                    self.left.append(prompt)
                self.disconnected.set()

    def _pause(self, seconds: float, sock) -> bool:
        """Wait, watching the client as a real server does: False if it left or the server stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, 0.05)) or (sock is not None and _gone(sock)):
                return False
        return True


def _gone(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Reply:
    """The chunks of one streamed reply, each with the pause before it."""

    def __init__(self, body: dict[str, Any], prompt: str):
        self.body, self.prompt = body, prompt
        self.model = body.get("model", "fake")
        timed = {name: float(value) for name, value in _TIMED.findall(prompt)}
        self.slow = timed.get("slow", 0.0)
        self.stall, self.stall_mid = timed.get("stall", 0.0), timed.get("stall-mid", 0.0)
        self.budget = body.get("max_completion_tokens") or body.get("max_tokens")

    def events(self) -> Iterator[tuple[float, str]]:
        pieces, finish = self._plan()
        if "[[nul]]" in self.prompt:
            pieces = [(_with_nul(delta), cost) for delta, cost in pieces]
        usage = {"prompt_tokens": _prompt_tokens(self.body), "completion_tokens": 0}
        yield self.stall, self._chunk({"role": "assistant", "content": ""})
        for number, (delta, cost) in enumerate(pieces):
            if number == 1 and "[[error-event]]" in self.prompt:
                yield (
                    0.0,
                    json.dumps({"error": {"message": "Scripted stream error.", "type": "server_error"}}),
                )
                return
            pause = self.stall_mid if number == 1 else self.slow if number else 0.0
            usage["completion_tokens"] += cost
            yield pause, self._chunk(delta)
        yield self.slow, self._chunk({}, finish)
        if (self.body.get("stream_options") or {}).get("include_usage") and "[[nousage]]" not in self.prompt:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            yield 0.0, json.dumps(self._frame([], usage=usage))
        yield 0.0, "[DONE]"

    def whole(self) -> dict[str, Any]:
        """The reply as one `chat.completion`, with `n` copies of its choice."""
        pieces, finish = self._plan()
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        calls: dict[int, dict] = {}
        for delta, _cost in pieces:
            if "content" in delta:
                message["content"] = (message["content"] or "") + delta["content"]
            for fragment in delta.get("tool_calls") or []:
                call = calls.setdefault(fragment["index"], {"id": fragment.get("id"), "type": "function"})
                function = call.setdefault("function", {"name": "", "arguments": ""})
                function["name"] += fragment["function"].get("name") or ""
                function["arguments"] += fragment["function"].get("arguments") or ""
        if calls:
            message["tool_calls"] = [calls[index] for index in sorted(calls)]
        choices = [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            for i in range(self.body.get("n") or 1)
        ]
        completion = sum(cost for _delta, cost in pieces)
        prompt = _prompt_tokens(self.body)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return {**self._frame(choices, usage=usage), "object": "chat.completion"}

    def _plan(self) -> tuple[list[tuple[dict, int]], str]:
        messages = self.body.get("messages") or []
        if messages and messages[-1].get("role") == "tool":
            outputs = [_text(m.get("content")) for m in _trailing_tools(messages)]
            return self._words("Tool results: " + " | ".join(outputs))
        tools = _chosen_tools(self.body) if "[[tools]]" in self.prompt else []
        if tools:
            return self._tool_calls(tools), "tool_calls"
        if "[[long]]" in self.prompt:
            return self._words(" ".join(f"word{i}" for i in range(300)))
        return self._words("Echo: " + _DIRECTIVE.sub(" ", self.prompt).strip())

    def _words(self, text: str) -> tuple[list[tuple[dict, int]], str]:
        words = re.findall(r"\S+\s*", text)
        limit = 2 if "[[length]]" in self.prompt else self.budget
        if limit is not None and len(words) > limit:
            return [({"content": w}, 1) for w in words[:limit]], "length"
        return [({"content": w}, 1) for w in words], "stop"

    def _tool_calls(self, names: list[str]) -> list[tuple[dict, int]]:
        arguments = first_json_object(self.prompt)  # the local model's rule for arguments
        third = max(len(arguments) // 3, 1)
        pieces = []
        for index, name in enumerate(names):
            head = {"index": index, "id": f"call_fake{index}", "type": "function"}
            pieces.append(({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}, 1))
            for start in range(0, len(arguments), third):
                fragment = {"index": index, "function": {"arguments": arguments[start : start + third]}}
                pieces.append(({"tool_calls": [fragment]}, 1))
        return pieces

    def _chunk(self, delta: dict, finish: str | None = None) -> str:
        return json.dumps(self._frame([{"index": 0, "delta": delta, "finish_reason": finish}]))

    def _frame(self, choices: list, usage: dict | None = None) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            "usage": usage,
        }


EMBEDDING_DIMENSIONS = 64
SYNONYMS = (("car", "automobile", "vehicle"), ("happy", "joyful", "glad"), ("doctor", "physician"))
_BUCKET = {word: index for index, group in enumerate(SYNONYMS) for word in group}


def embed_text(text: str) -> list[float]:
    """The fake model's vector of `text` (not normalized; the product normalizes)."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        word = word[:-1] if word.endswith("s") and len(word) > 3 else word
        bucket = _BUCKET.get(word)
        index = (
            bucket
            if bucket is not None
            else len(SYNONYMS) + zlib.crc32(word.encode()) % (EMBEDDING_DIMENSIONS - len(SYNONYMS))
        )
        vector[index] += 1.0
    return vector


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input") or []
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    inputs = [text if isinstance(text, str) else " ".join(map(str, text)) for text in inputs]
    data = [
        {"object": "embedding", "index": i, "embedding": embed_text(text)} for i, text in enumerate(inputs)
    ]
    tokens = sum(len(text.split()) for text in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": body.get("model", "fake"), "usage": usage}


def rerank_score(query: str, document: str) -> float:
    """The fake reranker's score: 0.8 × the share of the query's words in the document, and 0.9 for a
    document holding `[[top]]`, whatever its words (so its order can differ from the search's own)."""
    if "[[top]]" in document:
        return 0.9
    words = {_stem(word) for word in re.findall(r"\w+", query.lower())}
    found = {_stem(word) for word in re.findall(r"\w+", document.lower())}
    return round(0.8 * len(words & found) / max(1, len(words)), 6)


def rerank(body: dict[str, Any]) -> Any:
    """`POST …/rerank`: Cohere's shape (`documents`, answered `{"results": [{index, relevance_score}]}`,
    best first, at most `top_n`) or text-embeddings-inference's (`texts`, answered `[{index, score}]`)."""
    tei = "texts" in body
    texts = body.get("texts" if tei else "documents") or []
    scored = sorted(
        ((index, rerank_score(body.get("query", ""), text)) for index, text in enumerate(texts)),
        key=lambda pair: -pair[1],
    )
    if tei:
        return [{"index": index, "score": score} for index, score in scored]
    top = scored[: body.get("top_n") or len(scored)]
    return {"results": [{"index": index, "relevance_score": score} for index, score in top]}


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _with_nul(delta: dict) -> dict:
    """The delta with a U+0000 after its text, or after its arguments fragment (not in a call's opening)."""
    if delta.get("content"):
        return {**delta, "content": delta["content"] + "\x00"}
    calls = delta.get("tool_calls") or []
    if calls and calls[0]["function"].get("arguments") and "id" not in calls[0]:
        function = {**calls[0]["function"], "arguments": calls[0]["function"]["arguments"] + "\x00"}
        return {**delta, "tool_calls": [{**calls[0], "function": function}]}
    return delta


def _scripted_status(prompt: str, seen: int) -> int | None:
    for status, times in _STATUS.findall(prompt):
        if not times or seen <= int(times):
            return int(status)
    return None


def _code(status: int) -> str:
    return {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(status, "server_error")


def _error(status: int, message: str, code: str) -> Response:
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    headers = {"Retry-After": "0"} if status == 429 else {}
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def _last_user_text(messages: list[dict]) -> str:
    return next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


def _trailing_tools(messages: list[dict]) -> list[dict]:
    tail = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        tail.append(message)
    return list(reversed(tail))


def _chosen_tools(body: dict) -> list[str]:
    names = [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if choice == "none" or not names:
        return []
    if isinstance(choice, dict) and choice.get("type") == "function":
        return [choice["function"]["name"]]
    return names if body.get("parallel_tool_calls", True) else names[:1]


def _prompt_tokens(body: dict) -> int:
    return sum(len(_text(m.get("content")).split()) + 3 for m in body.get("messages") or []) + 3


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    fake = FakeUpstream(args.host, args.port).start()
    print(f"fake upstream on {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()

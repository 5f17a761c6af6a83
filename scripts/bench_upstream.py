"""A lean OpenAI-compatible streaming upstream for the relay benchmark (scripts/benchmark.py, section
`relay`): plain asyncio in one process, so that what it costs is small next to what is measured, and the
same for the stub called directly and through the relay.

    python scripts/bench_upstream.py --port 8099

`POST …/chat/completions` (always streamed): a role chunk, then `max_tokens` (default 100) content chunks
of one word each, the first after `bench_first_ms` and the next every `bench_interval_ms` (body fields,
default 0), then the finish chunk, a usage chunk and `[DONE]`. Each content chunk carries `sent`, the
CLOCK_MONOTONIC time it was written, so a client on this machine can time its journey. HTTP/1.1 with
keep-alive and chunked bodies, as a real server answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Cache-Control: no-cache\r\n\r\n"
)


def _event(payload: dict) -> bytes:
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(delta: dict, finish: str | None = None, **extra) -> dict:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"} | {
        "choices": [choice],
        **extra,
    }


async def _reply(writer: asyncio.StreamWriter, body: dict) -> None:
    tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 100
    interval = (body.get("bench_interval_ms") or 0) / 1000
    writer.write(HEAD + _event(_chunk({"role": "assistant", "content": ""})))
    await writer.drain()
    await asyncio.sleep((body.get("bench_first_ms") or 0) / 1000)
    for index in range(tokens):
        if index and interval:
            await asyncio.sleep(interval)
        writer.write(_event(_chunk({"content": f"w{index} "}, sent=time.monotonic())))
        await writer.drain()
    usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
    writer.write(_event(_chunk({}, "length" if tokens else "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        writer.write(_event({**_chunk({}), "choices": [], "usage": usage}))
    writer.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    await writer.drain()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await _reply(writer, json.loads(await reader.readexactly(length) or b"{}"))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    print(f"bench upstream on http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8099)
    asyncio.run(main(parser.parse_args().port))

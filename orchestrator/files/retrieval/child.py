"""The parsing child process: `python -m orchestrator.files.retrieval.child` with a JSON job on stdin.

It limits itself first (address space, CPU seconds), then extracts the text (or reads text extracted
before), cuts it into chunks and writes both to the paths the job names: the text as UTF-8, the chunks as
JSON lines `{"t": text, "n": tokens}`. The worker that started it only waits (services/parsing.py), so a
file that makes a parser spin or balloon costs this process, never a worker's event loop.

Exit status: 0 done; 3 unsupported file; 4 invalid file (also: out of memory); the last stderr line is the
reason. Killed by a signal (SIGXCPU at the CPU limit, or the parent's SIGKILL at its wall-clock limit):
the parent reports the time limit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

UNSUPPORTED = 3
INVALID = 4
OUT_OF_MEMORY = "The file needs more memory to parse than is allowed."


def limit(memory_mb: int, cpu_seconds: float) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    soft = max(1, int(cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(5)


def run(job: dict) -> None:
    from orchestrator.files.retrieval.chunking import chunks
    from orchestrator.files.retrieval.extract import extract
    from orchestrator.providers import tokens

    if job.get("text_in"):
        text = Path(job["text_in"]).read_text(encoding="utf-8")
    else:
        text = extract(Path(job["input"]), job["filename"])
        Path(job["text_out"]).write_text(text, encoding="utf-8")
    encoding = tokens.chunking_encoding()
    with open(job["chunks_out"], "w", encoding="utf-8") as out:
        for piece in chunks(text, job["max_tokens"], job["overlap"], encoding):
            out.write(json.dumps({"t": piece.text, "n": piece.tokens}, ensure_ascii=False) + "\n")


def main() -> int:
    job = json.loads(sys.stdin.read())
    limit(job["memory_mb"], job["cpu_seconds"])
    from orchestrator.files.retrieval.extract import Invalid, Unsupported

    try:
        run(job)
    except Unsupported as error:
        print(error, file=sys.stderr)
        return UNSUPPORTED
    except Invalid as error:
        print(error, file=sys.stderr)
        return INVALID
    except MemoryError:
        print(OUT_OF_MEMORY, file=sys.stderr)
        return INVALID
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A parsing process: `python -m orchestrator.files.retrieval.child`, kept by a worker's parser pool
(files/parser_pool.py) for many files, one at a time.

It reads its setup (a JSON line: memory limit, the slots' directory and count) from stdin, limits its address
space, then serves jobs, a JSON line each, until stdin ends. For each job it takes one of the machine's
parsing slots (files/parse_slots.py; the lock is this process's, so it is held exactly while a file is parsed
here and freed by the kernel if this process dies), says so, gives itself `cpu_seconds` more of CPU, then
extracts the text (or reads text extracted before), cuts it into chunks and writes both to the paths the job
names: the text as UTF-8, the chunks as JSON lines `{"t": text, "n": tokens}`. The answers go on a private
descriptor (stdout is pointed at stderr, so a parser's prints cannot garble them):

    {"slot": true}                                    the slot is taken: the job's wall clock starts
    {"status": 0|3|4, "reason": str, "retire": bool}  done; 3 unsupported file, 4 invalid file (also: out of
                                                      memory); `retire`: this process exits now

It retires after `recycle_files` files, once it holds more than `recycle_mb` of memory, or after running
out of memory, so one odd file cannot leave it bloated. Killed by a signal (SIGXCPU at its CPU budget, or
the pool's SIGKILL at the wall-clock limit, the lease lost, the worker stopping): the pool reports the limit
and starts another. A file that makes a parser spin or balloon costs this process, never a worker's loop.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import sys
import time
from pathlib import Path

UNSUPPORTED = 3
INVALID = 4
OUT_OF_MEMORY = "The file needs more memory to parse than is allowed."
SLOT_POLL_SECONDS = 0.05


def limit_memory(memory_mb: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(5)


def budget_cpu(cpu_seconds: float) -> None:
    """CPU seconds for the next file on top of what this process has used: SIGXCPU past them. The hard
    limit stays unlimited so the next file's budget can be set above this one's."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    resource.setrlimit(
        resource.RLIMIT_CPU, (max(1, int(spent + cpu_seconds + 0.999)), resource.RLIM_INFINITY)
    )


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


def outcome(job: dict) -> tuple[int, str, bool]:
    """(status, reason, out of memory) of one job."""
    from orchestrator.files.retrieval.extract import Invalid, Unsupported

    try:
        run(job)
    except Unsupported as error:
        return UNSUPPORTED, str(error), False
    except Invalid as error:
        return INVALID, str(error), False
    except MemoryError:
        return INVALID, OUT_OF_MEMORY, True
    return 0, "", False


def take_slot(directory: str, slots: int, index_hint: int) -> int:
    """A slot's locked descriptor, waiting (in this process) until one is free."""
    while True:
        for offset in range(slots):
            index = (index_hint + offset) % slots
            fd = os.open(
                os.path.join(directory, f"slot-{index}"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        time.sleep(SLOT_POLL_SECONDS)


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def serve(jobs, answer) -> None:
    setup = json.loads(jobs.readline())
    limit_memory(setup["memory_mb"])
    import orchestrator.files.retrieval.extract  # noqa: F401  (loaded once, before the first file)
    from orchestrator.providers import tokens

    tokens.chunking_encoding()
    served = 0
    while line := jobs.readline():
        job = json.loads(line)
        fd = take_slot(setup["slots_dir"], setup["slots"], os.getpid())
        try:
            answer({"slot": True})
            budget_cpu(job["cpu_seconds"])
            status, reason, exhausted = outcome(job)
        finally:
            os.close(fd)
        served += 1
        retire = exhausted or served >= setup["recycle_files"] or resident_mb() > setup["recycle_mb"]
        answer({"status": status, "reason": reason, "retire": retire})
        if retire:
            return


def main() -> int:
    private = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # anything a parser prints goes to the worker's log, not into the answers

    def answer(message: dict) -> None:
        private.write(json.dumps(message) + "\n")
        private.flush()

    serve(sys.stdin, answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())

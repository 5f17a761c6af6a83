"""From what an execution produced (a Run) to what the engine gets (an Execution).

The driver's reply is untrusted (the code can rewrite the driver), so every field is checked here: names
must be paths inside /mnt/data, the error a string, the kind one the driver can send.
"""

from __future__ import annotations

import mimetypes
import posixpath

from orchestrator.sandbox.interpreter import Run
from orchestrator.sandbox.limits import Limits, describe_bytes, describe_seconds
from orchestrator.sandbox.port import Execution, Outcome, OutputFile

PNG = b"\x89PNG\r\n\x1a\n"
LOST = " The interpreter had to be stopped, so the session starts afresh: its variables and files are gone."
# Exceptions the driver recognises as a limit, and the sentence that says which.
KIND_NOTES = {
    Outcome.MEMORY: "The sandbox allows {memory} of memory per process.",
    Outcome.PROCESSES: "The sandbox allows {processes} processes or threads besides the interpreter.",
    Outcome.FILE_SIZE: "Files in the sandbox may be at most {file}.",
    Outcome.DISK: "/mnt/data and /tmp hold at most {disk} each.",
}
STOPS = {
    Outcome.TIMEOUT: "Execution stopped: it ran longer than the time limit of {timeout}.",
    Outcome.CPU: "Execution stopped: it used more than the CPU time limit of {cpu}.",
    Outcome.MEMORY: "Execution stopped: its processes used more than the memory limit of {memory}.",
    Outcome.OUTPUT: "Execution stopped: it printed more than the output limit of {output}.",
}
COMPLETED_BUT_LOUD = "The code printed more than the output limit of {output}: the logs are cut there."
KILLED = "A process of the execution was killed: the session used more than its memory limit of {memory}."
MAX_OMITTED = 100  # names of files not returned, at most


def execution_from(run: Run, limits: Limits, *, restarted: bool) -> Execution:
    outcome, error = verdict(run, limits)
    files = [OutputFile(name, data, mime_of(name)) for name, data in _clean_files(run.files)]
    images = _images(run.images, files)[: limits.return_files]
    kept = files[: max(0, limits.return_files - len(images))]
    omitted = [f.name for f in files[len(kept) :]]
    omitted += [n for n in _strings((run.header or {}).get("omitted")) if _inside_data(n)]
    return Execution(
        logs=run.output.text(describe_bytes(limits.output_bytes)),
        error=error,
        outcome=outcome,
        images=images,
        files=tuple(kept),
        omitted=tuple(omitted[:MAX_OMITTED]),
        session_restarted=restarted,
    )


def verdict(run: Run, limits: Limits) -> tuple[Outcome, str | None]:
    """The outcome and the error text: a limit the host enforced, a crash, the code's own exception."""
    header = run.header or {}
    kind = header.get("kind")
    words = _words(limits)
    lost = run.killed or run.died is not None
    if run.stop is not None and (lost or kind == "interrupted"):
        return run.stop, STOPS[run.stop].format(**words) + (LOST if lost else "")
    if lost:
        return Outcome.CRASHED, f"The interpreter ended unexpectedly: {run.died}.{LOST}"
    traceback = header.get("error") if isinstance(header.get("error"), str) else "The code failed."
    if kind in KIND_NOTES:
        return Outcome(kind), f"{traceback}\n{KIND_NOTES[Outcome(kind)].format(**words)}"
    if run.stop is Outcome.MEMORY:  # the kernel killed one of its processes; the interpreter went on
        return Outcome.MEMORY, (f"{traceback}\n" if kind is not None else "") + KILLED.format(**words)
    if kind is not None:
        return Outcome.ERROR, traceback
    if run.stop is Outcome.OUTPUT:
        return Outcome.OUTPUT, COMPLETED_BUT_LOUD.format(**words)
    return Outcome.OK, None


def mime_of(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _words(limits: Limits) -> dict[str, str]:
    return {
        "timeout": describe_seconds(limits.timeout_seconds),
        "cpu": describe_seconds(limits.cpu_seconds),
        "memory": describe_bytes(limits.memory_bytes),
        "processes": str(limits.processes),
        "file": describe_bytes(limits.file_bytes),
        "disk": describe_bytes(limits.disk_bytes),
        "output": describe_bytes(limits.output_bytes),
    }


def _images(shown: list[bytes], files: list[OutputFile]) -> tuple[bytes, ...]:
    """The figures the code showed (or left open), one image each; when it showed none, the PNG files it
    saved. A figure both shown and saved is one image: its saved file stays a file (and a file_path)."""
    pictures = [data for data in shown if data.startswith(PNG)] or [
        f.data for f in files if f.data.startswith(PNG)
    ]
    return tuple(dict.fromkeys(pictures))


def _clean_files(files: list[tuple[object, bytes]]) -> list[tuple[str, bytes]]:
    return [(name, data) for name, data in files if isinstance(name, str) and _inside_data(name)]


def _inside_data(name: str) -> bool:
    normal = posixpath.normpath(name)
    return bool(name) and normal == name and not name.startswith(("/", "../")) and name != ".."


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

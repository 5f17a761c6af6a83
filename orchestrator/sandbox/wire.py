"""The sandbox service's HTTP bodies, shared by the service and its client. Bytes travel as base64.

    POST /v1/execute  {"session_id", "code", "files": [{"name", "sha256", "data"?}]}
        200 {"logs", "error", "outcome", "images": [b64], "files": [{"name", "mime", "data"}],
             "omitted": [names], "session_restarted"}
        409 {"error": {…, "code": "files_missing"}, "missing": [names]}: send those files' data
    POST /v1/close    {"session_id"}  → 204
    GET  /healthz     → 200 {"status": "ok", "sessions": N} (no token needed)

A file sent without `data` is one the client believes the session has; the service answers 409 naming
those it lacks, and the client repeats the call with their data. So an unchanged input file crosses the
network once per session, not once per execution.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from pydantic import BaseModel, Field, field_validator

from orchestrator.sandbox.local import FileDigest
from orchestrator.sandbox.port import Execution, InputFile, Outcome, OutputFile, check_name


class WireFile(BaseModel):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data: str | None = None

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        return check_name(name)

    def to_file(self) -> InputFile | FileDigest:
        if self.data is None:
            return FileDigest(self.name, self.sha256)
        try:
            data = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the data of file {self.name!r} is not base64") from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ValueError(f"the data of file {self.name!r} does not match its sha256")
        return InputFile(self.name, data)


class ExecuteRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=512)
    code: str
    files: list[WireFile] = Field(default_factory=list, max_length=1000)


class CloseRequest(BaseModel):
    session_id: str = Field(min_length=1, max_length=512)


def wire_file(file: InputFile, *, with_data: bool) -> dict:
    entry = {"name": file.name, "sha256": file.sha256}
    if with_data:
        entry["data"] = _b64(file.data)
    return entry


def execution_to_wire(execution: Execution) -> dict:
    return {
        "logs": execution.logs,
        "error": execution.error,
        "outcome": execution.outcome.value,
        "images": [_b64(image) for image in execution.images],
        "files": [{"name": f.name, "mime": f.mime, "data": _b64(f.data)} for f in execution.files],
        "omitted": list(execution.omitted),
        "session_restarted": execution.session_restarted,
    }


def execution_from_wire(body: dict) -> Execution:
    return Execution(
        logs=body["logs"],
        error=body["error"],
        outcome=Outcome(body["outcome"]),
        images=tuple(base64.b64decode(image) for image in body["images"]),
        files=tuple(OutputFile(f["name"], base64.b64decode(f["data"]), f["mime"]) for f in body["files"]),
        omitted=tuple(body["omitted"]),
        session_restarted=bool(body["session_restarted"]),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

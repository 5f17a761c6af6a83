"""From the driver's (untrusted) reply to an Execution, and the HTTP bodies, without starting anything."""

from __future__ import annotations

import base64
import dataclasses
import json
import struct

import pytest
from pydantic import ValidationError

from orchestrator.domain.errors import SandboxUnavailable
from orchestrator.sandbox.client import SandboxClient
from orchestrator.sandbox.factory import describe, make_sandbox
from orchestrator.sandbox.interpreter import OutputBuffer, ProtocolError, ReplyReader, Run
from orchestrator.sandbox.limits import Limits
from orchestrator.sandbox.local import FileDigest, LocalSandbox
from orchestrator.sandbox.port import (
    Execution,
    InputFile,
    Outcome,
    OutputFile,
    check_name,
    mount_names,
    safe_name,
)
from orchestrator.sandbox.report import execution_from, verdict
from orchestrator.sandbox.wire import ExecuteRequest, WireFile, execution_from_wire, execution_to_wire
from orchestrator.settings import Settings

LIMITS = Limits(5, 4, 256 << 20, 8, 1 << 20, 8 << 20, 16, 1000)
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels"


def a_run(header: dict | None = None, **fields) -> Run:
    return Run(OutputBuffer(LIMITS.output_bytes), header=header, **fields)


# What the code printed


def test_output_past_the_limit_is_cut_with_a_marker():
    output = OutputBuffer(16)
    output.feed(b"0123456789")
    output.feed(b"abcdefghij")
    assert output.exceeded and output.dropped == 4
    assert (
        output.text("16 bytes") == "0123456789abcdef\n[output truncated: the code printed more than 16 bytes]"
    )


def test_output_within_the_limit_is_kept_whole_and_undecodable_bytes_are_replaced():
    output = OutputBuffer(16)
    output.feed(b"ok \xff\n")
    assert (output.exceeded, output.text("16 bytes")) == (False, "ok \ufffd\n")


# The driver's reply


def frame(header: dict, *payloads: bytes) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack(">I", len(body)) + body + b"".join(payloads)


def test_a_reply_is_complete_only_with_every_declared_byte_whatever_the_chunks():
    data = frame({"files": [{"name": "a", "size": 3}], "images": [2]}, b"abc", b"xy")
    reader = ReplyReader(100)
    for byte in data[:-1]:
        reader.feed(bytes([byte]))
        assert not reader.complete
    reader.feed(data[-1:])
    assert reader.complete and reader.payloads() == [b"abc", b"xy"]


@pytest.mark.parametrize(
    "data",
    [
        frame({"files": [{"name": "a", "size": 101}]}),  # more than may be returned
        frame({"files": [{"name": "a", "size": -1}]}),
        frame({"files": [{"size": 1}]}),
        frame({"images": ["many"]}),
        frame({"images": [1]}, b"ab"),  # more bytes than declared
        struct.pack(">I", 1 << 30),  # a header too large to accept
        struct.pack(">I", 3) + b"{{{",
    ],
)
def test_a_malformed_or_oversized_reply_is_a_protocol_error(data):
    with pytest.raises(ProtocolError):
        ReplyReader(100).feed(data)


# The verdict


@pytest.mark.parametrize(
    ("run", "outcome", "error"),
    [
        (a_run({"kind": None}), Outcome.OK, None),
        (
            a_run({"kind": "error", "error": "Traceback…\nValueError"}),
            Outcome.ERROR,
            "Traceback…\nValueError",
        ),
        (a_run({"kind": "interrupted", "error": "KeyboardInterrupt"}), Outcome.ERROR, "KeyboardInterrupt"),
        (
            a_run({"kind": "interrupted"}, stop=Outcome.TIMEOUT),
            Outcome.TIMEOUT,
            "Execution stopped: it ran longer than the time limit of 5 s.",
        ),
        (
            a_run({"kind": "interrupted"}, stop=Outcome.CPU),
            Outcome.CPU,
            "Execution stopped: it used more than the CPU time limit of 4 s.",
        ),
        (
            a_run({"kind": None}, stop=Outcome.OUTPUT),
            Outcome.OUTPUT,
            "The code printed more than the output limit of 16 bytes: the logs are cut there.",
        ),
        (
            a_run({"kind": "memory", "error": "MemoryError"}),
            Outcome.MEMORY,
            "MemoryError\nThe sandbox allows 256 MiB of memory per process.",
        ),
        (
            a_run({"kind": "processes", "error": "BlockingIOError"}),
            Outcome.PROCESSES,
            "BlockingIOError\nThe sandbox allows 8 processes or threads besides the interpreter.",
        ),
        (
            a_run({"kind": "file_size", "error": "OSError"}),
            Outcome.FILE_SIZE,
            "OSError\nFiles in the sandbox may be at most 1 MiB.",
        ),
        (
            a_run({"kind": "disk", "error": "x"}),
            Outcome.DISK,
            "x\n/mnt/data and /tmp hold at most 8 MiB each.",
        ),
    ],
)
def test_the_verdict_says_which_limit_stopped_the_code(run, outcome, error):
    assert verdict(run, LIMITS) == (outcome, error)


def test_an_interpreter_that_had_to_be_killed_loses_the_session_and_says_so():
    outcome, error = verdict(a_run(stop=Outcome.MEMORY, killed=True, died="it did not stop"), LIMITS)
    assert outcome is Outcome.MEMORY
    assert error.startswith("Execution stopped: its processes used more than the memory limit of 256 MiB.")
    assert error.endswith("its variables and files are gone.")
    outcome, error = verdict(a_run(died="it exited with status 3"), LIMITS)
    assert (outcome, error.split(":")[0]) == (Outcome.CRASHED, "The interpreter ended unexpectedly")


def test_file_names_outside_mnt_data_and_foreign_kinds_of_values_are_dropped():
    run = a_run(
        {"kind": None, "omitted": ["ok.bin", "../x", 5]},
        files=[("a.txt", b"1"), ("../../etc/passwd", b"2"), ("/abs", b"3"), ("d/./e", b"4"), (7, b"5")],
    )
    execution = execution_from(run, LIMITS, restarted=False)
    assert [f.name for f in execution.files] == ["a.txt"]
    assert execution.omitted == ("ok.bin",)


def test_the_images_are_the_figures_shown_and_a_saved_figure_stays_a_file():
    run = a_run(
        {"kind": None},
        images=[PNG],
        files=[("same.png", PNG + b"1"), ("other.png", PNG + b"2"), ("a.txt", b"x")],
    )
    execution = execution_from(run, LIMITS, restarted=True)
    assert execution.images == (PNG,)
    assert [(f.name, f.mime) for f in execution.files] == [
        ("same.png", "image/png"),
        ("other.png", "image/png"),
        ("a.txt", "text/plain"),
    ]
    assert execution.session_restarted is True


def test_with_no_figure_shown_the_png_files_saved_are_the_images_each_once():
    run = a_run(
        {"kind": None}, files=[("a.png", PNG), ("b.png", PNG), ("c.png", PNG + b"2"), ("d.txt", b"x")]
    )
    assert execution_from(run, LIMITS, restarted=False).images == (PNG, PNG + b"2")


def test_images_and_files_together_stop_at_the_return_file_limit_and_the_rest_is_named():
    limits = dataclasses.replace(LIMITS, return_files=3)
    run = a_run(
        {"kind": None, "omitted": ["z.bin"]}, images=[PNG, PNG + b"2"], files=[("a", b"1"), ("b", b"2")]
    )
    execution = execution_from(run, limits, restarted=False)
    assert (len(execution.images), [f.name for f in execution.files]) == (2, ["a"])
    assert execution.omitted == ("b", "z.bin")


def test_a_process_the_kernel_killed_at_the_memory_limit_makes_the_execution_a_memory_one():
    outcome, error = verdict(a_run({"kind": None}, stop=Outcome.MEMORY), LIMITS)
    assert (outcome, error) == (
        Outcome.MEMORY,
        "A process of the execution was killed: the session used more than its memory limit of 256 MiB.",
    )
    outcome, error = verdict(
        a_run({"kind": "error", "error": "ChildProcessError"}, stop=Outcome.MEMORY), LIMITS
    )
    assert outcome is Outcome.MEMORY and error.startswith("ChildProcessError\nA process of the execution")


# Names and the wire


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/etc", "x\x00y", "é" * 200])
def test_a_name_that_is_not_one_file_in_mnt_data_is_refused(name):
    with pytest.raises(ValueError):
        InputFile(name, b"")
    with pytest.raises(ValueError):
        check_name(name)


@pytest.mark.parametrize(
    ("upload", "name"),
    [
        ("report.csv", "report.csv"),
        ("C:\\Users\\me\\data.xlsx", "data.xlsx"),
        ("../../x.py", "x.py"),
        ("..", "file-1"),
        (".", "file-1"),
        ("", "file-1"),
    ],
)
def test_any_uploaded_name_becomes_a_usable_one(upload, name):
    assert safe_name(upload, "file-1") == name
    InputFile(safe_name(upload, "file-1"), b"")


def test_uploads_get_distinct_names_in_mnt_data_even_named_dot_dot_or_alike():
    uploads = [
        ("file-a", "."),
        ("file-b", ".."),
        ("file-c", "data.csv"),
        ("file-d", "dir/data.csv"),
        ("file-e", ""),
    ]
    assert mount_names(uploads) == ["file-a", "file-b", "data.csv", "file-d-data.csv", "file-e"]


def test_an_execution_survives_the_wire_unchanged():
    execution = Execution(
        logs="out\n",
        error=None,
        outcome=Outcome.OK,
        images=(PNG,),
        files=(OutputFile("a.bin", b"\x00\xff", "application/octet-stream"),),
        omitted=("big.bin",),
        session_restarted=True,
    )
    assert execution_from_wire(json.loads(json.dumps(execution_to_wire(execution)))) == execution


def test_a_wire_file_is_a_digest_or_data_that_matches_its_digest():
    data = b"hello"
    sha = InputFile("a", data).sha256
    assert WireFile(name="a", sha256=sha).to_file() == FileDigest("a", sha)
    assert WireFile(name="a", sha256=sha, data=base64.b64encode(data).decode()).to_file().data == data
    with pytest.raises(ValueError, match="does not match"):
        WireFile(name="a", sha256="0" * 64, data=base64.b64encode(data).decode()).to_file()
    with pytest.raises(ValueError, match="not base64"):
        WireFile(name="a", sha256=sha, data="not base64!").to_file()
    with pytest.raises(ValidationError):
        WireFile(name="../a", sha256=sha)
    with pytest.raises(ValidationError):
        ExecuteRequest(session_id="", code="")


# Which sandbox a process gets


def test_without_a_url_or_in_process_set_no_code_runs_and_the_error_says_how_to_get_a_sandbox():
    sandbox = make_sandbox(Settings())
    with pytest.raises(SandboxUnavailable, match="ORCHESTRATOR_SANDBOX_URL") as raised:
        sandbox.execute("t", "print(1)")
    assert "ORCHESTRATOR_CODE_IN_PROCESS" in raised.value.message
    assert describe(Settings()) == (False, raised.value.message)


def test_in_process_needs_saying_and_a_url_wins():
    assert isinstance(make_sandbox(Settings(code_in_process=True)), LocalSandbox)
    client = make_sandbox(
        Settings(code_in_process=True, sandbox_url="http://sandbox:8100", sandbox_token="t")
    )
    assert isinstance(client, SandboxClient)
    assert describe(Settings(code_in_process=True))[0] is True

"""The pool of parsing processes: one process serves many files, is replaced after a limit, a crash or a
timeout (the file that caused it failed as before), and a stopping worker kills them all."""

from __future__ import annotations

import signal
import threading

import pytest

from orchestrator.domain.retrieval import IngestError
from orchestrator.files import parser_pool
from orchestrator.files.parsing import ParseFailed, _setup, parse
from orchestrator.settings import Settings


def settings(tmp_path, **limits) -> Settings:
    return Settings(database_url="sqlite://", parse_slots_dir=str(tmp_path / "slots"), **limits)


def parse_in(config: Settings, scratch, data: bytes, filename: str = "notes"):
    """Parse `data` (by default named without an extension: a small plain text would be parsed here)."""
    scratch.mkdir(parents=True, exist_ok=True)
    return parse(
        config,
        scratch,
        filename=filename,
        source=iter([data]),
        is_text=False,
        max_tokens=800,
        overlap=400,
        heartbeat=lambda: None,
        beat=0.2,
    )


def pids(config: Settings) -> set[int]:
    pool = parser_pool.pool(_setup(config), config.parse_processes)
    return {process.popen.pid for process in pool._idle}


def test_one_process_parses_file_after_file(tmp_path):
    config = settings(tmp_path, parse_recycle_files=50)
    for index in range(5):
        parsed = parse_in(config, tmp_path / str(index), f"file number {index} ".encode() * 50)
        assert parsed.text.read_text().startswith(f"file number {index}")
    assert len(pids(config)) == 1


def test_a_process_retires_after_its_share_of_files_and_another_takes_over(tmp_path):
    config = settings(tmp_path, parse_recycle_files=2)
    parse_in(config, tmp_path / "0", b"one " * 10)
    first = pids(config)
    parse_in(config, tmp_path / "1", b"two " * 10)
    assert pids(config) == set()  # retired after its second file
    parse_in(config, tmp_path / "2", b"three " * 10)
    assert pids(config) and pids(config) != first


def test_a_process_that_dies_is_replaced_and_the_next_file_parses(tmp_path):
    config = settings(tmp_path, parse_recycle_files=40)
    parse_in(config, tmp_path / "0", b"one " * 10)
    (pid,) = pids(config)
    import os

    os.kill(pid, signal.SIGKILL)
    parsed = parse_in(config, tmp_path / "1", b"two " * 10)  # the dead idle process is let go
    assert parsed.text.read_text().startswith("two")
    assert pids(config) and pid not in pids(config)


def test_a_file_past_the_time_limit_fails_and_its_process_is_replaced(tmp_path):
    config = settings(tmp_path, parse_timeout_seconds=1.0, parse_recycle_files=41)
    parse_in(config, tmp_path / "0", b"warm up " * 10)
    with pytest.raises(ParseFailed) as failure:
        parse_in(config, tmp_path / "1", b"lorem ipsum dolor sit amet " * 1_500_000)
    assert failure.value.code is IngestError.INVALID_FILE
    assert pids(config) == set()  # killed, not given back
    assert parse_in(config, tmp_path / "2", b"after " * 10).text.read_text().startswith("after")


def test_stopping_kills_a_process_mid_file_and_gives_the_file_back_unfailed(tmp_path):
    config = settings(tmp_path, parse_recycle_files=42)
    pool = parser_pool.pool(_setup(config), config.parse_processes)
    outcome = []

    def slow():
        try:
            parse_in(config, tmp_path / "0", b"lorem ipsum dolor sit amet " * 1_500_000)
        except Exception as error:  # noqa: BLE001
            outcome.append(error)

    thread = threading.Thread(target=slow)
    thread.start()
    while not pool._busy:
        threading.Event().wait(0.02)
    pool.stop()
    thread.join(10)
    assert isinstance(outcome[0], parser_pool.Stopping)
    with pytest.raises(parser_pool.Stopping):
        parse_in(config, tmp_path / "1", b"x")


def test_files_beyond_the_pools_processes_wait_for_one_keeping_their_lease(tmp_path):
    config = settings(tmp_path, parse_processes=1, parse_recycle_files=43)
    beats, done = [], []

    def one(index: int, data: bytes) -> None:
        scratch = tmp_path / str(index)
        scratch.mkdir()
        parsed = parse(
            config,
            scratch,
            filename="notes",
            source=iter([data]),
            is_text=False,
            max_tokens=800,
            overlap=400,
            heartbeat=lambda: beats.append(index),
            beat=0.1,
        )
        done.append(parsed.text.read_text()[:5])

    slow = threading.Thread(target=one, args=(0, b"slow " * 2_000_000))
    slow.start()
    pool = parser_pool.pool(_setup(config), 1)
    while not pool._busy:
        threading.Event().wait(0.02)
    one(1, b"quick " * 10)  # waits for the one process, heartbeating
    slow.join(60)
    assert sorted(done) == ["quick", "slow "] and 1 in beats
    assert pool.size() == 1


def test_a_small_plain_text_is_parsed_in_the_worker_and_a_long_run_without_spaces_is_not(tmp_path):
    config = settings(tmp_path, parse_recycle_files=44)
    parsed = parse_in(config, tmp_path / "0", b"small text " * 500, filename="small.txt")
    assert (
        parsed.text.read_text().startswith("small text") and len(parsed.chunks.read_text().splitlines()) >= 2
    )
    assert parser_pool.pool(_setup(config), config.parse_processes).size() == 0  # no process was needed
    parse_in(config, tmp_path / "1", b"x" * 5000, filename="run.txt")
    assert parser_pool.pool(_setup(config), config.parse_processes).size() == 1

"""The parsing child under its limits: a file that takes too long or needs too much memory ends as
`invalid_file`, and the worker side only waits (heartbeating) and kills the child when asked to stop."""

from __future__ import annotations

import os
import threading
import time

import pytest

from orchestrator.domain.errors import StaleWrite
from orchestrator.domain.retrieval import IngestError
from orchestrator.files import parse_slots
from orchestrator.files.parsing import ParseFailed, parse
from orchestrator.settings import Settings

BIG = b"lorem ipsum dolor sit amet consectetur " * 1_000_000  # 39 MB of text


def run(tmp_path, data: bytes, filename: str = "big.txt", heartbeat=lambda: None, **limits):
    settings = Settings(database_url="sqlite://", **limits)
    return parse(
        settings,
        tmp_path,
        filename=filename,
        source=iter([data]),
        is_text=False,
        max_tokens=800,
        overlap=400,
        heartbeat=heartbeat,
        beat=0.2,
    )


def test_a_small_file_is_parsed_into_chunks_and_its_text(tmp_path):
    parsed = run(tmp_path, b"hello file search " * 1000)
    assert parsed.text.read_text().startswith("hello file search")
    assert len(parsed.chunks.read_text().splitlines()) >= 2


def test_a_file_that_takes_longer_than_the_limit_is_invalid_and_the_child_is_gone(tmp_path):
    beats = []
    started = time.monotonic()
    with pytest.raises(ParseFailed) as failure:
        run(tmp_path, BIG, heartbeat=lambda: beats.append(1), parse_timeout_seconds=1.0)
    assert failure.value.code is IngestError.INVALID_FILE
    assert "longer than 1 s" in failure.value.message
    assert time.monotonic() - started < 10
    assert beats  # the lease was kept alive while the child ran


def test_a_file_that_needs_more_memory_than_allowed_is_invalid(tmp_path):
    # 200 MB, not less: the child's tokenizer alone maps about 126 MB of address space, so at 150 MB it
    # sometimes died loading it, before the file (flaky); a 156 MB file cannot be read within 200.
    with pytest.raises(ParseFailed) as failure:
        run(tmp_path, BIG * 4, parse_memory_mb=200)
    assert failure.value.code is IngestError.INVALID_FILE
    assert "memory" in failure.value.message  # a MemoryError, or an abort at the limit


def test_losing_the_lease_stops_the_child_at_once(tmp_path):
    def lost():
        raise StaleWrite("taken over")

    started = time.monotonic()
    with pytest.raises(StaleWrite):
        run(tmp_path, BIG, heartbeat=lost)
    assert time.monotonic() - started < 5


def test_an_unsupported_file_is_reported_as_such(tmp_path):
    with pytest.raises(ParseFailed) as failure:
        run(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(64), filename="image.png")
    assert failure.value.code is IngestError.UNSUPPORTED_FILE


def test_parsing_children_together_stay_within_the_total_a_child_waits_for_a_slot_keeping_its_lease(tmp_path):
    """One slot (the total is one child's memory): while it is taken, a parse waits, heartbeating."""
    limits = {
        "parse_memory_mb": 256,
        "parse_memory_total_mb": 256,
        "parse_slots_dir": str(tmp_path / "slots"),
    }
    settings = Settings(database_url="sqlite://", **limits)
    assert parse_slots.count(settings) == 1
    beats, done = [], []
    with parse_slots.slot(settings, heartbeat=lambda: None, beat=1):  # a child elsewhere holds it
        waiting = threading.Thread(
            target=lambda: done.append(
                run(tmp_path / "job", b"hello " * 100, "notes", lambda: beats.append(1), **limits)
            )
        )
        (tmp_path / "job").mkdir()
        waiting.start()
        deadline = time.monotonic() + 10
        while len(beats) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(beats) >= 2 and not done  # waited, its lease kept, no child started
    waiting.join(30)
    assert done and done[0].text.read_text().startswith("hello")


def test_with_no_total_set_half_the_machine_is_shared_out_in_children_of_the_memory_limit():
    settings = Settings(database_url="sqlite://", parse_memory_mb=1024)
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    assert parse_slots.count(settings) == max(1, physical // 2 // 1024)
    assert parse_slots.count(Settings(database_url="sqlite://", parse_memory_total_mb=100)) == 1


def test_a_slot_directory_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    settings = Settings(database_url="sqlite://", parse_slots_dir=str(tmp_path / "link"))
    slot = parse_slots.slot(settings, heartbeat=lambda: None, beat=1)
    with pytest.raises(RuntimeError, match="ORCHESTRATOR_PARSE_SLOTS_DIR"), slot:
        pass

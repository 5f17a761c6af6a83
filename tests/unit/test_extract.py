"""Text extraction: every supported format yields its text; other formats and empty files are refused
with the error the store file will show."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from orchestrator.files.retrieval.extract import Invalid, Unsupported, decode_text, extract
from tests.support import documents


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("filename", "data", "expected"),
    [
        ("notes.txt", b"plain words here", "plain words here"),
        ("README.md", "# Title\n\nCaf\u00e9 cr\u00e8me".encode(), "Caf\u00e9 cr\u00e8me"),
        ("main.py", b"def hello():\n    return 'world'\n", "return 'world'"),
        ("data.json", b'{"city": "Paris"}', '"city": "Paris"'),
        ("table.csv", b"name,age\nada,36\n", "ada,36"),
        (
            "page.html",
            b"<html><script>var x;</script><body><h1>Head</h1><p>Body text</p></body>",
            "Body text",
        ),
        ("report.pdf", documents.pdf("Quarterly revenue grew", "Second page"), "Second page"),
        ("memo.docx", documents.docx("First paragraph", "Budget approved"), "Budget approved"),
        ("deck.pptx", documents.pptx("Roadmap slide", "Launch in May"), "Launch in May"),
        ("LICENSE", b"MIT License, no extension", "MIT License"),
        ("legacy.txt", "na\u00efve r\u00e9sum\u00e9".encode("cp1252"), "na\u00efve r\u00e9sum\u00e9"),
        ("utf16.txt", "wide text".encode("utf-16"), "wide text"),
    ],
)
def test_each_supported_format_yields_its_text(tmp_path, filename, data, expected):
    assert expected in extract(write(tmp_path, data), filename)


def test_html_drops_scripts_and_styles(tmp_path):
    text = extract(write(tmp_path, b"<style>p{}</style><script>alert(1)</script><p>kept</p>"), "x.html")
    assert "alert" not in text and "p{}" not in text and "kept" in text


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(100)),
        ("song.mp3", b"ID3" + bytes(50)),
        ("blob.bin", bytes(range(256)) * 4),
        ("no-extension", bytes(range(256)) * 4),
    ],
)
def test_other_formats_are_unsupported(tmp_path, filename, data):
    with pytest.raises(Unsupported):
        extract(write(tmp_path, data), filename)


def test_a_zip_that_is_not_an_office_document_is_unsupported(tmp_path):
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "inside")
    with pytest.raises(Unsupported):
        extract(path, "archive.zip")


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("empty.txt", b""),
        ("blank.md", b"  \n\t \n"),
        ("broken.pdf", b"%PDF-1.7\nthis is not a pdf body"),
        ("broken.docx", b"PK\x03\x04 not really a zip"),
        ("empty.pdf", documents.pdf("")),
    ],
)
def test_files_that_cannot_be_read_or_hold_no_text_are_invalid(tmp_path, filename, data):
    with pytest.raises(Invalid):
        extract(write(tmp_path, data), filename)


def test_nul_characters_in_valid_utf8_are_dropped_from_the_text(tmp_path):
    # Postgres cannot store NUL in text; the bytes decode as UTF-8, so the text is kept without them.
    assert extract(write(tmp_path, b"keep\x00this"), "odd.txt") == "keepthis"


def test_text_that_is_not_utf8_and_looks_binary_is_refused():
    with pytest.raises(Unsupported):
        decode_text(b"\x80\x01\x02\x03" * 100)

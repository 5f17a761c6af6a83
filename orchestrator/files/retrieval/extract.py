"""Text out of an uploaded file: plain text, Markdown, code, JSON, CSV, HTML, PDF, DOCX and PPTX.

The format is chosen by the file name's extension, then by the bytes (PDF and Office files by their
signature; anything else that decodes as text is text). Runs in the parsing child process
(retrieval/child.py), never in a worker: a hostile file can only take that child down.

    Unsupported   the format is not one of these (an image, an archive, a binary): `unsupported_file`
    Invalid       it claims a supported format but cannot be read, or yields no text: `invalid_file`
"""

from __future__ import annotations

import codecs
import zipfile
from collections.abc import Callable
from pathlib import Path

# Formats read as text (source code included), by extension.
TEXT_EXTENSIONS = frozenset(
    [
        "txt",
        "text",
        "md",
        "markdown",
        "rst",
        "adoc",
        "org",
        "tex",
        "log",
        "csv",
        "tsv",
        "json",
        "jsonl",
        "ndjson",
        "xml",
        "yaml",
        "yml",
        "toml",
        "ini",
        "cfg",
        "conf",
        "py",
        "pyi",
        "js",
        "mjs",
        "cjs",
        "ts",
        "tsx",
        "jsx",
        "java",
        "kt",
        "kts",
        "scala",
        "c",
        "h",
        "cc",
        "cpp",
        "cxx",
        "hpp",
        "hh",
        "cs",
        "go",
        "rs",
        "rb",
        "php",
        "pl",
        "pm",
        "sh",
        "bash",
        "zsh",
        "fish",
        "ps1",
        "bat",
        "sql",
        "r",
        "m",
        "mm",
        "swift",
        "dart",
        "lua",
        "ex",
        "exs",
        "erl",
        "hs",
        "ml",
        "clj",
        "css",
        "scss",
        "less",
        "vue",
        "svelte",
        "graphql",
        "proto",
        "gradle",
        "makefile",
        "dockerfile",
        "env",
        "properties",
    ]
)
HTML_EXTENSIONS = frozenset({"html", "htm", "xhtml"})
# Formats known not to hold text we can read.
BINARY_EXTENSIONS = frozenset(
    [
        "png",
        "jpg",
        "jpeg",
        "gif",
        "bmp",
        "webp",
        "tiff",
        "tif",
        "ico",
        "svgz",
        "heic",
        "mp3",
        "wav",
        "ogg",
        "flac",
        "m4a",
        "mp4",
        "mov",
        "avi",
        "mkv",
        "webm",
        "zip",
        "gz",
        "tgz",
        "bz2",
        "xz",
        "7z",
        "rar",
        "tar",
        "exe",
        "dll",
        "so",
        "dylib",
        "bin",
        "iso",
        "dmg",
        "class",
        "jar",
        "pyc",
        "o",
        "a",
        "wasm",
        "doc",
        "xls",
        "ppt",
        "xlsx",
        "odt",
        "ods",
        "odp",
        "epub",
        "sqlite",
        "db",
        "parquet",
        "npy",
        "pkl",
    ]
)


class Unsupported(Exception):
    """Not a format file_search reads."""


class Invalid(Exception):
    """A supported format that cannot be read, or that holds no text."""


def extract(path: Path, filename: str) -> str:
    """The text of the file at `path` (named `filename` by its uploader)."""
    reader = _reader(path, _extension(filename))
    try:
        text = reader(path)
    except (Unsupported, Invalid, MemoryError):
        raise
    except Exception as error:  # a parser's own failure on a malformed file
        raise Invalid(f"The file could not be parsed: {type(error).__name__}: {error}"[:500]) from error
    text = text.replace("\x00", "")
    if not text.strip():
        raise Invalid("The file contains no text.")
    return text


def is_plain_text(path: Path, filename: str) -> bool:
    """The file is read as plain text (a text extension, and not a PDF or a zip inside)."""
    extension = _extension(filename)
    return extension in TEXT_EXTENSIONS and _reader(path, extension) is _text


def _extension(filename: str) -> str:
    name = filename.lower().rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name else name


def _reader(path: Path, extension: str) -> Callable[[Path], str]:
    with path.open("rb") as handle:
        head = handle.read(8)
    if extension == "pdf" or head.startswith(b"%PDF-"):
        return _pdf
    if extension in ("docx", "pptx") or (head.startswith(b"PK\x03\x04") and extension not in TEXT_EXTENSIONS):
        return _office(path, extension)
    if extension in HTML_EXTENSIONS:
        return _html
    if extension in BINARY_EXTENSIONS:
        raise Unsupported(f"Files of type '.{extension}' are not supported for file_search.")
    return _text


def _office(path: Path, extension: str) -> Callable[[Path], str]:
    if extension == "docx":
        return _docx
    if extension == "pptx":
        return _pptx
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        raise Unsupported("The file is not a supported format.") from None
    if "word/document.xml" in names:
        return _docx
    if "ppt/presentation.xml" in names:
        return _pptx
    raise Unsupported("Archives are not supported for file_search.")


def _text(path: Path) -> str:
    raw = path.read_bytes()
    return decode_text(raw)


def decode_text(raw: bytes) -> str:
    """UTF-8 (with or without a BOM), UTF-16 with a BOM, else Windows-1252 for text with no NUL bytes;
    bytes that look binary are not text."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    sample = raw[:65536]
    if b"\x00" in sample or _control_share(sample) > 0.05:
        raise Unsupported("The file is not text and not a supported document format.")
    return raw.decode("cp1252", errors="replace")


def _control_share(sample: bytes) -> float:
    controls = sum(1 for byte in sample if byte < 9 or 13 < byte < 32)
    return controls / max(len(sample), 1)


def _html(path: Path) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return soup.get_text("\n", strip=True)


def _pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise Invalid("The PDF is encrypted.")
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except PdfReadError as error:
        raise Invalid(f"The PDF could not be read: {error}"[:500]) from error


def _docx(path: Path) -> str:
    import docx

    document = docx.Document(str(path))
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def _pptx(path: Path) -> str:
    from pptx import Presentation

    slides = []
    for slide in Presentation(str(path)).slides:
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        slides.append("\n".join(texts))
    return "\n\n".join(slides)

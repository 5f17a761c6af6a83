"""The README and the pages of docs/ as the tests read them, and the real parser and Settings that what they
show must match: the commands in their code, the environment variables they name, the settings' tables."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from pydantic import AliasChoices

from orchestrator.cli import _parser
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = "README.md"
CONFIGURATION = "docs/configuration.md"
# Fenced blocks labelled so hold shell commands; others hold code, data or diagrams.
SHELL = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```(\w*)$")
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$", flags=re.DOTALL)
SHELL_OPERATORS = {"&", "&&", "||", "|", ";"}


def pages() -> dict[str, str]:
    """Every page a reader is pointed to: the README, then docs/*.md, by path relative to the repository."""
    paths = [ROOT / README, *sorted((ROOT / "docs").glob("*.md"))]
    return {path.relative_to(ROOT).as_posix(): path.read_text() for path in paths}


def shell_lines(text: str) -> list[str]:
    """The lines of a page's shell code: indented blocks (after a blank line) and fences labelled `sh`."""
    found, fence, previous_blank, in_block = [], None, True, False
    for line in text.splitlines():
        marker = FENCE.match(line.strip()) if not line.startswith("    ") else None
        if marker:
            fence = None if fence is not None else marker.group(1)
        elif fence is not None:
            if fence in SHELL:
                found.append(line.strip())
        elif line.startswith("    ") and line.strip() and (previous_blank or in_block):
            found.append(line.strip())
            in_block = True
        else:
            in_block = False
        previous_blank = not line.strip()
    return found


def code_spans(text: str) -> list[str]:
    """Inline `code` outside fenced blocks, with line breaks inside a span made spaces."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


def split_command(line: str) -> tuple[dict[str, str], list[str]]:
    """(NAME=value assignments, the words after them up to a shell operator) of one command line."""
    words = shlex.split(line, comments=True)
    if words[:1] == ["export"]:
        words = words[1:]
    assignments = {}
    while words and ASSIGNMENT.match(words[0]):
        name, value = ASSIGNMENT.match(words.pop(0)).groups()
        assignments[name] = value
    for index, word in enumerate(words):
        if word in SHELL_OPERATORS:
            return assignments, words[:index]
    return assignments, words


def orchestrator_argv(words: list[str]) -> list[str] | None:
    """The arguments of the `orchestrator` command among a line's words (also after `docker compose run …`)."""
    for index, word in enumerate(words):
        if word == "orchestrator" or word.endswith("/bin/orchestrator"):
            return words[index + 1 :]
    return None


def settings_variables() -> set[str]:
    """Every environment variable name Settings reads, aliases included."""
    prefix = Settings.model_config["env_prefix"]
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(prefix + name.upper())
    return names


def parse_cli(argv: list[str]):
    """Parse with the real `orchestrator` parser, turning argparse's exit on a bad command into a failure."""
    try:
        return _parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"`orchestrator {shlex.join(argv)}` does not parse (exit {exit_.code})")

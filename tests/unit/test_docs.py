"""What the README and docs/ show, held to the code: every `orchestrator` command parses with the real CLI parser,
every setting they name or set is one that Settings reads and accepts, every script option exists, every
repository path and every link resolves. A renamed flag, setting, module or heading fails here.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from tests.support.pages import (
    README,
    ROOT,
    code_spans,
    orchestrator_argv,
    pages,
    parse_cli,
    settings_variables,
    shell_lines,
    split_command,
)

PAGES = sorted(pages())
# The names a reader sets for the product: Settings' prefix, and the four customary names it also reads.
SETTING_NAME = re.compile(r"\bORCHESTRATOR_[A-Z0-9_]*[A-Z0-9]\b")
UPSTREAM_NAMES = {"DATABASE_URL", "REDIS_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY"}
# An all-capitals word in a command shown in prose is a placeholder (`--port P`, `revoke KEY_ID`).
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")
SCRIPT = re.compile(r"^(?:\./)?((?:scripts|examples)/[\w.-]+)$")
REPOSITORY_PATH = re.compile(r"^(?:orchestrator|workers|migrations|tests|scripts|examples|docs)/[\w./-]*$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def example_variables() -> set[str]:
    """ORCHESTRATOR_ names the example scripts read for their own options (not settings of the product)."""
    text = "".join(path.read_text() for path in (ROOT / "examples").glob("*.py"))
    return set(re.findall(r"environ\.get\(\"(ORCHESTRATOR_[A-Z_]+)\"", text))


def shell_commands(page: str) -> list[tuple[dict[str, str], list[str]]]:
    return [split_command(line) for line in shell_lines(pages()[page])]


def prose_commands(page: str) -> list[list[str]]:
    """`orchestrator …` commands shown inline, placeholders made values and optional brackets dropped."""
    commands = []
    for span in code_spans(pages()[page]):
        if not span.startswith("orchestrator ") or "…" in span:
            continue
        words = [word.strip("[]") for word in shlex.split(span)[1:]]
        commands.append(["1" if PLACEHOLDER.match(word) else word for word in words if word])
    return commands


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)}


def test_the_readme_shows_the_two_commands_and_ci_runs_its_test_command():
    lines = shell_lines(pages()[README])
    assert "./scripts/dev" in lines and "./scripts/test" in lines
    for script in ("scripts/dev", "scripts/test"):
        assert os.access(ROOT / script, os.X_OK), f"{script} is not executable"
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.startswith("exec ")]
    assert [shlex.split(line)[1] for line in ci] == ["./scripts/test"]


def test_the_readme_is_a_front_door_under_15_kb():
    assert len((ROOT / README).read_bytes()) < 15 * 1024


@pytest.mark.parametrize("page", PAGES)
def test_every_orchestrator_command_in_a_page_s_code_parses(page):
    for _, words in shell_commands(page):
        argv = orchestrator_argv(words)
        if argv is not None:
            parse_cli(argv)


@pytest.mark.parametrize("page", PAGES)
def test_every_orchestrator_command_in_a_page_s_prose_parses(page):
    for argv in prose_commands(page):
        parse_cli(argv)


@pytest.mark.parametrize("page", PAGES)
def test_every_setting_a_page_names_is_one_that_settings_reads(page):
    named = set(SETTING_NAME.findall(pages()[page]))
    assert named - settings_variables() - example_variables() == set()


@pytest.mark.parametrize("page", PAGES)
def test_every_setting_a_page_s_commands_set_is_read_and_accepted_by_settings(page, monkeypatch):
    for assignments, _ in shell_commands(page):
        for name, value in assignments.items():
            if name.startswith("ORCHESTRATOR_") or name in UPSTREAM_NAMES:
                assert name in settings_variables(), f"{page}: Settings never reads {name}"
                if "$" not in value:
                    monkeypatch.setenv(name, value)
    Settings()


@pytest.mark.parametrize("page", PAGES)
def test_every_script_a_page_runs_exists_and_takes_the_options_shown(page):
    for _, words in shell_commands(page):
        for index, word in enumerate(words):
            script = SCRIPT.match(word)
            if not script:
                continue
            source = (ROOT / script.group(1)).read_text()
            options = [option.strip("[]").split("=")[0] for option in words[index + 1 :]]
            for option in (option for option in options if option.startswith("--")):
                assert f'"{option}"' in source, f"{page}: {script.group(1)} has no option {option}"


@pytest.mark.parametrize("page", PAGES)
def test_every_repository_path_a_page_shows_exists(page):
    for span in code_spans(pages()[page]):
        if REPOSITORY_PATH.match(span):
            assert (ROOT / span.rstrip("/")).exists(), f"{page}: `{span}` does not exist"


@pytest.mark.parametrize("page", PAGES)
def test_every_link_in_a_page_resolves(page):
    for target in LINK.findall(pages()[page]):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (ROOT / page).parent / path if path else ROOT / page
        assert linked.exists(), f"{page}: link to {target}: no such file"
        if fragment:
            assert fragment in anchors(linked.read_text()), f"{page}: link to {target}: no such heading"


def test_the_docs_index_lists_every_page_once():
    index = pages()["docs/README.md"]
    listed = [Path(target).name for target in LINK.findall(index) if not target.startswith("..")]
    documented = sorted(
        Path(page).name for page in PAGES if page.startswith("docs/") and page != "docs/README.md"
    )
    assert sorted(listed) == documented

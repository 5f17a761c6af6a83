"""The house style is checked, not hoped for: ruff's lint rules and formatter (pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["orchestrator", "workers", "tests", "scripts", "migrations/env.py"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS], cwd=ROOT, capture_output=True, text=True
    )


def test_the_code_passes_ruffs_lint_rules():
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout


def test_the_code_is_formatted_by_ruff():
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout


def test_every_layer_imports_only_the_layers_below_it():
    """The contracts in pyproject.toml ([tool.importlinter]), checked by import-linter."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]

"""The tooling agrees with itself: pre-commit runs what `make lint` runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_lint_commands() -> list[str]:
    """The commands of the Makefile's `lint` target, $(BIN) as .venv/bin."""
    text = (ROOT / "Makefile").read_text()
    body = re.search(r"^lint:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert body is not None
    return [line.strip().replace("$(BIN)", ".venv/bin") for line in body.group(1).splitlines()]


def test_pre_commit_runs_what_make_lint_runs() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    entries = [hook["entry"].replace(" --force-exclude", "") + " ." for hook in hooks]
    assert make_lint_commands() == [".venv/bin/ruff check .", ".venv/bin/ruff format --check ."]
    assert entries == make_lint_commands()
    assert {hook["language"] for hook in hooks} == {"system"}  # the venv's ruff, not another

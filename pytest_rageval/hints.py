"""Hints for a run that collected nothing: a question file whose name ``rag_files`` does
not match (``questions.yaml``) is never collected, and the run says only "no tests ran"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pytest_rageval.keys import SETTINGS_KEY

PASSED_OVER_KEY: pytest.StashKey[list[Path]] = pytest.StashKey()
"""YAML and JSON files pytest looked at that ``rag_files`` did not match."""

_LOOK_AT = 20
"""How many passed-over files are opened at most (the hint is a courtesy, not a scan)."""
_MAX_BYTES = 1_000_000


def passed_over(config: pytest.Config, path: Path) -> None:
    """Note a file pytest offered that ``rag_files`` did not match, if it could hold questions."""
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        config.stash.setdefault(PASSED_OVER_KEY, []).append(path)


def has_questions(path: Path) -> bool:
    """Whether ``path`` is a YAML or JSON mapping with a ``questions`` list."""
    try:
        if path.stat().st_size > _MAX_BYTES:
            return False
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and isinstance(data.get("questions"), list)


def lines(config: pytest.Config) -> list[str]:
    """What to tell a run that collected nothing about question files it passed over."""
    found = [p for p in config.stash.get(PASSED_OVER_KEY, [])[:_LOOK_AT] if has_questions(p)]
    if not found:
        return []
    patterns = " ".join(config.stash[SETTINGS_KEY].files)
    said = []
    for path in found:
        shown = os.path.relpath(path, config.invocation_params.dir)
        said.append(
            f"rageval: {shown} has a 'questions:' list, but its name does not match rag_files "
            f"({patterns}), so it was not collected: rename it rag_{path.name}, or add "
            f"{path.name} to the ini option rag_files"
        )
    return said

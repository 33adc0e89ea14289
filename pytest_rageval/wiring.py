"""The session object's stash key. Only the wiring above the session (plugin, collect,
fixtures) reaches the session through it; the layers below it are handed what they need."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_rageval.session import RagSession

SESSION_KEY: pytest.StashKey[RagSession] = pytest.StashKey()

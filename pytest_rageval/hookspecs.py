"""Hooks other plugins and conftest.py files can implement."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_rageval_update_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """Update the ``--rag-report`` JSON document in place before it is written.

    Called once on the controller, with the document described in the README. Every
    implementation sees the same dict, so each may add or change keys. For example, to
    record which commit was evaluated::

        def pytest_rageval_update_report(config, report):
            report["commit"] = os.environ.get("GITHUB_SHA")
    """

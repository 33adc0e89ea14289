"""The README and the docs tell the truth: the files a reader copies (fenced blocks marked
``<!-- docs-test: FILENAME -->``) are run as a project, against the toy judge the quick
start uses, and print what the README shows; the documentation site builds strictly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rageval import toyjudge

ROOT = Path(__file__).parent.parent
MARKED = re.compile(r"<!-- docs-test: (\S+) -->\n```[a-z]*\n(.*?)```", re.S)
"""A block to test: the file it is, then its fence."""
TOY_URL = "http://127.0.0.1:8001/v1"
"""Where the README's quick start says the toy judge listens."""


def marked(page: Path) -> dict[str, str]:
    """The files a page asks its reader to write: file name -> content."""
    return {name: body for name, body in MARKED.findall(page.read_text(encoding="utf-8"))}


def sample(after: str) -> list[str]:
    """The lines of the README's first plain fenced block after the line ``after``: a
    sample of what pytest prints."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(after)
    block = re.search(r"```\n(.*?)```", text[start:], re.S)
    assert block is not None
    return block.group(1).splitlines()


def table(lines: list[str]) -> list[str]:
    """The lines of a pytest run that do not change from run to run: without the timing,
    token and cache lines (and the trailing spaces of the table)."""
    varying = ("verdict cache", "tokens:", "the verdict cache saved", "=====")
    return [line.rstrip() for line in lines if line.strip() and not line.startswith(varying)]


def printed_from(result: pytest.RunResult) -> list[str]:
    """What a run printed from its progress line on, as :func:`table` keeps it."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if line.startswith("rag_questions.yaml "))
    return table(lines[start:])


@pytest.fixture
def quick_start(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The README's quick start as a project, its judge on a free port."""
    # as a reader runs it: on CI, pytest prints the whole failure message in its summary
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    files = marked(ROOT / "README.md")
    assert sorted(files) == ["conftest.py", "pytest.ini", "rag_questions.yaml"]
    for name, body in files.items():
        (pytester.path / name).write_text(body, encoding="utf-8")
    return pytester


def test_the_quick_start_prints_what_the_readme_shows(quick_start: pytest.Pytester) -> None:
    with toyjudge.running() as url:
        ini = quick_start.path / "pytest.ini"
        ini.write_text(ini.read_text().replace(TOY_URL, url))
        passing = quick_start.runpytest()
        assert passing.ret == 0
        assert printed_from(passing) == table(sample("Plain `pytest` prints:"))
        # the README's failure: every answer from the password document
        conftest = quick_start.path / "conftest.py"
        broken = conftest.read_text().replace(
            'topic = "refunds" if "refund" in query.lower() else "password"',
            'topic = "password"',
        )
        assert broken != conftest.read_text()
        conftest.write_text(broken)
        failing = quick_start.runpytest()
        assert failing.ret == 1
    assert printed_from(failing) == table(sample("## What a failure looks like"))


@pytest.mark.parametrize(
    "page", sorted(p.relative_to(ROOT) for p in (ROOT / "docs").rglob("*.md") if marked(p))
)
def test_the_files_a_docs_page_gives_run(
    quick_start: pytest.Pytester, page: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each page's files, beside the quick start's app and judge
    for name, body in marked(ROOT / page).items():
        (quick_start.path / name).write_text(body, encoding="utf-8")
    with toyjudge.running() as url:
        ini = quick_start.path / "pytest.ini"
        ini.write_text(ini.read_text().replace(TOY_URL, url))
        result = quick_start.runpytest()
    assert result.ret == 0, result.stdout.str()


def test_every_docs_page_is_in_the_site_and_it_builds_strictly(tmp_path: Path) -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert [page for page in pages if f": {page}\n" not in nav] == []
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    built = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "guide" / "sequential" / "index.html").is_file()

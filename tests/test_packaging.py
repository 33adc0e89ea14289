"""The wheel holds every subpackage, module and data file of the source tree.

An editable install (the one the test suite runs on) imports straight from the source
tree, so a subpackage the build leaves out goes unnoticed until a user installs the
wheel. These tests build a real wheel, offline, from a copy of the project (a ``build/``
folder left in the worktree would otherwise add stale files to it) and read what is in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pytest_rageval"
PROBE = "_packaging_probe"
"""A subpackage that exists only in the copy the wheel is built from: a package added
later (``runner/``, say) must land in the wheel without anyone listing it."""


def _source_files(tree: Path) -> set[str]:
    return {
        path.relative_to(tree).as_posix()
        for path in (tree / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the copy of the project the wheel was built from, the wheel)."""
    tree = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / PACKAGE, tree / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    probe = tree / PACKAGE / PROBE / "inner"
    probe.mkdir(parents=True)
    (probe.parent / "__init__.py").write_text('"""Only in the copy the wheel is built from."""\n')
    (probe.parent / "module.py").write_text("VALUE = 1\n")
    (probe / "__init__.py").write_text("VALUE = 2\n")
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(tree),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    return tree, wheel


def test_wheel_holds_every_file_of_the_source_tree(built: tuple[Path, Path]) -> None:
    tree, wheel = built
    source = _source_files(tree)
    with zipfile.ZipFile(wheel) as archive:
        inside = {name for name in archive.namelist() if name.startswith(f"{PACKAGE}/")}
    # what the source tree holds today, written out: the comparison below cannot pass on
    # an empty walk
    assert {
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/reports/__init__.py",
        f"{PACKAGE}/reports/templates/report.html.j2",
        f"{PACKAGE}/{PROBE}/__init__.py",
        f"{PACKAGE}/{PROBE}/module.py",
        f"{PACKAGE}/{PROBE}/inner/__init__.py",
    } <= source
    assert sorted(source - inside) == []
    assert sorted(inside - source) == []


@pytest.mark.skipif(os.name == "nt", reason="the import check runs a POSIX path list")
def test_installed_wheel_imports_every_module_from_itself(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """Installed (not editable) next to the test suite's own dependencies, every module of
    the source tree imports from the installed copy."""
    tree, wheel = built
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    modules = sorted(
        ".".join(Path(name).with_suffix("").parts).removesuffix(".__init__")
        for name in _source_files(tree)
        if name.endswith(".py")
    )
    # the editable install's finder would supply a module the wheel lacks from the source
    # tree: each module must come from the installed copy
    script = (
        "import importlib, sys\n"
        "target = sys.argv[1]\n"
        "for name in sys.argv[2:]:\n"
        "    try:\n"
        "        where = importlib.import_module(name).__file__\n"
        "    except ImportError as exc:\n"
        "        print(f'{name}: {exc}')\n"
        "        continue\n"
        "    if not where.startswith(target):\n"
        "        print(f'{name} imported from {where}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(target), *modules],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        timeout=120,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert f"{PACKAGE}.{PROBE}.inner" in modules

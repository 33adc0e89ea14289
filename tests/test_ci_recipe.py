"""The GitHub Actions recipe in examples/ci, run locally in order: first as a push to
main (which keeps its report as the baseline), then as a pull request against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "ci" / "rag-gate.yml"
KNOWN_ACTIONS = (
    "actions/checkout",
    "actions/setup-python",
    "actions/cache/restore",
    "actions/cache/save",
    "actions/upload-artifact",
)


def steps_for(ref: str) -> list[dict[str, str]]:
    """The workflow's shell steps that run on ``ref``, in order (actions are GitHub's;
    the cache is this folder, kept between the two runs)."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    [job] = workflow["jobs"].values()
    chosen = []
    for step in job["steps"]:
        if "uses" in step:
            assert step["uses"].split("@")[0] in KNOWN_ACTIONS, step["uses"]
            continue
        condition = step.get("if", "")
        if condition == "github.ref == 'refs/heads/main'" and ref != "refs/heads/main":
            continue
        assert condition in ("", "always()", "github.ref == 'refs/heads/main'"), condition
        if step["name"] == "Install":
            continue  # this test's own environment has the project installed
        chosen.append({"name": step["name"], "run": step["run"], **job.get("env", {})})
    return chosen


def run_workflow(workdir: Path, ref: str, summary: Path) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "GITHUB_REF": ref, "GITHUB_STEP_SUMMARY": str(summary)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("PYTEST_ADDOPTS", None)
    done = []
    for step in steps_for(ref):
        step_env = {**env, **{k: v for k, v in step.items() if k not in ("name", "run")}}
        result = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=workdir,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{step['name']}:\n{result.stdout[-3000:]}{result.stderr}"
        done.append(result)
    return done


def test_the_ci_recipe_runs_on_main_then_on_a_pull_request(tmp_path: Path) -> None:
    workdir = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "offline", workdir / "examples" / "offline")
    main_summary, pr_summary = tmp_path / "main.md", tmp_path / "pr.md"

    run_workflow(workdir, "refs/heads/main", main_summary)
    baseline = json.loads((workdir / "rag-baseline.json").read_text())
    assert baseline["version"] == 1 and baseline["baseline"] is None
    assert "### pytest-rageval: passed" in main_summary.read_text()

    pr = run_workflow(workdir, "refs/pull/7/merge", pr_summary)
    reports = workdir / "rag-reports"
    head = json.loads((reports / "rag.json").read_text())
    assert head["baseline"] == str(workdir / "rag-baseline.json")
    assert all(entry["baseline"]["found"] for entry in head["sets"])
    text = pr_summary.read_text()
    assert "**Since the baseline**" in text and "- no question changed its verdict" in text
    assert (reports / "rag.md").read_text() == text
    assert (reports / "rag.html").read_text().startswith("<!DOCTYPE html>")
    assert "against the baseline" in pr[-1].stdout
    # the pull request's run did not replace main's baseline
    assert json.loads((workdir / "rag-baseline.json").read_text()) == baseline

"""The sharded GitHub Actions recipe in examples/ci, run locally in order for N = 3: each
shard job's shell steps, then the merge job's (artifacts are this one folder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "ci" / "rag-gate-sharded.yml"
KNOWN_ACTIONS = (
    "actions/checkout",
    "actions/setup-python",
    "actions/cache/restore",
    "actions/cache/save",
    "actions/upload-artifact",
    "actions/download-artifact",
)
MAIN_ONLY = "always() && github.ref == 'refs/heads/main'"


def shell_steps(job: dict, ref: str) -> list[dict[str, str]]:
    chosen = []
    for step in job["steps"]:
        if "uses" in step:
            assert step["uses"].split("@")[0] in KNOWN_ACTIONS, step["uses"]
            continue
        condition = step.get("if", "")
        assert condition in ("", "always()", MAIN_ONLY), condition
        if condition == MAIN_ONLY and ref != "refs/heads/main":
            continue
        if step["name"] != "Install":  # this test's environment has the project
            chosen.append(step)
    return chosen


def run(step: dict, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{step['name']}:\n{result.stdout[-3000:]}{result.stderr}"
    return result


def run_shard(job: dict, shard: int, shards: int, workdir: Path, env: dict[str, str]) -> None:
    for step in shell_steps(job, "refs/heads/main"):
        run(step, workdir, {**env, "SHARD": str(shard), "SHARDS": str(shards)})


def test_the_sharded_recipe_runs_three_shards_then_merges(tmp_path: Path) -> None:
    workdir = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "offline", workdir / "examples" / "offline")
    summary = tmp_path / "summary.md"
    workflow = yaml.safe_load(WORKFLOW.read_text())
    env = {**os.environ, **workflow["env"], "GITHUB_REF": "refs/heads/main"}
    env["GITHUB_STEP_SUMMARY"] = str(summary)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("PYTEST_ADDOPTS", None)
    shard_job, merge_job = workflow["jobs"]["shard"], workflow["jobs"]["merge"]
    shards = shard_job["strategy"]["matrix"]["shard"]
    assert shards == [1, 2, 3]
    # the same run on one machine, started now: it needs nothing from the shards, and
    # each of these runs spends most of its time starting up (llama-index, nltk)
    single = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "examples/offline",
            "-p",
            "no:cacheprovider",
            "--rag-report=single.json",
            "-o",
            "rag_cache_dir=single-cache",
        ],
        cwd=workdir,
        env={k: v for k, v in env.items() if k != "GITHUB_STEP_SUMMARY"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # the matrix's shard jobs run side by side, as on GitHub; each one's steps in order
        with ThreadPoolExecutor(len(shards)) as pool:
            jobs = [
                pool.submit(run_shard, shard_job, shard, len(shards), workdir, env)
                for shard in shards
            ]
            for job in jobs:
                job.result()
        parts = sorted(p.name for p in (workdir / "rag-parts").iterdir())
        assert parts == ["part-1.json", "part-2.json", "part-3.json"]
        done = [run(step, workdir, env) for step in shell_steps(merge_job, "refs/heads/main")]
        single_out, _ = single.communicate(timeout=600)
    finally:
        if single.poll() is None:
            single.kill()
            single.wait()
    merged = json.loads((workdir / "rag-reports" / "rag.json").read_text())
    assert merged["shards"]["count"] == 3 and merged["gate"]["passed"] is True
    questions = sum(len(s["questions"]) for s in merged["sets"])
    assert single.returncode == 0, single_out[-2000:]
    full = json.loads((workdir / "single.json").read_text())
    # the example app builds its index afresh in each job, and llama-index gives the nodes
    # of documents without ids random ids: the source ids differ between runs, not the
    # questions' verdicts
    assert _without_sources(merged["sets"]) == _without_sources(full["sets"])
    assert questions == sum(len(s["questions"]) for s in full["sets"]) > 3
    assert "### pytest-rageval: passed" in summary.read_text()
    assert (workdir / "rag-reports" / "rag.md").read_text() == summary.read_text()
    assert "rag gate passed" in done[0].stdout
    # on main, the shards' caches are merged into the one the next run restores
    assert (workdir / ".rageval_cache" / "verdicts.sqlite3").is_file()


def _without_sources(sets: list[dict[str, object]]) -> list[dict[str, object]]:
    return [
        {
            **entry,
            "questions": [
                {k: v for k, v in q.items() if k != "sources"}
                for q in entry["questions"]  # type: ignore[attr-defined]
            ],
        }
        for entry in sets
    ]

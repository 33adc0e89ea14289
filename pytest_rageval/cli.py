"""The ``rageval`` console script: start a project, compare and render saved reports.

    rageval init [FOLDER]
    rageval generate DOCS_DIR [--out rag_questions.json] [--per-chunk 3] [--chunk-size 512]
                     [--max-questions N] [--llm SPEC]
    rageval calibrate LABELS.yaml [--evaluators module:callable] [--judge SPEC] [--min-kappa K]
    rageval diff BASE.json HEAD.json [--max-drop 0.05]
    rageval report REPORT.json [--html out.html] [--markdown out.md]
    rageval merge PARTS... [--out report.json] [--markdown PATH] [--html PATH]
                  [--junitxml PATH] [--baseline PATH]   (a sharded run's parts, gated)
    rageval cache merge DIR... --into DIR   (the union of verdict caches)
    rageval judge-server [--port 8001]   (a toy judge, for trying the tool)

``init`` writes a starter conftest.py, rag_questions.yaml and pytest.ini, never over a
file that exists.

``diff`` prints what ``pytest --rag-baseline BASE.json`` prints for the run that wrote
HEAD.json (table with intervals and deltas, flips, McNemar labels) and exits 1 when a
metric fell more than ``--max-drop`` or a regression is significant, 0 otherwise, and 2
when a file cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_rageval.baseline import Baseline, BaselineError, from_document, read_document
from pytest_rageval.calibrate import CalibrationError
from pytest_rageval.gate import fell_more
from pytest_rageval.generate import GenerationError
from pytest_rageval.parts import PartError
from pytest_rageval.reports import html, markdown, terminal
from pytest_rageval.reports.json import write_atomic
from pytest_rageval.reports.summary import changes_of, summaries_from_document
from pytest_rageval.text import QUOTED, printable, quoted


def _report(path: str) -> tuple[Baseline, dict[str, Any]]:
    """A saved report, checked as a baseline would be, and its document."""
    document = read_document(Path(path), path)
    return from_document(document, path), document


@contextlib.contextmanager
def _rendering(path: str) -> Iterator[None]:
    """A report that passed the baseline's checks but lacks something a rendering reads
    (cut short, or edited by hand): an error naming the file, not a traceback."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        what = f"no {quoted(exc.args[0])}" if isinstance(exc, KeyError) and exc.args else str(exc)
        raise BaselineError(
            f"{path}: not a complete pytest-rageval report ({printable(what[:QUOTED])}); write "
            "it again with pytest --rag-report"
        ) from None


def diff(base_path: str, head_path: str, max_drop: float | None) -> int:
    base, _ = _report(base_path)
    _, head = _report(head_path)
    with _rendering(head_path):
        summaries = summaries_from_document(head)
        changes = changes_of(summaries, base)
        lines = [
            *terminal.render_table(summaries, changes).splitlines(),
            *terminal.render_flips(changes, base.path),
        ]
    for line in lines:
        print(line)
    failures = []
    for set_id, change in changes.items():
        for metric, metric_change in change.metrics.items():
            delta = metric_change.delta
            if max_drop is not None and delta is not None and fell_more(-delta, max_drop):
                failures.append(
                    f"{set_id} {metric}: pass rate fell {-delta:.2f}, more than --max-drop "
                    f"{max_drop:.2f}"
                )
            if metric_change.test.change == "regression":
                failures.append(
                    f"{set_id} {metric}: significant regression (exact McNemar p="
                    f"{metric_change.test.p_value:.2g})"
                )
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


def report(path: str, html_out: str | None, markdown_out: str | None) -> int:
    _, document = _report(path)  # checked as a baseline would be
    with _rendering(path):
        summary = markdown.render_markdown(document, html=html_out, root=str(Path.cwd()))
        page = html.render_html(document) if html_out is not None else None
    if html_out is None and markdown_out is None:
        print(summary, end="")
        return 0
    if html_out is not None and page is not None:
        write_atomic(Path(html_out), page)
        print(f"rag html report written to {html_out}")
    if markdown_out is not None:
        write_atomic(Path(markdown_out), summary)
        print(f"rag markdown summary written to {markdown_out}")
    return 0


def cache_merge(folders: Sequence[str], into: str) -> int:
    """``rageval cache merge``: the union of verdict caches, e.g. every shard's."""
    from pytest_rageval.cache_file import union

    try:
        added = union([Path(folder) for folder in folders], Path(into))
    except (ValueError, sqlite3.Error) as exc:
        raise CommandError(str(exc)) from None
    print(
        f"rag verdict cache {into}: {added['verdicts']} verdicts and {added['recordings']} "
        f"recordings added from {len(folders)} caches"
    )
    return 0


def init(folder: str) -> int:
    from pytest_rageval import scaffold

    outcomes = scaffold.init(Path(folder))
    for outcome in outcomes:
        if outcome.action == "written":
            print(f"wrote {outcome.path}")
        elif outcome.action == "appended":
            print(f"added {', '.join(outcome.content.splitlines()[1:])} to {outcome.path}")
    for outcome in outcomes:
        if outcome.action != "kept" or outcome.path.name == ".gitignore":
            continue
        if outcome.path.name in ("conftest.py", "rag_questions.yaml"):
            print(f"\n{outcome.path} exists, left unchanged; the starter would hold:")
        else:
            section = (
                "[tool.pytest.ini_options]" if outcome.path.name == "pyproject.toml" else "pytest"
            )
            print(
                f"\n{outcome.path} holds your pytest configuration, left unchanged; add "
                f"these lines to its {section} section:"
            )
        print("    " + outcome.content.rstrip("\n").replace("\n", "\n    "))
    if any(o.action in ("written", "appended") for o in outcomes):
        todo = "fill in the TODO in conftest.py, then run: pytest"
        print(
            f"\nnext: {todo} (with OPENAI_API_KEY set, or a judge of your own: see "
            "rag_judge in pytest.ini; to try it without a key, run `rageval judge-server` "
            "and use its toy judge)"
        )
        return 0
    print("\nrageval init: every file exists; nothing was written")
    return 1


def calibrate(
    labels: str,
    evaluators_spec: str | None,
    judge: str,
    min_kappa: float | None,
    workers: int,
    suggest: int | None = None,
    report_path: str | None = None,
) -> int:
    from pytest_rageval import calibrate as calibration
    from pytest_rageval import judges

    cases = calibration.load_labels(Path(labels), labels)
    client = None

    def judge_llm() -> Any:
        nonlocal client
        _, llm, client = _command_llm(judge, "--judge", "no judge")
        return llm

    if evaluators_spec is None:
        evaluators = judges.default_evaluators(judge_llm())
    else:
        evaluators = _load_evaluators(evaluators_spec, Path(labels).parent, judge_llm)
    cleanup = client.aclose if client is not None else None
    agreements, unknown = calibration.calibrate(cases, evaluators, workers, cleanup=cleanup)
    for line in calibration.render(agreements, unknown):
        print(line)
    document = _last_report(report_path, required=suggest is not None)
    rates = calibration.judge_rates(document) if document is not None else None
    for line in calibration.render_correction(agreements, rates, suggest):
        print(line)
    if suggest is not None and document is not None:
        out = Path(labels).with_suffix(".next.yaml")
        text, passed, failed = calibration.suggest(document, cases, agreements, suggest)
        write_atomic(out, text)
        print(
            f"{passed + failed} answers to label ({passed} the judge passed, {failed} it "
            f"failed) written to {out}"
        )
    if min_kappa is None:
        return 0
    failures = []
    for agreement in agreements:
        kappa = agreement.kappa
        if kappa is None:
            failures.append(
                f"{agreement.metric}: kappa is undefined (every label and verdict is the same); "
                "label cases that should fail as well as cases that should pass"
            )
        elif kappa < min_kappa:
            failures.append(
                f"{agreement.metric}: kappa {kappa:.2f} is below --min-kappa {min_kappa:g}"
            )
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


def _last_report(path: str | None, required: bool) -> dict[str, Any] | None:
    """The last run's report: ``--report``, else the project's ``rag_report``."""
    from pytest_rageval import calibrate as calibration

    found = Path(path) if path is not None else calibration.project_report(Path.cwd())
    if found is None or not found.is_file():
        if required:
            where = f"{found}" if found is not None else "no --report and no rag_report in the ini"
            raise CalibrationError(
                f"--suggest picks answers from the last run's report: {where} is not there; "
                "run pytest --rag-report=PATH first, or give --report PATH"
            )
        return None
    return _report(str(found))[1]


def generate(
    docs: str,
    out: str,
    per_chunk: int,
    chunk_size: int,
    max_questions: int | None,
    llm_spec: str,
    retries: int,
) -> int:
    from pytest_rageval import generate as generation

    spec, llm, client = _command_llm(llm_spec, "--llm", "no LLM")
    bar: Any = None

    def on_chunk(progress: Any) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=progress.chunks, unit="chunk", desc="generating", disable=None)
        bar.n = progress.skipped + progress.asked
        bar.set_postfix(questions=len(progress.examples), refresh=True)

    try:
        progress = generation.generate(
            Path(docs),
            Path(out),
            llm,
            spec.model,
            per_chunk=per_chunk,
            chunk_size=chunk_size,
            max_questions=max_questions,
            retries=retries,
            on_chunk=on_chunk,
            cleanup=client.aclose if client is not None else None,
        )
    except generation.Stopped as stop:
        if bar is not None:
            bar.close()
        print(
            f"rageval generate: {stop}\n{stop.saved} questions are saved in {out}; run the same "
            "command again to continue where it stopped",
            file=sys.stderr,
        )
        return 1
    if bar is not None:
        bar.close()
    before = len(progress.examples) - progress.questions
    print(
        f"wrote {progress.questions} questions from {progress.asked} chunks to {out}"
        + (f" ({before} already there, {progress.skipped} chunks done before)" if before else "")
        + (f"; {progress.duplicates} duplicate questions dropped" if progress.duplicates else "")
    )
    return 0


class CommandError(ValueError):
    """A command-line value that cannot be used; the message says which and why."""


def _command_llm(text: str, option: str, missing: str) -> tuple[Any, Any, Any]:
    """The LLM an ``--llm`` / ``--judge`` value names (as ``rag_judge`` does), built as the
    plugin builds its judge: its spec, the LLM and the HTTP client it owns."""
    from pytest_rageval.judges import api_base_problem, default_judge, parse_judge

    try:
        spec = parse_judge(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None
    problem = api_base_problem()
    if spec.kind == "openai" and problem is not None:
        raise CommandError(problem)
    if spec.kind == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise CommandError(
            f"{missing}: OPENAI_API_KEY is not set. Set it (and OPENAI_API_BASE for an "
            f"OpenAI-compatible server), or name another with {option} "
            "openai-like:<model>@<base_url>"
        )
    llm, client = default_judge(spec, 120.0)
    return spec, llm, client


def _load_evaluators(spec: str, folder: Path, judge_llm: Callable[[], Any]) -> dict[str, Any]:
    """``module:callable`` (importable from here or from the labels file's folder): a
    callable returning a dict like the ``rag_evaluators`` fixture; one that takes a
    parameter gets the judge LLM, as the fixture gets ``rag_judge_llm``."""

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CalibrationError(f"--evaluators: expected module:callable, got {spec!r}")
    for entry in (str(folder.resolve()), os.getcwd()):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CalibrationError(f"--evaluators: cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise CalibrationError(f"--evaluators: {module_name} has no callable {attribute!r}")
    wants_judge = bool(inspect.signature(factory).parameters)
    evaluators = factory(judge_llm()) if wants_judge else factory()
    if not isinstance(evaluators, dict) or not evaluators:
        raise CalibrationError(
            f"--evaluators: {spec} must return a non-empty dict of metric name -> llama-index "
            f"evaluator, got {evaluators!r}"
        )
    return evaluators


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _kappa(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a kappa in [-1, 1], got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="rageval",
        description=(
            "pytest-rageval: start a project, generate questions, calibrate the judge, "
            "compare and render saved reports."
        ),
    )
    commands = main_parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "init", help="write a starter conftest.py, rag_questions.yaml and pytest.ini"
    )
    start.add_argument("folder", nargs="?", default=".", help="where to write them (default: here)")
    compare = commands.add_parser(
        "diff", help="compare two --rag-report files: deltas, flips, McNemar tests"
    )
    compare.add_argument("base", help="the baseline report (e.g. the main branch's)")
    compare.add_argument("head", help="the report to judge against it")
    compare.add_argument(
        "--max-drop",
        type=_fraction,
        default=None,
        help="exit 1 when a metric's pass rate fell more than this below the baseline's",
    )
    make = commands.add_parser(
        "generate", help="write a question set (LabelledRagDataset JSON) from documents"
    )
    make.add_argument("docs", help="a folder of documents (read with SimpleDirectoryReader)")
    make.add_argument(
        "--out",
        default="rag_questions.json",
        help="the question file to write, or to continue (default rag_questions.json)",
    )
    make.add_argument(
        "--per-chunk", type=_positive, default=3, help="most questions a chunk (default 3)"
    )
    make.add_argument(
        "--chunk-size",
        type=_positive,
        default=512,
        help="SentenceSplitter's chunk size in tokens (default 512)",
    )
    make.add_argument(
        "--max-questions", type=_positive, default=None, help="stop after this many questions"
    )
    make.add_argument(
        "--llm",
        default="openai:gpt-4o-mini",
        metavar="SPEC",
        help="openai:<model> or openai-like:<model>@<base_url>, as the ini option rag_judge "
        "(default openai:gpt-4o-mini)",
    )
    make.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries of a rate-limited or failed request before stopping (default 3)",
    )
    check = commands.add_parser(
        "calibrate", help="how often the judge agrees with hand-labelled cases (Cohen's kappa)"
    )
    check.add_argument("labels", help="a labels file: cases: [{query, response, contexts, labels}]")
    check.add_argument(
        "--evaluators",
        default=None,
        metavar="MODULE:CALLABLE",
        help="a callable returning a dict like the rag_evaluators fixture (given the judge LLM "
        "when it takes a parameter); default: faithfulness, relevancy and correctness",
    )
    check.add_argument(
        "--judge",
        default="openai:gpt-4o-mini",
        metavar="SPEC",
        help="openai:<model> or openai-like:<model>@<base_url>, as the ini option rag_judge "
        "(default openai:gpt-4o-mini)",
    )
    check.add_argument(
        "--suggest",
        type=int,
        default=None,
        metavar="N",
        help="write LABELS.next.yaml: N answers of the last run not labelled yet, split "
        "between likely passes and fails as the corrected interval needs, for a person to label",
    )
    check.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="the last run's --rag-report (default: the ini's rag_report)",
    )
    check.add_argument(
        "--min-kappa",
        type=_kappa,
        default=None,
        help="exit 1 when a metric's Cohen's kappa is below this (or undefined)",
    )
    check.add_argument("--workers", type=int, default=8, help="judgements in flight at once")
    render = commands.add_parser("report", help="render a saved report as HTML or Markdown")
    render.add_argument("report", help="a --rag-report file")
    render.add_argument("--html", default=None, metavar="PATH", help="write the HTML report")
    render.add_argument(
        "--markdown", default=None, metavar="PATH", help="write the Markdown summary"
    )
    join = commands.add_parser(
        "merge",
        help="merge the --rag-report parts of a sharded run (--rag-shard I/N) and gate them "
        "as one run",
    )
    join.add_argument("parts", nargs="+", help="every shard's --rag-report file")
    join.add_argument("--out", default=None, metavar="PATH", help="write the merged JSON report")
    join.add_argument("--markdown", default=None, metavar="PATH", help="write the Markdown summary")
    join.add_argument("--html", default=None, metavar="PATH", help="write the HTML report")
    join.add_argument(
        "--junitxml", default=None, metavar="PATH", help="write JUnit XML, a case per question"
    )
    join.add_argument(
        "--baseline",
        default=None,
        metavar="PATH",
        help="the baseline the shards ran against (default: the path they recorded)",
    )
    caches = commands.add_parser("cache", help="verdict cache tools")
    cache_commands = caches.add_subparsers(dest="cache_command", required=True)
    union = cache_commands.add_parser(
        "merge", help="copy the verdicts of several cache folders into one (e.g. of shards)"
    )
    union.add_argument("folders", nargs="+", help="cache folders (--rag-cache-dir of each run)")
    union.add_argument("--into", required=True, metavar="DIR", help="the cache folder to fill")
    toy = commands.add_parser(
        "judge-server",
        help="a TOY judge on 127.0.0.1 (word overlap, OpenAI-compatible) to try the tool "
        "without an API key; not a real judge",
    )
    toy.add_argument("--port", type=int, default=8001, help="the port on 127.0.0.1 (default 8001)")
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        if arguments.command == "init":
            return init(arguments.folder)
        if arguments.command == "generate":
            return generate(
                arguments.docs,
                arguments.out,
                arguments.per_chunk,
                arguments.chunk_size,
                arguments.max_questions,
                arguments.llm,
                max(0, arguments.retries),
            )
        if arguments.command == "calibrate":
            return calibrate(
                arguments.labels,
                arguments.evaluators,
                arguments.judge,
                arguments.min_kappa,
                max(1, arguments.workers),
                arguments.suggest,
                arguments.report,
            )
        if arguments.command == "judge-server":
            from pytest_rageval import toyjudge

            return toyjudge.serve(arguments.port)
        if arguments.command == "merge":
            from pytest_rageval import merge

            return merge.run(
                arguments.parts,
                out=arguments.out,
                markdown_out=arguments.markdown,
                html_out=arguments.html,
                junit_out=arguments.junitxml,
                baseline_path=arguments.baseline,
            )
        if arguments.command == "cache":
            return cache_merge(arguments.folders, arguments.into)
        if arguments.command == "diff":
            return diff(arguments.base, arguments.head, arguments.max_drop)
        return report(arguments.report, arguments.html, arguments.markdown)
    except (BaselineError, CalibrationError, GenerationError, CommandError, PartError) as exc:
        print(f"rageval: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rageval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

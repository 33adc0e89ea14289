"""``rageval calibrate``: does the judge agree with people? (no pytest here)

A labels file holds hand-judged cases (its format: :mod:`pytest_rageval.questions.labels`).
Each labelled metric is judged as the plugin judges it (the same strict reading of the
judge's answer; an *invalid* verdict counts as not passing, as it does in the gate), and
compared with the label: accuracy, Cohen's kappa and the confusion matrix per metric, and
every case where the judge and the label disagree.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rageval import judges, retry
from pytest_rageval.correction import Labels, allocate_labels, check_labels
from pytest_rageval.questions import Question
from pytest_rageval.questions.labels import CASE_KEYS as CASE_KEYS
from pytest_rageval.questions.labels import CalibrationError as CalibrationError
from pytest_rageval.questions.labels import Case
from pytest_rageval.questions.labels import load_labels as load_labels
from pytest_rageval.stats import wilson


@dataclass
class Verdict:
    """What the judge said about one case for one metric."""

    case: Case
    metric: str
    passing: bool | None = None
    """True / False; None when the evaluation raised (an error, left out of agreement)."""
    invalid: str | None = None
    feedback: str | None = None
    error: str | None = None

    @property
    def label(self) -> bool:
        return self.case.labels[self.metric]


@dataclass
class Agreement:
    """How one metric's verdicts agree with its labels."""

    metric: str
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def judged(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.passing is not None]

    def count(self, label: bool, passing: bool) -> int:
        return sum(1 for v in self.judged if v.label is label and v.passing is passing)

    @property
    def accuracy(self) -> float | None:
        judged = self.judged
        if not judged:
            return None
        return sum(v.label is v.passing for v in judged) / len(judged)

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: (observed - chance agreement) / (1 - chance agreement). None when
        chance agreement is 1 (every label and verdict the same: nothing to tell apart)."""
        return cohen_kappa(
            self.count(True, True),
            self.count(True, False),
            self.count(False, True),
            self.count(False, False),
        )

    @property
    def disagreements(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.passing is None or v.passing is not v.label]


def cohen_kappa(tp: int, fn: int, fp: int, tn: int) -> float | None:
    """Cohen's kappa of a 2x2 table (label x verdict): ``tp`` labelled pass and judged
    pass, ``fn`` labelled pass and judged fail, ``fp`` labelled fail and judged pass,
    ``tn`` both fail. None when it is undefined (chance agreement of 1)."""
    n = tp + fn + fp + tn
    if n == 0:
        return None
    observed = (tp + tn) / n
    chance = ((tp + fn) / n) * ((tp + fp) / n) + ((fp + tn) / n) * ((fn + tn) / n)
    if math.isclose(chance, 1.0):
        return None
    return (observed - chance) / (1 - chance)


def calibrate(
    cases: Sequence[Case],
    evaluators: Mapping[str, Any],
    workers: int = 8,
    timeout: float = 120.0,
    cleanup: Callable[[], Awaitable[Any]] | None = None,
    retries: int = 3,
) -> tuple[list[Agreement], list[str]]:
    """Judge every labelled metric the evaluators provide, on one event loop; the
    agreements (in evaluator order) and the labelled metrics no evaluator provides.
    ``cleanup`` runs on that loop at the end (closing the judge's HTTP client). A
    transient failure (429, 5xx, time-out) is retried ``retries`` times; one that lasts
    is that case's error."""
    metrics = [name for name in evaluators if any(name in case.labels for case in cases)]
    unknown = sorted({m for case in cases for m in case.labels} - set(evaluators))
    if not metrics:
        raise CalibrationError(
            f"no evaluator provides a labelled metric: the labels name {', '.join(unknown)}; "
            f"the evaluators are {', '.join(evaluators) or 'none'}"
        )
    agreements = {metric: Agreement(metric) for metric in metrics}
    jobs = [Verdict(case, metric) for case in cases for metric in metrics if metric in case.labels]

    async def judge_all() -> None:
        slots = asyncio.Semaphore(workers)
        judging = (_judge(v, evaluators[v.metric], slots, timeout, retries) for v in jobs)
        try:
            await asyncio.gather(*judging)
        finally:
            if cleanup is not None:
                await cleanup()

    asyncio.run(judge_all())
    for verdict in jobs:
        agreements[verdict.metric].verdicts.append(verdict)
    return list(agreements.values()), unknown


async def _judge(
    verdict: Verdict, evaluator: Any, slots: asyncio.Semaphore, timeout: float, retries: int
) -> None:
    """Judge one labelled case with one evaluator, filling in ``verdict``; a failure is
    that case's error, not the run's."""
    case = verdict.case
    question = Question(query=case.query, reference=case.reference, contexts=None)
    try:
        call = judges.prepare(
            evaluator,
            query=case.query,
            response=case.response,
            contexts=list(case.contexts) if case.contexts is not None else None,
            **judges.reference_kwargs(question),
        )
        async with slots:
            result = await retry.with_retries(lambda: asyncio.wait_for(call(), timeout), retries)
    except Exception as exc:  # one case's failure is reported, not the run's
        verdict.error = f"{type(exc).__name__}: {exc}"
        return
    if getattr(result, "invalid_result", False):
        verdict.passing = False  # as the gate counts it
        verdict.invalid = str(getattr(result, "invalid_reason", None) or "invalid")
    else:
        verdict.passing = bool(result.passing)
    verdict.feedback = getattr(result, "feedback", None)


def render(agreements: Sequence[Agreement], unknown: Sequence[str], limit: int = 80) -> list[str]:
    """The table (accuracy, kappa, confusion matrix per metric) and the disagreements."""
    from tabulate import tabulate

    rows = []
    for agreement in agreements:
        kappa = agreement.kappa
        accuracy = agreement.accuracy
        rows.append(
            [
                agreement.metric,
                len(agreement.verdicts),
                "n/a" if accuracy is None else f"{accuracy:.2f}",
                "n/a" if kappa is None else f"{kappa:.2f}",
                agreement.count(True, True),
                agreement.count(True, False),
                agreement.count(False, True),
                agreement.count(False, False),
                sum(v.invalid is not None for v in agreement.verdicts),
                sum(v.error is not None for v in agreement.verdicts),
            ]
        )
    header = [
        "metric",
        "cases",
        "accuracy",
        "kappa",
        "pass/pass",
        "pass/fail",
        "fail/pass",
        "fail/fail",
        "invalid",
        "errors",
    ]
    lines = tabulate(rows, headers=header, disable_numparse=True).splitlines()
    lines.append("(label/judge: pass/fail = labelled passing, judged failing)")
    for metric in unknown:
        lines.append(f"not judged: no evaluator provides {metric!r}")
    for agreement in agreements:
        for verdict in agreement.disagreements:
            lines.append(_disagreement(verdict, limit))
    return lines


def _disagreement(verdict: Verdict, limit: int) -> str:
    label = "passing" if verdict.label else "failing"
    if verdict.error is not None:
        said = f"error: {verdict.error}"
    elif verdict.invalid is not None:
        said = f"invalid ({verdict.invalid})"
    else:
        said = "passing" if verdict.passing else "failing"
        if verdict.feedback:
            said += f": {_clip(' '.join(verdict.feedback.split()), limit)}"
    query = _clip(verdict.case.query, limit)
    return f"{verdict.case.where}: {verdict.metric}: labelled {label}, judged {said} ({query!r})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def labels_of(agreement: Agreement) -> Labels:
    """The judge's counts on a metric's labelled cases (those it judged)."""
    return Labels.from_pairs((v.label, bool(v.passing)) for v in agreement.judged)


def render_correction(
    agreements: Sequence[Agreement],
    judge_rates: Mapping[str, float] | None = None,
    budget: int | None = None,
) -> list[str]:
    """Per metric: q1 and q0 with their 95% Wilson intervals, and how to split the next
    ``budget`` labels (default: as many as there are) between answers people pass and
    fail so that the corrected interval narrows most (Lee et al.'s allocation, with the
    run's judge pass rate from ``judge_rates`` where known, else the labelled cases')."""
    lines = []
    for agreement in agreements:
        labels = labels_of(agreement)
        m1, m0 = labels.people_passed, labels.people_failed
        if not m1 or not m0:
            lines.append(
                f"{agreement.metric}: q1 and q0 need labelled answers of both kinds "
                f"({m1} people pass, {m0} they fail)"
            )
            continue
        q1_low, q1_high = wilson(labels.judge_passed, m1) or (0.0, 1.0)
        q0_low, q0_high = wilson(labels.judge_failed, m0) or (0.0, 1.0)
        line = (
            f"{agreement.metric}: q1 {labels.q1:.2f} ({q1_low:.2f}-{q1_high:.2f}, of {m1} people "
            f"pass), q0 {labels.q0:.2f} ({q0_low:.2f}-{q0_high:.2f}, of {m0} they fail), "
            f"J {labels.youden:.2f}"
        )
        reason = check_labels(labels)
        if reason is not None:
            line += f"; cannot correct yet: {reason.message}"
        lines.append(line)
        more_failed, more_passed = next_split(labels, judge_rates, agreement.metric, budget)
        source = "this run's" if judge_rates and agreement.metric in judge_rates else "the labels'"
        lines.append(
            f"  next {more_failed + more_passed} labels: {more_passed} answers people pass and "
            f"{more_failed} they fail (narrowest corrected interval at {source} judge pass rate)"
        )
    return lines


def next_split(
    labels: Labels, judge_rates: Mapping[str, float] | None, metric: str, budget: int | None
) -> tuple[int, int]:
    """``(more_failed, more_passed)``: how to spend the next ``budget`` labels."""
    m1, m0 = labels.people_passed, labels.people_failed
    budget = budget if budget is not None else m0 + m1
    p = (judge_rates or {}).get(metric)
    if p is None:
        p = (labels.judge_passed + m0 - labels.judge_failed) / (m0 + m1)
    total_failed, total_passed = allocate_labels(
        m0 + m1 + budget, p, labels.q0, labels.q1, labelled_failed=m0, labelled_passed=m1
    )
    return total_failed - m0, total_passed - m1


def judge_rates(document: Mapping[str, Any]) -> dict[str, float]:
    """Each metric's judge pass rate over a saved report's sets."""
    counts: dict[str, list[int]] = {}
    for entry in document.get("sets", []):
        for name, rate in entry.get("metrics", {}).items():
            seen = counts.setdefault(name, [0, 0])
            seen[0] += int(rate.get("passed") or 0)
            seen[1] += int(rate.get("n") or 0)
    return {name: passed / n for name, (passed, n) in counts.items() if n}


def suggest(
    document: Mapping[str, Any],
    cases: Sequence[Case],
    agreements: Sequence[Agreement],
    count: int,
) -> tuple[str, int, int]:
    """A labels template (the ``cases:`` format, labels left blank for a person) of up to
    ``count`` answers of a saved report that are not labelled yet, split as
    :func:`next_split` advises for the first metric: answers the judge passed stand in
    for those people pass, which the labels will tell. Also how many of each it took."""
    import yaml

    if not agreements:
        raise CalibrationError("no labelled metric to suggest labels for")
    metric = agreements[0].metric
    more_failed, more_passed = next_split(
        labels_of(agreements[0]), judge_rates(document), metric, count
    )
    labelled = {(case.query, case.response) for case in cases}
    passing: list[dict[str, Any]] = []
    failing: list[dict[str, Any]] = []
    for entry in document.get("sets", []):
        for record in entry.get("questions", []):
            verdict = (record.get("metrics") or {}).get(metric)
            response = record.get("response")
            if verdict is None or verdict.get("error") or not isinstance(response, str):
                continue
            if (record.get("query"), response) in labelled:
                continue
            labelled.add((record.get("query"), response))
            (passing if verdict.get("passing") else failing).append(record)
    take_passed = min(more_passed, len(passing))
    take_failed = min(count - take_passed, len(failing))
    take_passed = min(count - take_failed, len(passing))  # the rest from the other kind
    chosen = passing[:take_passed] + failing[:take_failed]
    metrics = [agreement.metric for agreement in agreements]
    template = []
    for record in chosen:
        case: dict[str, Any] = {"query": record["query"], "response": record["response"]}
        if record.get("contexts"):
            case["contexts"] = list(record["contexts"])
        if record.get("reference"):
            case["reference"] = record["reference"]
        case["labels"] = dict.fromkeys(metrics)
        template.append(case)
    head = (
        "# Labels to fill in: replace each null with true (a person passes the answer) or\n"
        "# false, then add these cases to your labels file. Chosen from the last run's\n"
        f"# report by Lee et al.'s allocation for {metric}: {more_passed} answers people\n"
        f"# pass and {more_failed} they fail narrow the corrected interval most (the judge's\n"
        "# verdicts stand in for people's until you label them).\n"
    )
    body = yaml.safe_dump({"cases": template}, allow_unicode=True, sort_keys=False, width=100)
    return head + body, take_passed, take_failed


def project_report(start: Path) -> Path | None:
    """The report path the project's ini names (``rag_report``), relative to it."""
    import importlib

    import iniconfig

    try:  # tomllib from Python 3.11; pytest brings tomli before
        toml: Any = importlib.import_module("tomllib")
    except ModuleNotFoundError:
        toml = importlib.import_module("tomli")

    for folder in (start, *start.parents):
        for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
            path = folder / name
            if not path.is_file():
                continue
            if name == "pyproject.toml":
                with path.open("rb") as handle:
                    options = toml.load(handle).get("tool", {}).get("pytest", {})
                options = options.get("ini_options")
                if options is None:
                    continue
                value = options.get("rag_report")
            else:
                config = iniconfig.IniConfig(str(path))
                section = "tool:pytest" if name == "setup.cfg" else "pytest"
                if section not in config:
                    continue
                value = config[section].get("rag_report")
            return folder / str(value) if value else None
    return None

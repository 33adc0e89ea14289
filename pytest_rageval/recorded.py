"""What the run recorded: each question's record and each set's gate, from the items'
reports, from xdist workers' outputs, and stand-ins for questions no report carried
(the run stopped first). The reports are summarised from here (no hooks here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from pytest_rageval import callphase
from pytest_rageval.gate import Gate, outcome
from pytest_rageval.reports.summary import SetSummary, summarize
from pytest_rageval.results import QuestionResult
from pytest_rageval.sets import RagSet
from pytest_rageval.verdicts import QuestionRecord, metric_results, question_record


class Recorded:
    """The run's question records and its sets' gates, as they come in."""

    def __init__(self) -> None:
        self.records: list[QuestionRecord] = []
        self.gates: dict[str, Gate] = {}
        """Each set's gate by name: this process's sets', and those its workers sent."""
        self.reported: set[str] = set()
        """Items whose reports pytest has logged (their question is recorded, or not ours)."""
        self.on_reports = 0
        """How many of ``records`` came with reports (the rest a worker sends at the end)."""
        self._gates_sent: set[str] = set()
        self._summaries: list[SetSummary] | None = None
        self._summarized = -1

    def attach(self, report: pytest.TestReport, record: QuestionRecord, rset: RagSet) -> None:
        """Put a question's record on its report, and its set's gate on the first report
        of the set this process makes (under xdist the controller gates with it)."""
        report.rag = record  # type: ignore[attr-defined]
        if rset.name not in self._gates_sent:
            self._gates_sent.add(rset.name)
            report.rag_gate = rset.gate.to_json()  # type: ignore[attr-defined]

    def logged(self, report: pytest.TestReport) -> None:
        """A report pytest logged, here or on an xdist worker."""
        record = getattr(report, "rag", None)
        if report.when in ("setup", "call") and record is not None:
            gate = getattr(report, "rag_gate", None)
            if gate is not None:
                self.gates.setdefault(record["set"], Gate.from_json(gate))
            self.records.append(record)
            self.on_reports = len(self.records)
            self.reported.add(report.nodeid)
        elif report.when == "setup" and not report.passed:
            # skipped or failed in setup: pytest shows that, and the question is not ours
            self.reported.add(report.nodeid)

    def merge(self, records: Iterable[QuestionRecord], gates: Mapping[str, Any]) -> None:
        """A worker's records and gates, once per question: a cancelled worker sends every
        result it holds (some also came with its reports) and a stand-in for each
        question of the sets it did not start, which another worker may have run."""
        where = {(r.get("set"), r.get("id")): i for i, r in enumerate(self.records)}
        for record in records:
            key = (record.get("set"), record.get("id"))
            if key not in where:
                where[key] = len(self.records)
                self.records.append(record)
            elif record.get("evaluated") and not self.records[where[key]].get("evaluated"):
                self.records[where[key]] = record
        for name, gate in gates.items():
            self.gates.setdefault(name, Gate.from_json(gate))

    def keep_unreported(self, sets: Iterable[RagSet], stopped: str | None, *, worker: bool) -> bool:
        """Record the questions no report carried: results that finished but whose items
        never ran (Ctrl-C, -x, --maxfail), and questions never finished, so the summary
        and the report lose nothing. True when there were any."""
        kept = False
        for rset in sets:
            if worker and not rset.submitted and rset.problem is None and not stopped:
                # an xdist worker collects every set but runs only its own; stopped, it
                # stands in for the sets it did not start (the controller keeps the
                # worker's that ran them), since none may have
                continue
            missing = [nodeid for nodeid in rset.members if nodeid not in self.reported]
            if missing:
                kept = True
                self._stand_in(rset, missing, f"not evaluated: {stopped or 'the run ended first'}")
        return kept

    def _stand_in(self, rset: RagSet, missing: list[str], reason: str) -> None:
        # a set never started: the metrics its data file names, where it names them
        unstarted = () if rset.submitted else rset.evaluator_names or ()
        results = {}
        for nodeid, question in rset.members.items():
            if nodeid in rset.results:
                results[nodeid] = rset.results[nodeid]
            elif nodeid in missing:
                results[nodeid] = QuestionResult(
                    question,
                    errors={"query": rset.problem or rset.setup_error or reason},
                    applicable=rset.applicable.get(nodeid, unstarted),
                    evaluated=False,
                )
        judged = {
            nodeid: rset.judged[nodeid] if nodeid in rset.judged else metric_results(result)
            for nodeid, result in results.items()
        }
        rates = (
            rset.gate.sampled_rates(rset.sampling, bounds=False)
            if rset.sampling is not None
            else rset.gate.rates(judged.values())
        )
        for nodeid in missing:
            if nodeid in rset.skipped:
                self.records.append(rset.tag(callphase.unsampled_record(rset, nodeid)))
                continue
            result, metrics = results[nodeid], judged[nodeid]
            newly = rset.newly(result.question.id, metrics)
            verdict = outcome(metrics, result.error, result.question.must_pass, rates, newly)
            self.records.append(rset.tag(question_record(result, metrics, verdict)))

    def summaries(self, sets: Iterable[RagSet]) -> list[SetSummary]:
        """The sets as reported, worked out once the run's records are all in (the gate,
        the reports and the terminal read the same ones)."""
        if self._summaries is None or self._summarized != len(self.records):
            gates = {**self.gates, **{rset.name: rset.gate for rset in sets}}
            self._summaries = summarize(self.records, gates)
            self._summarized = len(self.records)
        return self._summaries

"""Evaluators of retrieval against a question's ``expected_sources``: hit rate, MRR and
recall@k."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.evaluation import EvaluationResult

from pytest_rageval.evaluators.base import _OfflineEvaluator
from pytest_rageval.text import quoted


class _RetrievalEvaluator(_OfflineEvaluator):
    """Scores retrieval against the question's ``expected_sources``: document ids or file
    names, matched against each retrieved node's ``ref_doc_id`` and its ``file_name``
    metadata (``retrieved_sources``, which pytest-rageval takes from the response's
    source nodes). An empty retrieval scores 0 (llama-index's metrics raise on it)."""

    requires_expected_sources = True
    requires_contexts = True

    def _metric(self) -> Any:
        raise NotImplementedError

    def _passes(self, score: float) -> bool:
        raise NotImplementedError

    def _retrieved(self, nodes: list[Sequence[str]]) -> list[Sequence[str]]:
        """The retrieved nodes (each its ids) the metric looks at."""
        return nodes

    def _ids(self, nodes: list[Sequence[str]], expected: Sequence[str]) -> list[str]:
        """The ids the metric is given: one a node (:func:`_source_id`), as ranks count
        nodes."""
        return [_source_id(ids, expected) for ids in nodes]

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        expected_sources: Sequence[str] | None = None,
        retrieved_sources: Sequence[Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        expected = list(self._need(expected_sources, "expected_sources"))
        if retrieved_sources is None:
            reason = (
                "the response carries no source ids to compare with expected_sources; "
                "return a llama-index Response (or nodes as the contexts)"
            )
            return self._result(query, response, contexts, None, None, reason)
        nodes = self._retrieved(list(retrieved_sources))
        retrieved = self._ids(nodes, expected)
        if not retrieved or not expected:
            score = 0.0
        else:
            score = self._metric().compute(expected_ids=expected, retrieved_ids=retrieved).score
        found = [source for source in expected if any(source in ids for ids in nodes)]
        feedback = (
            f"{self.label} {score:.2f}: {len(found)} of {len(expected)} expected sources "
            f"among {len(nodes)} retrieved"
        )
        missing = [source for source in expected if source not in found]
        if missing:
            feedback += "; missing: " + ", ".join(repr(m) for m in missing[:5])
        return self._result(query, response, contexts, self._passes(score), score, feedback)

    label = "retrieval"


def _source_id(ids: Sequence[str], expected: Sequence[str]) -> str:
    """The id a retrieved node counts under: the one of its ids (document id, file name)
    that is expected, else its first."""
    for candidate in ids:
        if candidate in expected:
            return candidate
    return ids[0] if ids else ""


class HitRateEvaluator(_RetrievalEvaluator):
    """1 when any expected source was retrieved, else 0 (llama-index's ``HitRate``,
    non-granular); passes on a hit."""

    label = "hit rate"

    def _metric(self) -> Any:
        from llama_index.core.evaluation.retrieval.metrics import HitRate

        return HitRate()

    def _passes(self, score: float) -> bool:
        return score >= 1.0


class MRREvaluator(_RetrievalEvaluator):
    """1 / rank of the first expected source among the retrieved (llama-index's ``MRR``,
    non-granular), 0 when none is; passes at ``threshold`` (default 0.5: an expected
    source ranked first or second)."""

    label = "MRR"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def _metric(self) -> Any:
        from llama_index.core.evaluation.retrieval.metrics import MRR

        return MRR()

    def _passes(self, score: float) -> bool:
        return score >= self.threshold


class RecallAtKEvaluator(_RetrievalEvaluator):
    """The fraction of expected sources among the first ``k`` retrieved (all retrieved
    when ``k`` is None; llama-index's ``Recall``); passes at ``threshold`` (default 1.0:
    every expected source)."""

    label = "recall@k"

    def __init__(self, k: int | None = None, threshold: float = 1.0) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a whole number >= 1 (or None for all), got {quoted(k)}")
        self.k = k
        self.threshold = threshold
        if k is not None:
            self.label = f"recall@{k}"

    def _retrieved(self, nodes: list[Sequence[str]]) -> list[Sequence[str]]:
        return nodes if self.k is None else nodes[: self.k]

    def _ids(self, nodes: list[Sequence[str]], expected: Sequence[str]) -> list[str]:
        # every id of every node: one node can be two expected sources (its document id
        # and its file name); Recall counts a set, so ranks do not matter here
        return [source for ids in nodes for source in ids]

    def _metric(self) -> Any:
        from llama_index.core.evaluation.retrieval.metrics import Recall

        return Recall()

    def _passes(self, score: float) -> bool:
        return score >= self.threshold

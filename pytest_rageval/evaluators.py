"""Deterministic evaluators that need no LLM, as llama-index ``BaseEvaluator`` subclasses.

They are cheap, repeatable checks for CI: does the answer contain the reference (or given
keywords), how well does it match the reference word by word (SQuAD-style F1), and did
retrieval bring back the reference contexts. This module imports llama-index; the package
loads it lazily (``pytest_rageval.TokenF1Evaluator`` and friends).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llama_index.core.evaluation import BaseEvaluator, EvaluationResult
from llama_index.core.prompts.mixin import PromptDictType

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between two texts (1.0 when both are empty)."""
    predicted, expected = answer_tokens(prediction), answer_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


class _OfflineEvaluator(BaseEvaluator):
    """No prompts to customise: these evaluators never call an LLM."""

    rageval_cache = False
    """Not worth the verdict cache: judging locally costs less than looking it up."""

    requires_reference = False
    requires_reference_contexts = False

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        del prompts

    @staticmethod
    def _need(value: Any, what: str) -> Any:
        if value is None:
            raise ValueError(f"{what} must be provided")
        return value


class ContainsEvaluator(_OfflineEvaluator):
    """Passes when the response contains the reference answer, or every given keyword.

    Matching ignores case and runs of white space. With ``keywords`` the score is the
    fraction of keywords found; without, the question needs a ``reference``.
    """

    def __init__(self, keywords: Sequence[str] | None = None, case_sensitive: bool = False) -> None:
        self.keywords = list(keywords) if keywords is not None else None
        self.case_sensitive = case_sensitive
        self.requires_reference = keywords is None

    def _fold(self, text: str) -> str:
        flat = " ".join(text.split())
        return flat if self.case_sensitive else flat.casefold()

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        reference: str | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        answer = self._fold(self._need(response, "response"))
        wanted = (
            self.keywords if self.keywords is not None else [self._need(reference, "reference")]
        )
        missing = [word for word in wanted if self._fold(word) not in answer]
        found = len(wanted) - len(missing)
        feedback = (
            "the response contains " + ", ".join(repr(w) for w in wanted)
            if not missing
            else "the response lacks " + ", ".join(repr(w) for w in missing)
        )
        return EvaluationResult(
            query=query,
            response=response,
            contexts=contexts,
            passing=not missing,
            score=found / len(wanted) if wanted else 1.0,
            feedback=feedback,
        )


class TokenF1Evaluator(_OfflineEvaluator):
    """SQuAD-style token F1 of the response against the reference; passes at ``threshold``."""

    requires_reference = True

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        reference: str | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        score = token_f1(self._need(response, "response"), self._need(reference, "reference"))
        return EvaluationResult(
            query=query,
            response=response,
            contexts=contexts,
            passing=score >= self.threshold,
            score=score,
            feedback=f"token F1 {score:.2f} against the reference (passes at {self.threshold:g})",
        )


class ContextRecallEvaluator(_OfflineEvaluator):
    """Did retrieval bring back the question's reference contexts?

    A reference context counts as retrieved when at least ``min_overlap`` of its words
    (normalised as for F1) appear in one retrieved context. The score is the fraction of
    reference contexts retrieved; it passes at ``threshold`` (default: all of them).
    """

    requires_reference_contexts = True

    def __init__(self, min_overlap: float = 0.9, threshold: float = 1.0) -> None:
        self.min_overlap = min_overlap
        self.threshold = threshold

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        reference_contexts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        wanted = self._need(reference_contexts, "reference_contexts")
        retrieved = [Counter(answer_tokens(text)) for text in contexts or []]
        missed = []
        for reference in wanted:
            words = Counter(answer_tokens(reference))
            total = sum(words.values()) or 1
            best = max((sum((words & got).values()) / total for got in retrieved), default=0.0)
            if best < self.min_overlap:
                missed.append(reference)
        score = (len(wanted) - len(missed)) / len(wanted) if wanted else 1.0
        feedback = f"{len(wanted) - len(missed)} of {len(wanted)} reference contexts retrieved"
        if missed:
            feedback += "; missing: " + "; ".join(repr(m[:80]) for m in missed)
        return EvaluationResult(
            query=query,
            response=response,
            contexts=contexts,
            passing=score >= self.threshold,
            score=score,
            feedback=feedback,
        )

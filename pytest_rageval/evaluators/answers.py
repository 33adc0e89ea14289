"""Evaluators of the answer: contains, exact match, token F1, ROUGE-L, numeric, regex, and
context recall (did retrieval bring back the reference contexts)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from llama_index.core.evaluation import EvaluationResult

from pytest_rageval.evaluators.base import _clip, _OfflineEvaluator
from pytest_rageval.text import normalize_answer, quoted, rouge_tokens, tokens


def answer_tokens(text: str) -> list[str]:
    """The tokens token F1 and context recall compare (``text.tokens``): SQuAD's
    normalisation, and each character of Chinese and Japanese text a token of its own."""
    return tokens(text)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD v1.1 token F1 between two texts: 0.0 when either has no tokens, even both
    (v1.1's rule; v2.0 scores a pair of empty answers 1)."""
    predicted, expected = answer_tokens(prediction), answer_tokens(reference)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


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
        return self._result(
            query, response, contexts, not missing, found / len(wanted) if wanted else 1.0, feedback
        )


class _AgainstReference(_OfflineEvaluator):
    """Judges the response against the question's reference (:meth:`_judge`)."""

    requires_reference = True

    def _judge(self, response: str, reference: str) -> tuple[bool | None, float | None, str]:
        """Passing (None: invalid), score, and feedback (the reason when invalid)."""
        raise NotImplementedError

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        reference: str | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        passing, score, feedback = self._judge(
            self._need(response, "response"), self._need(reference, "reference")
        )
        return self._result(query, response, contexts, passing, score, feedback)


class _ReferenceOverlap(_AgainstReference):
    """A score of the response's tokens against the reference's; passes at ``threshold``."""

    label = ""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def _score(self, response: str, reference: str) -> float:
        raise NotImplementedError

    def _tokens(self, text: str) -> list[str]:
        return answer_tokens(text)

    def _judge(self, response: str, reference: str) -> tuple[bool | None, float | None, str]:
        score = self._score(response, reference)
        feedback = f"{self.label} {score:.2f} against the reference (passes at {self.threshold:g})"
        if not self._tokens(reference):
            feedback += f"; the reference {_clip(reference)!r} has no words to compare"
        return score >= self.threshold, score, feedback


class TokenF1Evaluator(_ReferenceOverlap):
    """SQuAD-style token F1 of the response against the reference; passes at ``threshold``."""

    label = "token F1"

    def _score(self, response: str, reference: str) -> float:
        return token_f1(response, reference)


class ContextRecallEvaluator(_OfflineEvaluator):
    """Did retrieval bring back the question's reference contexts?

    A reference context counts as retrieved when at least ``min_overlap`` of its words
    (normalised as for F1) appear in one retrieved context; one without words never
    does, as token F1 scores it 0. The score is the fraction of reference contexts
    retrieved; it passes at ``threshold`` (default: all of them).
    """

    requires_reference_contexts = True
    requires_contexts = True

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
        missed, wordless = [], []
        for reference in wanted:
            words = Counter(answer_tokens(reference))
            total = sum(words.values())
            if not total:
                wordless.append(reference)
                continue
            best = max((sum((words & got).values()) / total for got in retrieved), default=0.0)
            if best < self.min_overlap:
                missed.append(reference)
        found = len(wanted) - len(missed) - len(wordless)
        score = found / len(wanted) if wanted else 1.0
        feedback = f"{found} of {len(wanted)} reference contexts retrieved"
        if missed:
            feedback += "; missing: " + "; ".join(repr(m[:80]) for m in missed)
        if wordless:
            feedback += "; without words to match: " + "; ".join(repr(m[:80]) for m in wordless)
        return self._result(query, response, contexts, score >= self.threshold, score, feedback)


class ExactMatchEvaluator(_AgainstReference):
    """Passes when the response equals the reference after SQuAD's normalisation (case
    folding, removing punctuation, symbols and the articles a/an/the, single spaces:
    ``text.normalize_answer``), as SQuAD's exact match. Score 1 or 0."""

    def _judge(self, response: str, reference: str) -> tuple[bool | None, float | None, str]:
        answer, expected = normalize_answer(response), normalize_answer(reference)
        if answer == expected:
            return True, 1.0, "the response equals the reference"
        feedback = f"the response {_clip(answer)!r} is not the reference {_clip(expected)!r}"
        return False, 0.0, feedback


class RegexEvaluator(_OfflineEvaluator):
    """Passes when ``pattern`` (or, without one, the question's ``pattern``) is found in
    the response (``re.search``; write ``(?i)`` for case-insensitive, ``^...$`` for the
    whole answer). Score 1 or 0."""

    def __init__(self, pattern: str | None = None, flags: int = 0) -> None:
        self.pattern = re.compile(pattern, flags) if pattern is not None else None
        self.flags = flags
        self.requires_pattern = pattern is None

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        pattern: str | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        compiled = self.pattern or re.compile(self._need(pattern, "pattern"), self.flags)
        found = compiled.search(self._need(response, "response"))
        feedback = (
            f"the response matches {compiled.pattern!r} at {found.group(0)!r}"
            if found
            else f"the response does not match {compiled.pattern!r}"
        )
        return self._result(
            query, response, contexts, found is not None, float(bool(found)), feedback
        )


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) on ``text.rouge_tokens``: no stemming, no stop words or
    articles removed; 0.0 when either has no tokens. On ASCII text it equals Google's
    ``rouge-score`` (``RougeScorer(["rougeL"], use_stemmer=False)``).

    The longest common subsequence comes from rapidfuzz (``LCSseq`` over token lists),
    a maintained C++ library without dependencies. ``rouge-score`` itself was the other
    candidate: unreleased since 2022, and its default tokenizer drops every character
    outside a-z and 0-9, so Chinese, Japanese or Spanish accents score 0.
    """
    from rapidfuzz.distance import LCSseq

    predicted, expected = rouge_tokens(prediction), rouge_tokens(reference)
    if not predicted or not expected:
        return 0.0
    common = LCSseq.similarity(predicted, expected)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


class RougeLEvaluator(_ReferenceOverlap):
    """ROUGE-L F-measure of the response against the reference (:func:`rouge_l`: words as
    written, no stop-word or article removal, no stemming); passes at ``threshold``."""

    label = "ROUGE-L"

    def _score(self, response: str, reference: str) -> float:
        return rouge_l(response, reference)

    def _tokens(self, text: str) -> list[str]:
        return rouge_tokens(text)


_NUMBER = re.compile(
    # not inside a Latin word or code ("v2", "A4"); units may follow ("330m", "5kg")
    r"(?<![0-9A-Za-z_.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"|(?<![0-9A-Za-z_.])[-+\u2212]?\.\d+"
)


def numbers(text: str) -> list[float]:
    """The numbers written in ``text`` with digits: ``1,234.5``, ``-3``, ``2e6``, ``.5``
    (full-width digits too). A comma only groups thousands (``3,14`` is 3 and 14)."""
    found = _NUMBER.findall(unicodedata.normalize("NFKC", text))
    return [float(n.replace(",", "").replace("\u2212", "-")) for n in found]


class NumericEvaluator(_AgainstReference):
    """Passes when a number in the response is within ``tolerance`` (absolute) of the
    reference's number (the first one it holds). Score 1 or 0. A reference without a
    number is an invalid verdict, not a failure."""

    def __init__(self, tolerance: float = 1e-6) -> None:
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be a number >= 0, got {quoted(tolerance)}")
        self.tolerance = tolerance

    def _judge(self, response: str, reference: str) -> tuple[bool | None, float | None, str]:
        wanted = numbers(reference)
        if not wanted:
            return None, None, f"the reference {_clip(reference)!r} holds no number to compare"
        target, given = wanted[0], numbers(response)
        close = [n for n in given if abs(n - target) <= self.tolerance]
        if close:
            feedback = f"the response gives {close[0]:g} (expected {target:g} ± {self.tolerance:g})"
        elif given:
            shown = ", ".join(f"{n:g}" for n in given[:5])
            feedback = f"no number of the response ({shown}) is {target:g} ± {self.tolerance:g}"
        else:
            feedback = f"the response has no number (expected {target:g})"
        return bool(close), float(bool(close)), feedback

"""pytest-rageval: RAG quality as a regression test.

Importing this package is cheap: llama-index is only imported by what needs it
(the evaluators below are loaded on first access).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_rageval.api import BatchRunner, load_questions
from pytest_rageval.questions import Question, QuestionFileError
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner import Runner

if TYPE_CHECKING:
    from pytest_rageval.evaluators import (
        ContainsEvaluator,
        ContextRecallEvaluator,
        ExactMatchEvaluator,
        HitRateEvaluator,
        MRREvaluator,
        NumericEvaluator,
        RecallAtKEvaluator,
        RegexEvaluator,
        RougeLEvaluator,
        TokenF1Evaluator,
    )

__version__ = "0.1.0"
__all__ = [
    "BatchRunner",
    "ContainsEvaluator",
    "ContextRecallEvaluator",
    "ExactMatchEvaluator",
    "HitRateEvaluator",
    "MRREvaluator",
    "NumericEvaluator",
    "Question",
    "QuestionFileError",
    "QuestionResult",
    "RecallAtKEvaluator",
    "RegexEvaluator",
    "RougeLEvaluator",
    "Runner",
    "TokenF1Evaluator",
    "load_questions",
]

_LAZY = {
    "ContainsEvaluator",
    "ContextRecallEvaluator",
    "ExactMatchEvaluator",
    "HitRateEvaluator",
    "MRREvaluator",
    "NumericEvaluator",
    "RecallAtKEvaluator",
    "RegexEvaluator",
    "RougeLEvaluator",
    "TokenF1Evaluator",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pytest_rageval import evaluators

        return getattr(evaluators, name)
    raise AttributeError(f"module 'pytest_rageval' has no attribute {name!r}")

"""Deterministic evaluators that need no LLM, as llama-index ``BaseEvaluator`` subclasses.

They are cheap, repeatable checks for CI: does the answer contain the reference (or given
keywords), equal it, match a pattern or a number, how well does it match the reference
token by token (SQuAD-style F1, ROUGE-L), and did retrieval bring back the reference
contexts or the expected source documents (hit rate, MRR, recall@k). Every one is also
available by name in a data file's ``evaluators`` list (:data:`BY_NAME`). Token metrics
tokenise any script (``text.tokens``: Chinese and Japanese character by character).

This module imports llama-index; the package loads it lazily
(``pytest_rageval.TokenF1Evaluator`` and friends).
"""

from __future__ import annotations

from llama_index.core.evaluation import BaseEvaluator, SemanticSimilarityEvaluator

from pytest_rageval.evaluators.answers import (
    ContainsEvaluator,
    ContextRecallEvaluator,
    ExactMatchEvaluator,
    NumericEvaluator,
    RegexEvaluator,
    RougeLEvaluator,
    TokenF1Evaluator,
    answer_tokens,
    numbers,
    rouge_l,
    token_f1,
)
from pytest_rageval.evaluators.retrieval import HitRateEvaluator, MRREvaluator, RecallAtKEvaluator

__all__ = [
    "BY_NAME",
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
    "answer_tokens",
    "numbers",
    "rouge_l",
    "token_f1",
]

BY_NAME: dict[str, type[BaseEvaluator]] = {
    "contains": ContainsEvaluator,
    "token_f1": TokenF1Evaluator,
    "context_recall": ContextRecallEvaluator,
    "exact_match": ExactMatchEvaluator,
    "regex": RegexEvaluator,
    "rouge_l": RougeLEvaluator,
    "numeric": NumericEvaluator,
    "hit_rate": HitRateEvaluator,
    "mrr": MRREvaluator,
    "recall_at_k": RecallAtKEvaluator,
    # llama-index's own, on the rag_embed_model fixture's embedding model
    "semantic_similarity": SemanticSimilarityEvaluator,
}
"""The evaluators a data file's ``evaluators`` list can name without any code. One whose
constructor takes ``embed_model`` is given the ``rag_embed_model`` fixture's model."""

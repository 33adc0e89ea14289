"""What every offline evaluator shares: no prompts, no LLM, one way to build a result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.evaluation import BaseEvaluator, EvaluationResult
from llama_index.core.prompts.mixin import PromptDictType


class _OfflineEvaluator(BaseEvaluator):
    """No prompts to customise: these evaluators never call an LLM."""

    rageval_cache = False
    """Not worth the verdict cache: judging locally costs less than looking it up."""

    rageval_local = True
    """Judged on the spot, with no slot of the runner's throttle: the slots, pacing,
    time-out and retries are for waiting on an LLM, and these never wait."""

    requires_reference = False
    requires_reference_contexts = False

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        del prompts

    @staticmethod
    def _result(
        query: str | None,
        response: str | None,
        contexts: Sequence[str] | None,
        passing: bool | None,
        score: float | None,
        feedback: str,
    ) -> EvaluationResult:
        """A verdict; ``passing`` None makes it invalid, ``feedback`` then the reason."""
        if passing is None:
            return EvaluationResult(
                query=query,
                response=response,
                contexts=contexts,
                invalid_result=True,
                invalid_reason=feedback,
            )
        return EvaluationResult(
            query=query,
            response=response,
            contexts=contexts,
            passing=passing,
            score=score,
            feedback=feedback,
        )

    @staticmethod
    def _need(value: Any, what: str) -> Any:
        if value is None:
            raise ValueError(f"{what} must be provided")
        return value


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

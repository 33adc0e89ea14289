"""Deterministic stand-ins for an LLM judge and a RAG app, whose verdicts the tests choose.

Never llama-index's mock LLM: it echoes the prompt, the judge prompts contain "YES", and
every faithfulness/relevancy check would pass. Here the answer depends on words the
test puts in the question:

- ``WRONG``: every judge says NO (and correctness scores 1.0);
- ``UNSUPPORTED``: only the faithfulness judge says NO;
- ``OFFTOPIC``: only the relevancy judge says NO;
- ``GARBLED``: the correctness judge answers without a score (an invalid judgement);
- ``BOOM`` in a query: the app raises; ``SLOW``: the app takes a second.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from llama_index.core.base.response.schema import Response
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic import PrivateAttr

FAITHFULNESS_MARK = "supported by the context"
RELEVANCY_MARK = "Query and Response"
CORRECTNESS_MARK = "expert evaluation system"


def judge_answer(prompt: str) -> str:
    """What the scripted judge answers to a prompt."""
    if CORRECTNESS_MARK in prompt:
        if "GARBLED" in prompt:
            return "excellent answer\nno number here"
        return "1.0\nThe answer is wrong." if "WRONG" in prompt else "5.0\nMatches the reference."
    if "WRONG" in prompt:
        return "NO"
    if "UNSUPPORTED" in prompt and FAITHFULNESS_MARK in prompt:
        return "NO"
    if "OFFTOPIC" in prompt and RELEVANCY_MARK in prompt:
        return "NO"
    return "YES"


class ScriptedLLM(CustomLLM):
    """A judge whose answers follow :func:`judge_answer`; records prompts and concurrency."""

    delay: float = 0.0
    context_window: int = 3900
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _in_flight: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, model_name="scripted-judge")

    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    @property
    def peak(self) -> int:
        return self._peak

    def _answer(self, prompt: str) -> CompletionResponse:
        with self._lock:
            self._prompts.append(prompt)
        return CompletionResponse(text=judge_answer(prompt))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if self.delay:
            time.sleep(self.delay)
        return self._answer(prompt)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(prompt)
        finally:
            self._in_flight -= 1

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


class ScriptedApp:
    """An async RAG app: answers ``Answer: <query>`` with one context ``Context: <query>``.

    Records when each query started and ended, and how many ran at once.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.finished: list[float] = []

    async def aquery(self, query: str) -> Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if "BOOM" in query:
                raise RuntimeError(f"the app broke on {query!r}")
            await asyncio.sleep(1.0 if "SLOW" in query else self.delay)
            node = TextNode(text=f"Context: {query}")
            return Response(f"Answer: {query}", source_nodes=[NodeWithScore(node=node)])
        finally:
            self.in_flight -= 1
            self.finished.append(time.monotonic())

"""Deterministic stand-ins for an LLM judge and a RAG app, whose verdicts the tests choose.

Never llama-index's mock LLM: it echoes the prompt, the judge prompts contain "YES", and
every faithfulness/relevancy check would pass. Here the answer depends on words the
test puts in the question:

- ``WRONG``: every judge says NO (and correctness scores 1.0);
- ``UNSUPPORTED``: only the faithfulness judge says NO;
- ``OFFTOPIC``: only the relevancy judge says NO;
- ``GARBLED``: the correctness judge answers without a score (an invalid judgement);
- ``EYES``: the faithfulness and relevancy judges answer "Garbage: eyes closed, cannot
  judge" (contains "yes", which llama-index would read as a pass);
- ``SCOREONLY`` / ``INFINITE`` / ``NOTANUMBER`` / ``SEVEN``: the correctness judge answers
  ``4`` alone, ``inf``, ``nan`` or ``7`` (out of its 1-5 range);
- ``ESCAPE``: the faithfulness judge says NO with a terminal escape sequence in it;
- ``FLAKY``: judges answer "maybe" the first time they see a prompt, YES after that;
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


def judge_answer(prompt: str, seen: int = 0) -> str:
    """What the scripted judge answers to a prompt it has answered ``seen`` times before."""
    if "FLAKY" in prompt and seen == 0:
        return "maybe"
    if CORRECTNESS_MARK in prompt:
        for word, answer in (
            ("GARBLED", "excellent answer\nno number here"),
            ("SCOREONLY", "4"),
            ("INFINITE", "inf\nBeyond any scale."),
            ("NOTANUMBER", "nan\nCannot say."),
            ("SEVEN", "7\nBetter than perfect."),
            ("WRONG", "1.0\nThe answer is wrong."),
        ):
            if word in prompt:
                return answer
        return "5.0\nMatches the reference."
    if "EYES" in prompt:
        return "Garbage: eyes closed, cannot judge"
    if "ESCAPE" in prompt and FAITHFULNESS_MARK in prompt:
        return "NO \x1b[31mred alert\x1b[0m"
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
    _seen: dict[str, int] = PrivateAttr(default_factory=dict)
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
            seen = self._seen.get(prompt, 0)
            self._seen[prompt] = seen + 1
        return CompletionResponse(text=judge_answer(prompt, seen))

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

"""The lean request path (pytest_rageval.lean) sends what llama-index's apredict sends.

Each judgement runs twice against the loopback server, on the lean path and with it
switched off (llama-index's apredict -> achat chain), with fresh but identical LLMs: the
server records both request bodies byte for byte. A spy on ``LLM.apredict`` shows which
path ran, so a test cannot pass by both sides taking the old one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedApp
from llama_index.core.evaluation import (
    CorrectnessEvaluator,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)
from llama_index.core.llms.llm import LLM
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai_like import OpenAILike
from openai_server import FakeOpenAI, Fault

from pytest_rageval import Runner, judges, lean, usage
from pytest_rageval.cache import VerdictCache

QUERY = "Where is the Eiffel Tower?"
RESPONSE = "The Eiffel Tower is in Paris."
CONTEXTS = ["The Eiffel Tower stands in Paris, France.", "Paris is the capital of France."]
REFERENCE = "In Paris."

CUSTOM = {
    "faithfulness": PromptTemplate(
        "Is this claim supported by the context? Answer YES or NO.\n"
        "Claim: {query_str}\nContext: {context_str}\nAnswer: "
    ),
    "relevancy": PromptTemplate(
        "Query and Response, judged against the context:\n{query_str}\n"
        "Context: {context_str}\nAnswer YES or NO: "
    ),
    "correctness": PromptTemplate(
        "You are an expert evaluation system. Score 1-5 on the first line.\n"
        "Question: {query}\nAnswer: {generated_answer}\nReference: {reference_answer}"
    ),
}
CLASSES = {
    "faithfulness": FaithfulnessEvaluator,
    "relevancy": RelevancyEvaluator,
    "correctness": CorrectnessEvaluator,
}


def default_judge(url: str) -> tuple[Any, Any]:
    return judges.default_judge(judges.JudgeSpec("openai", "gpt-4o-mini"), 30)


def openai_with_system_prompt(url: str) -> tuple[Any, Any]:
    llm = OpenAI(
        model="gpt-4o-mini",
        max_retries=0,
        max_tokens=64,
        system_prompt="You are a strict judge. Answer in English.",
        additional_kwargs={"seed": 7, "top_p": 0.5},
    )
    return llm, None


def openai_like(url: str) -> tuple[Any, Any]:
    llm = OpenAILike(
        model="qwen2.5:7b",
        api_base=url,
        api_key="sk-local",
        is_chat_model=True,
        max_retries=0,
        temperature=0.2,
        max_tokens=32,
        system_prompt="Judge tersely.",
    )
    return llm, None


def redacted_openai_like(url: str) -> tuple[Any, Any]:
    return judges.default_judge(judges.JudgeSpec("openai-like", "qwen2.5:7b", url), 30)


JUDGES: dict[str, Callable[[str], tuple[Any, Any]]] = {
    "default judge": default_judge,
    "OpenAI with a system prompt": openai_with_system_prompt,
    "OpenAILike with a system prompt": openai_like,
    "default openai-like judge": redacted_openai_like,
}


@pytest.fixture
def apredicts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The class name of every LLM whose apredict ran (the old path)."""
    calls: list[str] = []
    original = LLM.apredict

    async def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(type(self).__name__)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(LLM, "apredict", spy)
    return calls


def judge_once(
    make_llm: Callable[[str], tuple[Any, Any]], url: str, metric: str, template: str, path: str
) -> tuple[Any, dict[str, Any]]:
    """One judgement on ``path`` ("lean" or "today"): its result and the tokens metered."""

    async def run() -> tuple[Any, dict[str, Any]]:
        llm, client = make_llm(url)
        kwargs: dict[str, Any] = {"llm": llm}
        if template == "custom":
            kwargs["eval_template"] = CUSTOM[metric]
        evaluator = CLASSES[metric](**kwargs)
        meter = usage.Meter()
        token = usage.metering(meter)
        try:
            result = await judges.prepare(
                evaluator, query=QUERY, response=RESPONSE, contexts=CONTEXTS, reference=REFERENCE
            )()
        finally:
            usage.reset(token)
            await (client.aclose() if client is not None else llm._get_aclient().close())
        return result, meter.to_json()

    lean.ENABLED = path == "lean"
    try:
        return asyncio.run(run())
    finally:
        lean.ENABLED = True


@pytest.mark.parametrize("template", ["default", "custom"])
@pytest.mark.parametrize("metric", ["faithfulness", "relevancy", "correctness"])
@pytest.mark.parametrize("judge", list(JUDGES))
def test_the_lean_path_sends_the_same_body_and_reads_the_same_verdict(
    openai_server: FakeOpenAI, apredicts: list[str], judge: str, metric: str, template: str
) -> None:
    state = openai_server
    theirs, their_tokens = judge_once(JUDGES[judge], state.url, metric, template, "today")
    assert len(apredicts) == 1  # llama-index's own chain
    ours, our_tokens = judge_once(JUDGES[judge], state.url, metric, template, "lean")
    assert len(apredicts) == 1  # the lean path did not go through apredict
    assert state.chat_requests == 2
    assert state.bodies[1] == state.bodies[0]
    assert (ours.passing, ours.score, ours.feedback, ours.invalid_result) == (
        theirs.passing,
        theirs.score,
        theirs.feedback,
        theirs.invalid_result,
    )
    assert ours.passing is True  # the scripted judge's YES / 5.0 read as a pass
    # the tokens the server reported for the two requests, metered alike on both paths
    assert our_tokens == their_tokens
    assert our_tokens["calls"] == 1
    assert 2 * our_tokens["prompt_tokens"] == state.usage["judge"]["prompt_tokens"]
    assert 2 * our_tokens["completion_tokens"] == state.usage["judge"]["completion_tokens"]


def test_the_body_carries_every_field_llama_index_sends(
    openai_server: FakeOpenAI, apredicts: list[str]
) -> None:
    state = openai_server
    judge_once(openai_with_system_prompt, state.url, "faithfulness", "default", "lean")
    assert apredicts == []
    body = json.loads(state.bodies[0])
    assert {key: body[key] for key in body if key != "messages"} == {
        "model": "gpt-4o-mini",
        "stream": False,
        "temperature": 0.1,
        "max_tokens": 64,
        "seed": 7,
        "top_p": 0.5,
    }
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == "You are a strict judge. Answer in English."


class OwnAchat(OpenAI):
    """A judge that changes what it sends: its own achat adds a line to every message."""

    async def achat(self, messages: Any, **kwargs: Any) -> Any:
        from llama_index.core.llms import ChatMessage

        changed = [ChatMessage(role=m.role, content=f"{m.content}\nOWN ACHAT") for m in messages]
        return await super().achat(changed, **kwargs)


def test_an_llm_that_overrides_achat_keeps_its_override(
    openai_server: FakeOpenAI, apredicts: list[str]
) -> None:
    state = openai_server

    def make(url: str) -> tuple[Any, Any]:
        return OwnAchat(model="gpt-4o-mini", max_retries=0), None

    result, _ = judge_once(make, state.url, "relevancy", "default", "lean")
    assert apredicts == ["OwnAchat"]
    assert state.prompts[0].endswith("\nOWN ACHAT")
    assert result.passing is True


def test_a_user_listening_to_llama_index_instrumentation_still_hears_the_judge(
    openai_server: FakeOpenAI, apredicts: list[str]
) -> None:
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    heard: list[str] = []

    class Tracing(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            heard.append(type(event).__name__)

    root = get_dispatcher()
    handler = Tracing()
    root.add_event_handler(handler)
    try:
        judge_once(default_judge, openai_server.url, "faithfulness", "default", "lean")
    finally:
        root.event_handlers.remove(handler)
    assert apredicts == ["RedactedOpenAI"]
    assert "LLMChatEndEvent" in heard


def run_one(path: str, url: str, runner_kwargs: dict[str, Any]) -> tuple[Any, list[Any]]:
    """One question through the Runner with the default judge's faithfulness on ``path``."""
    lean.ENABLED = path == "lean"
    llm, client = default_judge(url)
    runner = Runner(1, **runner_kwargs)
    try:
        results = runner.evaluate(
            ScriptedApp(), [QUERY], {"faithfulness": FaithfulnessEvaluator(llm=llm)}
        )
        runner.submit(client.aclose()).result(timeout=10)
    finally:
        runner.close()
        lean.ENABLED = True
    return results[0], results[0].evaluations.get("faithfulness")


FAULTS = {
    "429 with Retry-After then an answer": ([Fault(status=429, retry_after="1")], {}),
    "5xx every time": (Fault(status=503), {}),
    "time-out every time": (Fault(delay=1.5), {"timeout": 0.5}),
    "unreadable body every time": (Fault(malformed=True), {}),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_errors_on_the_lean_path_are_classified_as_on_llama_index_s(
    openai_server: FakeOpenAI, apredicts: list[str], fault: str
) -> None:
    state = openai_server
    injected, extra = FAULTS[fault]
    runner_kwargs = {"retries": 1, "backoff": 0.05, "seed": 3, **extra}
    seen: dict[str, tuple[Any, ...]] = {}
    for path in ("today", "lean"):
        before = len(state.arrived)
        if isinstance(injected, list):
            state.fail_next = list(injected)
        else:
            state.fail_always = injected
        result, evaluation = run_one(path, state.url, runner_kwargs)
        state.fail_always = None
        arrived = state.arrived[before:]
        gap = arrived[1] - arrived[0] if len(arrived) == 2 else None
        verdict = None if evaluation is None else evaluation.passing
        seen[path] = (result.errors, verdict, len(arrived), gap)
    assert apredicts == ["RedactedOpenAI"] * len(apredicts) and 1 <= len(apredicts) <= 2
    today, ours = seen["today"], seen["lean"]
    assert ours[:3] == today[:3]
    assert ours[2] == 2  # one retry layer: the first attempt and the runner's one retry
    if fault.startswith("429"):
        assert ours[1] is True and ours[0] == {}
        assert ours[3] is not None and ours[3] >= 1.0  # Retry-After: 1 honoured
    else:
        assert ours[1] is None and list(ours[0]) == ["faithfulness"]
        expected = {
            "5xx every time": "server error from {url} (503) after 2 attempts",
            "time-out every time": "no answer within 0.5 s (2 attempts)",
            "unreadable body every time": (
                "unreadable answer (malformed body) from the server after 2 attempts"
            ),
        }[fault]
        assert ours[0]["faithfulness"] == expected.format(url=state.url)


def test_verdicts_cached_on_the_old_path_are_hits_on_the_lean_path(
    openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    state = openai_server
    first = VerdictCache(tmp_path)
    _, evaluation = run_one("today", state.url, {"cache": first})
    first.close()
    assert state.chat_requests == 1  # the judgement (the scripted app asks no LLM)
    again = VerdictCache(tmp_path)
    cached_result, cached = run_one("lean", state.url, {"cache": again})
    again.close()
    assert state.chat_requests == 1 and not cached_result.errors
    assert dict(again.hits) == {"faithfulness": 1} and not again.misses
    assert (cached.passing, cached.feedback) == (evaluation.passing, evaluation.feedback)

"""The toy judge (``rageval judge-server``): llama-index's own evaluators, through the
real OpenAI client over loopback HTTP, pass a good answer and fail an unrelated one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_rageval import toyjudge

CONTEXT = "Purchases can be returned within 30 days of delivery for a full refund."
QUERY = "How long do I have to return a purchase?"
REFERENCE = "Purchases can be returned within 30 days."
GOOD = "You can return purchases within 30 days of delivery."
PARTIAL = "Within 30 days."
UNRELATED = "Our office dog is called Biscuit and likes long walks."


@pytest.fixture
def toy_url() -> Iterator[str]:
    with toyjudge.running() as url:
        yield url


async def _judge(url: str, evaluate: Callable[[Any], Awaitable[Any]]) -> Any:
    """``evaluate(llm)`` with llama-index's OpenAI LLM on ``url``, on one HTTP client that
    is closed on the loop it ran on."""
    import httpx
    from llama_index.llms.openai import OpenAI

    async with httpx.AsyncClient() as http:
        llm = OpenAI(
            model="gpt-4o-mini",
            api_base=url,
            api_key="sk-toy-not-a-key",
            max_retries=0,
            async_http_client=http,
        )
        return await evaluate(llm)


def test_llama_index_evaluators_pass_a_good_answer_and_fail_an_unrelated_one(
    toy_url: str,
) -> None:
    from llama_index.core.evaluation import (
        CorrectnessEvaluator,
        FaithfulnessEvaluator,
        RelevancyEvaluator,
    )

    async def evaluate(llm: Any) -> dict[str, tuple[Any, ...]]:
        verdicts = {}
        for name, answer in (
            ("good", GOOD),
            ("partial", PARTIAL),
            ("unrelated", UNRELATED),
            ("exact", REFERENCE),
        ):
            faithful = await FaithfulnessEvaluator(llm=llm).aevaluate(
                response=answer, contexts=[CONTEXT]
            )
            relevant = await RelevancyEvaluator(llm=llm).aevaluate(
                query=QUERY, response=answer, contexts=[CONTEXT]
            )
            correct = await CorrectnessEvaluator(llm=llm).aevaluate(
                query=QUERY, response=answer, reference=REFERENCE
            )
            verdicts[name] = (
                faithful.passing,
                faithful.feedback,
                relevant.passing,
                correct.score,
                correct.passing,
            )
        return verdicts

    # hand-counted, words cut to six letters: REFERENCE's content words are purcha(ses),
    # return(ed), within, 30, days; GOOD holds all five: 1 + 4 * 5/5 = 5.0; UNRELATED
    # holds none: 1.0. PARTIAL holds within, 30, days: 1 + 4 * 3/5 = 3.4, under 4.0
    assert asyncio.run(_judge(toy_url, evaluate)) == {
        "good": (True, "YES", True, 5.0, True),
        "partial": (True, "YES", True, 3.4, False),
        "unrelated": (False, "NO", False, 1.0, False),
        "exact": (True, "YES", True, 5.0, True),
    }


def test_a_prompt_it_does_not_know_is_an_invalid_judgement(toy_url: str) -> None:
    from llama_index.core.evaluation import GuidelineEvaluator

    async def evaluate(llm: Any) -> Any:
        return await GuidelineEvaluator(llm=llm, guidelines="Be polite.").aevaluate(
            query=QUERY, response=GOOD
        )

    with pytest.raises(ValueError):  # llama-index cannot parse "toy judge: prompt not recognised"
        asyncio.run(_judge(toy_url, evaluate))


APP = f"""
import pytest

CONTEXT = {CONTEXT!r}
GOOD = {GOOD!r}
UNRELATED = {UNRELATED!r}


@pytest.fixture(scope="session")
def rag_query_engine():
    return lambda query: (GOOD, [CONTEXT])


@pytest.fixture(scope="session")
def worse_engine():
    return lambda query: (UNRELATED, [CONTEXT])
"""


def test_a_worse_app_fails_the_gate_with_the_toy_judge(
    pytester: pytest.Pytester, toy_url: str
) -> None:
    pytester.makeconftest(APP)
    question = f"questions: [{{id: refunds, query: {QUERY!r}, reference: {REFERENCE!r}}}]\n"
    pytester.makefile(".yaml", rag_good="thresholds: {correctness: 0}\n" + question)
    pytester.makefile(".yaml", rag_worse="query_engine: worse_engine\n" + question)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--rag-cache=off", f"--rag-judge=openai-like:toy@{toy_url}"
    )
    result.assert_outcomes(passed=1, failed=1)
    # the failure's own section: the short summary is cut to the terminal's width
    result.stdout.fnmatch_lines(
        ["rag_worse.yaml F*", "rag question failed faithfulness, relevancy, correctness"]
    )


def test_rageval_judge_server_serves_until_ctrl_c(tmp_path: Path) -> None:
    with subprocess.Popen(
        [str(Path(sys.executable).parent / "rageval"), "judge-server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        # Ctrl-C as a terminal sends it: a background job of a non-interactive shell (a
        # CI script's `cmd &`) starts with SIGINT ignored, and its children keep that
        preexec_fn=_sigint_default,
    ) as server:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("TOY judge (word overlap, not a real judge) on http://127.0.0.1:")
        url = first.split(" on ", 1)[1].strip()
        prompt = f"Please tell if a given piece of information is supported by the context.\nInformation: {GOOD}\nContext: {CONTEXT}\nAnswer: "
        request = urllib.request.Request(
            f"{url}/chat/completions",
            data=json.dumps(
                {"model": "toy", "messages": [{"role": "user", "content": prompt}]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.load(answer)
        assert body["choices"][0]["message"]["content"] == "YES"
        server.send_signal(signal.SIGINT)
        try:
            assert server.wait(timeout=10) == 0
        finally:
            server.kill()  # never left behind to hang the suite


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)

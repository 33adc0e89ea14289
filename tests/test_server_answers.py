"""Odd answers from an OpenAI-compatible server, through the default judge (the real OpenAI
client) over HTTP: a 200 whose body is an error, a body that is not UTF-8, a Retry-After
already past, negative or unreadable."""

from __future__ import annotations

import itertools
import random

# kept loaded across in-process pytester runs (they restore sys.modules afterwards)
import llama_index.llms.openai  # noqa: F401
import pytest
from fakes import ScriptedApp
from llama_index.core.evaluation import FaithfulnessEvaluator
from openai_server import FakeOpenAI, Fault

from pytest_rageval import Runner
from pytest_rageval.judges import JudgeSpec, default_judge

FAST = ["-p", "no:cacheprovider", "--rag-max-backoff=0.01", "--rag-cache=off"]


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            {"message": "upstream overloaded", "code": 503},
            "server error from {url} (503) after 2 attempts; the server said: upstream overloaded",
        ),
        (
            {"message": "the model crashed", "type": "server_error"},
            "server error from {url} (500) after 2 attempts; the server said: the model crashed",
        ),
        (
            {"message": "slow down", "type": "rate_limit_exceeded", "code": "429"},
            "rate limited by {url} (429) after 2 attempts; the server said: slow down",
        ),
    ],
)
def test_an_error_in_a_200_is_retried_when_it_says_it_is_transient(
    judged: pytest.Pytester, openai_server: FakeOpenAI, error: dict[str, object], line: str
) -> None:
    state = openai_server
    state.fail_always = Fault(body={"error": error})
    result = judged.runpytest(*FAST, "--rag-retries=1")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 2
    result.stdout.fnmatch_lines(
        [f"rag question errored: evaluator 'faithfulness': {line.format(url=state.url)}"]
    )


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            {"message": "The model `gpt-9` does not exist", "code": "model_not_found"},
            "The model `gpt-9` does not exist",
        ),
        ({"message": "Invalid API key", "code": 401}, "Invalid API key"),
        ("no route for this model", "no route for this model"),
    ],
)
def test_an_error_in_a_200_that_is_not_transient_fails_at_once_with_its_message(
    judged: pytest.Pytester, openai_server: FakeOpenAI, error: object, said: str
) -> None:
    state = openai_server
    state.fail_always = Fault(body={"error": error})
    result = judged.runpytest(*FAST, "--rag-retries=3")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 1
    result.stdout.fnmatch_lines(
        [
            # at the traceback's end (after "E   " when pytest shows the app's frames)
            "*rag question errored: evaluator 'faithfulness' raised AnsweredWithError: HTTP 200 "
            f"with an error in its body: {said}"
        ]
    )


def test_a_body_that_is_not_utf8_is_retried_then_reported(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    garbled = Fault(body=b'{"id": "chatcmpl-\xff\xfe", "object": "chat.completion"}')
    state.fail_always = garbled
    result = judged.runpytest(*FAST, "--rag-retries=1")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 2
    result.stdout.fnmatch_lines(
        [
            "rag question errored: evaluator 'faithfulness': unreadable answer (malformed body) "
            "from the server after 2 attempts"
        ]
    )


@pytest.mark.parametrize("value", ["Wed, 21 Oct 2015 07:28:00 GMT", "-5", "in a minute"])
def test_a_retry_after_past_negative_or_unreadable_falls_back_to_the_backoff(
    openai_server: FakeOpenAI, value: str
) -> None:
    state = openai_server
    state.fail_next = [Fault(status=429, retry_after=value)] * 3
    llm, client = default_judge(JudgeSpec("openai", "gpt-4o-mini"), 30)
    runner = Runner(1, retries=3, backoff=0.2, max_backoff=5, seed=6)
    try:
        results = runner.evaluate(
            ScriptedApp(), ["Where is Paris?"], {"faithfulness": FaithfulnessEvaluator(llm=llm)}
        )
        runner.submit(client.aclose()).result(timeout=10)
    finally:
        runner.close()
    assert results[0].error is None and state.statuses == [429, 429, 429, 200]
    # full jitter with the runner's seed: uniform in [0, 0.2 * 2**k] before attempt k + 2
    rng = random.Random(6)
    expected = [rng.uniform(0, 0.2 * 2**k) for k in range(3)]
    assert [round(w, 3) for w in expected] == [0.159, 0.329, 0.388]
    gaps = [b - a for a, b in itertools.pairwise(state.arrived)]
    for gap, wait in zip(gaps, expected, strict=True):
        assert wait <= gap < wait + 0.5  # (a loaded machine answers late)

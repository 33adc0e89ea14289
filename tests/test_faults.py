"""Faults on the wire: the default judge (llama-index's real OpenAI client) against the
loopback server with injected faults. For each: the run ends in bounded time, every
question has a result or a clear error, and the number of requests is what the retry
policy says."""

from __future__ import annotations

import socket
from collections.abc import Callable

# kept loaded across in-process pytester runs (they restore sys.modules afterwards)
import llama_index.llms.openai  # noqa: F401
import pytest
from openai_server import Budget, FakeOpenAI, Fault
from qfiles import session_fixtures, write_set

# every run judges afresh: these tests count the requests that faults cost
FAST = ["-p", "no:cacheprovider", "--rag-max-backoff=0.01", "--rag-cache=off"]


def questions(project: pytest.Pytester, n: int) -> None:
    write_set(project, n)


def test_server_errors_are_retried_then_reported_in_words(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    url = state.url
    state.fail_always = Fault(status=500)
    result = judged.runpytest(*FAST, "--rag-retries=2")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 3
    result.stdout.fnmatch_lines(
        [
            f"rag question errored: evaluator 'faithfulness': server error from {url} (500) "
            "after 3 attempts",
            "errors by cause:",
            f"  1 x evaluator 'faithfulness': server error from {url} (500)",
        ]
    )


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (404, "NotFoundError"),
        (422, "UnprocessableEntityError"),
    ],
)
def test_client_errors_are_not_retried(
    judged: pytest.Pytester, openai_server: FakeOpenAI, status: int, name: str
) -> None:
    state = openai_server
    state.fail_always = Fault(status=status)
    result = judged.runpytest(*FAST, "--rag-retries=3")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 1
    result.stdout.fnmatch_lines(
        [f"*rag question errored: evaluator 'faithfulness' raised {name}: *{status}*"]
    )


def test_retry_after_is_honoured(judged: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    state = openai_server
    state.fail_next = [Fault(status=429, retry_after="1")]
    judged.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert state.chat_requests == 2
    assert state.arrived[1] - state.arrived[0] >= 1.0  # not the jittered 10 ms


def test_retry_after_ms_wins_over_retry_after(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    state.fail_next = [Fault(status=429, retry_after="30", retry_after_ms="300")]
    judged.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    gap = state.arrived[1] - state.arrived[0]
    assert 0.3 <= gap < 30


def test_a_server_asking_for_longer_than_max_backoff_is_not_retried(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    url = state.url
    state.fail_always = Fault(status=429, retry_after="120")
    result = judged.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 1
    result.stdout.fnmatch_lines(
        [
            f"*: rate limited by {url} (429) after 1 attempt; the server asked to wait 120 s, "
            "more than --rag-max-backoff 60 s"
        ]
    )


def test_rate_limited_forever_gives_up_after_the_retries(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    url = state.url
    state.fail_always = Fault(status=429, retry_after_ms="50")
    result = judged.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 4  # one attempt and --rag-retries=3
    result.stdout.fnmatch_lines([f"*: rate limited by {url} (429) after 4 attempts"])


def test_answers_slower_than_the_timeout(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    state.fail_always = Fault(delay=3.0)
    # (the first call also builds the openai client: ~0.4 s of CPU before its request leaves)
    result = judged.runpytest(*FAST, "--rag-timeout=1", "--rag-retries=1")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 2
    result.stdout.fnmatch_lines(["*: no answer*within 1 s (2 attempts)"])


def test_a_dropped_connection_is_retried(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    url = state.url
    state.fail_next = [Fault(drop=True)]
    judged.runpytest(*FAST).assert_outcomes(passed=1)
    assert state.chat_requests == 2
    state.fail_always = Fault(drop=True)
    result = judged.runpytest(*FAST, "--rag-retries=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*: connection to {url} dropped without an answer (2 attempts)"])


def test_a_malformed_body_is_retried_then_reported(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    state.fail_always = Fault(malformed=True)
    result = judged.runpytest(*FAST, "--rag-retries=1")
    result.assert_outcomes(failed=1)
    assert state.chat_requests == 2
    result.stdout.fnmatch_lines(
        ["*: unreadable answer (malformed body) from the server after 2 attempts"]
    )


def test_a_server_that_is_not_there(
    judged: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{port}/v1")
    result = judged.runpytest(*FAST, "--rag-retries=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*: cannot connect to http://127.0.0.1:{port}/v1 (2 attempts)"])


def test_errors_are_grouped_by_cause(judged: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    state = openai_server
    url = state.url
    questions(judged, 3)
    state.fail_always = Fault(status=503)
    result = judged.runpytest(*FAST, "--rag-retries=0")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        ["errors by cause:", f"  3 x evaluator 'faithfulness': server error from {url} (503)"]
    )


def test_in_flight_requests_stay_within_the_workers(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    state = openai_server
    questions(judged, 24)
    state.delay = 0.05
    judged.runpytest(*FAST, "--rag-workers=4").assert_outcomes(passed=24)
    assert 2 <= state.peak_in_flight <= 4


def test_a_rate_limit_is_used_fully_and_loses_nothing(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    """R requests per window, 429 with Retry-After beyond: several windows long, every
    question is judged and at least 90% of the allowed rate is used."""
    state = openai_server
    limit, window, n = 20, 1.0, 100
    questions(judged, n)
    state.budget = Budget(limit=limit, window=window)
    result = judged.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=n)
    assert state.budget.start is not None
    windows = int((max(state.answered) - state.budget.start) / window) + 1
    assert n / (limit * windows) >= 0.9, (windows, state.statuses.count(429))


def test_the_app_is_called_once_unless_asked(
    project: pytest.Pytester,
    scripted_judge: Callable[[str], pytest.Pytester],
) -> None:
    scripted_judge(
        """
        CALLS = []

        @pytest.fixture(scope="session")
        def rag_query_engine():
            def app(query):
                CALLS.append(query)
                raise ConnectionResetError("the app's own LLM went away")
            return app

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"app calls: {len(CALLS)}")
        """
    )
    project.makefile(".yaml", rag_set='questions: [{id: q, query: "Q?"}]')
    result = project.runpytest(*FAST)
    result.stdout.fnmatch_lines(["app calls: 1"])
    result = project.runpytest(*FAST, "--rag-query-retries=2")
    result.stdout.fnmatch_lines(["app calls: 3"])


def test_a_judge_that_retries_on_its_own_is_warned_about_once(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    judged.makeconftest(
        session_fixtures(
            """
            from fakes import ScriptedApp
            from llama_index.llms.openai import OpenAI
            """,
            rag_query_engine="ScriptedApp()",
            rag_judge_llm='OpenAI(model="gpt-4o-mini", max_retries=2)',
        )
    )
    questions(judged, 3)
    result = judged.runpytest(*FAST)
    result.assert_outcomes(passed=3)
    warning = (
        "warning: the judge LLM of evaluator 'faithfulness' (OpenAI) retries on its own "
        "(max_retries=2), so each of the runner's attempts may be 3 requests; build it with "
        "max_retries=0 and let --rag-retries decide"
    )
    result.stdout.fnmatch_lines([warning])
    assert result.stdout.str().count("retries on its own") == 1


def test_rpm_spaces_the_judges_requests(judged: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    state = openai_server
    questions(judged, 6)
    judged.runpytest(*FAST, "--rag-rpm=600").assert_outcomes(passed=6)  # one per 0.1 s
    gaps = [b - a for a, b in zip(state.arrived, state.arrived[1:], strict=False)]
    # attempts start 0.1 s apart; the very first request also builds the client on its
    # way out, so it can reach the server a little later than its start. Arrivals jitter
    # on a busy machine (one gap measured 0.084 s with the suite beside other work), so
    # each gap is only checked to be paced at all (unpaced, they are ~0), and the sum
    assert len(gaps) == 5 and min(gaps[1:]) >= 0.05, gaps
    assert state.arrived[-1] - state.arrived[1] >= 0.3 - 0.03, gaps
    assert state.arrived[-1] - state.arrived[0] >= 0.4, gaps

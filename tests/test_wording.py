"""The sentences a user reads about rates and drops, without pytester: each one states
only what the numbers make true."""

from __future__ import annotations

from pytest_rageval.gate import MetricRate
from pytest_rageval.gate.sampled import Sampled
from pytest_rageval.wording import (
    describe_drop,
    describe_rate,
    format_fraction,
    judged_of,
    printable,
    sampled_line,
    shorten,
)


def test_fractions_and_shortened_text() -> None:
    assert format_fraction(None) == "n/a"
    assert format_fraction(0.755) == "0.76"
    assert shorten(None) == "(none)"
    assert shorten("  \n ") == "(empty)"
    assert shorten("a\tb\nc") == "a b c"
    assert shorten("word " * 100, 30) == "word word word word word [...]"
    assert printable("\x1b[31mred") == "\\x1b[31mred"
    assert printable(None) == "(none)"


def test_a_final_rate_against_its_threshold() -> None:
    assert (
        describe_rate("s.yaml", "m", MetricRate(n=4, passed=3, threshold=0.76))
        == "s.yaml: m pass rate 3/4 = 0.75 < threshold 0.76"
    )
    assert (
        describe_rate("s.yaml", "m", MetricRate(n=4, passed=3, threshold=0.75))
        == "s.yaml: m pass rate 3/4 = 0.75 >= threshold 0.75"
    )


def test_a_rate_with_questions_still_running_states_only_its_bound() -> None:
    crossed = MetricRate(n=10, passed=5, threshold=0.9, pending=3)
    assert describe_rate("s", "m", crossed) == (
        "s: m pass rate at most 8/10 = 0.80 < threshold 0.90 (decided with 3 of 10 "
        "questions still running)"
    )
    met = MetricRate(n=10, passed=9, threshold=0.8, pending=1)
    assert describe_rate("s", "m", met).startswith("s: m pass rate at least 9/10 = 0.90 >=")
    open_ = MetricRate(n=10, passed=5, threshold=0.8, pending=4)
    assert "between 5/10 = 0.50 and 9/10 = 0.90" in describe_rate("s", "m", open_)


def test_a_confidence_bound_names_its_interval() -> None:
    rate = MetricRate(n=10, passed=9, threshold=0.9, confidence=0.95)
    assert describe_rate("s", "m", rate) == (
        "s: m pass rate 9/10 = 0.90, lower bound of its 95% Wilson interval 0.60 < threshold 0.90"
    )


def test_a_drop_below_the_baseline() -> None:
    rate = MetricRate(n=10, passed=7, threshold=0.5, baseline=0.9, max_drop=0.05)
    assert describe_drop("s", "m", rate) == (
        "s: m pass rate 0.70 is 0.20 below the baseline's 0.90, more than max_drop 0.05"
    )


def test_a_sequential_rate_says_what_the_test_decided() -> None:
    sampled = Sampled(population=5000, rate="fail", bounds=(0.4, 0.85), read=212, size=5000)
    rate = MetricRate(n=230, passed=180, threshold=0.9, confidence=0.95, sampled=sampled)
    assert describe_rate("s", "m", rate) == (
        "s: m pass rate 180/230 judged = 0.78; the whole set's rate < threshold 0.90 at "
        "95% (sequential test, decided after 212 of 5,000 questions in random order)"
    )
    assert judged_of({"sampled": {"population": 5000}}) == " of 5,000"
    assert judged_of({}) == ""
    line = sampled_line(
        {
            "decision": "failed",
            "reason": "m < 0.90 at 95%",
            "decided_after": 212,
            "population": 5000,
            "visited": 230,
            "level": 0.95,
            "seed": 7,
        }
    )
    assert line == (
        "decided FAILED (m < 0.90 at 95%) after 212 of 5,000 questions in random order "
        "(230 asked; level 95%, seed 7)"
    )

"""The gate alone, without pytester: rates against thresholds, outcomes, row verdicts, the
run's rule. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm

from pytest_rageval.gate import (
    Gate,
    MetricRate,
    fell_more,
    outcome,
    row_verdicts,
    run_passed,
    unheld,
)
from pytest_rageval.verdicts import MetricResult

PASS = MetricResult(passing=True)
FAIL = MetricResult(passing=False)
INVALID = MetricResult(passing=False, invalid=True, reason="unreadable")
ERROR = MetricResult(passing=False, error="boom")


def record(outcome_: str, must_pass: bool = False, **metrics: bool) -> dict[str, object]:
    return {
        "outcome": outcome_,
        "must_pass": must_pass,
        "metrics": {name: {"passing": passing} for name, passing in metrics.items()},
    }


def test_a_threshold_is_met_exactly_at_its_rate_despite_float_error() -> None:
    # 7/10 = 0.7, and 0.7 * 10 = 7.000000000000001 in floats: still met
    rates = Gate({"m": 0.7}).rates([{"m": PASS}] * 7 + [{"m": FAIL}] * 3)
    assert (rates["m"].n, rates["m"].passed, rates["m"].failed) == (10, 7, 3)
    assert rates["m"].ok
    assert not Gate({"m": 0.71}).rates([{"m": PASS}] * 7 + [{"m": FAIL}] * 3)["m"].ok


def test_an_unnamed_metric_needs_every_question() -> None:
    rates = Gate({}).rates([{"m": PASS}, {"m": FAIL}])
    assert rates["m"].threshold == 1.0
    assert not rates["m"].ok


def test_confidence_gates_on_the_wilson_lower_bound() -> None:
    # 9/10 at 95%: Wilson lower bound, computed here from its formula with scipy's z
    z = norm.ppf(0.975)
    p, n = 0.9, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lower = centre - half  # 0.5958...
    questions = [{"m": PASS}] * 9 + [{"m": FAIL}]
    assert Gate({"m": round(lower, 6) - 1e-6}, confidence=0.95).rates(questions)["m"].ok
    assert not Gate({"m": round(lower, 6) + 1e-6}, confidence=0.95).rates(questions)["m"].ok
    assert Gate({"m": 0.9}).rates(questions)["m"].ok  # without confidence: the rate itself


def test_invalid_and_errors_count_as_not_passing_and_max_invalid_bounds_invalid() -> None:
    questions = [{"m": PASS}] * 8 + [{"m": INVALID}, {"m": ERROR}]
    rate = Gate({"m": 0.8}, max_invalid=0.05).rates(questions)["m"]
    assert (rate.passed, rate.invalid, rate.errors, rate.failed) == (8, 1, 1, 0)
    assert rate.ok and rate.invalid_exceeded  # 1 invalid of 10 > 0.05 * 10
    assert not Gate({"m": 0.8}, max_invalid=0.1).rates(questions)["m"].invalid_exceeded


def test_the_drop_gate_needs_a_baseline_and_max_drop() -> None:
    questions = [{"m": PASS}] * 7 + [{"m": FAIL}] * 3
    dropping = Gate({"m": 0.5}, max_drop=0.1, baselines={"m": 0.9}).rates(questions)["m"]
    assert dropping.floor == pytest.approx(0.8) and dropping.dropped  # 0.7 < 0.9 - 0.1
    assert not Gate({"m": 0.5}, max_drop=0.2, baselines={"m": 0.9}).rates(questions)["m"].dropped
    assert Gate({"m": 0.5}, max_drop=0.1).rates(questions)["m"].floor is None  # no baseline
    assert Gate({"m": 0.5}, baselines={"m": 0.9}).rates(questions)["m"].floor is None


def test_a_tally_decides_a_failed_question_as_soon_as_the_rate_is_certain() -> None:
    tally = Gate({"m": 0.5}).tally({"m": 4})
    tally.add({"m": FAIL})
    assert tally.decide({"m": FAIL}) is None  # 0..3 of 4 may still pass: undecided
    tally.add({"m": FAIL})
    tally.add({"m": FAIL})
    assert tally.decide({"m": FAIL}) == "failed"  # at most 1 of 4 < 0.5
    met = Gate({"m": 0.5}).tally({"m": 4})
    met.add({"m": PASS})
    met.add({"m": PASS})
    assert met.decide({"m": FAIL}) == "tolerated"  # at least 2 of 4 >= 0.5


@pytest.mark.parametrize(
    ("metrics", "error", "must_pass", "expected"),
    [
        ({"m": PASS}, None, False, "passed"),
        ({"m": FAIL}, "it raised", False, "error"),
        ({"m": FAIL}, None, True, "failed"),
        ({"m": FAIL}, None, False, "tolerated"),  # 3/4 >= 0.5
        ({"m": INVALID}, None, False, "failed"),  # 1 invalid of 4 > max_invalid 0
    ],
)
def test_outcome(
    metrics: dict[str, MetricResult], error: str | None, must_pass: bool, expected: str
) -> None:
    rates = {"m": MetricRate(n=4, passed=3, threshold=0.5, invalid=1, max_invalid=0.0)}
    assert outcome(metrics, error, must_pass, rates) == expected


def test_a_new_failure_fails_through_the_drop_gate_and_an_old_one_does_not() -> None:
    rates = {"m": MetricRate(n=10, passed=7, threshold=0.5, baseline=0.9, max_drop=0.1)}
    assert outcome({"m": FAIL}, None, False, rates, newly={"m"}) == "failed"
    assert outcome({"m": FAIL}, None, False, rates) == "tolerated"


def test_row_verdicts_in_order_of_precedence() -> None:
    rates = {
        "errors": MetricRate(n=4, passed=0, threshold=0.0, errors=1),
        "low": MetricRate(n=4, passed=1, threshold=0.5),
        "invalid": MetricRate(n=4, passed=3, threshold=0.5, invalid=1, max_invalid=0.0),
        "drop": MetricRate(n=4, passed=3, threshold=0.5, baseline=1.0, max_drop=0.1),
        "must": MetricRate(n=4, passed=3, threshold=0.5),
        "fine": MetricRate(n=4, passed=3, threshold=0.5),
    }
    questions = [record("failed", must_pass=True, must=False), record("passed", fine=True)]
    assert row_verdicts(rates, questions) == {
        "errors": "ERROR",
        "low": "FAILED",
        "invalid": "FAILED (invalid)",
        "drop": "FAILED (drop)",
        "must": "FAILED (must_pass)",
        "fine": "ok",
    }


def test_a_set_failed_by_no_question_is_unheld() -> None:
    rates = {
        "carried": MetricRate(n=2, passed=0, threshold=0.9),
        "bound": MetricRate(n=2, passed=2, threshold=0.9, confidence=0.95),
    }
    verdicts = {"carried": "FAILED", "bound": "FAILED"}
    questions = [record("failed", carried=False, bound=True)] * 2
    # 2/2 has a 95% Wilson lower bound of 0.34 < 0.9: failed, with no question failing it
    assert unheld(rates, verdicts, questions) == ["bound"]


def test_the_run_passes_only_with_every_row_ok_and_a_complete_run() -> None:
    assert run_passed(["ok", "ok"])
    assert not run_passed(["ok", "FAILED (drop)"])
    assert not run_passed([])  # nothing gated is not a pass
    assert not run_passed(["ok"], complete=False)


def test_a_fall_equal_to_max_drop_is_not_more() -> None:
    assert not fell_more(0.9 - 0.8, 0.1)  # 0.09999999999999998
    assert not fell_more(0.30000000000000004, 0.3)
    assert fell_more(0.1001, 0.1)


def test_a_gate_travels_as_json() -> None:
    gate = Gate({"m": 0.9}, max_invalid=0.1, max_drop=0.05, confidence=0.9, baselines={"m": 0.8})
    assert Gate.from_json(gate.to_json()) == gate
    assert Gate.from_json(Gate().to_json()) == Gate()

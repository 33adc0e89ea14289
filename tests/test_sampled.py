"""A sequential set's decision alone (gate/sampled.py), without pytester: the visiting
order, results read strictly in that order, what ends a set at once, the level shared
by its bounds, and the replay from records."""

from __future__ import annotations

import random

import pytest

from pytest_rageval import sequential
from pytest_rageval.gate import Gate
from pytest_rageval.gate.sampled import Sampling, replay
from pytest_rageval.sequential import SequentialTest
from pytest_rageval.verdicts import MetricResult

PASS = MetricResult(passing=True)
FAIL = MetricResult(passing=False)
INVALID = MetricResult(passing=False, invalid=True, reason="unreadable")


def population(n: int, rate: float, seed: int = 0) -> dict[str, MetricResult]:
    rng = random.Random(seed)
    return {f"q{i}": PASS if rng.random() < rate else FAIL for i in range(n)}


def sampling(results: dict[str, MetricResult], gate: Gate, name: str = "rag_set.yaml") -> Sampling:
    return Sampling(name, gate, {qid: ("m",) for qid in results})


def test_the_order_is_a_seeded_permutation_stable_per_set_name() -> None:
    results = population(50, 0.9)
    gate = Gate({"m": 0.8}, sample="sequential")
    first, again = sampling(results, gate), sampling(results, gate)
    assert first.order == again.order
    assert sorted(first.order) == sorted(results)
    assert first.seed == sequential.default_seed("rag_set.yaml")
    assert sampling(results, gate, "rag_other.yaml").order != first.order
    seeded = sampling(results, Gate({"m": 0.8}, sample="sequential", seed=7))
    assert seeded.seed == 7 and seeded.order == sequential.order(sorted(results), 7)


def test_results_are_read_in_the_visiting_order_whatever_order_they_arrive_in() -> None:
    results = population(400, 0.75, seed=3)
    gate = Gate({"m": 0.9}, sample="sequential")
    in_order = sampling(results, gate)
    for qid in in_order.order:
        if in_order.decision is not None:
            break
        in_order.add(qid, {"m": results[qid]}, None)
    # the same answers racing: each arrives up to 20 places late
    raced = sampling(results, gate)
    rng = random.Random(1)
    arrival = sorted(range(len(raced.order)), key=lambda i: i + rng.uniform(0, 20))
    for i in arrival:
        qid = raced.order[i]
        raced.add(qid, {"m": results[qid]}, None)
    assert in_order.decision == raced.decision == "failed"
    assert in_order.visited == raced.visited < 400


def test_the_decision_is_the_test_of_the_same_verdicts_at_the_full_level() -> None:
    results = population(300, 0.7, seed=5)
    rated = sampling(results, Gate({"m": 0.9}, sample="sequential"))
    test = SequentialTest(300, 0.9, 0.05)  # one bound: the whole 5%
    for qid in rated.order:
        rated.add(qid, {"m": results[qid]}, None)
        decided = test.update(1.0 if results[qid].passing else 0.0)
        assert rated.visited == test.visited
        if decided is not None:
            break
    assert rated.decision == "failed" and test.decision == "fail"
    assert rated.visited == test.visited


def test_bounds_share_the_level_bonferroni() -> None:
    # two metrics, each with max_invalid: four bounds at 5% / 4 each
    ids = [f"q{i}" for i in range(200)]
    gate = Gate({"a": 0.5, "b": 0.5}, max_invalid=0.2, sample="sequential")
    split = Sampling("s", gate, {qid: ("a", "b") for qid in ids})
    tests = [SequentialTest(200, tau, 0.05 / 4) for tau in (0.5, 0.8, 0.5, 0.8)]
    for qid in split.order:
        split.add(qid, {"a": PASS, "b": PASS}, None)
        for test in tests:
            if test.decision is None:
                test.update(1.0)
        if split.decision is not None:
            break
    assert split.decision == "passed"
    assert split.visited == max(test.visited for test in tests)
    alone = Sampling("s", Gate({"a": 0.5}, sample="sequential"), {qid: ("a",) for qid in ids})
    for qid in alone.order:
        alone.add(qid, {"a": PASS}, None)
        if alone.decision is not None:
            break
    assert alone.visited < split.visited  # the whole level decides sooner


def test_an_error_or_a_failed_must_pass_question_ends_the_set_at_once() -> None:
    ids = [f"q{i}" for i in range(100)]
    gate = Gate({"m": 0.5}, sample="sequential")
    errored = Sampling("s", gate, {qid: ("m",) for qid in ids})
    late = errored.order[50]
    errored.add(late, {"m": MetricResult(passing=False, error="boom")}, "boom")
    assert errored.decision == "error" and errored.visited == 0
    assert not errored.wanted(errored.order[0])
    must = Sampling("s", gate, {qid: ("m",) for qid in ids}, must_pass=["q7"])
    must.add("q7", {"m": FAIL}, None)
    assert must.decision == "failed" and "must_pass question 'q7' failed m" in str(must.reason)
    assert must.wanted("q7") and not must.wanted("q8")


def test_invalid_judgements_do_not_pass_and_max_invalid_is_a_bound() -> None:
    ids = [f"q{i}" for i in range(60)]
    every_invalid = Gate({"m": 0.0}, max_invalid=0.1, sample="sequential")
    invalid = Sampling("s", every_invalid, {qid: ("m",) for qid in ids})
    for qid in invalid.order:
        invalid.add(qid, {"m": INVALID}, None)
        if invalid.decision is not None:
            break
    assert invalid.decision == "failed"
    assert "invalid judgements > max_invalid 0.10" in str(invalid.reason)
    counted = Sampling("s", Gate({"m": 0.5}, sample="sequential"), {qid: ("m",) for qid in ids})
    for qid in counted.order:
        counted.add(qid, {"m": INVALID}, None)
        if counted.decision is not None:
            break
    assert counted.decision == "failed"  # an invalid verdict counts as not passing


@pytest.mark.parametrize("passing", [9, 10])
def test_reaching_the_end_decides_exactly(passing: int) -> None:
    # 10 questions, threshold 0.9: 9 pass meets it exactly, as a full run says
    verdicts = [PASS] * passing + [FAIL] * (10 - passing)
    ids = [f"q{i}" for i in range(10)]
    gate = Gate({"m": 0.9}, sample="sequential")
    exact = Sampling("s", gate, {qid: ("m",) for qid in ids})
    for qid, verdict in zip(exact.order, verdicts, strict=True):
        exact.add(qid, {"m": verdict}, None)
    assert exact.decision == "passed"
    short = Sampling("s", gate, {qid: ("m",) for qid in ids})
    for qid, verdict in zip(short.order, [FAIL, FAIL, *verdicts[2:]], strict=True):
        short.add(qid, {"m": verdict}, None)
    assert short.decision == "failed"


def test_the_replay_from_records_decides_as_the_run_did() -> None:
    results = population(500, 0.86, seed=11)
    gate = Gate({"m": 0.9}, sample="sequential")
    live = sampling(results, gate)
    records = []
    for qid in live.order:
        if not live.wanted(qid):
            records.append(
                {
                    "id": qid,
                    "must_pass": False,
                    "outcome": "skipped",
                    "metrics": {},
                    "applicable": ["m"],
                }
            )
            continue
        live.add(qid, {"m": results[qid]}, None)
        records.append(
            {
                "id": qid,
                "must_pass": False,
                "outcome": "passed",
                "metrics": {"m": results[qid].to_json()},
                "error": None,
            }
        )
    random.Random(2).shuffle(records)  # reports hold them in any order
    again = replay("rag_set.yaml", gate, records)
    assert again.to_json() == live.to_json()
    assert gate.sampled_rates(again)["m"] == gate.sampled_rates(live)["m"]

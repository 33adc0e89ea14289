"""A set's own bookkeeping, without pytester: what is still waiting for a result."""

from __future__ import annotations

import threading

from pytest_rageval.gate import Gate, Tally
from pytest_rageval.questions import Question
from pytest_rageval.results import QuestionResult
from pytest_rageval.sets import RagSet


def test_unfinished_counts_what_the_runner_has_not_answered_yet() -> None:
    rset = RagSet("rag_set.yaml", Gate({"faithfulness": 0.5}))
    rset.members = {f"rag_set.yaml::q{i}": Question(f"Q{i}", id=f"q{i}") for i in range(3)}
    rset.tally = Tally({"faithfulness": 3}, {"faithfulness": 0.5})
    assert rset.unfinished() == 3
    # the runner's loop thread records results; the main thread reads the count meanwhile
    finishing = threading.Thread(
        target=rset.finished,
        args=("rag_set.yaml::q0", QuestionResult(rset.members["rag_set.yaml::q0"])),
    )
    finishing.start()
    finishing.join()
    assert rset.unfinished() == 2

"""The notebook's `BatchEvalRunner(...).aevaluate_queries(...)` and score loop, as a gate."""

import pytest

QUESTIONS = [
    "How many eggs can a honeybee queen lay in a day?",
    "What does the waggle dance tell other bees?",
    "How do bees turn nectar into honey?",
    "What is the difference between magma and lava?",
    "Why are stratovolcanoes steep?",
    "What is the Pacific Ring of Fire?",
    "What did Fresnel lenses change for lighthouses?",
    "How can sailors tell one lighthouse from another?",
]


@pytest.mark.rag_threshold(faithfulness=0.9, relevancy=0.8)
@pytest.mark.parametrize("rag_question", QUESTIONS)
def test_notebook_questions(rag_result):
    # extra asserts of your own go here; the pass-rate gate is applied after the body
    assert rag_result.contexts, "the vector index retrieved nothing"

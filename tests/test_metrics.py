"""Deterministic and retrieval metrics: hand-computed values, any script, and by name in
data files (no LLM, no key)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

from pytest_rageval.evaluators import (
    BY_NAME,
    ContextRecallEvaluator,
    ExactMatchEvaluator,
    HitRateEvaluator,
    MRREvaluator,
    NumericEvaluator,
    RecallAtKEvaluator,
    RegexEvaluator,
    RougeLEvaluator,
    TokenF1Evaluator,
    numbers,
    rouge_l,
    token_f1,
)
from pytest_rageval.judges import response_sources
from pytest_rageval.text import rouge_tokens, tokens


def judge(evaluator: Any, **kwargs: Any) -> Any:
    return asyncio.run(evaluator.aevaluate(**kwargs))


# -- tokens in any script ----------------------------------------------------------------


def test_tokens_split_chinese_and_japanese_by_character_and_keep_accents() -> None:
    assert tokens("巴黎是法国的首都。") == ["巴", "黎", "是", "法", "国", "的", "首", "都"]
    assert tokens("東京タワーは333メートルです") == [
        *"東京タワーは",
        "333",
        *"メートルです",
    ]
    assert tokens("¿Quién fue Porfirio Díaz?") == ["quién", "fue", "porfirio", "díaz"]
    # full-width forms are folded (NFKC); English articles go, as in SQuAD
    assert tokens("\uff21\uff22\uff23 the \uff38-ray") == ["abc", "xray"]
    # ROUGE-L's tokens keep the articles and break at punctuation, as rouge-score's
    assert rouge_tokens("\uff21\uff22\uff23 the \uff38-ray") == ["abc", "the", "x", "ray"]
    assert rouge_tokens("東京タワー") == [*"東京タワー"]


def test_token_f1_scores_chinese_it_used_to_score_zero() -> None:
    reference = "巴黎是法国的首都。"
    assert token_f1("巴黎是法国的首都", reference) == 1.0
    # 5 shared characters of 5 predicted and 8 expected: P=1, R=5/8, F1=10/13
    assert token_f1("法国的首都", "巴黎是法国的首都") == pytest.approx(2 * 0.625 / 1.625)
    assert token_f1("法国首都巴黎", reference) == pytest.approx(2 * 6 / 6 * 6 / 8 / (1 + 6 / 8))


def test_token_f1_in_japanese_and_spanish() -> None:
    # tokens: 富 士 山 の 高 さ は 3776 メ ー ト ル (12) vs 3776 メ ー ト ル (5): common 5
    score = token_f1("3776メートル", "富士山の高さは3776メートル")
    assert score == pytest.approx(2 * (5 / 5) * (5 / 12) / (1 + 5 / 12))
    assert token_f1("Fue presidente de México", "Porfirio Díaz fue presidente de México") == (
        pytest.approx(2 * 1 * 4 / 6 / (1 + 4 / 6))
    )


# -- rouge_l, exact_match, regex, numeric ------------------------------------------------


def test_rouge_l_hand_computed() -> None:
    # articles kept: [the cat sat on the mat] vs [the cat lay on the mat]: LCS 5 of 6
    assert rouge_l("The cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # order matters, unlike F1: [y x] vs [x y] has LCS 1 where F1 is 1.0
    assert rouge_l("y x", "x y") == pytest.approx(0.5)
    assert token_f1("y x", "x y") == 1.0
    # Chinese, character by character: 东京是日本的首都 vs 日本的首都是东京: LCS 5 of 8
    assert rouge_l("东京是日本的首都", "日本的首都是东京") == pytest.approx(5 / 8)
    assert rouge_l("", "") == 0.0
    assert rouge_l("x", "") == 0.0


def test_rouge_l_evaluator_passes_at_its_threshold() -> None:
    result = judge(
        RougeLEvaluator(threshold=0.7), response="cat sat on mat", reference="cat lay on mat"
    )
    assert (result.passing, result.score) == (True, pytest.approx(0.75))
    assert result.feedback == "ROUGE-L 0.75 against the reference (passes at 0.7)"
    result = judge(
        RougeLEvaluator(threshold=0.8), response="cat sat on mat", reference="cat lay on mat"
    )
    assert result.passing is False


def test_exact_match_ignores_case_punctuation_articles_and_surrounding_space() -> None:
    evaluator = ExactMatchEvaluator()
    assert judge(evaluator, response="  Paris! ", reference="paris").passing is True
    # SQuAD's EM drops the articles, as token F1 does
    assert judge(evaluator, response="The Eiffel Tower", reference="Eiffel Tower").passing is True
    assert token_f1("The Eiffel Tower", "Eiffel Tower") == 1.0
    assert judge(evaluator, response="巴黎。", reference="巴黎").passing is True
    assert judge(evaluator, response="Díaz", reference="díaz").passing is True
    miss = judge(evaluator, response="Paris, France", reference="Paris")
    assert (miss.passing, miss.score) == (False, 0.0)
    assert miss.feedback == "the response 'paris france' is not the reference 'paris'"
    assert judge(evaluator, response="Diaz", reference="Díaz").passing is False


def test_regex_from_the_evaluator_or_the_question() -> None:
    fixed = RegexEvaluator(r"(?i)\bparis\b")
    assert judge(fixed, response="It is PARIS.").passing is True
    assert judge(fixed, response="Parisian").passing is False
    per_question = RegexEvaluator()
    assert per_question.requires_pattern and not fixed.requires_pattern
    hit = judge(per_question, response="Open 9-17 daily", pattern=r"\d+-\d+")
    assert (hit.passing, hit.score, hit.feedback) == (
        True,
        1.0,
        r"the response matches '\\d+-\\d+' at '9-17'",
    )


def test_numbers_are_read_with_thousands_decimals_signs_and_full_width_digits() -> None:
    assert numbers("about 1,234.5 m, -3 and 2e3, .5") == [1234.5, -3.0, 2000.0, 0.5]
    assert numbers("高さは３７７６メートル") == [3776.0]
    assert numbers("v2 and A4 are not numbers") == []


def test_numeric_within_tolerance_and_invalid_without_a_reference_number() -> None:
    exact = NumericEvaluator()
    assert judge(exact, response="It is 1,234.5 metres", reference="1234.5").passing is True
    wrong = judge(exact, response="Built in 1889, it is 330 m", reference="324 m")
    assert (wrong.passing, wrong.feedback) == (
        False,
        "no number of the response (1889, 330) is 324 ± 1e-06",
    )
    loose = NumericEvaluator(tolerance=10)
    assert judge(loose, response="Built in 1889, it is 330 m", reference="324 m").passing is True
    invalid = judge(exact, response="42", reference="forty-two")
    assert invalid.invalid_result is True
    assert invalid.invalid_reason == "the reference 'forty-two' holds no number to compare"
    with pytest.raises(ValueError, match="tolerance must be a number >= 0"):
        NumericEvaluator(tolerance=-1)


# -- retrieval ------------------------------------------------------------------------------


def node(text: str, doc_id: str | None = None, file_name: str | None = None) -> NodeWithScore:
    text_node = TextNode(text=text, metadata={"file_name": file_name} if file_name else {})
    if doc_id:
        text_node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
    return NodeWithScore(node=text_node, score=1.0)


def test_retrieved_sources_are_document_ids_and_file_names() -> None:
    from llama_index.core.base.response.schema import Response

    response = Response("x", source_nodes=[node("a", "doc-1", "bees.txt"), node("b")])
    assert response_sources(response) == [["doc-1", "bees.txt"], []]
    assert response_sources("plain") is None
    assert response_sources(("x", ["a text"])) is None
    assert response_sources(("x", [node("a", file_name="f.md")])) == [["f.md"]]


def test_hit_rate_mrr_and_recall_at_k_hand_computed() -> None:
    retrieved = [["d1", "bees.txt"], ["d2", "lava.txt"], ["d3", "lights.txt"]]
    expected = ["lava.txt", "d3"]

    hit = judge(
        HitRateEvaluator(), expected_sources=expected, retrieved_sources=retrieved, contexts=[]
    )
    assert (hit.passing, hit.score) == (True, 1.0)
    # the first expected source is second: 1/2
    mrr = judge(MRREvaluator(), expected_sources=expected, retrieved_sources=retrieved)
    assert (mrr.passing, mrr.score) == (True, 0.5)
    assert (
        judge(
            MRREvaluator(threshold=0.6), expected_sources=expected, retrieved_sources=retrieved
        ).passing
        is False
    )
    # of the first two retrieved, one of the two expected: 1/2
    recall2 = judge(RecallAtKEvaluator(k=2), expected_sources=expected, retrieved_sources=retrieved)
    assert (recall2.passing, recall2.score) == (False, 0.5)
    assert recall2.feedback == (
        "recall@2 0.50: 1 of 2 expected sources among 2 retrieved; missing: 'd3'"
    )
    recall_all = judge(RecallAtKEvaluator(), expected_sources=expected, retrieved_sources=retrieved)
    assert (recall_all.passing, recall_all.score) == (True, 1.0)
    miss = judge(HitRateEvaluator(), expected_sources=["nope.txt"], retrieved_sources=retrieved)
    assert (miss.passing, miss.score) == (False, 0.0)


def test_an_empty_retrieval_scores_zero_where_llama_index_raises() -> None:
    from llama_index.core.evaluation.retrieval.metrics import HitRate

    with pytest.raises(ValueError):
        HitRate().compute(expected_ids=["a"], retrieved_ids=[])
    for evaluator in (HitRateEvaluator(), MRREvaluator(), RecallAtKEvaluator(k=3)):
        result = judge(evaluator, expected_sources=["a"], retrieved_sources=[])
        assert (result.passing, result.score) == (False, 0.0)
    no_ids = judge(HitRateEvaluator(), expected_sources=["a"], retrieved_sources=None)
    assert no_ids.invalid_result and "no source ids" in no_ids.invalid_reason


def test_every_name_is_a_llama_index_evaluator() -> None:
    from llama_index.core.evaluation import BaseEvaluator

    assert set(BY_NAME) == {
        "contains",
        "token_f1",
        "context_recall",
        "exact_match",
        "regex",
        "rouge_l",
        "numeric",
        "hit_rate",
        "mrr",
        "recall_at_k",
        "semantic_similarity",
    }
    assert all(issubclass(cls, BaseEvaluator) for cls in BY_NAME.values())
    assert ContextRecallEvaluator().requires_contexts


def test_token_f1_evaluator_chinese_passes() -> None:
    result = judge(TokenF1Evaluator(), response="巴黎是法国的首都", reference="巴黎是法国的首都。")
    assert (result.passing, result.score) == (True, 1.0)


# -- by name in data files, as users meet them ---------------------------------------------

SOURCES_APP = """
import pytest
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

ANSWERS = {
    "capital": ("Paris.", [("d-fr", "france.md")]),
    "height": ("It is about 330 m tall.", [("d-eiffel", "eiffel.md"), ("d-fr", "france.md")]),
    "hours": ("Open 9-17 daily.", []),
    "wrong": ("Lyon", [("d-lyon", "lyon.md"), ("d-fr", "france.md")]),
}


def node(doc_id, file_name):
    text = TextNode(text="about " + file_name, metadata={"file_name": file_name})
    text.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
    return NodeWithScore(node=text, score=1.0)


class App:
    async def aquery(self, query):
        answer, sources = ANSWERS[query.split()[0]]
        return Response(answer, source_nodes=[node(*s) for s in sources])


@pytest.fixture(scope="session")
def rag_query_engine():
    return App()
"""


def test_built_in_metrics_by_name_without_a_judge_or_a_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(SOURCES_APP)
    pytester.makefile(
        ".yaml",
        rag_facts="""
        evaluators: [exact_match, {numeric: {tolerance: 10}}, regex, hit_rate, mrr, {recall_at_k: {k: 1}}]
        thresholds: {exact_match: 0, numeric: 0, regex: 0, hit_rate: 0, mrr: 0, recall_at_k: 0}
        questions:
          - id: capital
            query: capital of France?
            reference: paris
            expected_sources: [france.md]
          - id: height
            query: height of the Eiffel tower?
            reference: 324 metres
            expected_sources: [d-eiffel, france.md]
          - id: hours
            query: hours of the museum?
            pattern: '\\d+-\\d+'
            expected_sources: [museum.md]
          - id: wrong
            query: wrong capital of France?
            reference: Paris
            expected_sources: [france.md]
        """,
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--rag-report", "report.json")
    # every question fails some metric, within thresholds of 0: all tolerated
    assert result.parseoutcomes() == {"tolerated": 4}
    result.stdout.fnmatch_lines(["rag_facts.yaml  numeric  * 3 * 1 * 0 * 2 * 0.33 *"])
    report = {
        (q["id"], metric): (m["result"], m["score"])
        for s in json.loads((pytester.path / "report.json").read_text())["sets"]
        for q in s["questions"]
        for metric, m in q["metrics"].items()
    }
    assert report == {
        ("capital", "exact_match"): ("passing", 1.0),
        ("capital", "numeric"): ("invalid", None),  # invalid: "paris" has no number
        ("capital", "hit_rate"): ("passing", 1.0),
        ("capital", "mrr"): ("passing", 1.0),
        ("capital", "recall_at_k"): ("passing", 1.0),
        ("height", "exact_match"): ("failing", 0.0),
        ("height", "numeric"): ("passing", 1.0),
        ("height", "hit_rate"): ("passing", 1.0),
        ("height", "mrr"): ("passing", 1.0),
        ("height", "recall_at_k"): ("failing", 0.5),
        ("hours", "regex"): ("passing", 1.0),
        ("hours", "hit_rate"): ("failing", 0.0),  # nothing retrieved: 0, not an error
        ("hours", "mrr"): ("failing", 0.0),
        ("hours", "recall_at_k"): ("failing", 0.0),
        ("wrong", "exact_match"): ("failing", 0.0),
        ("wrong", "numeric"): ("invalid", None),
        ("wrong", "hit_rate"): ("passing", 1.0),
        ("wrong", "mrr"): ("passing", 0.5),
        ("wrong", "recall_at_k"): ("failing", 0.0),
    }


def test_bad_evaluator_options_name_the_file_and_what_it_takes(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_bad="""
        evaluators: [{numeric: {tol: 1}}]
        questions:
          - query: How tall?
            reference: "3"
        """,
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*rag_bad.yaml: the options of evaluator 'numeric' are not valid: *unexpected keyword argument 'tol'; it takes tolerance"
        ]
    )


def test_an_unknown_name_lists_the_built_in_ones(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml", rag_bad="evaluators: [exact_mach]\nquestions: [{query: Q, reference: R}]\n"
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*rag_bad.yaml asks for evaluator 'exact_mach', which neither rag_evaluators provides nor is built in (did you mean 'exact_match'?)*"
        ]
    )


def test_a_bad_pattern_is_a_collection_error_with_its_line(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_bad="questions:\n  - query: Q\n    pattern: '(unclosed'\n")
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*rag_bad.yaml:2: 'pattern' '(unclosed' is not a valid regular expression: missing ), unterminated subpattern*"
        ]
    )


def test_semantic_similarity_by_name_embeds_over_http(
    http_project: pytest.Pytester, openai_server: Any
) -> None:
    from openai_server import embed

    http_project.makefile(
        ".yaml",
        rag_similar="""
        evaluators: [{semantic_similarity: {similarity_threshold: 0.6}}]
        thresholds: {semantic_similarity: 0}
        questions:
          - id: close
            query: capital of France
            reference: the capital of France
          - id: far
            query: capital of France
            reference: Rome is in Italy
          - id: no-reference
            query: capital of Spain
        """,
    )
    result = http_project.runpytest("-p", "no:cacheprovider", "--rag-report=r.json")
    # no-reference: nothing applies to it, so nothing fails it
    assert result.parseoutcomes() == {"passed": 2, "tolerated": 1}
    report = json.loads((http_project.path / "r.json").read_text())
    scores = {
        q["id"]: q["metrics"].get("semantic_similarity") for q in report["sets"][0]["questions"]
    }

    def cosine(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(embed(a), embed(b), strict=True))

    # the app answers "Answer: <query>"; the server's embeddings are bag-of-words vectors
    assert scores["close"]["score"] == pytest.approx(
        cosine("Answer: capital of France", "the capital of France")
    )
    assert scores["close"]["result"] == "passing"
    assert scores["far"]["score"] == pytest.approx(
        cosine("Answer: capital of France", "Rome is in Italy")
    )
    assert scores["far"]["result"] == "failing"
    assert scores["no-reference"] is None  # needs a reference: does not apply
    assert openai_server.chat_requests == 0  # no judge: embeddings only


def test_semantic_similarity_without_a_key_says_what_to_do(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        rag_similar="evaluators: [semantic_similarity]\nquestions: [{query: Q, reference: R}]\n",
    )
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*semantic_similarity needs an embedding model: set OPENAI_API_KEY (with llama-index-embeddings-openai installed), or override the 'rag_embed_model' fixture*"
        ]
    )


def test_the_verdict_cache_tells_embedding_models_apart() -> None:
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.evaluation import SemanticSimilarityEvaluator

    from pytest_rageval.cache import describe_evaluator

    small, large = MockEmbedding(embed_dim=8), MockEmbedding(embed_dim=16)
    first = describe_evaluator(SemanticSimilarityEvaluator(embed_model=small))
    assert first["embedder"]["settings"]["embed_dim"] == 8
    assert first != describe_evaluator(SemanticSimilarityEvaluator(embed_model=large))
    assert first == describe_evaluator(
        SemanticSimilarityEvaluator(embed_model=MockEmbedding(embed_dim=8))
    )

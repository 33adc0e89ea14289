"""The text and retrieval metrics against the implementations they follow: the SQuAD v1.1
evaluation script (token F1, exact match, written out below as it is), Google's
rouge-score (ROUGE-L) and llama-index's retrieval metrics, on thousands of generated
pairs; and where they differ on purpose (other scripts than ASCII), pinned."""

from __future__ import annotations

import asyncio
import functools
import random
import re
import string
from collections import Counter
from typing import Any

import pytest

from pytest_rageval.evaluators import (
    ContextRecallEvaluator,
    ExactMatchEvaluator,
    HitRateEvaluator,
    MRREvaluator,
    RecallAtKEvaluator,
    TokenF1Evaluator,
    rouge_l,
    token_f1,
)


def judge(evaluator: Any, **kwargs: Any) -> Any:
    return asyncio.run(evaluator.aevaluate(**kwargs))


# -- token F1, exact match and ROUGE-L -----------------------------------------------------
# SQuAD v1.1's official evaluation script (evaluate-v1.1.py), copied by hand: the reference
# for token F1 and exact match.


def squad_normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def squad_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth)


@functools.cache
def rouge_scorer_l() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_score_l(prediction: str, reference: str) -> float:
    """Google's rouge-score, without a stemmer: the reference for ROUGE-L."""
    score: float = rouge_scorer_l().score(reference, prediction)["rougeL"].fmeasure
    return score


VOCABULARY = ["cat", "sat", "on", "mat", "police", "killed", "gunman", "eiffel", "tower"]
VOCABULARY += ["x", "y", "3", "42", "and", "is", "anne", "then", "as"]
ARTICLES = ["the", "a", "an"]


def sentence(rng: random.Random, articles: bool, decorated: bool = False) -> str:
    """Up to 8 words (none: an empty text), articles among them or not; ``decorated``:
    in any case, with ASCII punctuation and symbols inside, around and between them."""
    vocabulary = VOCABULARY + ARTICLES * 3 if articles else VOCABULARY
    words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 8))]
    if not decorated:
        return " ".join(words)
    out = []
    for word in words:
        word = "".join(c.upper() if rng.random() < 0.3 else c for c in word)
        if rng.random() < 0.3:
            cut = rng.randint(0, len(word))
            word = word[:cut] + rng.choice(string.punctuation) + word[cut:]
        out.append(word + rng.choice(["", "", ",", ".", "!", "'s", "?"]))
    return rng.choice(["", " ", "\t"]).join(out) if rng.random() < 0.2 else " ".join(out)


def pairs(seed: int, count: int, articles: bool, decorated: bool = False) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        first = sentence(rng, articles, decorated)
        # half of the pairs share words: a shuffled or shortened copy of the first
        if rng.random() < 0.5:
            second = sentence(rng, articles, decorated)
        else:
            words = first.split()
            rng.shuffle(words)
            second = " ".join(words[: rng.randint(0, len(words))])
        made.append((first, second))
    return made


def test_rouge_l_equals_rouge_score_on_ascii_text_with_and_without_articles() -> None:
    # the pairs: articles count, and "the" is not "a"
    assert rouge_l("the police killed the gunman", "the gunman killed the police") == 0.6
    assert rouge_score_l("the police killed the gunman", "the gunman killed the police") == 0.6
    assert rouge_l("the", "a") == rouge_score_l("the", "a") == 0.0
    cases = (
        pairs(1, 2000, articles=True)
        + pairs(2, 1000, articles=False)
        + pairs(3, 1000, articles=True, decorated=True)
    )
    with_articles = sum(
        any(w in ARTICLES for w in re.findall("[a-z0-9]+", (a + " " + b).lower())) for a, b in cases
    )
    assert with_articles > 2000
    scores = [(a, b, rouge_l(a, b), rouge_score_l(a, b)) for a, b in cases]
    assert [score for score in scores if score[2] != score[3]] == []


def test_token_f1_and_exact_match_equal_squad_v1_1_on_ascii_text() -> None:
    cases = pairs(4, 1500, articles=True) + pairs(5, 1500, articles=True, decorated=True)
    cases += [("", ""), ("the", "a"), ("...", "!!!"), ("The Eiffel Tower", "Eiffel Tower")]
    scores = [(a, b, token_f1(a, b), squad_f1_score(a, b)) for a, b in cases]
    assert [score for score in scores if score[2] != score[3]] == []

    async def exact_matches() -> list[bool | None]:
        evaluator = ExactMatchEvaluator()
        return [(await evaluator.aevaluate(response=a, reference=b)).passing for a, b in cases]

    verdicts = asyncio.run(exact_matches())
    em_differ = [
        (a, b, verdict)
        for (a, b), verdict in zip(cases, verdicts, strict=True)
        if verdict != squad_exact_match_score(a, b)
    ]
    assert em_differ == []
    assert sum(verdicts) > 100  # not only misses


def test_nothing_against_nothing_scores_zero_as_in_squad_v1_1() -> None:
    for prediction, reference in [("", ""), ("the", "a"), ("...", "!!!")]:
        assert squad_f1_score(prediction, reference) == 0
        assert token_f1(prediction, reference) == 0.0
    assert rouge_l("", "") == rouge_score_l("", "") == 0.0
    assert rouge_l("...", "!!!") == rouge_score_l("...", "!!!") == 0.0
    result = judge(TokenF1Evaluator(), response="...", reference="!!!")
    assert (result.passing, result.score) == (False, 0.0)
    assert result.feedback == (
        "token F1 0.00 against the reference (passes at 0.5); "
        "the reference '!!!' has no words to compare"
    )
    # a reference context without words is never retrieved, not even word for word
    recall = judge(
        ContextRecallEvaluator(),
        contexts=["...", "Bees make honey."],
        reference_contexts=["...", "Bees make honey."],
    )
    assert (recall.passing, recall.score) == (False, 0.5)
    assert recall.feedback == "1 of 2 reference contexts retrieved; without words to match: '...'"
    # exact match compares the normalised texts, as SQuAD's EM: two empty ones are equal
    assert squad_exact_match_score("the", "a") is True
    assert judge(ExactMatchEvaluator(), response="the", reference="a").passing is True


def test_where_the_text_metrics_differ_from_their_references_on_purpose() -> None:
    # SQuAD splits at spaces and knows ASCII punctuation only: a Chinese answer is one
    # token, its full stop part of it; we score Chinese character by character
    assert squad_f1_score("法国的首都", "巴黎是法国的首都") == 0
    assert token_f1("法国的首都", "巴黎是法国的首都") == pytest.approx(10 / 13)
    assert squad_exact_match_score("巴黎。", "巴黎") is False
    assert judge(ExactMatchEvaluator(), response="巴黎。", reference="巴黎").passing is True
    # rouge-score keeps a-z and 0-9 only: Chinese has no tokens, "díaz" is "d" and "az"
    assert rouge_score_l("东京是日本的首都", "日本的首都是东京") == 0.0
    assert rouge_l("东京是日本的首都", "日本的首都是东京") == pytest.approx(5 / 8)
    assert rouge_score_l("Porfirio Díaz", "Díaz Porfirio") == pytest.approx(2 / 3)
    assert rouge_l("Porfirio Díaz", "Díaz Porfirio") == 0.5


# -- retrieval ----------------------------------------------------------------------------


def test_retrieval_metrics_equal_llama_index_under_the_matching_rule() -> None:
    from llama_index.core.evaluation.retrieval.metrics import MRR, HitRate, Recall

    # one node that is both expected sources (its document id and its file name)
    both = judge(
        RecallAtKEvaluator(),
        expected_sources=["doc1", "a.txt"],
        retrieved_sources=[["doc1", "a.txt"]],
    )
    assert (both.passing, both.score) == (True, 1.0)
    assert both.feedback == "recall@k 1.00: 2 of 2 expected sources among 1 retrieved"

    def reference(metric: Any, nodes: list[list[str]], expected: list[str], k: int | None) -> float:
        """llama-index's metric with the README's rule: an expected source is retrieved
        by a node that has it among its ids; each node stands for what it matches."""
        nodes = nodes if k is None else nodes[:k]
        if not nodes:
            return 0.0  # where llama-index raises
        if isinstance(metric, Recall):
            matched = [e for e in expected if any(e in ids for ids in nodes)]
            retrieved = matched or ["(nothing expected)"]
        else:  # ranked: one id a node, an expected one when it has any
            retrieved = [
                next((i for i in ids if i in expected), f"(node {rank})")
                for rank, ids in enumerate(nodes)
            ]
        score: float = metric.compute(expected_ids=expected, retrieved_ids=retrieved).score
        return score

    rng = random.Random(7)
    cases = []
    for _ in range(1500):
        nodes = []
        for doc in rng.sample(range(5), rng.randint(0, 4)):
            ids = [f"doc{doc}"] if rng.random() < 0.8 else []
            ids += [f"f{doc}.txt"] if rng.random() < 0.8 else []
            nodes.append(ids)
        pool = [f"doc{d}" for d in range(5)] + [f"f{d}.txt" for d in range(5)]
        expected = rng.sample(pool, rng.randint(1, 4))
        cases.append((nodes, expected, rng.choice([None, 1, 2, 3])))

    async def scores() -> list[tuple[float | None, ...]]:
        out = []
        for nodes, expected, k in cases:
            evaluators = (HitRateEvaluator(), MRREvaluator(), RecallAtKEvaluator(k=k))
            results = [
                await e.aevaluate(expected_sources=expected, retrieved_sources=nodes)
                for e in evaluators
            ]
            out.append(tuple(r.score for r in results))
        return out

    differ = [
        (nodes, expected, k, got)
        for (nodes, expected, k), got in zip(cases, asyncio.run(scores()), strict=True)
        if got
        != (
            reference(HitRate(), nodes, expected, None),
            reference(MRR(), nodes, expected, None),
            reference(Recall(), nodes, expected, k),
        )
    ]
    assert differ == []

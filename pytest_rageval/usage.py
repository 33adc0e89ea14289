"""What a run cost: tokens per metric and for the app, from the usage the LLM responses
report, and prices from ini ``rag_prices`` (no pytest here).

The runner sets a :class:`Meter` in a context variable around each app call and each
judgement; a llama-index instrumentation handler adds every LLM response's usage
(``prompt_tokens`` / ``completion_tokens``, as llama-index's OpenAI puts them in
``additional_kwargs``) to the meter of the call it belongs to, even on the app's own
threads (the runner copies the context into them).
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_METER: contextvars.ContextVar[Meter | None] = contextvars.ContextVar("rageval_meter", default=None)
_installed = False
HANDLER_NAME = "RagevalUsageHandler"
_install_lock = threading.Lock()


@dataclass
class Meter:
    """Tokens of some LLM calls, and the model names the API answered with."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    models: Counter[str] = field(default_factory=Counter)

    def add(self, other: Meter | Mapping[str, Any]) -> None:
        if isinstance(other, Meter):
            other = other.to_json()
        self.prompt_tokens += int(other.get("prompt_tokens") or 0)
        self.completion_tokens += int(other.get("completion_tokens") or 0)
        self.calls += int(other.get("calls") or 0)
        self.models.update(other.get("models") or {})

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "calls": self.calls,
            "models": dict(self.models),
        }


def metering(meter: Meter) -> contextvars.Token[Meter | None]:
    """Count the LLM usage of what runs from here on in this context into ``meter``
    (undo with ``reset``)."""
    install()
    return _METER.set(meter)


def reset(token: contextvars.Token[Meter | None]) -> None:
    _METER.reset(token)


def current() -> Meter | None:
    """The meter of the call running in this context, if any (for paths that send a
    request without llama-index's events, such as :mod:`pytest_rageval.lean`)."""
    return _METER.get()


def install() -> None:
    """Add the usage handler to llama-index's root dispatcher, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        # re-exported by llama-index without being listed in __all__
        from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler

        class UsageHandler(BaseEventHandler):
            @classmethod
            def class_name(cls) -> str:
                return HANDLER_NAME

            def handle(self, event: Any, **kwargs: Any) -> None:
                meter = _METER.get()
                if meter is not None and type(event).__name__ in (
                    "LLMChatEndEvent",
                    "LLMCompletionEndEvent",
                ):
                    record(meter, getattr(event, "response", None))

        get_dispatcher().add_event_handler(UsageHandler())
        _installed = True


def record(meter: Meter, response: Any) -> None:
    """Add one LLM response's usage to ``meter``."""
    if response is None:
        return
    extra = getattr(response, "additional_kwargs", None) or {}
    raw = getattr(response, "raw", None)
    usage = _get(raw, "usage")
    prompt = extra.get("prompt_tokens", _get(usage, "prompt_tokens"))
    completion = extra.get("completion_tokens", _get(usage, "completion_tokens"))
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return  # no usage reported: not counted rather than guessed
    meter.prompt_tokens += prompt if isinstance(prompt, int) else 0
    meter.completion_tokens += completion if isinstance(completion, int) else 0
    meter.calls += 1
    model = _get(raw, "model")
    if isinstance(model, str):
        meter.models[model] += 1


def _get(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


class PriceError(ValueError):
    pass


def parse_prices(lines: Iterable[str], where: str) -> dict[str, tuple[float, float]]:
    """Ini lines ``model = input_per_1M output_per_1M`` (USD per million tokens)."""
    prices: dict[str, tuple[float, float]] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        model, sep, rest = line.partition("=")
        parts = rest.split()
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            numbers = []
        if not sep or not model.strip() or len(numbers) != 2 or min(numbers) < 0:
            raise PriceError(
                f"{where}: expected 'model = input_per_1M output_per_1M' (USD per million "
                f"tokens, e.g. gpt-4o-mini = 0.15 0.60), got {raw!r}"
            )
        prices[model.strip()] = (numbers[0], numbers[1])
    return prices


def price_of(
    prices: Mapping[str, tuple[float, float]], configured: str | None, answered: Iterable[str]
) -> tuple[float, float] | None:
    """The price of a model: the configured name, else the longest price name that
    begins the name the API answered with (``gpt-4o-mini`` for ``gpt-4o-mini-2024-07-18``)."""
    if configured is not None and configured in prices:
        return prices[configured]
    for name in answered:
        matches = [model for model in prices if name.startswith(model)]
        if matches:
            return prices[max(matches, key=len)]
    return None


def cost(meter: Mapping[str, Any], price: tuple[float, float] | None) -> float | None:
    if price is None:
        return None
    tokens_in = float(meter.get("prompt_tokens") or 0)
    tokens_out = float(meter.get("completion_tokens") or 0)
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000

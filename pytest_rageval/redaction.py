"""Secrets out of everything the plugin shows or writes (no pytest here).

Three kinds are replaced by ``***``: the values of the keys the judges are configured with
(``KEY_VARIABLES``), whatever their shape, wherever they appear; text shaped like an API
key (``sk-...``, Groq's ``gsk_...``) or a bearer token; and the ``user:password`` of a URL.
The keys are read from the environment at each call, so a run sees the keys it was
started with, and a test that sets them sees its own.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

KEY_VARIABLES = ("OPENAI_API_KEY", "RAG_JUDGE_API_KEY")
"""Where the judges' keys come from: ``openai:`` sends OPENAI_API_KEY, ``openai-like:``
RAG_JUDGE_API_KEY."""
MIN_KEY_LENGTH = 8
"""Shorter values are placeholders (``none``, ``ollama``, ``EMPTY``), not secrets: replacing
them everywhere would garble reports, and hides nothing."""

_SECRETS = (
    (re.compile(r"\b(sk-(?:proj-|ant-|live-|test-)?)[A-Za-z0-9_\-]{8,}"), r"\1***"),
    (re.compile(r"\b(gsk_)[A-Za-z0-9]{8,}"), r"\1***"),
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*", re.IGNORECASE), r"\1***"),
    # user:password@ (or a lone token@) in any URL; RFC 3986 userinfo holds no / ? # @
    (re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@]+@"), r"\1***@"),
)


def configured_keys() -> tuple[str, ...]:
    """The values of ``KEY_VARIABLES`` that are set (and long enough to be secrets)."""
    found = (os.environ.get(name, "").strip() for name in KEY_VARIABLES)
    return tuple(value for value in found if len(value) >= MIN_KEY_LENGTH)


def redact(text: str, keys: tuple[str, ...] | None = None) -> str:
    """``text`` with the configured keys (``keys``, read from the environment when None),
    API keys, bearer tokens and URL credentials replaced by ``***``."""
    for key in configured_keys() if keys is None else keys:
        if key in text:
            text = text.replace(key, "***")
    # the patterns only where they can match: most texts need no regex at all
    if "sk-" in text or "sk_" in text or "earer" in text or "EARER" in text or "://" in text:
        for pattern, replacement in _SECRETS:
            text = pattern.sub(replacement, text)
    return text


def redact_all(value: Any, keys: tuple[str, ...] | None = None) -> Any:
    """:func:`redact` applied to every string of a JSON-safe value (a copy)."""
    if keys is None:
        keys = configured_keys()
    if isinstance(value, str):
        return redact(value, keys)
    if isinstance(value, dict):
        return {key: redact_all(item, keys) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_all(item, keys) for item in value]
    return value


def redact_in_place(value: Any, keys: tuple[str, ...] | None = None) -> Any:
    """:func:`redact` applied to every string inside ``value``, the attributes of
    dataclass instances changed in place (pytest's failure representations: traceback
    lines, locals, the exception message); returns the redacted value."""
    if value is None or (type(value) in (list, tuple, dict) and not value):
        return value  # a passing test's report: nothing to read the environment for
    if keys is None:
        keys = configured_keys()
    return _in_place(value, keys, set())


def _in_place(value: Any, keys: tuple[str, ...], seen: set[int]) -> Any:
    if isinstance(value, str):
        return redact(value, keys)
    if id(value) in seen:  # shared: a chain's last traceback is also its reprtraceback
        return value
    if isinstance(value, list):
        seen.add(id(value))
        value[:] = [_in_place(item, keys, seen) for item in value]
    elif type(value) is tuple:
        value = tuple(_in_place(item, keys, seen) for item in value)
    elif isinstance(value, dict):
        seen.add(id(value))
        for name, item in value.items():
            value[name] = _in_place(item, keys, seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        seen.add(id(value))
        names = getattr(value, "__dict__", None) or [f.name for f in dataclasses.fields(value)]
        for name in list(names):
            # object.__setattr__: frozen dataclasses too
            object.__setattr__(value, name, _in_place(getattr(value, name), keys, seen))
    return value

"""Reading what the app returned: the answer text, the retrieved contexts and each
retrieved node's source ids, from a string, an ``(answer, contexts)`` pair or a
llama-index ``Response``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def response_sources(response: Any) -> list[list[str]] | None:
    """Each retrieved node's ids: its ``ref_doc_id`` and its ``file_name`` metadata. None
    when the app returned no nodes (a string, or contexts as strings)."""
    if hasattr(response, "source_nodes") and hasattr(response, "response"):
        nodes = list(response.source_nodes)
    elif isinstance(response, tuple) and len(response) == 2 and isinstance(response[0], str):
        nodes = [c for c in response[1] if not isinstance(c, str)]
        if len(nodes) != len(response[1]):
            return None
    else:
        return None
    sources = []
    for scored in nodes:
        node = getattr(scored, "node", scored)
        ids = [
            getattr(node, "ref_doc_id", None),
            (getattr(node, "metadata", None) or {}).get("file_name"),
        ]
        sources.append([str(i) for i in ids if i])
    return sources


def response_parts(response: Any) -> tuple[str, list[str] | None]:
    """The answer text and retrieved contexts of what the app returned.

    A llama-index ``Response`` gives its source nodes (maybe none); an ``(answer,
    contexts)`` pair gives its contexts; a plain string has no contexts at all (None),
    which context-based metrics report as invalid rather than judge.
    """
    if isinstance(response, str):
        return response, None
    if isinstance(response, tuple) and len(response) == 2 and isinstance(response[0], str):
        answer, contexts = response
        if isinstance(contexts, str) or not isinstance(contexts, Sequence):
            raise TypeError(
                "an (answer, contexts) pair needs a list of context strings as its second "
                f"item, got {type(contexts).__name__}"
            )
        texts = [c if isinstance(c, str) else _node_text(c) for c in contexts]
        return answer, texts
    if hasattr(response, "source_nodes") and hasattr(response, "response"):
        text = response.response
        if not isinstance(text, str):
            raise TypeError(
                f"the query engine returned a {type(response).__name__} without answer text "
                "(a streaming response?); build the query engine with streaming=False"
            )
        return text, [node.get_content() for node in response.source_nodes]
    raise TypeError(
        "the query engine must return a string, an (answer, [contexts]) pair or a "
        f"llama-index Response, got {type(response).__name__}"
    )


def _node_text(node: Any) -> str:
    if hasattr(node, "get_content"):
        return str(node.get_content())
    raise TypeError(f"contexts must be strings or llama-index nodes, got {type(node).__name__}")

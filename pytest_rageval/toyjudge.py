"""``rageval judge-server``: a TOY judge on 127.0.0.1, for trying the tool without an API
key. It speaks OpenAI's chat completions API (``/v1/chat/completions``) and answers
llama-index's Faithfulness, Relevancy and Correctness prompts by counting shared words,
not by understanding anything: an answer whose words are not in its contexts fails, one
that repeats them passes. Good enough to watch a gate catch a worse app; never a judge of
real quality.

    rageval judge-server --port 8001
    pytest --rag-judge=openai-like:toy@http://127.0.0.1:8001/v1
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

SUPPORTED = 0.5
"""The share of a statement's words its context must hold for a YES."""

_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by can do does for from has have how i in is it its of on or "
        "that the this to was what when where which who why will with you your",
    )
)

_FAITHFULNESS = "Please tell if a given piece of information is supported by the context."
_RELEVANCY = "is in line with the context information provided."
_REFINE = "We have provided an existing YES/NO answer:"
_CORRECTNESS = "## Generated Answer"


def words(text: str) -> set[str]:
    """The content words of ``text``: lower-cased, without the most common English words,
    cut to their first six letters (a crude stem: return, returned; purchase, purchases)."""
    return {w[:6] for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS}


def overlap(statement: str, context: str) -> float:
    """The share of ``statement``'s content words that ``context`` holds (0 when it has none)."""
    said = words(statement)
    return len(said & words(context)) / len(said) if said else 0.0


def verdict(prompt: str) -> str:
    """The toy judge's answer to one prompt, in the format that prompt asks for."""
    if _CORRECTNESS in prompt:
        return _correctness(prompt)
    if _REFINE in prompt:
        return _refine(prompt)
    if _FAITHFULNESS in prompt:
        # the last Information/Context pair: the ones before are the prompt's examples
        match = re.search(r"Information: (.*)\nContext: (.*)\nAnswer:\s*$", prompt, re.DOTALL)
        if match is None:
            return _unknown()
        *_, information = match.group(1).split("\nInformation: ")
        return _yes_no(overlap(information, match.group(2)) >= SUPPORTED)
    if _RELEVANCY in prompt:
        match = re.search(
            r"Query and Response:\s*(.*)\nContext:\s*(.*)\nAnswer:\s*$", prompt, re.DOTALL
        )
        if match is None:
            return _unknown()
        query, _, response = match.group(1).partition("\nResponse:")
        context = match.group(2)
        on_topic = bool(words(query.removeprefix("Question:")) & (words(response) | words(context)))
        return _yes_no(on_topic and overlap(response, context) >= SUPPORTED)
    return _unknown()


def _refine(prompt: str) -> str:
    """A refine prompt: YES stays YES; otherwise the statement against the new context."""
    match = re.search(
        r"(?:context information: |context information: \n)(.*)\nWe have provided an existing "
        r"YES/NO answer:\s*(\w+).*?-{12}\n(.*)\n-{12}",
        prompt,
        re.DOTALL,
    )
    if match is None:
        return _unknown()
    statement, existing, context = match.groups()
    if existing.strip().upper() == "YES":
        return "YES"
    return _yes_no(overlap(statement, context) >= SUPPORTED)


def _correctness(prompt: str) -> str:
    """A score from 1 to 5: 1 plus 4 times the share of the reference's words the answer
    holds (without a reference, of the query's words), then a line of reasoning."""
    sections = dict(re.findall(r"## ([\w ]+)\n(.*?)(?=\n## |\Z)", prompt, re.DOTALL))
    answer = sections.get("Generated Answer", "")
    reference = sections.get("Reference Answer", "").strip()
    if not reference or reference == "(NO REFERENCE ANSWER SUPPLIED)":
        reference = sections.get("User Query", "")
    share = overlap(reference, answer)
    return f"{1 + 4 * share:.1f}\ntoy judge: the answer holds {share:.0%} of the reference's words"


def _yes_no(yes: bool) -> str:
    return "YES" if yes else "NO"


def _unknown() -> str:
    # neither YES/NO nor a score: llama-index marks the judgement invalid
    return "toy judge: prompt not recognised"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "toy", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "the request body is not JSON"}})
            return
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        if request.get("stream"):
            self._send(400, {"error": {"message": "the toy judge does not stream"}})
            return
        messages = request.get("messages") or []
        prompt = "\n".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
        answer = verdict(prompt)
        tokens_in, tokens_out = len(prompt) // 4 + 1, len(answer) // 4 + 1
        self._send(
            200,
            {
                "id": "chatcmpl-toy",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(request.get("model") or "toy"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            },
        )


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def make_server(port: int = 0) -> ThreadingHTTPServer:
    """The toy judge bound to 127.0.0.1:``port`` (0: any free port), not yet serving."""
    return _Server(("127.0.0.1", port), _Handler)


def base_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


@contextmanager
def running(port: int = 0) -> Iterator[str]:
    """The toy judge serving on a thread; yields its ``/v1`` base URL."""
    server = make_server(port)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base_url(server)
    finally:
        server.shutdown()
        server.server_close()


def serve(port: int) -> int:
    """``rageval judge-server``: serve until Ctrl-C."""
    try:
        server = make_server(port)
    except OSError as exc:
        print(f"rageval judge-server: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    url = base_url(server)
    print(
        f"TOY judge (word overlap, not a real judge) on {url}\n"
        f"use it with: pytest --rag-judge=openai-like:toy@{url}\n"
        "(or rag_judge = openai-like:toy@" + url + " in pytest.ini); Ctrl-C stops it",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

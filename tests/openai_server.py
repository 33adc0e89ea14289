"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests: the real ``openai`` client and
llama-index's ``OpenAI`` LLM talk to it over real HTTP.

Chat completions are answered by :func:`fakes.judge_answer` for judge prompts and with the
first context line otherwise; embeddings are deterministic bag-of-words vectors. A test can
make the next N chat requests fail with a status code (e.g. 500 or 429) or be slow.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fakes import CORRECTNESS_MARK, FAITHFULNESS_MARK, RELEVANCY_MARK, judge_answer

DIMENSIONS = 32


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


class FakeOpenAI:
    """State shared by the handler threads: failures to inject, and what was asked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_next: list[int] = []
        self.delay = 0.0
        self.chat_requests = 0
        self.prompts: list[str] = []

    def answer(self, prompt: str) -> str:
        if any(mark in prompt for mark in (FAITHFULNESS_MARK, RELEVANCY_MARK, CORRECTNESS_MARK)):
            return judge_answer(prompt)
        context = re.search(r"-{5,}\n(.+?)\n", prompt)
        return context.group(1) if context else "I don't know."


def make_handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path.endswith("/embeddings"):
                inputs = request["input"]
                inputs = [inputs] if isinstance(inputs, str) else inputs
                data = [
                    {"object": "embedding", "index": i, "embedding": embed(text)}
                    for i, text in enumerate(inputs)
                ]
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": request["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )
                return
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            with state.lock:
                state.chat_requests += 1
                failure = state.fail_next.pop(0) if state.fail_next else None
            if state.delay:
                time.sleep(state.delay)
            if failure is not None:
                self._send(
                    failure, {"error": {"message": f"injected {failure}", "type": "server_error"}}
                )
                return
            prompt = "\n".join(str(m.get("content", "")) for m in request["messages"])
            with state.lock:
                state.prompts.append(prompt)
            self._send(
                200,
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": state.answer(prompt)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

    return Handler


@contextmanager
def serve() -> Iterator[tuple[str, FakeOpenAI]]:
    """Run the server on a free loopback port; yields its ``/v1`` base URL and state."""
    state = FakeOpenAI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()

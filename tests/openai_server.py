"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests: the real ``openai`` client and
llama-index's ``OpenAI`` LLM talk to it over real HTTP.

Chat completions are answered by :func:`fakes.judge_answer` for judge prompts and with the
first context line otherwise; embeddings are deterministic bag-of-words vectors.

Faults, for chat requests: ``fail_next`` (a list of :class:`Fault` or status codes, one
per request), ``fail_always`` (every request), ``budget`` (at most ``limit`` requests per
``window`` seconds, counted from the first request; beyond it 429 with a ``Retry-After``
until the window ends). A fault can answer a status with ``Retry-After`` (seconds) and
``retry-after-ms`` headers, wait before answering, drop the connection without an answer,
or send a malformed body. A fault with a ``body`` sends that body (a dict as JSON, bytes as
they are) with its status (200 unless given), ``{key}`` in a string of it standing for the
API key the request sent: a server that echoes the key, a 200 whose body is an error,
bytes that are not UTF-8. The state counts requests, those in flight at once, and when
each was answered.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Fault:
    """What to do to one chat request instead of answering it."""

    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    delay: float = 0.0
    drop: bool = False
    malformed: bool = False
    body: dict[str, Any] | bytes | None = None


@dataclass
class Budget:
    """At most ``limit`` answered requests per ``window`` seconds."""

    limit: int
    window: float
    start: float | None = None
    used: int = 0
    current: int = -1


class FakeOpenAI:
    """State shared by the handler threads: failures to inject, and what was asked."""

    def __init__(self) -> None:
        self.url = ""
        """The server's ``/v1`` base URL."""
        self.lock = threading.Lock()
        self.fail_next: list[Fault | int] = []
        self.fail_always: Fault | None = None
        self.budget: Budget | None = None
        self.delay = 0.0
        self.chat_requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.prompts: list[str] = []
        self.bodies: list[bytes] = []
        """Each chat request's body, byte for byte."""
        self.models: list[str] = []
        """The model each chat request named."""
        self.keys: list[str] = []
        """The API key each chat request sent (its ``Authorization: Bearer`` value)."""
        self.arrived: list[float] = []
        """When each chat request arrived (monotonic)."""
        self.answered: list[float] = []
        """When each request was answered with 200 (monotonic)."""
        self.statuses: list[int] = []
        self.usage: dict[str, Counter[str]] = {"app": Counter(), "judge": Counter()}
        """Tokens the server reported, for the app's requests and for the judges'."""
        self._seen: dict[str, int] = {}

    def answer(self, prompt: str) -> str:
        if any(mark in prompt for mark in (FAITHFULNESS_MARK, RELEVANCY_MARK, CORRECTNESS_MARK)):
            with self.lock:
                seen = self._seen.get(prompt, 0)
                self._seen[prompt] = seen + 1
            return judge_answer(prompt, seen)
        context = re.search(r"-{5,}\n(.+?)\n", prompt)
        if "generate only questions" in prompt:  # llama-index's question generation prompt
            topic = " ".join(context.group(1).split()[:4]) if context else "it"
            return (
                f"1. What does the text say about {topic}?\n"
                "2) Which facts does the text give?\n"
                f"3. What does the text say about {topic}?\n\n"
                f"4. Who is named in {topic}?\n"
                f"5. Why does {topic} matter?"
            )
        return context.group(1) if context else "I don't know."

    def fault(self) -> Fault | None:
        """The fault for the request arriving now, if any (call with the lock held)."""
        if self.fail_next:
            fault = self.fail_next.pop(0)
            return Fault(status=fault) if isinstance(fault, int) else fault
        if self.fail_always is not None:
            return self.fail_always
        budget = self.budget
        if budget is not None:
            now = time.monotonic()
            if budget.start is None:
                budget.start = now
            window = int((now - budget.start) / budget.window)
            if window != budget.current:
                budget.current, budget.used = window, 0
            if budget.used >= budget.limit:
                left = budget.start + (window + 1) * budget.window - now
                return Fault(status=429, retry_after_ms=f"{left * 1000:.0f}")
            budget.used += 1
        return None


def make_handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            try:
                request = json.loads(raw or b"{}")
            except ValueError:  # a client that gave up half-way through its request
                self._send(400, {"error": {"message": "incomplete request body"}})
                return
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
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            with state.lock:
                state.models.append(str(request.get("model")))
                state.bodies.append(raw)
                state.keys.append(key)
                state.chat_requests += 1
                state.arrived.append(time.monotonic())
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
                fault = state.fault()
            try:
                self._chat(request, fault, key)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _chat(self, request: dict[str, Any], fault: Fault | None, key: str) -> None:
            delay = state.delay + (fault.delay if fault is not None else 0.0)
            if delay:
                time.sleep(delay)
            if fault is not None and fault.drop:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault is not None and fault.body is not None:
                status = 200 if fault.status is None else fault.status
                with state.lock:
                    state.statuses.append(status)
                body = fault.body
                if isinstance(body, dict):
                    body = json.loads(json.dumps(body).replace("{key}", key))
                self._send(status, body, _retry_headers(fault))
                return
            if fault is not None and fault.status is not None:
                with state.lock:
                    state.statuses.append(fault.status)
                body = {"error": {"message": f"injected {fault.status}", "type": "server_error"}}
                self._send(fault.status, body, _retry_headers(fault))
                return
            if fault is not None and fault.malformed:
                with state.lock:
                    state.statuses.append(200)
                self._send(200, b'{"id": "chatcmpl-test", "choices": [{"mess')
                return
            prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
            with state.lock:
                state.prompts.append(prompt)
            answer = state.answer(prompt)
            # usage as a real API reports it, from the lengths (about 4 characters a token)
            tokens_in, tokens_out = len(prompt) // 4 + 1, len(answer) // 4 + 1
            judged = any(m in prompt for m in (FAITHFULNESS_MARK, RELEVANCY_MARK, CORRECTNESS_MARK))
            with state.lock:
                state.statuses.append(200)
                state.answered.append(time.monotonic())
                state.usage["judge" if judged else "app"].update(
                    {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
                )
            self._send(
                200,
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    # the dated snapshot a real API names in its answer
                    "model": f"{request['model']}-2024-07-18",
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

    return Handler


def _retry_headers(fault: Fault) -> dict[str, str]:
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = fault.retry_after_ms
    return headers


class QuietServer(ThreadingHTTPServer):
    """Clients that time out or are interrupted hang up mid-answer: not worth a traceback.

    The listen backlog is raised from socketserver's 5: a client opening dozens of
    connections at once would otherwise see SYNs dropped and retried a second later.
    """

    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@contextmanager
def serve() -> Iterator[tuple[str, FakeOpenAI]]:
    """Run the server on a free loopback port; yields its ``/v1`` base URL and state."""
    state = FakeOpenAI()
    server = QuietServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state.url, state
    finally:
        server.shutdown()
        server.server_close()

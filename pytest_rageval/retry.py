"""Which failures are worth another attempt, how long to wait, and shared backpressure.

Nothing here imports pytest, llama-index or the openai SDK: exceptions are recognised by
their status code, their headers and their class names, so the runner handles the openai
SDK's, httpx's and aiohttp's errors alike without importing any of them.

The policy, in one place:

- transient: HTTP 429 and 5xx, time-outs, refused or dropped connections. Any other status
  (400, 401, 404, ...) and every other exception (the user's own code) fails at once;
- an answer the SDK cannot read (not JSON, not UTF-8) is transient too; a 200 whose body is
  an error (gateways relay their upstream's failures so) is what the error says: a 429 or
  5xx in its ``code``, or a rate-limit / server-error ``type``, is transient, anything else
  fails at once, and its message is kept either way;
- wait before attempt k+1: the server's ``retry-after-ms`` or ``Retry-After`` when it sent
  one that lies ahead, else "full jitter", a uniform draw from
  [0, min(max_backoff, backoff * 2**k)], so questions that failed together do not all come
  back together (a server's wait that is past, negative or unreadable counts as none);
- a 429 slows the whole runner, not one task (:class:`Throttle`): it halves the number of
  tasks in flight (at most once per round of requests), pauses new attempts until the
  server's ``Retry-After`` has passed, and each success grows the limit back towards
  ``--rag-workers``.
"""

from __future__ import annotations

import asyncio
import email.utils
import heapq
import itertools
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")

Kind = Literal["rate_limit", "server", "timeout", "connect", "dropped", "malformed"]

REFUSED_NAMES = frozenset(
    {"ConnectError", "ClientConnectorError", "ConnectionRefusedError", "gaierror"}
)
DROPPED_NAMES = frozenset(
    {
        "RemoteProtocolError",
        "ServerDisconnectedError",
        "ClientConnectionResetError",
        "ConnectionResetError",
        "BrokenPipeError",
        "ClientPayloadError",
    }
)
CONNECT_NAMES = frozenset(
    {
        "APIConnectionError",
        "ConnectError",
        "ConnectTimeout",
        "NetworkError",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientOSError",
        "ClientPayloadError",
    }
)
TIMEOUT_NAMES = frozenset(
    {"APITimeoutError", "TimeoutException", "ReadTimeout", "WriteTimeout", "PoolTimeout"}
)
UNREADABLE_NAMES = frozenset({"JSONDecodeError", "UnicodeDecodeError"})
ANSWERED_WITH_ERROR = "AnsweredWithError"
"""The class name of the error the default judge raises for a 200 whose body is an error
(``judges``): its status is the one the error names, its ``said`` the server's message."""
_ENDPOINT = re.compile(r"/(chat/completions|completions|embeddings|responses)/?$")


@dataclass(frozen=True)
class Transient:
    """A failure worth another attempt, and what the server said about it."""

    kind: Kind
    status: int | None = None
    retry_after: float | None = None
    """Seconds the server asked us to wait (``retry-after-ms`` wins over ``Retry-After``)."""
    url: str | None = None
    said: str | None = None
    """The server's own words, when they are all there is to go on (an error in a 200)."""


def classify(exc: BaseException) -> Transient | None:
    """The transient failure ``exc`` is, or None when another attempt would not help."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = status_code(exc)
    url = base_url(exc)
    if status is not None:
        said = getattr(exc, "said", None) if ANSWERED_WITH_ERROR in names else None
        if status == 429:
            return Transient("rate_limit", status, retry_after(exc), url, said)
        if 500 <= status < 600:
            return Transient("server", status, retry_after(exc), url, said)
        return None
    # the cause chain decides: httpx-aiohttp reports a dropped connection as ConnectTimeout
    chain = _chain(exc)
    causes = set().union(*(_names(cause) for cause in chain))
    if causes & REFUSED_NAMES:
        return Transient("connect", url=url)
    if causes & DROPPED_NAMES:
        return Transient("dropped", url=url)
    if names & TIMEOUT_NAMES or isinstance(exc, TimeoutError):
        return Transient("timeout", url=url)
    if names & CONNECT_NAMES or isinstance(exc, ConnectionError):
        return Transient("dropped", url=url)
    if isinstance(exc, ValueError) and names & UNREADABLE_NAMES and _raised_in(exc, "openai"):
        return Transient("malformed", url=url)  # the SDK could not read the server's body
    return None


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _raised_in(exc: BaseException, package: str) -> bool:
    """Whether a frame of ``package`` is on the exception's traceback."""
    marker = f"/{package}/"
    tb = exc.__traceback__
    while tb is not None:
        if marker in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an openai SDK / httpx / aiohttp error, if it has one."""
    for holder in (exc, getattr(exc, "response", None)):
        for name in ("status_code", "status"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
                return value
    return None


def retry_after(exc: BaseException) -> float | None:
    """Seconds from the response's ``retry-after-ms`` or ``Retry-After`` header."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)
    if headers is None:
        return None
    try:
        millis = headers.get("retry-after-ms")
        seconds = headers.get("retry-after")
    except Exception:
        return None
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    if seconds is not None:
        try:
            value = float(seconds)
        except ValueError:
            parsed = email.utils.parsedate_tz(seconds)
            # a date already past (clocks differ) is no wait: the backoff applies
            value = email.utils.mktime_tz(parsed) - time.time() if parsed else math.nan
            if value <= 0:
                return None
        if math.isfinite(value) and value >= 0:
            return value
    return None


def base_url(exc: BaseException) -> str | None:
    """``http://host/v1`` for a request to ``http://host/v1/chat/completions``."""
    request = getattr(exc, "request", None)
    if request is None:
        request = getattr(getattr(exc, "response", None), "request", None)
    url = getattr(request, "url", None)
    if url is None:
        return None
    text = str(url).split("?", 1)[0]
    return _ENDPOINT.sub("", text)


def full_jitter(attempt: int, backoff: float, max_backoff: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
    ceiling = min(max_backoff, backoff * 2 ** min(attempt, 60))
    return rng.uniform(0, ceiling) if ceiling > 0 else 0.0


def next_wait(
    retry_after: float | None,
    attempt: int,
    retries: int,
    *,
    backoff: float,
    max_backoff: float,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before another attempt after transient failure number ``attempt``
    (0-based), or None to give up: the retries are spent, or the server asked to wait
    (``retry_after``) more than ``max_backoff``. Else the server's wait, or full jitter.

    The one decision of both retry loops (the runner's and :func:`with_retries`); it does
    not sleep, so either loop waits its own way. ``rng`` is drawn from only for jitter.
    """
    if attempt >= retries or (retry_after is not None and retry_after > max_backoff):
        return None
    if retry_after is not None:
        return retry_after
    return full_jitter(attempt, backoff, max_backoff, rng)


async def with_retries(call: Callable[[], Awaitable[T]], retries: int, max_wait: float = 60.0) -> T:
    """``call()``, again after each transient failure, at most ``retries`` more times,
    for the one-off commands (``rageval generate``, ``calibrate``): the server's
    Retry-After (giving up at once when it asks for more than ``max_wait`` seconds), else
    full jitter. The pytest run uses the runner's pool and :class:`Throttle` instead."""
    rng = random.Random()
    for attempt in itertools.count():
        try:
            return await call()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            wait = next_wait(
                failure.retry_after, attempt, retries, backoff=1.0, max_backoff=max_wait, rng=rng
            )
            if wait is None:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


def gave_up(failure: Transient | None, attempts: int, seconds: float, timeout: float) -> str:
    """What happened, in words a user acts on."""
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    where = failure.url if failure is not None and failure.url else "the server"
    over = f" over {seconds:.0f} s" if seconds >= 1 else ""
    if failure is None or failure.kind == "timeout":
        if failure is not None and failure.url:
            return f"no answer from {failure.url} within {timeout:g} s ({tries})"
        return f"no answer within {timeout:g} s ({tries})"
    if failure.kind == "rate_limit":
        said = f"; the server said: {failure.said}" if failure.said else ""
        return f"rate limited by {where} (429) after {tries}{over}{said}"
    if failure.kind == "server":
        said = f"; the server said: {failure.said}" if failure.said else ""
        return f"server error from {where} ({failure.status}) after {tries}{over}{said}"
    if failure.kind == "malformed":
        return f"unreadable answer (malformed body) from {where} after {tries}{over}"
    if failure.kind == "dropped":
        return f"connection to {where} dropped without an answer ({tries}{over})"
    return f"cannot connect to {where} ({tries}{over})"


def cause(message: str) -> str:
    """The group an error message belongs to in the summary (counts, not attempts)."""
    return re.sub(r" \(\d+ attempts?[^)]*\)$| after \d+ attempts?.*$", "", message)


class Throttle:
    """Slots for tasks in flight, shared by every task of the runner.

    ``limit`` starts at ``workers`` and never exceeds it: a 429 halves it (once per round:
    a 429 for an attempt that started before the last cut does not cut again), and every
    ``limit`` successes grow it by one. A server's ``Retry-After`` pauses every new attempt
    until it has passed. With ``rpm``, attempts that ask for pacing start at most ``rpm``
    a minute, evenly spaced. Waiters are served lowest priority key first (older
    questions before newer ones). Create and use it on one event loop.
    """

    def __init__(self, workers: int, rpm: float | None = None) -> None:
        self.workers = workers
        self.limit = workers
        self.in_use = 0
        self.peak = 0
        self.rpm = rpm
        self.cuts = 0
        self._waiters: list[tuple[tuple[int, int, int], asyncio.Future[None]]] = []
        self._tie = itertools.count()
        self._grown = 0
        self._last_cut = -math.inf
        self._paused_until = -math.inf
        self._next_paced = -math.inf

    async def acquire(self, priority: tuple[int, int]) -> None:
        """Take a slot (waiting for one, oldest priority first)."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, ((*priority, next(self._tie)), future))
            try:
                await future  # the slot is counted by whoever handed it over
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self.release()  # handed over just as we were cancelled
                else:
                    self._waiters = [w for w in self._waiters if w[1] is not future]
                    heapq.heapify(self._waiters)
                raise
        self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            _, future = heapq.heappop(self._waiters)
            if not future.done():
                self.in_use += 1
                future.set_result(None)

    async def gate(self, paced: bool) -> float:
        """Wait out a server's pause (and the pacing, when ``paced``); returns the start."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            start = self._paused_until
            if paced and self.rpm:
                start = max(start, self._next_paced)
            if start <= now:
                break
            await asyncio.sleep(start - now)
        if paced and self.rpm:
            self._next_paced = max(now, self._next_paced) + 60.0 / self.rpm
        return now

    def succeeded(self) -> None:
        if self.limit >= self.workers:
            return
        self._grown += 1
        if self._grown >= self.limit:
            self._grown = 0
            self.limit += 1
            self._wake()

    def rate_limited(self, started: float, pause: float | None) -> None:
        """A 429 for an attempt that started at ``started`` (loop time)."""
        now = asyncio.get_running_loop().time()
        if pause is not None:
            self._paused_until = max(self._paused_until, now + pause)
        if started >= self._last_cut:
            self._last_cut = now
            self.limit = max(1, self.limit // 2)
            self._grown = 0
            self.cuts += 1

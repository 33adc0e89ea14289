"""Starting queued questions on a loop (``runner/starter.py``) with a pipeline that only
records what it was asked: the window, withdrawals, delivery, the stop and the drain."""

from __future__ import annotations

import asyncio
from typing import Any

from pytest_rageval.questions import Question
from pytest_rageval.runner.starter import Queued, Starter


class Pipeline:
    """Each question waits until the test releases it; records the order of starts."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.release: dict[int, asyncio.Event] = {}

    async def run_question(self, order: int, *args: Any) -> Any:
        self.started.append(order)
        event = self.release.setdefault(order, asyncio.Event())
        await event.wait()
        return f"result {order}"


def queued(order: int, delivered: dict[int, Any], wanted: Any = None) -> Queued:
    return Queued(
        order,
        None,
        Question(query=f"q{order}"),
        {},
        None,
        1,
        lambda result: delivered.__setitem__(order, result),
        wanted,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(body: Any) -> None:
    asyncio.run(body())


async def finish(starter: Starter, pipeline: Pipeline) -> None:
    """Nothing left queued or waiting when the test's loop closes."""
    starter.drain()
    for order in pipeline.started:
        pipeline.release.setdefault(order, asyncio.Event()).set()
    await settle()


def test_it_starts_a_window_and_the_next_as_each_finishes() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        pipeline, delivered = Pipeline(), {}
        starter = Starter(pipeline, workers=1, stopped=lambda: False)  # window: 4
        starter.push(loop, [queued(i, delivered) for i in range(6)])
        await settle()
        assert pipeline.started == [0, 1, 2, 3]
        pipeline.release[1].set()
        await settle()
        assert delivered == {1: "result 1"}
        assert pipeline.started == [0, 1, 2, 3, 4]
        await finish(starter, pipeline)

    run(body)


def test_a_question_no_longer_wanted_is_delivered_unasked_and_frees_its_place() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        pipeline, delivered = Pipeline(), {}
        starter = Starter(pipeline, workers=1, stopped=lambda: False)
        items = [queued(i, delivered, wanted=(lambda: False) if i < 2 else None) for i in range(6)]
        starter.push(loop, items)
        await settle()
        assert delivered == {0: None, 1: None}  # never asked
        assert pipeline.started == [2, 3, 4, 5]  # their places went to the next ones
        await finish(starter, pipeline)

    run(body)


def test_once_stopped_every_queued_question_starts_and_wanted_is_not_asked() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        pipeline, delivered, asked = Pipeline(), {}, []
        stopped = [False]
        starter = Starter(pipeline, workers=1, stopped=lambda: stopped[0])

        def wanted() -> bool:
            asked.append(1)
            return False

        starter.push(loop, [queued(i, delivered) for i in range(6)])
        assert pipeline.started == []  # tasks start on the loop's next turn
        await settle()
        assert pipeline.started == [0, 1, 2, 3]
        stopped[0] = True
        starter.push(loop, [queued(i, delivered, wanted=wanted) for i in (6, 7)])
        await settle()
        assert asked == []  # a stopped run starts everything; each then ends at once
        assert pipeline.started == [0, 1, 2, 3, 4, 5, 6, 7]
        await finish(starter, pipeline)

    run(body)


def test_a_cancelled_question_is_delivered_as_none_and_drain_delivers_the_rest() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        pipeline, delivered = Pipeline(), {}
        starter = Starter(pipeline, workers=1, stopped=lambda: False)
        starter.push(loop, [queued(i, delivered) for i in range(6)])
        await settle()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        others[0].cancel()
        await settle()
        assert list(delivered.values()) == [None]
        assert pipeline.started == [0, 1, 2, 3, 4]  # its place went to the next
        starter.drain()  # the runner closes: question 5 never started
        assert delivered[5] is None and len(delivered) == 2
        await finish(starter, pipeline)

    run(body)

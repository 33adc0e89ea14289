"""The runner's backlog without an event loop: what starts, in which order, and when."""

from __future__ import annotations

from pytest_rageval.runner.backlog import Backlog


def test_it_starts_oldest_first_and_no_more_than_the_window() -> None:
    backlog: Backlog[str] = Backlog(window=3)
    backlog.push(["a", "b"])
    backlog.push(["c", "d", "e"])
    assert backlog.take() == ["a", "b", "c"]
    assert (backlog.running, len(backlog)) == (3, 2)
    assert backlog.take() == []  # the window is full


def test_each_finished_item_frees_one_place() -> None:
    backlog: Backlog[int] = Backlog(window=2)
    backlog.push(range(5))
    assert backlog.take() == [0, 1]
    backlog.finished()
    assert backlog.take() == [2]
    backlog.finished()
    backlog.finished()
    assert backlog.take() == [3, 4]
    assert (backlog.running, len(backlog)) == (2, 0)
    assert backlog.take() == []


def test_once_stopped_everything_queued_starts() -> None:
    backlog: Backlog[int] = Backlog(window=2)
    backlog.push(range(6))
    assert backlog.take() == [0, 1]
    assert backlog.take(stopped=True) == [2, 3, 4, 5]
    assert (backlog.running, len(backlog)) == (6, 0)


def test_drain_hands_back_what_never_started() -> None:
    backlog: Backlog[str] = Backlog(window=1)
    backlog.push(["a", "b", "c"])
    assert backlog.take() == ["a"]
    assert backlog.drain() == ["b", "c"]
    assert (backlog.running, len(backlog)) == (1, 0)
    assert backlog.drain() == []


def test_the_window_and_the_look_ahead_grow_with_the_workers() -> None:
    from pytest_rageval.runner.backlog import enough_waiting, window

    # two running per worker plus two spare; sets submitted early while fewer than two
    # per worker wait
    assert [window(w) for w in (1, 8, 32)] == [4, 18, 66]
    assert [enough_waiting(w) for w in (1, 8, 32)] == [2, 16, 64]

"""Submitting sets: a whole set when its first question runs, and the sets after it early,
while the pool runs low and their fixtures are the same session-scoped values (a run of
small sets keeps every slot busy). Which evaluators a set uses is decided here."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_rageval import callphase, judges
from pytest_rageval.calibration import Judging
from pytest_rageval.keys import PROBLEM_KEY, QUESTION_KEY
from pytest_rageval.questions import DEFAULT_QUERY_ENGINE, as_question
from pytest_rageval.results import QuestionResult, describe
from pytest_rageval.runner import Runner
from pytest_rageval.runner.backlog import LOOKAHEAD_SETS, enough_waiting
from pytest_rageval.sets import SET_KEY, RagSet, new_set
from pytest_rageval.settings import Settings
from pytest_rageval.thresholds import closest


class RagSetupError(Exception):
    """Something the user must define or fix before questions can be evaluated."""


class Submitter:
    """Hands sets to the runner (one per process; the xdist controller submits nothing)."""

    def __init__(
        self,
        settings: Settings,
        runner: Callable[[], Runner],
        sets: list[RagSet],
        metrics_seen: set[str],
        wait: Callable[..., Any],
        *,
        looks_ahead: bool,
    ) -> None:
        self.settings = settings
        self.runner = runner
        """The process's runner, started on first use."""
        self.sets = sets
        """The run's sets in run order (the session's list: sets made at run time join it)."""
        self.metrics_seen = metrics_seen
        self.wait = wait
        self.looks_ahead = looks_ahead
        """False on an xdist worker, which learns its sets one at a time."""
        self._shared: dict[tuple[object, object], tuple[Any, Any]] = {}
        self._told: dict[int, str] = {}
        self._judging = Judging()
        """id of a set that cannot be evaluated -> the item that said why."""

    def ask(self, item: pytest.Item, request: pytest.FixtureRequest) -> QuestionResult | None:
        """This item's result; submits its whole set first. None when setup failed."""
        if PROBLEM_KEY in item.stash:
            return None
        rset = item.stash.get(SET_KEY, None)
        if rset is None:  # a rag_result test whose rag_question is not parametrized
            try:
                question = as_question(request.getfixturevalue("rag_question"))
            except TypeError as exc:
                item.stash[PROBLEM_KEY] = str(exc)
                return None
            rset = new_set(item.nodeid, item, question.file_gate, self.settings)
            rset.members[item.nodeid] = question
            self.sets.append(rset)
            item.stash[QUESTION_KEY] = question
            item.stash[SET_KEY] = rset
        if not rset.submitted and rset.problem is None:
            try:
                engine = self._fixture(request, rset.engine_fixture, item, rset)
                every = (
                    self._fixture(request, "rag_evaluators", item, rset)
                    if _wants_rag_evaluators(rset, item)
                    else None
                )
                evaluators = _pick(
                    rset,
                    every,
                    lambda: self._fixture(request, "rag_embed_model", item, rset),
                )
            except RagSetupError as exc:
                rset.problem = str(exc)  # the set's, not this item's: said once, below
            else:
                self._submit(rset, engine, evaluators)
                if every is not None:
                    self._remember(rset, item, engine, every)
        if rset.index >= 0:
            self._keep_pool_full(rset)
        if rset.problem is not None:
            item.stash[PROBLEM_KEY] = self._problem(rset, item)
            return None
        answered: tuple[QuestionResult | None, Any] = self.wait(rset.result, item.nodeid)
        if answered[0] is None:
            callphase.skip_unsampled(item, rset)
        return answered[0]

    def _problem(self, rset: RagSet, item: pytest.Item) -> str:
        """What ``item`` fails with when ``rset`` cannot be evaluated: the reason, on the
        set's first item to run, and one line pointing there on the others (a set of 500
        questions shows its one configuration mistake once, not 500 times)."""
        first = self._told.setdefault(id(rset), item.nodeid)
        if first == item.nodeid:
            return rset.problem or ""
        return f"not evaluated: {rset.name} could not be set up; the reason is shown on {first}"

    def _submit(self, rset: RagSet, engine: Any, evaluators: Mapping[str, Any]) -> None:
        rset.metrics = tuple(evaluators)
        self.metrics_seen.update(evaluators)
        # which metrics apply to each question: worked out once, here
        applicable = {
            nodeid: tuple(n for n, ev in evaluators.items() if judges.applies(ev, question))
            for nodeid, question in rset.members.items()
        }
        expected = Counter(name for names in applicable.values() for name in names)
        problem = _unknown_metrics(rset, evaluators) or (
            None if expected else _nothing_applies(rset, evaluators)
        )
        if problem is not None:
            rset.problem = problem
            return
        if rset.labels is not None:
            problem = self._calibrate(rset, evaluators)
            if problem is not None:
                rset.problem = problem
                return
        rset.applicable.update(applicable)
        rset.submitted = True
        if rset.gate.sequential:
            # in the visiting order; the runner asks, as each one's turn comes, whether
            # the set still wants it
            ordered = rset.sample(applicable)
            self.runner().submit_questions(
                engine,
                [(nodeid, rset.members[nodeid]) for nodeid in ordered],
                evaluators,
                _on_done(rset),
                repeat=rset.repeat,
                wanted=rset.wanted,
            )
            return
        rset.tally = rset.gate.tally(expected)
        self.runner().submit_questions(
            engine, list(rset.members.items()), evaluators, _on_done(rset), repeat=rset.repeat
        )

    def _calibrate(self, rset: RagSet, evaluators: Mapping[str, Any]) -> str | None:
        """Judge the set's labels file with its evaluators and correct its gate with
        them; why it cannot be (the set errors with it), else None."""
        assert rset.labels is not None
        runner = self.runner()
        calibration, problem, notices = self._judging.calibrate(
            rset.labels, evaluators, runner, self.wait, name=rset.name, repeat=rset.repeat
        )
        runner.notices.extend(n for n in notices if n not in runner.notices)
        if calibration is not None:
            rset.gate = dataclasses.replace(rset.gate, calibration=calibration)
        return problem

    def _fixture(
        self, request: pytest.FixtureRequest, name: str, item: pytest.Item, rset: RagSet
    ) -> Any:
        try:
            return request.getfixturevalue(name)
        except RagSetupError as exc:
            if name != DEFAULT_QUERY_ENGINE or not str(exc).startswith("no query engine"):
                raise
            near = difflib.get_close_matches(name, _users_fixtures(item), n=1, cutoff=0.6)
            if not near:
                raise
            raise RagSetupError(
                f"{exc}; your fixture {near[0]!r} looks meant to be it: rename it to {name}, "
                "or name it in the question file (query_engine: ...)"
            ) from None
        except NotImplementedError as exc:
            todo = _todo(exc, _fixture_def(item, name), item.config.rootpath)
            if todo is None:
                rset.setup_error = f"not evaluated: the {name} fixture raised {describe(exc)}"
                raise
            raise RagSetupError(f"{todo}: the {name} fixture is not written yet: {exc}") from None
        except Exception as exc:
            if not isinstance(exc, pytest.FixtureLookupError):
                rset.setup_error = f"not evaluated: the {name} fixture raised {describe(exc)}"
                raise
            where = item.nodeid.split("::", 1)[0]
            others = [f for f in _users_fixtures(item) if f != DEFAULT_QUERY_ENGINE]
            raise RagSetupError(
                f"no fixture named {name!r}, which {where} uses as its query engine"
                f"{closest(name, others)}; define it "
                "in a conftest.py next to that file, returning your llama-index query engine "
                "(or a callable that takes the query string)"
            ) from None

    # -- keeping the pool full across small sets ------------------------------------------

    def _remember(self, rset: RagSet, item: pytest.Item, engine: Any, every: Any) -> None:
        """Note the session-scoped fixtures ``rset`` was submitted with, so that later sets
        resolving to the very same fixtures can be submitted before their items run."""
        fixtures = _shared_fixtures(item, rset.engine_fixture)
        if fixtures is not None:
            self._shared[fixtures] = (engine, every)

    def _keep_pool_full(self, rset: RagSet) -> None:
        """Submit the sets that follow ``rset`` early, while fewer than two questions per
        worker are waiting, so that a run of small sets does not drain the pool between
        sets. Only sets whose engine and evaluators are the same session-scoped fixture
        values (no other setup to wait for), and not on an xdist worker, which learns its
        sets one at a time."""
        if not self._shared or not self.looks_ahead:
            return
        enough = enough_waiting(self.settings.workers)
        waiting = 0
        for other in self.sets[rset.index : rset.index + LOOKAHEAD_SETS]:
            if waiting >= enough:
                return
            if not other.submitted and (other.problem is not None or not self._submit_early(other)):
                continue
            waiting += other.unfinished()

    def _submit_early(self, rset: RagSet) -> bool:
        first = rset.items[0] if rset.items else None
        if first is None or any(PROBLEM_KEY in item.stash for item in rset.items):
            return False
        if any(_may_skip(item) for item in rset.items):
            return False
        fixtures = _shared_fixtures(first, rset.engine_fixture)
        if fixtures is None or fixtures not in self._shared:
            return False
        engine, every = self._shared[fixtures]
        try:
            evaluators = _pick(rset, every)
        except RagSetupError:
            return False  # said when its first item runs
        self._submit(rset, engine, evaluators)
        return True


def _todo(exc: BaseException, definition: Any, rootpath: Path) -> str | None:
    """Where a fixture raised ``NotImplementedError`` itself (an untouched TODO, as
    ``rageval init`` writes it), as ``file:line``; None when it came from deeper down
    (the app's own code), whose traceback is worth showing."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    func = getattr(definition, "func", None)
    if tb is None or func is None or tb.tb_frame.f_code is not getattr(func, "__code__", None):
        return None
    where = Path(tb.tb_frame.f_code.co_filename)
    with contextlib.suppress(ValueError):
        where = where.relative_to(rootpath)
    return f"{where}:{tb.tb_lineno}"


def _on_done(rset: RagSet) -> Callable[[str, QuestionResult | BaseException | None], None]:
    """What the runner calls (on its loop) as each question of ``rset`` finishes."""

    def done(nodeid: str, outcome: QuestionResult | BaseException | None) -> None:
        if outcome is None and rset.sampling is not None and not rset.wanted(nodeid):
            rset.withdrawn(nodeid)  # decided before its turn: never asked
            return
        if isinstance(outcome, QuestionResult):
            result = outcome
        else:
            message = "not evaluated: cancelled" if outcome is None else describe(outcome)
            result = QuestionResult(rset.members[nodeid], errors={"query": message})
        if not result.applicable and result.errors:
            result.applicable = rset.applicable.get(nodeid, ())
        rset.finished(nodeid, result)

    return done


def _pick(
    rset: RagSet, evaluators: Any, embed_model: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """The evaluators of ``rset``: what the ``rag_evaluators`` fixture returned (None when
    it was not needed), or, for names a data file lists that it does not provide, the
    built-in evaluators of that name (``evaluators.BY_NAME``, with the file's options;
    ``embed_model`` gives those that embed text the ``rag_embed_model`` fixture's model,
    and without it they cannot be built here)."""
    if evaluators is not None and (not isinstance(evaluators, Mapping) or not evaluators):
        raise RagSetupError(
            "the rag_evaluators fixture must return a non-empty dict of metric name -> "
            f"llama-index evaluator, got {evaluators!r}"
        )
    if rset.evaluator_names is None:
        return dict(evaluators or {})
    from pytest_rageval.evaluators import BY_NAME

    given = evaluators or {}
    picked = {}
    for name in rset.evaluator_names:
        options = rset.evaluator_options.get(name)
        if options is None and name in given:
            picked[name] = given[name]
        elif name in BY_NAME:
            options = dict(options or {})
            cls = BY_NAME[name]
            if "embed_model" in inspect.signature(cls).parameters and "embed_model" not in options:
                if embed_model is None:
                    raise RagSetupError(f"{rset.name}: {name} needs the rag_embed_model fixture")
                options["embed_model"] = embed_model()
            picked[name] = _built_in(rset, name, cls, options)
        elif options is not None:
            raise RagSetupError(
                f"{rset.name} gives options for evaluator {name!r}, which is not built in"
                f"{closest(name, BY_NAME)}; options are for the built-in evaluators "
                f"({', '.join(BY_NAME)}); configure your own in your rag_evaluators fixture"
            )
        else:
            known = [*given, *(n for n in BY_NAME if n not in given)]
            raise RagSetupError(
                f"{rset.name} asks for evaluator {name!r}, which neither rag_evaluators "
                f"provides nor is built in{closest(name, known)} (known: {', '.join(known)}); "
                "fix the file's 'evaluators' list or add it to your rag_evaluators fixture"
            )
    return picked


def _built_in(rset: RagSet, name: str, cls: type, options: Mapping[str, Any]) -> Any:
    try:
        return cls(**options)
    except (TypeError, ValueError, re.error) as exc:
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("self",)]
        raise RagSetupError(
            f"{rset.name}: the options of evaluator {name!r} are not valid: {exc}; it takes "
            + (", ".join(accepted) if accepted else "no options")
        ) from None


def _wants_rag_evaluators(rset: RagSet, item: pytest.Item) -> bool:
    """Whether ``rset`` needs the ``rag_evaluators`` fixture: not when its data file names
    only built-in evaluators and the fixture is the plugin's own (LLM judges only), so
    that a file of deterministic metrics runs without a judge."""
    names = rset.evaluator_names
    if names is None:
        return True
    from pytest_rageval.evaluators import BY_NAME

    if any(name not in BY_NAME or name in judges.DEFAULT_METRICS for name in names):
        return True
    found = _fixture_def(item, "rag_evaluators")
    return found is None or getattr(found.func, "__module__", None) != "pytest_rageval.fixtures"


def _shared_fixtures(item: pytest.Item, engine_name: str) -> tuple[object, object] | None:
    """The fixture definitions ``item`` gets its engine and evaluators from, when both are
    session-scoped and unparametrized (so every item that resolves to them gets the same
    values); None otherwise, or when pytest's fixture lookup is not what we expect."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    found = []
    for name in (engine_name, "rag_evaluators"):
        if name in params:
            return None
        definition = _fixture_def(item, name)
        if definition is None or definition.scope != "session" or definition.params:
            return None
        found.append(definition)
    return found[0], found[1]


def _fixture_def(item: pytest.Item, name: str) -> Any:
    """The definition of fixture ``name`` that ``item`` gets; None when there is none or
    pytest's fixture lookup (a private API) is not what we expect."""
    manager = item.session._fixturemanager
    try:
        defs = manager.getfixturedefs(name, item)
    except Exception:
        try:  # pytest 8.0 looks fixtures up by node id (8.1 on: by node)
            defs = manager.getfixturedefs(name, item.nodeid)  # type: ignore[arg-type]
        except Exception:
            return None
    return defs[-1] if defs else None


def _users_fixtures(item: pytest.Item) -> list[str]:
    """The fixtures ``item`` can use that the user (or a plugin other than this one and
    pytest itself) defines: what a misspelt engine fixture name was meant to be."""
    manager = item.session._fixturemanager
    names: list[str] = []
    # pytest's private registry of fixture names: renamed in pytest 9
    for registry in ("_arg2fixturedefs", "_arg2nodeid2fixturedefs", "_arg2node2fixturedefs"):
        names.extend(n for n in getattr(manager, registry, None) or () if n not in names)
    found = []
    for name in names:
        definition = _fixture_def(item, name)
        module = getattr(getattr(definition, "func", None), "__module__", None) or ""
        if definition is not None and not module.startswith(("pytest_rageval", "_pytest")):
            found.append(name)
    return found


def _may_skip(item: pytest.Item) -> bool:
    return (
        any(item.iter_markers("skip"))
        or any(item.iter_markers("skipif"))
        or any(item.iter_markers("xfail"))
    )


def _unknown_metrics(rset: RagSet, evaluators: Mapping[str, Any]) -> str | None:
    """A threshold naming a metric no evaluator of the set provides (a typo, usually)."""
    for metric, where in rset.named.items():
        if metric not in evaluators:
            return (
                f"{where} sets a threshold for {metric!r}, which no evaluator of {rset.name} "
                f"provides{closest(metric, evaluators)}; its metrics are: "
                f"{', '.join(evaluators)}"
            )
    return None


def _nothing_applies(rset: RagSet, evaluators: Mapping[str, Any]) -> str:
    """Why a set where no metric applies to any question is not judged (it would pass
    without a judgement)."""
    needs = []
    for name, evaluator in evaluators.items():
        what = judges.needs(evaluator)
        needs.append(f"{name} needs {what}" if what else f"{name} does not apply")
    return f"no metric applied to any question of {rset.name}: {'; '.join(needs)}"

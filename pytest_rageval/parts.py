"""A sharded run's parts (no pytest here): which shard a question belongs to, the
partial report a shard writes, and reading a run's parts back as one run, refusing
parts that are not one complete run. :mod:`pytest_rageval.merge` decides the gates.

A part holds every question record the shard made (its outcome ``judged`` where the
set's rates decide it), each of its sets' :class:`~pytest_rageval.gate.Gate`, the full
size of every set and each question's place in the run's order, and a fingerprint of
what makes two shards one run: the settings, the question files, the baseline, the
commit (``GITHUB_SHA``) and the package's version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rageval.baseline import Baseline
from pytest_rageval.gate import Gate

PART_KIND = "pytest-rageval shard"
PART_VERSION = 1
OTHERS = ("all", "first")
"""Where tests that are not questions run: on every shard, or on the first only."""


class PartError(Exception):
    """Parts that cannot be merged into one run (exit 2): the message names the file."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``; ``others`` says where non-question tests
    run (:data:`OTHERS`)."""

    index: int
    count: int
    others: str = "all"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def keeps(self, set_name: str, question_id: str) -> bool:
        return shard_of(set_name, question_id, self.count) == self.index


def parse_shard(text: str, where: str) -> Shard:
    """``I/N`` as a :class:`Shard`; ValueError says what is wrong, naming ``where``."""
    index, slash, count = str(text).strip().partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not slash or shard is None or shard.count < 1 or not 1 <= shard.index <= shard.count:
        raise ValueError(
            f"{where}: {text!r} is not a shard; give I/N with 1 <= I <= N, e.g. "
            "--rag-shard 2/4 for the second of four shards"
        )
    return shard


def shard_of(set_name: str, question_id: str, count: int) -> int:
    """The shard (1-based) of a question: its SHA-256 of set name and id, modulo
    ``count`` (as pytest-shard does for test ids). Adding a question moves no other."""
    digest = hashlib.sha256(f"{set_name}\x00{question_id}".encode()).hexdigest()
    return int(digest, 16) % count + 1


def digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def baseline_digest(baseline: Baseline | None) -> str | None:
    """What a baseline says, as a digest (None: no baseline): the shards and the merge
    must gate against the same one."""
    if baseline is None:
        return None
    return digest({name: [s.rates, s.results] for name, s in sorted(baseline.sets.items())})


def fingerprint(
    settings: Mapping[str, Any],
    files: Mapping[str, str],
    gates: Mapping[str, Mapping[str, Any]],
    sizes: Mapping[str, int],
    baseline: str | None,
    commit: str | None,
    version: str | None,
) -> str:
    """What makes the shards one run. ``workers`` is left out: it is per shard."""
    kept = {key: value for key, value in settings.items() if key != "workers"}
    return digest([kept, dict(files), dict(gates), dict(sizes), baseline, commit, version])


def part_document(
    shard: Shard,
    *,
    fingerprint: str,
    sizes: Mapping[str, int],
    gates: Mapping[str, Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    positions: Mapping[tuple[str, str], int],
    run: Mapping[str, Any],
) -> dict[str, Any]:
    """A shard's ``--rag-report``: its records (each with its place in the run's order),
    every set's full size, its sets' gates, and ``run`` (settings, notices, counts...)."""
    return {
        "version": PART_VERSION,
        "kind": PART_KIND,
        "shard": {"index": shard.index, "count": shard.count, "others": shard.others},
        "fingerprint": fingerprint,
        "sizes": dict(sizes),
        "gates": {name: dict(gate) for name, gate in gates.items()},
        "records": [
            {"position": positions.get((r["set"], r["id"]), -1), "record": dict(r)} for r in records
        ],
        **run,
    }


@dataclass
class Part:
    """One part as read: where it came from and its document."""

    path: str
    document: dict[str, Any]

    @property
    def index(self) -> int:
        return int(self.document["shard"]["index"])

    @property
    def count(self) -> int:
        return int(self.document["shard"]["count"])


def read_part(path: Path) -> Part:
    """A part file, checked to be one; :class:`PartError` names the file."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PartError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PartError(f"{name}: cannot be read ({exc})") from None
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise PartError(
            f"{name}{where}: not a complete shard report (invalid JSON: {exc}); it may be "
            "cut short: upload it again, or run that shard again"
        ) from None
    if not isinstance(document, dict) or document.get("kind") != PART_KIND:
        raise PartError(
            f"{name}: not a shard report; write one with pytest --rag-shard I/N "
            "--rag-report PATH (a full --rag-report needs no merge)"
        )
    if document.get("version") != PART_VERSION:
        raise PartError(
            f"{name}: shard report version {document.get('version')!r}, this pytest-rageval "
            f"reads version {PART_VERSION}; run the shards and the merge with one version"
        )
    try:
        shard = document["shard"]
        parse_shard(f"{shard['index']}/{shard['count']}", name)
        for key in ("fingerprint", "sizes", "gates", "records"):
            document[key]
        for entry in document["records"]:
            entry["record"]["set"], entry["record"]["id"], entry["position"]
    except (KeyError, TypeError, ValueError) as exc:
        raise PartError(f"{name}: not a complete shard report ({exc!r} is wrong)") from None
    return Part(name, document)


@dataclass
class Run:
    """The parts of one run, checked complete: every record once, in the run's order."""

    parts: list[Part]
    records: list[dict[str, Any]]
    gates: dict[str, Gate]

    @property
    def first(self) -> dict[str, Any]:
        return self.parts[0].document


def assemble(parts: Iterable[Part]) -> Run:
    """The run the parts make, or :class:`PartError` when they are not one complete
    run: a shard missing or given twice, parts of another run, a question lost or twice."""
    parts = sorted(parts, key=lambda part: part.index)
    if not parts:
        raise PartError("no shard reports given")
    _check_one_run(parts)
    _check_every_shard(parts)
    placed, where, gates = _gather(parts)
    _check_sizes(parts[0].document["sizes"], where)
    placed.sort(key=lambda entry: (entry[0], entry[1]))
    return Run(parts, [record for *_, record in placed], gates)


def _check_one_run(parts: Sequence[Part]) -> None:
    """:class:`PartError` unless every part is split as the first and from its run."""
    first = parts[0]
    for part in parts:
        if part.count != first.count:
            raise PartError(
                f"{part.path}: shard {part.index}/{part.count}, but {first.path} is "
                f"{first.index}/{first.count}: parts of runs split differently"
            )
        if part.document["fingerprint"] != first.document["fingerprint"]:
            raise PartError(
                f"{part.path}: from another run than {first.path} (the settings, the "
                "question files, the baseline or the commit differ); merge the parts of "
                "one run"
            )


def _check_every_shard(parts: Sequence[Part]) -> None:
    """:class:`PartError` unless every shard of the run is given, each once."""
    count = parts[0].count
    seen: dict[int, str] = {}
    for part in parts:
        if part.index in seen:
            raise PartError(
                f"{part.path}: shard {part.index}/{count} twice (also {seen[part.index]})"
            )
        seen[part.index] = part.path
    missing = [str(i) for i in range(1, count + 1) if i not in seen]
    if missing:
        raise PartError(
            f"shard {', '.join(f'{i}/{count}' for i in missing)} missing: "
            f"{len(parts)} of {count} parts given ({', '.join(p.path for p in parts)})"
        )


def _gather(
    parts: Sequence[Part],
) -> tuple[list[tuple[int, int, dict[str, Any]]], dict[tuple[str, str], str], dict[str, Gate]]:
    """The parts' records, each with its place in the run's order and its place among the
    parts, which part each question came from, and every set's gate; :class:`PartError`
    when a question is in two parts."""
    placed: list[tuple[int, int, dict[str, Any]]] = []
    where: dict[tuple[str, str], str] = {}
    gates: dict[str, Gate] = {}
    for part in parts:
        for name, gate in part.document["gates"].items():
            gates.setdefault(name, Gate.from_json(gate))
        for entry in part.document["records"]:
            record = entry["record"]
            key = (record["set"], record["id"])
            if key in where:
                raise PartError(
                    f"{part.path}: question {record['id']!r} of {record['set']} is also in "
                    f"{where[key]}"
                )
            where[key] = part.path
            placed.append((entry["position"], len(placed), record))
    return placed, where, gates


def _check_sizes(sizes: Mapping[str, int], where: Mapping[tuple[str, str], str]) -> None:
    """:class:`PartError` unless the parts hold every question of every set (``sizes``)."""
    found: dict[str, int] = {}
    for name, _ in where:
        found[name] = found.get(name, 0) + 1
    for name, size in sizes.items():
        if found.get(name, 0) != size:
            raise PartError(
                f"{name}: {found.get(name, 0)} of its {size} questions are in the parts; a "
                "shard lost some (was its report written before it finished?)"
            )

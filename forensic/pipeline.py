"""The per-input work: a map over inputs that yields Arrow record batches.

:func:`iter_input_batches` is the unit of work.  It reads one input with its
parser, completes every event (provenance, instance attribution, UTC time,
detection rules) and yields record batches.  It depends only on a picklable
:class:`ParseTask`, so any executor can run it: in-process, a process pool
today, a distributed engine later.  :func:`run_parse_task` wraps it for pool
executors by spilling the batches into sorted run files on disk and returning
a small :class:`InputReport`.
"""

from __future__ import annotations

import gc
import json
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import parsers
from forensic.correlate import ObjectFacts
from forensic.discovery import open_evidence, sha256_evidence
from forensic.model import TZ_UTC, Event, EventColumns, InputEvidence, ParseWarning, parse_local_text
from forensic.rules import RuleSet, default_rules, load_rules
from forensic.schema import TIMELINE_COLUMNS, TIMELINE_SCHEMA, BatchBuilder, attributes_json
from forensic.sorting import SortedRunWriter
from forensic.timezones import TimeContext
from parsers.base import Source
from parsers.textio import Span

HASH_CHUNK = 1 << 20
MAX_WARNINGS_KEPT = 200  # per input in the manifest; the rest are counted


def sha256_file(path: str) -> str:
    return sha256_evidence(path)


@dataclass
class PrescanTask:
    path: str
    display_path: str
    size: int
    parser_name: str | None
    # Find places to cut the input for a parse in pieces (forensic.pieces).
    cuts: bool = False
    # "all"; or, for a big input whose first pass is two tasks, "hash" or
    # "scan" (forensic.pieces.join_first_pass puts them together).
    part: str = "all"


@dataclass
class PrescanResult:
    path: str
    sha256: str | None
    evidence: InputEvidence | None
    error: str | None = None


def run_prescan_task(task: PrescanTask) -> PrescanResult:
    """Hash an input and, for artifacts, run the parser's cheap first pass
    (``task.part``: only one of the two)."""
    sha = None
    if task.part != "scan":
        try:
            sha = sha256_file(task.path)
        except OSError as exc:
            return PrescanResult(task.path, None, None, f"cannot read: {exc.strerror or exc}")
        if task.part == "hash":
            return PrescanResult(task.path, sha, None)
    if task.parser_name is None:
        return PrescanResult(task.path, sha, None)
    parser = parsers.parser_by_name(task.parser_name)
    prescan = getattr(parser, "prescan", None)
    if prescan is None:
        return PrescanResult(task.path, sha, InputEvidence())
    src = Source(task.display_path, task.size, partial(open_evidence, task.path))
    try:
        if task.cuts and getattr(parser, "cuttable", False):
            return PrescanResult(task.path, sha, prescan(src, cuts=True))
        return PrescanResult(task.path, sha, prescan(src))
    except Exception as exc:  # noqa: BLE001 - evidence must never crash the run
        return PrescanResult(task.path, sha, InputEvidence(),
                             f"first pass failed: {type(exc).__name__}: {exc}")


@dataclass
class ParseTask:
    path: str
    display_path: str
    root: str
    size: int
    sha256: str
    parser_name: str
    host: str | None
    instance: str | None
    time_context: TimeContext
    options: dict[str, Any] = field(default_factory=dict)
    rule_paths: list[str] = field(default_factory=list)
    # Engine annotations for single events, e.g. {"cycle_burst": ["2025-..."]}
    annotations: dict[str, list[str]] = field(default_factory=dict)
    # Engine annotations for time windows: {"setup_mode": [(start, end|None)]}
    windows: dict[str, list] = field(default_factory=dict)
    spill_dir: str = ""
    # Only this part of the input (a piece of a big log: forensic.pieces).
    span: Span | None = None


@dataclass
class InputReport:
    path: str
    display_path: str
    parser_name: str
    events: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warning_count: int = 0
    errors: list[str] = field(default_factory=list)
    lost_records: int = 0
    damaged: bool = False
    flags: Counter = field(default_factory=Counter)
    event_types: Counter = field(default_factory=Counter)
    tz_sources: Counter = field(default_factory=Counter)
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    runs: list[str] = field(default_factory=list)
    facts: ObjectFacts = field(default_factory=ObjectFacts)
    parser_stats: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)  # accounting, filled by the timeline run
    pieces: int = 1  # tasks the input was parsed in (forensic.pieces)

    def saw_time(self, iso: str) -> None:
        """Widen first/last timestamp to include ``iso`` (UTC ISO text)."""
        if self.first_timestamp is None or iso < self.first_timestamp:
            self.first_timestamp = iso
        if self.last_timestamp is None or iso > self.last_timestamp:
            self.last_timestamp = iso

    def add_warning(self, w: ParseWarning) -> None:
        self.warning_count += 1
        self.lost_records += max(0, w.lost_records)
        self.damaged = self.damaged or w.damaged
        if len(self.warnings) < MAX_WARNINGS_KEPT:
            self.warnings.append({"message": w.message, "position": w.position,
                                  "lost_records": w.lost_records})


_RULESETS: dict[tuple[str, ...], RuleSet] = {}


def _ruleset(paths: list[str]) -> RuleSet:
    key = tuple(paths)
    if key not in _RULESETS:
        from pathlib import Path
        rules = default_rules() + (load_rules([Path(p) for p in paths]) if paths else ())
        _RULESETS[key] = RuleSet(rules)
    return _RULESETS[key]


def finish_event(ev: Event, task: ParseTask, rules: RuleSet) -> None:
    """What the engine adds to a parser's event."""
    if ev.host is None:
        ev.host = task.host
    if ev.instance is None:
        ev.instance = task.instance
    if ev.timestamp is None and ev.local_time is not None:
        ev.timestamp, ev.tz_source = task.time_context.resolve(ev.local_time)
    elif ev.timestamp is not None and ev.tz_source is None:
        ev.tz_source = TZ_UTC
    elif ev.tz_source is None:
        # A state row with no time: say how this input's times would be read.
        ev.tz_source = task.time_context.resolve_method()
    if task.annotations:
        for name, values in task.annotations.items():
            if ev.local_text is not None and ev.local_text in values:
                ev.attributes[name] = 1
    if task.windows and ev.local_time is not None:
        for name, spans in task.windows.items():
            if any(start <= ev.local_time and (end is None or ev.local_time < end) for start, end in spans):
                ev.attributes[name] = 1
    rules.apply(ev)


# Parsers allocate millions of short-lived tuples and lists that form no
# cycles; at CPython's default young-generation threshold (700 allocations)
# the collector walks them thousands of times per input (about 6% of an
# ERRORLOG's parse).  Cycles are still collected, only less often.
_GC_YOUNG_THRESHOLD = 100_000


@contextmanager
def _fewer_collections():
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], _GC_YOUNG_THRESHOLD), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def iter_input_batches(task: ParseTask, report: InputReport) -> Iterator[pa.RecordBatch]:
    """Parse one input into complete timeline record batches (file order)."""
    with _fewer_collections():
        yield from _input_batches(task, report)


def _input_batches(task: ParseTask, report: InputReport) -> Iterator[pa.RecordBatch]:
    parser = parsers.parser_by_name(task.parser_name)
    src = Source(task.display_path, task.size, partial(open_evidence, task.path))
    rules = _ruleset(task.rule_paths)
    builder = BatchBuilder(task.display_path, task.sha256)
    try:
        gen = parser.parse(src, task.options if task.span is None else {**task.options, "span": task.span})
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                # A parser may return its own counts (records read, skipped,
                # recovered...) as the generator's value: they go to the manifest.
                if isinstance(stop.value, dict):
                    report.parser_stats = stop.value
                break
            if isinstance(item, ParseWarning):
                report.add_warning(item)
                continue
            if isinstance(item, EventColumns):
                for event in columns_needing_events(item, task, rules):
                    _count(event, task, rules, report)
                    batch = builder.add(event)
                    if batch is not None:
                        yield batch
                batch = finish_columns(item, task, report)
                if batch is not None:
                    yield batch
                continue
            _count(item, task, rules, report)
            batch = builder.add(item)
            if batch is not None:
                yield batch
    except Exception as exc:  # noqa: BLE001 - a parser bug must not lose the run
        report.damaged = True
        report.errors.append(
            f"parser stopped after {report.events} events: {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(exc)[-3:]))
    batch = builder.flush()
    if batch is not None:
        yield batch


def _count(item: Event, task: ParseTask, rules: RuleSet, report: InputReport) -> None:
    """Finish one event and account for it in the report."""
    finish_event(item, task, rules)
    report.facts.observe(item)
    report.events += 1
    for flag in item.flags:
        report.flags[flag] += 1
    report.event_types[item.event_type] += 1
    report.tz_sources[item.tz_source] += 1
    if item.timestamp is not None:
        report.saw_time(item.timestamp.isoformat())


def columns_needing_events(cols: EventColumns, task: ParseTask, rules: RuleSet) -> Iterator[Event]:
    """Take out of ``cols`` (in place) the rows that detection or annotations
    can touch, and return them as events; the rest stay columnar."""
    annotated = set().union(*task.annotations.values()) if task.annotations else set()
    windows = any(task.windows.values()) if task.windows else False
    # Rules: tested row by row on what the block holds (a source with rules for
    # any event, such as the trace's statement-text rules, needs that).  Windows:
    # decided once per distinct (id, type) pair.
    flags = rules.rows_may_fire(cols)
    if windows:
        needs = {pair: pair[1] != "log_message" for pair in set(zip(cols.event_id, cols.event_type, strict=True))}
        flags = [f or needs[pair] for f, pair in zip(flags, zip(cols.event_id, cols.event_type, strict=True),
                                                      strict=True)]
    if annotated:
        flags = [f or lt in annotated for f, lt in zip(flags, cols.local_text, strict=True)]
    if not any(flags):
        return iter(())
    take = [i for i, f in enumerate(flags) if f]
    keep = [i for i, f in enumerate(flags) if not f]
    events = [cols.event(i, parse_local_text(cols.local_text[i])) for i in take]
    for name in ("event_type", "event_id", "message", "local_text", "source_record", "user", "database",
                 "object_name", "object_type", "attributes"):
        column = getattr(cols, name)
        setattr(cols, name, [column[i] for i in keep])
    return iter(events)


def finish_columns(cols: EventColumns, task: ParseTask, report: InputReport) -> pa.RecordBatch | None:
    """The rest of a columnar block as one record batch, computed column-wise."""
    n = len(cols)
    if not n:
        return None
    local_text = pa.array(cols.local_text, type=pa.string())
    local = local_times(local_text, cols.local_text_shaped)
    utc, tz_source = task.time_context.resolve_array(local)
    attrs = cols.attributes if cols.attributes_encoded else [
        a if isinstance(a, str) else attributes_json(a) for a in cols.attributes]
    bad = local.null_count
    if bad:
        # Unreadable time text: keep the row, say so, no timestamp.
        valid = local.is_valid().to_pylist()
        first = None
        for i, ok in enumerate(valid):
            if not ok:
                a = json.loads(attrs[i])
                a["bad_timestamp"] = cols.local_text[i]
                attrs[i] = attributes_json(a)
                first = cols.source_record[i] if first is None else first
        report.add_warning(ParseWarning(
            f"{bad} record(s) with an unreadable time kept without a timestamp "
            f"(first at record {first}: {cols.local_text[valid.index(False)]!r})",
            f"record {first}", 0, damaged=False))
    const = {"source": cols.source, "timestamp_desc": cols.timestamp_desc, "host": task.host,
             "instance": task.instance, "source_file": task.display_path, "source_sha256": task.sha256}
    zeros = pc.fill_null(pa.nulls(n, pa.int32()), 0)  # take() indexes that repeat a constant
    arrays = []
    for name, typ, _nullable, _doc in TIMELINE_COLUMNS:
        if name == "timestamp":
            arrays.append(utc)
        elif name in const:
            arrays.append(pa.array([const[name]], type=typ).take(zeros) if const[name] is not None
                          else pa.nulls(n, typ))
        elif name == "flags":
            arrays.append(pa.array([[]], type=typ).take(zeros))
        elif name == "local_time":
            arrays.append(local_text)
        elif name == "tz_source":
            arrays.append(tz_source)
        elif name == "attributes":
            arrays.append(pa.array(attrs, type=typ))
        else:
            arrays.append(pa.array(getattr(cols, name), type=typ))
    batch = pa.RecordBatch.from_arrays(arrays, schema=TIMELINE_SCHEMA)
    report.events += n
    report.event_types.update(cols.event_type)
    for value in pc.value_counts(tz_source).to_pylist():
        report.tz_sources[value["values"]] += value["counts"]
    lo_hi = pc.min_max(utc).as_py()
    for ts in (lo_hi["min"], lo_hi["max"]):
        if ts is not None:
            report.saw_time(ts.isoformat())
    return batch


_WELL_FORMED_LOCAL = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$"


def local_times(text: pa.Array, shaped: bool = False) -> pa.Array:
    """``YYYY-MM-DD hh:mm:ss[.f...]`` strings -> naive timestamp[us] (null when
    unreadable), vectorised.  ``shaped``: the caller vouches for that shape
    (digits aside: Arrow's cast refuses other scripts' digits), so the check
    is skipped."""
    if shaped or pc.all(pc.match_substring_regex(text, _WELL_FORMED_LOCAL)).as_py() is not False:
        # Every row well formed (the common case): one cast, a third of the
        # time of the careful path below.
        try:
            return pc.cast(text, pa.timestamp("us"))
        except pa.ArrowInvalid:  # a well-formed but impossible date or time
            pass
    return _careful_local_times(text)


def _careful_local_times(text: pa.Array) -> pa.Array:
    seconds = pc.utf8_slice_codeunits(text, 0, 19)
    whole = pc.strptime(seconds, format="%Y-%m-%d %H:%M:%S", unit="us", error_is_null=True)
    # strptime rolls impossible times over (2024-02-30 -> 1 March, 23:59:60
    # -> the next day): a time that does not read back as written is damage,
    # not a plausible timestamp.
    as_written = pc.equal(pc.strftime(pc.cast(whole, pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S"), seconds)
    whole = pc.if_else(pc.fill_null(as_written, False), whole, pa.scalar(None, whole.type))
    frac = pc.utf8_slice_codeunits(text, 20, 26)
    # A fraction that is not ASCII digits (damage, other scripts' digits that
    # the record pattern's \d accepts) makes the time unreadable, not the file.
    readable = pc.match_substring_regex(frac, "^[0-9]*$")
    whole = pc.if_else(readable, whole, pa.scalar(None, whole.type))
    digits = pc.utf8_length(frac)
    frac = pc.if_else(pc.and_(pc.greater(digits, 0), readable), frac, "0")
    # right-pad the fraction to microseconds: "70" -> 700000
    scale = pc.power(pa.scalar(10, pa.int64()), pc.subtract(6, pc.cast(pc.utf8_length(frac), pa.int64())))
    micros = pc.multiply(pc.cast(frac, pa.int64(), safe=False), scale)
    return pc.add(whole, pc.cast(micros, pa.duration("us")))


def run_parse_task(task: ParseTask) -> InputReport:
    """Pool entry point: parse one input into sorted run files."""
    report = InputReport(task.path, task.display_path, task.parser_name)
    writer = SortedRunWriter(task.spill_dir)
    try:
        for batch in iter_input_batches(task, report):
            writer.add(batch)
        report.runs = writer.close()
    except OSError as exc:
        report.damaged = True
        report.errors.append(f"cannot write intermediate results: {exc}")
    return report

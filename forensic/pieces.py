"""Big inputs parsed in pieces, so that every worker has work to the end.

Inputs are parsed one per task, biggest first.  When a few big inputs make
most of the work (an instance's ERRORLOG rotation set: seven logs of about
the same size), the last ones leave all workers but one idle: on 2 workers,
seven equal logs take four logs' time, not three and a half.  A log whose
first pass found places to cut it (``InputEvidence.cuts``: a record's first
line, with its byte offset and line number) is parsed as several spans by
several tasks, and their reports are put back together (``join_reports``).
Rows are the same as from one task: line numbers and byte positions are
those of the whole input, and a span never starts between an ``Error:`` line
and its message.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace
from math import ceil

from forensic.pipeline import MAX_WARNINGS_KEPT, InputReport, ParseTask, PrescanResult, PrescanTask
from parsers.textio import Span

# No piece smaller than this: a task costs a little on its own (a fresh
# parser, its own run files), and small inputs balance well whole.
MIN_PIECE_BYTES = 8 << 20
# Aim for this many tasks per worker over the whole set: the idle time at
# the end is at most about one task.
TASKS_PER_WORKER = 8
# A first pass's hash against its scan, in time (ERRORLOG, measured: 0.05 s
# against 0.15 s per 43 MB): used to order the first pass's tasks.
HASH_SHARE = 0.33


def piece_bytes(total_bytes: int, workers: int) -> int:
    """The size to cut big inputs to, for ``workers`` over ``total_bytes``."""
    return max(MIN_PIECE_BYTES, ceil(total_bytes / max(1, workers * TASKS_PER_WORKER)))


def plan_spans(size: int, cuts: list[tuple[int, int]], target: int) -> list[Span] | None:
    """The spans to parse an input of ``size`` bytes in, about ``target``
    bytes each, cut only where ``cuts`` allow; None: parse it whole."""
    pieces = ceil(size / max(1, target))
    offsets = [offset for offset, _line in cuts if 0 < offset < size]
    if pieces <= 1 or not offsets:
        return None
    chosen: list[int] = []  # indexes into cuts, increasing
    for k in range(1, pieces):
        ideal = size * k / pieces
        i = bisect_left(offsets, ideal)
        # The nearest cut to the ideal place, after the one chosen before.
        near = min((j for j in (i - 1, i) if 0 <= j < len(offsets) and (not chosen or j > chosen[-1])),
                   key=lambda j: abs(offsets[j] - ideal), default=None)
        if near is not None:
            chosen.append(near)
    if not chosen:
        return None
    starts = [(0, 1)] + [(cuts[j][0], cuts[j][1]) for j in chosen]
    ends = [cuts[j][0] for j in chosen] + [None]
    return [Span(start, end, line) for (start, line), end in zip(starts, ends, strict=True)]


def task_bytes(task: ParseTask) -> int:
    """The bytes a task parses: its span, or the whole input."""
    if task.span is None:
        return task.size
    return (task.size if task.span.end is None else task.span.end) - task.span.start


def may_split(path: str, size: int, workers: int) -> bool:
    """Whether an input could be parsed in pieces: several workers, bigger
    than a piece, and a file of its own (a seek in a member of an archive or
    image decompresses from the start)."""
    return workers > 1 and size > MIN_PIECE_BYTES and "\0" not in path


def first_pass_tasks(tasks: list[PrescanTask], workers: int) -> list[PrescanTask]:
    """The first pass over ``tasks``, biggest first, with the first pass of
    each input that may be cut as two tasks: its hash, and the parser's scan
    (which looks for the places to cut).
    They take about a third and two thirds of its time, and seven equal
    logs on two workers then end within a fraction of one log's first pass
    of each other, not one whole first pass apart."""
    out: list[PrescanTask] = []
    for task in tasks:
        if task.parser_name is not None and may_split(task.path, task.size, workers):
            out += [replace(task, part="scan", cuts=True), replace(task, part="hash")]
        else:
            out.append(task)
    # Longest first (scans before hashes: a hash takes about a third of a
    # scan), so that short tasks fill the end of the phase.
    return sorted(out, key=lambda t: -t.size * (HASH_SHARE if t.part == "hash" else 1))


def join_first_pass(hashed: PrescanResult, scanned: PrescanResult) -> PrescanResult:
    """One input's first pass from its two tasks (``first_pass_tasks``)."""
    if hashed.sha256 is None:  # unreadable: as from one task
        return PrescanResult(hashed.path, None, None, hashed.error or scanned.error or "cannot read")
    return PrescanResult(hashed.path, hashed.sha256, scanned.evidence, scanned.error)


def split_tasks(tasks: list[ParseTask], cuts: dict[str, list[tuple[int, int]]], workers: int
                ) -> list[ParseTask]:
    """``tasks`` with the big inputs that may be cut (:func:`may_split`)
    replaced by one task per piece."""
    target = piece_bytes(sum(t.size for t in tasks), workers)
    out: list[ParseTask] = []
    for task in tasks:
        spans = (plan_spans(task.size, cuts.get(task.path) or [], target)
                 if may_split(task.path, task.size, workers) else None)
        out.extend([task] if spans is None else (replace(task, span=span) for span in spans))
    return out


def join_reports(parts: list[tuple[Span, InputReport]]) -> InputReport:
    """One input's report from its pieces' reports (any order)."""
    parts = sorted(parts, key=lambda p: p[0].start)
    whole = parts[0][1]
    whole.pieces = len(parts)
    for _span, rep in parts[1:]:
        whole.events += rep.events
        whole.warning_count += rep.warning_count
        whole.warnings.extend(rep.warnings)
        whole.errors.extend(rep.errors)
        whole.lost_records += rep.lost_records
        whole.damaged = whole.damaged or rep.damaged
        whole.flags.update(rep.flags)
        whole.event_types.update(rep.event_types)
        whole.tz_sources.update(rep.tz_sources)
        for ts in (rep.first_timestamp, rep.last_timestamp):
            if ts is not None:
                whole.saw_time(ts)
        whole.runs.extend(rep.runs)
        whole.facts.merge(rep.facts)
        for key, value in rep.parser_stats.items():
            mine = whole.parser_stats.get(key)
            whole.parser_stats[key] = mine + value if isinstance(value, int) and isinstance(mine, int) else value
    del whole.warnings[MAX_WARNINGS_KEPT:]
    return whole

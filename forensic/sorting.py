"""External sort of the timeline with flat memory.

Workers write *sorted runs* (Arrow IPC files of at most ``RUN_ROWS`` rows),
one or more per input.  :func:`merge_runs` merges them into one sorted stream
of record batches, holding only a small buffer per run: at each step it takes
from every buffer the rows not after the smallest "last buffered key" of the
runs that still have data on disk (every row up to that bound is final),
sorts those few rows with Arrow and emits them.  More than ``MAX_FANIN`` runs
are merged in rounds through intermediate run files.

Order (contract): ``timestamp`` ascending with nulls last, then
``source_file``, then ``source_record`` (nulls last).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from forensic.schema import TIMELINE_SCHEMA

RUN_ROWS = 50_000
RUN_BATCH_ROWS = 8_192
# Batches in run files stay small in bytes too: the merge holds at least one
# batch of every run it merges (up to MAX_FANIN), so with KB-sized rows (trace
# and audit attributes) a fixed row count made memory grow with the input.
# Not smaller: each batch read costs about 0.1 ms of its own (with 256 KB
# batches, a fifth of the final merge's CPU time on the rotation set).
RUN_BATCH_BYTES = 1 << 20
RUN_BYTES = 32 << 20
MAX_FANIN = 64
# What the merge buffers, spread over the runs being merged: whichever of
# rows and bytes comes first (rows can be KBs each).
MERGE_BUFFER_ROWS = 32_000
MERGE_BUFFER_BYTES = 32 << 20
_TS_MAX = 2**63 - 1


def sort_table(table: pa.Table) -> pa.Table:
    if table.num_rows <= 1:
        return table
    idx = pc.sort_indices(table, options=pc.SortOptions(sort_keys=[
        ("timestamp", "ascending", "at_end"), ("source_file", "ascending", "at_end"),
        ("source_record", "ascending", "at_end")]))
    return table.take(idx)


def _run_batches(table: pa.Table) -> list[pa.RecordBatch]:
    """``table`` in batches of at most RUN_BATCH_ROWS rows and about
    RUN_BATCH_BYTES: the merge holds at least one batch per run in memory."""
    row_bytes = table.nbytes / max(1, table.num_rows)
    rows = max(16, min(RUN_BATCH_ROWS, int(RUN_BATCH_BYTES / max(1.0, row_bytes))))
    return table.to_batches(max_chunksize=rows)


def write_run(table: pa.Table, folder: str) -> str:
    path = os.path.join(folder, f"run-{uuid.uuid4().hex}.arrow")
    with pa.OSFile(path, "wb") as sink, ipc.new_file(sink, TIMELINE_SCHEMA) as writer:
        for batch in _run_batches(table):
            writer.write_batch(batch)
    return path


class SortedRunWriter:
    """Accumulates batches of one input and spills sorted runs to ``folder``."""

    def __init__(self, folder: str, run_rows: int = RUN_ROWS):
        self.folder = folder
        self.run_rows = run_rows
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.paths: list[str] = []
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        # Rows or bytes, whichever comes first: trace and audit rows carry
        # large attributes, and memory must stay flat whatever the row size.
        if self.pending_rows >= self.run_rows or self.pending_bytes >= RUN_BYTES:
            self.spill()

    def spill(self) -> None:
        if not self.pending_rows:
            return
        table = sort_table(pa.Table.from_batches(self.pending, schema=TIMELINE_SCHEMA))
        self.paths.append(write_run(table, self.folder))
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0

    def close(self) -> list[str]:
        self.spill()
        return self.paths


def _key_at(table: pa.Table, i: int) -> tuple[int, str, int]:
    """The sort key of row ``i`` as plain values (nulls as the largest)."""
    row = table.slice(i, 1)
    ts = _ts_ints(row)[0].as_py()
    rec = row.column("source_record")[0].as_py()
    return ts, row.column("source_file")[0].as_py(), _TS_MAX if rec is None else rec


class _Part(NamedTuple):
    """Rows a run gives to one merge step, with their first and last key."""

    table: pa.Table
    first: tuple[int, str, int]
    last: tuple[int, str, int]


def _in_order(parts: list[_Part]) -> list[pa.Table] | None:
    """The tables of ``parts`` (each sorted) ordered so that their
    concatenation is sorted, or None when their key ranges overlap.  Inputs
    seldom overlap in time (a rotation set, trace rollover files, archived
    event logs): their steps then need no sort and no copy of the rows."""
    spans = sorted(parts, key=lambda p: p.first)
    for before, after in zip(spans, spans[1:], strict=False):
        if before.last > after.first:
            return None
    return [p.table for p in spans]


def _ts_ints(table: pa.Table) -> pa.Array:
    ts = pc.cast(table.column("timestamp"), pa.int64())
    return pc.fill_null(ts, _TS_MAX)


class _RunCursor:
    def __init__(self, path: str, batch_rows: int, batch_bytes: int):
        self.path: str | None = path  # None once handed for removal
        # Plain reads, not a memory map: mapped pages would count as resident
        # memory for the whole run file.
        self._file = pa.OSFile(path, "rb")
        self._reader = ipc.open_file(self._file)
        self._next = 0
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.buffer: pa.Table = TIMELINE_SCHEMA.empty_table()
        self.exhausted = False
        self._keys: tuple | None = None  # (first, last) key of the buffer, when known
        self.fill()

    def wants_more(self) -> bool:
        """Below both of its buffer bounds, with batches left on disk."""
        return (not self.exhausted and self.buffer.num_rows < self.batch_rows
                and self.buffer.nbytes < self.batch_bytes)

    def fill(self) -> None:
        batches = []
        rows = self.buffer.num_rows
        size = self.buffer.nbytes
        while (rows < self.batch_rows and size < self.batch_bytes
               and self._next < self._reader.num_record_batches):
            b = self._reader.get_batch(self._next)
            self._next += 1
            batches.append(b)
            rows += b.num_rows
            size += b.nbytes
        if batches:
            self.buffer = pa.concat_tables([self.buffer, pa.Table.from_batches(batches, schema=TIMELINE_SCHEMA)])
            self._keys = None
        if self._next >= self._reader.num_record_batches:
            self.exhausted = True

    def _first_last(self) -> tuple[tuple[int, str, int], tuple[int, str, int]]:
        if self._keys is None:
            self._keys = (_key_at(self.buffer, 0), _key_at(self.buffer, self.buffer.num_rows - 1))
        return self._keys

    def first_key(self) -> tuple[int, str, int]:
        return self._first_last()[0]

    def last_key(self) -> tuple[int, str, int]:
        return self._first_last()[1]

    def _take(self, n: int) -> _Part:
        """The first ``n`` buffered rows (n > 0) with their keys."""
        first, last = self._first_last()
        out = self.buffer.slice(0, n)
        if n < self.buffer.num_rows:
            last = _key_at(out, n - 1)
        self.buffer = self.buffer.slice(n)
        self._keys = None
        return _Part(out, first, last)

    def take_upto(self, bound: tuple[int, str, int] | None) -> _Part | None:
        """The buffered rows up to ``bound`` (all of them for None), or None.

        Runs that follow each other in time (a rotation set) are decided
        by the buffer's first and last key alone: a step then costs no
        compute over the rows, however many runs wait their turn."""
        if bound is None or self.last_key() <= bound:
            return self._take(self.buffer.num_rows)
        if self.first_key() > bound:
            return None
        ts = _ts_ints(self.buffer)
        # Typed scalars: for an untyped Python value pyarrow infers the type
        # and, without python-dateutil installed, searches sys.path for it on
        # every call (a third of the merge's time).
        b_ts, b_file, b_rec = (pa.scalar(bound[0], pa.int64()), pa.scalar(bound[1], pa.string()),
                               pa.scalar(bound[2], pa.int64()))
        # Rows are sorted by (ts, file, rec): those before the bound's time
        # are counted with an integer compare; only rows at the bound's very
        # time need the file and record compared.
        n = pc.sum(pc.less(ts, b_ts)).as_py() or 0
        ties = pc.sum(pc.equal(ts, b_ts)).as_py() or 0
        if ties:
            tied = self.buffer.slice(n, ties)
            files = tied.column("source_file")
            recs = pc.fill_null(tied.column("source_record"), _TS_MAX)
            keep = pc.or_(pc.less(files, b_file), pc.and_(pc.equal(files, b_file), pc.less_equal(recs, b_rec)))
            n += pc.sum(pc.cast(keep, pa.int64())).as_py() or 0
        return self._take(n) if n else None

    def close(self) -> None:
        self._file.close()


def _merge_once(paths: list[str], remover: ThreadPoolExecutor | None = None) -> Iterator[pa.RecordBatch]:
    """``paths`` merged; with a ``remover``, each run file is handed to it
    for removal as soon as it is read to the end."""
    per_run = max(1_000, MERGE_BUFFER_ROWS // max(1, len(paths)))
    per_run_bytes = MERGE_BUFFER_BYTES // max(1, len(paths))
    cursors = [_RunCursor(p, per_run, per_run_bytes) for p in paths]
    try:
        while True:
            live = [c for c in cursors if c.buffer.num_rows]
            if not live:
                break
            pending = [c for c in live if not c.exhausted]
            bound = min((c.last_key() for c in pending), default=None)
            parts = [p for p in (c.take_upto(bound) for c in live) if p is not None]
            if parts:
                ordered = _in_order(parts)
                # In order already: one copy into a contiguous table, so the
                # writer gets a batch per step, not one per small run batch.
                merged = (pa.concat_tables(ordered).combine_chunks() if ordered
                          else sort_table(pa.concat_tables([p.table for p in parts])))
                yield from merged.to_batches(max_chunksize=50_000)
                # Let go of this step's rows before reading the next: the
                # parts hold the cursors' old batches, merged their copy.
                del merged
            del parts
            for c in cursors:
                if c.wants_more():
                    c.fill()
                if remover is not None and c.exhausted and c.path is not None:
                    # Read to the end (the buffer holds copies, not a map).
                    c.close()
                    remover.submit(_remove, c.path)
                    c.path = None
    finally:
        for c in cursors:
            c.close()


def merge_runs(paths: list[str], scratch: str, consume: bool = False) -> Iterator[pa.RecordBatch]:
    """All rows of ``paths`` in timeline order, as record batches.

    ``consume``: remove each run file once it is read, on a thread of its
    own.  Removing a file gives its cached pages back, which costs about as
    much as reading them: done at the end, it was a tenth of a second per
    300 MB of runs after everything else.
    """
    if not consume:
        yield from _merge_rounds(list(paths), scratch, None)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="run-remover") as remover:
        yield from _merge_rounds(list(paths), scratch, remover)


def _merge_rounds(paths: list[str], scratch: str, remover: ThreadPoolExecutor | None) -> Iterator[pa.RecordBatch]:
    while len(paths) > MAX_FANIN:
        next_round = []
        for i in range(0, len(paths), MAX_FANIN):
            group = paths[i:i + MAX_FANIN]
            out = os.path.join(scratch, f"merge-{uuid.uuid4().hex}.arrow")
            with pa.OSFile(out, "wb") as sink, ipc.new_file(sink, TIMELINE_SCHEMA) as writer:
                for batch in _merge_once(group):
                    # Re-cut: this file is a run of the next round.
                    for small in _run_batches(pa.Table.from_batches([batch])):
                        writer.write_batch(small)
            for p in group:
                _remove(p)
            next_round.append(out)
        paths = next_round
    if paths:
        yield from _merge_once(paths, remover)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass

"""The external merge gives exactly the order of one big sort."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

import forensic.sorting as sorting
from forensic.model import Event
from forensic.schema import TIMELINE_SCHEMA, BatchBuilder

BASE = datetime(2025, 1, 1, tzinfo=UTC)

rows_strategy = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 50)), st.sampled_from(["a", "b", "c", "d"]),
              st.one_of(st.none(), st.integers(0, 30))),
    min_size=0, max_size=300)


def build(rows) -> dict[str, pa.Table]:
    per_file: dict[str, list] = {}
    for ts, f, rec in rows:
        per_file.setdefault(f, []).append((ts, rec))
    tables = {}
    for f, items in per_file.items():
        b = BatchBuilder(f, "0" * 64, size=10**9)
        for ts, rec in items:
            b.add(Event(source="errorlog", event_type="x", message="m",
                        timestamp=None if ts is None else BASE + timedelta(seconds=ts), source_record=rec,
                        tz_source="utc"))
        tables[f] = pa.Table.from_batches([b.flush()])
    return tables


def _merge(folder, tables, run_rows, consume=False) -> pa.Table:
    paths = []
    for table in tables.values():
        w = sorting.SortedRunWriter(str(folder), run_rows=run_rows)
        for batch in table.to_batches(max_chunksize=2):
            w.add(batch)
        paths += w.close()
    merged = list(sorting.merge_runs(paths, str(folder), consume=consume))
    # Consumed: every run file, and every file of the merge rounds, is gone.
    assert not consume or not list(folder.iterdir())
    return pa.Table.from_batches(merged, schema=TIMELINE_SCHEMA) if merged else TIMELINE_SCHEMA.empty_table()


@settings(max_examples=60, deadline=None)
@given(rows_strategy, st.integers(1, 7), st.booleans())
def test_merge_equals_full_sort(tmp_path_factory, rows, run_rows, consume):
    old = (sorting.MERGE_BUFFER_ROWS, sorting.MAX_FANIN)
    sorting.MERGE_BUFFER_ROWS, sorting.MAX_FANIN = 3, 3  # force tiny buffers and merge rounds
    try:
        tables = build(rows)
        got = _merge(tmp_path_factory.mktemp("runs"), tables, run_rows, consume)
    finally:
        sorting.MERGE_BUFFER_ROWS, sorting.MAX_FANIN = old
    expected = sorting.sort_table(pa.concat_tables(list(tables.values()))) if tables else TIMELINE_SCHEMA.empty_table()
    key = ["timestamp", "source_file", "source_record"]
    assert got.select(key).to_pylist() == expected.select(key).to_pylist()
    assert got.num_rows == len(rows)


@settings(max_examples=60, deadline=None)
@given(rows_strategy, st.integers(1, 7), st.integers(0, 60))
def test_merge_of_inputs_apart_in_time_equals_full_sort(tmp_path_factory, rows, run_rows, gap):
    """Inputs that follow each other in time (a rotation set) take the merge's
    no-sort path; touching ranges (gap 0: the same second in two files) and
    nulls, which sort last, must still come out in full-sort order."""
    shift = {"a": 0, "b": 1, "c": 2, "d": 3}
    rows = [(None if ts is None else ts + shift[f] * (50 + gap), f, rec) for ts, f, rec in rows]
    old = (sorting.MERGE_BUFFER_ROWS, sorting.MAX_FANIN)
    sorting.MERGE_BUFFER_ROWS, sorting.MAX_FANIN = 3, 3
    try:
        tables = build(rows)
        got = _merge(tmp_path_factory.mktemp("runs"), tables, run_rows)
    finally:
        sorting.MERGE_BUFFER_ROWS, sorting.MAX_FANIN = old
    expected = sorting.sort_table(pa.concat_tables(list(tables.values()))) if tables else TIMELINE_SCHEMA.empty_table()
    key = ["timestamp", "source_file", "source_record"]
    assert got.select(key).to_pylist() == expected.select(key).to_pylist()


def test_merge_of_consecutive_inputs_sorts_nothing(tmp_path, monkeypatch):
    """Three files one after another in time: no merge step needs a sort."""
    rows = [(ts + 100 * i, f, ts) for i, f in enumerate("abc") for ts in range(40)]
    tables = build(rows)
    paths = []
    for table in tables.values():
        w = sorting.SortedRunWriter(str(tmp_path), run_rows=25)
        w.add(table.to_batches()[0])
        paths += w.close()
    sorts = []
    real = sorting.sort_table
    monkeypatch.setattr(sorting, "sort_table", lambda t: sorts.append(t.num_rows) or real(t))
    monkeypatch.setattr(sorting, "MERGE_BUFFER_ROWS", 30)
    got = pa.Table.from_batches(list(sorting.merge_runs(paths, str(tmp_path))))
    assert sorts == []
    assert got.column("source_record").to_pylist() == list(range(40)) * 3
    assert got.column("source_file").to_pylist() == ["a"] * 40 + ["b"] * 40 + ["c"] * 40


def test_run_batches_are_small_in_bytes_whatever_the_row_size(tmp_path):
    """The merge holds a batch of every run it merges: batches are bounded in
    bytes, not only in rows, so large rows (trace attributes) keep memory flat."""
    import pyarrow.ipc as ipc
    b = BatchBuilder("f", "0" * 64, size=10**9)
    for i in range(3000):
        b.add(Event(source="default_trace", event_type="x", message="m", timestamp=BASE + timedelta(seconds=i),
                    source_record=i, tz_source="utc", attributes={"text_data": "x" * 2000}))
    table = pa.Table.from_batches([b.flush()])
    path = sorting.write_run(table, str(tmp_path))
    reader = ipc.open_file(path)
    sizes = [reader.get_batch(i).nbytes for i in range(reader.num_record_batches)]
    assert sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches)) == 3000
    assert max(sizes) <= sorting.RUN_BATCH_BYTES * 1.1, sizes[:3]
    assert len(sizes) > 3000 // sorting.RUN_BATCH_ROWS + 1  # more batches than a row count alone gives


def test_merge_round_files_are_cut_small_too(tmp_path, monkeypatch):
    """A merge round's output is a run of the next round: its batches are
    bounded in bytes like the workers' runs."""
    import glob

    import pyarrow.ipc as ipc
    monkeypatch.setattr(sorting, "MAX_FANIN", 2)
    paths = []
    for f in "abc":
        b = BatchBuilder(f, "0" * 64, size=10**9)
        for i in range(600):
            b.add(Event(source="default_trace", event_type="x", message="m", timestamp=BASE + timedelta(seconds=i),
                        source_record=i, tz_source="utc", attributes={"text_data": "x" * 2000}))
        paths.append(sorting.write_run(pa.Table.from_batches([b.flush()]), str(tmp_path)))
    rows = sum(batch.num_rows for batch in sorting.merge_runs(paths, str(tmp_path)))
    assert rows == 1800
    rounds = glob.glob(str(tmp_path / "merge-*.arrow"))
    assert rounds
    reader = ipc.open_file(rounds[0])
    sizes = [reader.get_batch(i).nbytes for i in range(reader.num_record_batches)]
    assert max(sizes) <= sorting.RUN_BATCH_BYTES * 1.1, sizes[:3]

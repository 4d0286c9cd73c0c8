"""The benchmark's evidence and baselines (bench/run.py) on small sizes.

The figures are ratios of our pass to a baseline over the same file; they
mean something only if the baseline reads all of it and our pipeline reads
what the bench built.  No timing is asserted here (figures come from the
bench, never from tests).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import evtx_bench  # noqa: E402
import run as bench  # noqa: E402
import trc_bench  # noqa: E402

from parsers import trc_layout as L  # noqa: E402


def test_token_walk_counts_every_token_across_chunks(tmp_path, monkeypatch):
    # Three records: short values, a long (0xFF-length) TextData, a 0xFFF3
    # repeated-data list.  Each record is its begin token plus its columns.
    start = datetime(2024, 3, 5, 14, 0, 0)
    records = [
        [*L.build_columns({14: start, 12: 57, 35: "master"})],
        [*L.build_columns({14: start, 1: "x" * 600, 31: 18456})],
        [*L.build_columns({14: start, 12: 57}), L.build_repeated([35])],
    ]
    path = tmp_path / "walk.trc"
    path.write_bytes(L.build_header("BENCH01") + b"".join(L.build_record(46, t) for t in records)
                     + bytes(64))  # zero padding ends the walk, as at a server's file end
    expected = sum(1 + len(tokens) for tokens in records)
    assert bench.token_walk(path) == expected
    # Chunks smaller than a token: every refill path (a header cut, a value
    # running into the next chunk) is taken.  The walk refills once per
    # token, so a chunk holds at least a long-form header (7 bytes).
    for chunk in (7, 8, 64, 1000):
        monkeypatch.setattr(trc_bench, "CHUNK", chunk)
        assert bench.token_walk(path) == expected, chunk


def test_bench_trace_is_read_whole_by_the_engine(tmp_path):
    path = tmp_path / "t.trc"
    bench.build_trace(path, 1)
    block = trc_bench._block(datetime(2024, 3, 5, 14, 0, 0))
    blocks = -(-(1 << 20) // len(block))  # the builder writes whole blocks up to the size
    assert bench.engine_pass(path, "default_trace") == 3000 * blocks


def test_bench_evtx_baseline_reads_every_record(tmp_path):
    path = tmp_path / "s.evtx"
    written = evtx_bench.build_synthetic(path, 2, sparse=True)
    assert written > 0
    assert bench.raw_rust(path) == written
    # Sparse: SQL Server's events are a small fraction, and our timeline keeps them.
    rows = bench.engine_pass(path, "evtx", {"evtx_engine": "rust"})
    assert 0 < rows < written


def test_bench_errorlog_parses_and_timeline_run_reports(tmp_path):
    log = tmp_path / "Log" / "ERRORLOG"
    bench.build_errorlog(log, 1)
    assert log.read_bytes()[:2] == b"\xff\xfe"
    text = log.read_bytes()[2:].decode("utf-16-le")
    assert bench.decode_splitlines(log) == len(text.splitlines())
    rows = bench.engine_pass(log, "errorlog")
    assert rows > 10_000
    # The path the bench times for peak RSS and the --workers figures.
    env = bench.cli_environment(tmp_path / "cache")
    out = tmp_path / "t.parquet"
    seconds, rss = bench.timeline_run([log.parent], out, 2, env)
    assert seconds > 0 and rss > 50
    assert pq.read_metadata(out).num_rows == rows


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_core_capacity_times_both_cpus():
    measured = bench.core_capacity(rounds=1)
    if measured is None:  # one CPU only
        return
    capacity, lone, busy = measured
    assert len(lone) == len(busy) == 2 and all(t > 0 for t in lone + busy)
    assert capacity == pytest.approx(min(lone) / busy[0] + min(lone) / busy[1])


def test_best_pair_pairs_each_baseline_with_the_pass_after_it(monkeypatch):
    # Scripted times (no clock): the warm-up pass and the baseline probe, then
    # five pairs.  A baseline of 0.5 s per pass against our 2 s runs 4 passes
    # per timing; a fast spell on the baseline's side of one pair (pair 3) and
    # on ours in another (pair 5) move the bests, not the pairs' median.
    times = iter([2.0, 0.5,  # warm-up: ours, one baseline pass -> 4 passes
                  2.0, 2.0,  # pair 1: 0.5 s per pass against 2.0 s -> 0.25
                  2.4, 2.0,  # pair 2: 0.6 / 2.0 -> 0.30
                  1.2, 2.0,  # pair 3: 0.3 / 2.0 -> 0.15
                  2.0, 2.5,  # pair 4: 0.5 / 2.5 -> 0.20
                  2.2, 1.1])  # pair 5: 0.55 / 1.1 -> 0.50

    def scripted(fn, repeat=2):
        return next(times), fn()

    monkeypatch.setattr(bench, "best", scripted)
    baseline_passes = []
    pairs = bench.best_pair(lambda: baseline_passes.append(1) or "base", lambda: "ours", repeat=5)
    assert pairs.passes == 4
    assert len(baseline_passes) == 1 + 5 * 4  # the probe, then four passes per timing
    assert pairs.ratios == pytest.approx([0.15, 0.20, 0.25, 0.30, 0.50])
    assert pairs.median == pytest.approx(0.25)
    assert pairs.t_base == pytest.approx(0.3) and pairs.t_ours == pytest.approx(1.1)
    assert pairs.of_bests == pytest.approx(0.3 / 1.1)
    assert (pairs.v_base, pairs.v_ours) == ("base", "ours")
    with pytest.raises(StopIteration):
        next(times)  # every scripted time used: nothing timed twice or skipped

"""The pipeline on Dask distributed (issue 11).

A scheduler and two workers are started on loopback as subprocesses
(``python -m dask scheduler`` / ``python -m dask worker``, torn down at the
end whatever happens), plus an in-process ``LocalCluster``.  Checked: the
timeline equals the local run's row for row, a worker killed with SIGKILL in
the middle of an input loses and duplicates nothing, an input that kills its
worker every time is reported and the run goes on, and the dataset layout
reads back the same rows (and findings) through every reader.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, PUBLIC, REPO

pytest.importorskip("distributed")

from forensic.dataset import MARKER, iter_timeline_batches  # noqa: E402
from forensic.sorting import sort_table  # noqa: E402

STARTUP_TIMEOUT = 40


def evidence_paths() -> list[str]:
    paths = [str(FIXTURES)]
    for kind in ("trc", "evtx"):
        folder = PUBLIC / kind
        if folder.is_dir():
            paths.append(str(folder))
    return paths


def run_cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forensic", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def manifest_of(out: Path) -> dict:
    return json.loads(Path(str(out) + ".manifest.json").read_text(encoding="utf-8"))


def read_rows(path: Path) -> pa.Table:
    """A timeline file or dataset folder, in timeline order."""
    table = pa.Table.from_batches(list(iter_timeline_batches(str(path))))
    return sort_table(table).combine_chunks()


# Cluster settings of the issue: an input is given up after two worker deaths;
# one task at a time per single-threaded worker (a death suspects only its input).
CLUSTER_ENV = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
               "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
               "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}


class LoopbackCluster:
    """``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        self.logs = []
        self.address = None

    def start(self, workers: int = 2) -> None:
        folder = self.folder
        env = {**os.environ, **CLUSTER_ENV}
        sched_file = folder / "scheduler.json"
        self._spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], env, "scheduler")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not sched_file.exists() or not sched_file.read_text().strip():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        for n in range(workers):
            self._spawn(["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                         "--no-dashboard", "--name", f"w{n}", "--local-directory", str(folder / f"w{n}")],
                        env, f"worker{n}")
        from distributed import Client
        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(workers, timeout=STARTUP_TIMEOUT)

    def _spawn(self, args, env, name):
        log = open(self.folder / f"{name}.log", "wb")
        self.logs.append(log)
        self.procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=self.folder, env=env,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def _check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"dask process exited early: {p.args}")

    def worker_pids(self) -> dict[str, int]:
        from distributed import Client
        with Client(self.address, timeout="20s") as client:
            return client.run(os.getpid)

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("dask"))
    try:  # torn down even when it fails to start half-way
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: the local process pool's timeline of the same evidence."""
    out = tmp_path_factory.mktemp("local") / "timeline.parquet"
    proc = run_cli("timeline", *evidence_paths(), "-o", out, "--workers", "2", "-q")
    assert proc.returncode in (0, 1), proc.stderr
    return out, proc.returncode


def _inputs(manifest: dict) -> dict[str, tuple]:
    return {i["path"]: (i["status"], i["events"], i["records"]["written"], i["sha256"]) for i in manifest["inputs"]}


def test_cluster_timeline_equals_local_run(cluster, local_run, tmp_path, cli):
    ref, ref_code = local_run
    out = tmp_path / "cluster.parquet"
    code, _out, err = cli("timeline", *evidence_paths(), "-o", out, "--scheduler", cluster.address)
    assert code == ref_code, err
    expected = pq.read_table(ref)
    got = pq.read_table(out)
    assert got.num_rows > 1000
    assert got.equals(expected)  # row for row, order included
    m = manifest_of(out)
    assert m["options"]["scheduler"] == cluster.address
    assert _inputs(m) == _inputs(manifest_of(ref))
    assert all(i["records"]["reconciled"] for i in m["inputs"])
    # progress: one line per completed future
    assert err.count("mssql-forensic: parsed ") == len(m["inputs"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_local_cluster_equals_local_run(local_run, tmp_path, cli):
    ref, ref_code = local_run
    out = tmp_path / "lc.parquet"
    code, _out, err = cli("timeline", *evidence_paths(), "-o", out, "--scheduler", "local", "--workers", "2", "-q")
    assert code == ref_code, err
    assert pq.read_table(out).equals(pq.read_table(ref))


def test_dataset_layout_reads_back_the_same(cluster, local_run, tmp_path, cli):
    ref, ref_code = local_run
    out = tmp_path / "ds"
    scratch = tmp_path / "scratch"
    code, _out, err = cli("timeline", *evidence_paths(), "-o", out, "--scheduler", cluster.address,
                          "--layout", "dataset", "--scratch", scratch, "-q")
    assert code == ref_code, err
    assert (out / MARKER).is_file() and Path(str(out) + ".manifest.json").is_file()
    parts = sorted(out.rglob("*.parquet"))
    assert parts and all(p.relative_to(out).parts[0].startswith("host=") and
                         p.relative_to(out).parts[1].startswith("month=") for p in parts)
    for p in parts:  # each part sorted on its own
        t = pq.read_table(p)
        assert sort_table(t).equals(t)
    assert read_rows(out).equals(read_rows(ref))
    m = manifest_of(out)
    assert m["output"]["layout"] == "dataset" and m["output"]["rows"] == pq.read_metadata(ref).num_rows
    assert _inputs(m) == _inputs(manifest_of(ref))
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    assert list(scratch.iterdir()) == []
    # every reader takes the folder
    c1, f_ds, _e = cli("findings", out, "--json")
    c2, f_ref, _e = cli("findings", ref, "--json")
    assert c1 == c2 == 0 and json.loads(f_ds) and json.loads(f_ds) == json.loads(f_ref)
    code, _o, err = cli("report", out, "-o", tmp_path / "r.html")
    assert code == 0, err
    # a second run replaces the dataset (it is one)
    code, _o, err = cli("timeline", str(FIXTURES), "-o", out, "--layout", "dataset", "--workers", "1", "-q")
    assert code == 0, err
    assert read_rows(out).num_rows == manifest_of(out)["output"]["rows"] < m["output"]["rows"]
    pytest.importorskip("duckdb")
    code, q, err = cli("query", out, "select count(*) as n from timeline", "--format", "jsonl")
    assert code == 0, err
    assert json.loads(q)["n"] == manifest_of(out)["output"]["rows"]


def test_killed_worker_loses_and_duplicates_nothing(cluster, local_run, tmp_path):
    """SIGKILL the worker in the middle of an input (its runs already written):
    the input runs again on another worker; the dead attempt's runs are not merged."""
    ref, ref_code = local_run
    marker = tmp_path / "stalled.pid"
    out = tmp_path / "killed.parquet"
    env = {"MSSQL_FORENSIC_TEST_STALL_TASK": f"ERRORLOG.3|{marker}|60"}
    proc = subprocess.Popen([sys.executable, "-m", "forensic", "timeline", *evidence_paths(), "-o", str(out),
                             "--scheduler", cluster.address, "-q"], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the stalled input never started"
            time.sleep(0.05)
        pid = int(marker.read_text())
        assert pid in cluster.worker_pids().values()
        os.kill(pid, signal.SIGKILL)
        _stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ref_code, stderr
    assert pq.read_table(out).equals(pq.read_table(ref))
    m = manifest_of(out)
    assert _inputs(m) == _inputs(manifest_of(ref))
    assert all(i["records"]["reconciled"] for i in m["inputs"])


def test_scheduler_errors_are_usage_errors(tmp_path, cli, monkeypatch):
    code, _o, err = cli("timeline", str(FIXTURES), "-o", tmp_path / "t.parquet", "--scheduler", "nonsense")
    assert code == 2 and "--scheduler" in err
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    monkeypatch.setattr("forensic.executor_dask.CONNECT_TIMEOUT", "2s")
    code, _o, err = cli("timeline", str(FIXTURES), "-o", tmp_path / "t.parquet", "--scheduler", f"tcp://127.0.0.1:{port}")
    assert code == 2 and "cannot use the Dask scheduler" in err
    assert not (tmp_path / "t.parquet").exists()
    monkeypatch.setattr("forensic.executor_dask.dask_available", lambda: False)
    code, _o, err = cli("timeline", str(FIXTURES), "-o", tmp_path / "t.parquet", "--scheduler", "local")
    assert code == 2 and "mssql-forensic[distributed]" in err
    code, _o, err = cli("timeline", str(FIXTURES), "-o", tmp_path / "t.csv", "--layout", "dataset", "--format", "csv")
    assert code == 2 and "--layout dataset" in err


def test_paths_the_workers_cannot_see(cluster, tmp_path):
    from forensic.executor_dask import DaskExecutor, ExecutorError
    ex = DaskExecutor(cluster.address)
    try:
        ex.require_visible([str(FIXTURES)])
        with pytest.raises(ExecutorError, match="cannot see"):
            ex.require_visible([str(tmp_path / "not-shared")])
    finally:
        ex.close()


def test_input_killing_its_worker_twice_is_reported(cluster, local_run, tmp_path):
    """An input whose worker dies on every attempt: given up after two deaths
    (the cluster's allowed-failures = 1), named in the manifest; every other
    input is complete."""
    ref, _code = local_run
    out = tmp_path / "poison.parquet"
    proc = run_cli("timeline", str(FIXTURES), "-o", out, "--scheduler", cluster.address, "-q",
                   env={"MSSQL_FORENSIC_TEST_KILL_WORKER": "ERRORLOG.3"}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    m = manifest_of(out)
    bad = [i for i in m["inputs"] if "ERRORLOG.3" in i["path"]]
    assert len(bad) == 1 and bad[0]["status"] == "error"
    assert any("died" in e for e in bad[0]["errors"])
    others = [i for i in m["inputs"] if "ERRORLOG.3" not in i["path"]]
    assert others and all(i["status"] == "complete" for i in others)
    expected = pq.read_table(ref).filter(pa.compute.invert(pa.compute.match_substring(
        pq.read_table(ref).column("source_file"), "ERRORLOG.3")))
    got = pq.read_table(out)
    fixtures = pa.compute.starts_with(expected.column("source_file"), str(FIXTURES))
    assert got.num_rows == expected.filter(fixtures).num_rows


def test_dataset_commit_keeps_only_reported_parts(tmp_path):
    """Parts of an attempt that no completed task reported (a dead worker's)
    are deleted before the folder becomes OUT; hostile host names stay one
    directory level."""
    from forensic.dataset import DatasetCommit, PartResult, is_dataset, partition_segment
    for hostile in ("../../etc", "a/b", "..", "x" * 400, "\udcff"):
        seg = partition_segment("host", hostile)
        assert "/" not in seg and seg.startswith("host=") and len(seg.encode()) < 200
    out = tmp_path / "ds"
    commit = DatasetCommit(str(out))
    keep = os.path.join("host=A", "month=2025-01", "part-1-good.parquet")
    dead = os.path.join("host=A", "month=2025-01", "part-1-dead.parquet")
    orphan_dir = os.path.join("host=B", "month=2025-02", "part-2-dead.parquet")
    for rel in (keep, dead, orphan_dir):
        os.makedirs(os.path.dirname(os.path.join(commit.tmp, rel)), exist_ok=True)
        Path(commit.tmp, rel).write_bytes(b"x")
    commit.add(PartResult(files=[keep], rows=1))
    commit.close()
    assert is_dataset(str(out))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted([keep, "_mssql_forensic_dataset.json"])
    assert not (out / "host=B").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_dataset_output_refuses_other_folders(tmp_path, cli):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("case notes")
    code, _o, err = cli("timeline", str(FIXTURES), "-o", taken, "--layout", "dataset", "-q")
    assert code == 2 and "not a timeline dataset" in err
    assert (taken / "notes.txt").read_text() == "case notes"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _o, err = cli("timeline", str(FIXTURES), "-o", empty, "--layout", "dataset", "--workers", "2", "-q")
    assert code == 0, err
    assert read_rows(empty).num_rows == manifest_of(empty)["output"]["rows"] > 0

"""Events/s of ``timeline --scheduler`` with one and two Dask workers.

    python bench/dask_bench.py PATH... [--workers 1 2]

For each worker count: starts ``dask scheduler`` and that many single-threaded
``dask worker`` processes on 127.0.0.1, runs ``mssql-forensic timeline PATH...
--scheduler tcp://...`` (wall time of the whole command, cluster start not
included), checks the rows equal the local pool's, and tears the cluster
down.  Prints one line per run, then a JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    procs = []
    sched = folder / "scheduler.json"
    procs.append(subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--no-dashboard", "--scheduler-file", str(sched)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    while not sched.exists() or not sched.read_text().strip():
        time.sleep(0.1)
    time.sleep(0.1)
    address = json.loads(sched.read_text())["address"]
    for n in range(workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--host", "127.0.0.1",
                                       "--nthreads", "1", "--no-dashboard", "--local-directory", str(folder / f"w{n}")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client
    with Client(address) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def timeline(paths: list[str], out: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forensic", "timeline", *paths, "-o", str(out), "-q", *extra], check=False)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref = tmp / "local.parquet"
        wall = timeline(args.paths, ref, "--workers", str(max(args.workers)))
        rows = pq.read_metadata(ref).num_rows
        results["local_pool"] = {"workers": max(args.workers), "seconds": round(wall, 2),
                                 "events_per_s": round(rows / wall)}
        print(f"local pool, {max(args.workers)} workers: {rows:,} events in {wall:.1f} s = {rows / wall:,.0f} events/s")
        expected = pq.read_table(ref)
        for n in args.workers:
            folder = tmp / f"cluster{n}"
            folder.mkdir()
            address, procs = start_cluster(folder, n)
            try:
                out = tmp / f"dask{n}.parquet"
                wall = timeline(args.paths, out, "--scheduler", address)
            finally:
                stop(procs)
            same = pq.read_table(out).equals(expected)
            results[f"dask_{n}"] = {"workers": n, "seconds": round(wall, 2), "events_per_s": round(rows / wall),
                                    "equal_to_local": same}
            print(f"dask, {n} worker(s): {rows:,} events in {wall:.1f} s = {rows / wall:,.0f} events/s"
                  f" (rows equal to the local run: {same})")
    print(json.dumps({"events": rows, "cpus": os.cpu_count(), **results}))


if __name__ == "__main__":
    main()

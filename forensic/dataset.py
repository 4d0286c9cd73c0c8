"""``timeline --layout dataset``: the timeline as a Parquet dataset directory.

Layout (hive partitions by host and UTC month)::

    OUT/
      _mssql_forensic_dataset.json              what wrote it (ignored by readers: leading "_")
      host=SQLPROD01/month=2025-03/part-<input>-<attempt>.parquet
      host=__HIVE_DEFAULT_PARTITION__/...       rows with no host
      .../month=__HIVE_DEFAULT_PARTITION__/...  rows with no timestamp
    OUT.manifest.json                           the run manifest, beside the directory

After the parse, a third map over the inputs (:func:`run_part_task`, on the
same executor: local pool or Dask workers) merges each input's sorted runs,
applies the cross-input correlation (object-following flags) and writes that
input's rows into one part per partition it touches.  So **each part is
sorted** by ``timestamp`` (nulls last), ``source_file``, ``source_record``;
the dataset as a whole is not (parts of one partition overlap in time): read
it with ``ORDER BY`` (``query``) or merge parts when order matters.

Every row keeps all timeline columns, ``host`` included; the partition values
are the ``host`` column URI-encoded (``%2F`` for ``/``), and names too long
for a file system are cut and suffixed with a hash (hive readers then see
the cut name; this tool's readers ignore the directory names and read the
columns).  ``month`` is not a column: hive-aware readers add it.

Parts are written straight into a hidden ``.OUT.partial-<pid>`` directory
beside OUT, named per attempt.  The engine keeps only the files that a
*completed* task reported; files of an attempt whose worker died are deleted
before the directory is renamed to OUT (no duplicate rows).

Readers: :func:`iter_timeline_batches` reads a timeline file or dataset with
bounded memory (``pyarrow.dataset`` scanners, batch by batch).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from forensic import __version__
from forensic.correlate import Correlator, ObjectFacts
from forensic.schema import PARQUET_OPTIONS, TIMELINE_SCHEMA

MARKER = "_mssql_forensic_dataset.json"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
PART_ROW_GROUP_ROWS = 100_000
MAX_SEGMENT = 180  # bytes of a partition directory name before it is cut


class DatasetError(ValueError):
    pass


def is_dataset(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MARKER))


def replaceable(path: str) -> bool:
    """OUT may be (re)written as a dataset: absent, an empty folder, or a dataset."""
    if not os.path.lexists(path):
        return True
    if os.path.isdir(path) and not os.path.islink(path):
        return is_dataset(path) or not os.listdir(path)
    return False


def _schema() -> pa.Schema:
    return TIMELINE_SCHEMA.with_metadata({**(TIMELINE_SCHEMA.metadata or {}),
                                          b"mssql_forensic_version": __version__.encode()})


def partition_segment(name: str, value: str | None) -> str:
    if value is None or value == "":
        return f"{name}={NULL_PARTITION}"
    enc = quote(value, safe="", errors="surrogatepass")
    if len(enc) > MAX_SEGMENT:
        cut = enc[:MAX_SEGMENT - 17]
        if "%" in cut[-2:]:  # do not split an escape
            cut = cut[:cut.rindex("%")]
        enc = cut + "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name}={enc}"


# -- the writing side ------------------------------------------------------------

@dataclass
class PartTask:
    """Write one input's rows (its sorted runs) into the dataset."""
    path: str
    display_path: str
    runs: list[str]
    facts: ObjectFacts
    root: str            # the dataset's temporary directory
    scratch: str         # for merge rounds of inputs with many runs
    size: int = 0


@dataclass
class PartResult:
    files: list[str] = field(default_factory=list)   # relative to the root
    rows: int = 0
    rows_by_file: dict[str, int] = field(default_factory=dict)  # source_file -> rows
    error: str | None = None


def run_part_task(task: PartTask) -> PartResult:
    """Merge an input's runs, correlate, and write one part per partition."""
    from forensic.sorting import merge_runs

    out = PartResult()
    attempt = uuid.uuid4().hex[:10]
    stem = hashlib.sha256(task.display_path.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    writers: dict[tuple[str, str], pq.ParquetWriter] = {}
    pending: dict[tuple[str, str], list[pa.RecordBatch]] = {}
    counts: Counter = Counter()
    schema = _schema()
    correlate = Correlator(task.facts)

    def flush(key):
        batches = pending.pop(key, [])
        if not batches:
            return
        if key not in writers:
            rel = os.path.join(key[0], key[1], f"part-{stem}-{attempt}.parquet")
            os.makedirs(os.path.join(task.root, key[0], key[1]), exist_ok=True)
            writers[key] = pq.ParquetWriter(os.path.join(task.root, rel), schema, **PARQUET_OPTIONS)
            out.files.append(rel)
        writers[key].write_table(pa.Table.from_batches(batches, schema=TIMELINE_SCHEMA),
                                 row_group_size=PART_ROW_GROUP_ROWS)

    try:
        pending_rows: Counter = Counter()
        for batch in merge_runs(task.runs, task.scratch):
            batch = correlate(batch)
            for item in pc.value_counts(batch.column("source_file")).to_pylist():
                counts[item["values"]] += item["counts"]
            for key, part in _split(batch):
                pending.setdefault(key, []).append(part)
                pending_rows[key] += part.num_rows
                if pending_rows[key] >= PART_ROW_GROUP_ROWS:
                    flush(key)
                    pending_rows[key] = 0
        for key in list(pending):
            flush(key)
    finally:
        for w in writers.values():
            w.close()
    out.rows = sum(counts.values())
    out.rows_by_file = dict(counts)
    return out


def _split(batch: pa.RecordBatch) -> Iterator[tuple[tuple[str, str], pa.RecordBatch]]:
    """The batch's rows per (host, month) partition, order kept within each."""
    if not batch.num_rows:
        return
    hosts = batch.column("host")
    months = pc.strftime(batch.column("timestamp"), format="%Y-%m")
    keys = pc.binary_join_element_wise(pc.fill_null(hosts, "\x00"), pc.fill_null(months, "\x00"), "\x01")
    for key in pc.unique(keys).to_pylist():
        host, month = key.split("\x01", 1)
        seg = (partition_segment("host", None if host == "\x00" else host),
               partition_segment("month", None if month == "\x00" else month))
        yield seg, batch.filter(pc.equal(keys, key))


class DatasetCommit:
    """The temporary directory a dataset is written into, and its commit."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        folder, name = os.path.split(self.path)
        self.tmp = os.path.join(folder, f".{name}.partial-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.keep: set[str] = set()
        self.rows = 0
        self._done = False

    def add(self, result: PartResult) -> None:
        self.keep.update(result.files)
        self.rows += result.rows

    def close(self) -> None:
        """Delete parts no completed task reported, write the marker, rename to OUT."""
        for dirpath, _dirs, files in os.walk(self.tmp, topdown=False):
            for f in files:
                rel = os.path.relpath(os.path.join(dirpath, f), self.tmp)
                if rel not in self.keep:
                    os.remove(os.path.join(dirpath, f))
            if dirpath != self.tmp and not os.listdir(dirpath):
                os.rmdir(dirpath)
        with open(os.path.join(self.tmp, MARKER), "w", encoding="utf-8") as fh:
            json.dump({"tool": "mssql-forensic", "version": __version__, "layout": "dataset",
                       "partitioning": ["host", "month"], "rows": self.rows, "parts": len(self.keep),
                       "sorted": "within each part: timestamp (nulls last), source_file, source_record",
                       "written_utc": datetime.now(UTC).isoformat().replace("+00:00", "Z")}, fh, indent=2)
        old = None
        if os.path.lexists(self.path):
            if not replaceable(self.path):
                raise DatasetError(f"{self.path} exists and is not a timeline dataset")
            old = self.path + f".old-{os.getpid()}"
            os.rename(self.path, old)
        os.rename(self.tmp, self.path)
        self._done = True
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        if not self._done:
            self._done = True
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- the reading side ------------------------------------------------------------

def open_timeline_file(path: str, columns: list[str]) -> pq.ParquetFile:
    """A single-file Parquet timeline, checked to hold ``columns``."""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path}: not a timeline Parquet file ({exc})") from None
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise DatasetError(f"{path}: not a mssql-forensic timeline (missing columns {missing})")
    return pf


def open_dataset(path: str):
    """A ``pyarrow.dataset`` over a dataset directory (directory names ignored:
    every column comes from the files)."""
    import pyarrow.dataset as ds
    try:
        return ds.dataset(path, format="parquet", partitioning=None, ignore_prefixes=[".", "_"])
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path}: not a timeline dataset ({exc})") from None


def iter_timeline_batches(path: str, columns: list[str] | None = None, batch_size: int = 10_000,
                          flagged_only: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet timeline file or dataset directory, with
    bounded memory.  ``flagged_only``: rows with at least one flag."""
    import pyarrow.dataset as ds
    if os.path.isdir(path):
        dataset = open_dataset(path)
        names = dataset.schema.names
    else:
        try:
            dataset = ds.dataset(path, format="parquet")
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(f"{path}: not a timeline Parquet file ({exc})") from None
        names = dataset.schema.names
    missing = [c for c in (columns or []) if c not in names]
    if missing:
        raise DatasetError(f"{path}: not a mssql-forensic timeline (missing columns {missing})")
    flt = (pc.list_value_length(pc.field("flags")) > 0) if flagged_only else None
    scanner = dataset.scanner(columns=columns, filter=flt, batch_size=batch_size,
                              batch_readahead=2, fragment_readahead=1)
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield batch


def dataset_files(path: str) -> list[str]:
    """The data files of a dataset directory, relative, sorted."""
    out = []
    for dirpath, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        out.extend(os.path.relpath(os.path.join(dirpath, f), path) for f in files
                   if f.endswith(".parquet") and not f.startswith((".", "_")))
    return sorted(out)


def dataset_digest(path: str) -> tuple[str, int]:
    """SHA-256 over the sorted ``relative path, file SHA-256`` lines of the
    dataset's data files, and their total size."""
    outer = hashlib.sha256()
    total = 0
    for rel in dataset_files(path):
        inner = hashlib.sha256()
        with open(os.path.join(path, rel), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                inner.update(block)
                total += len(block)
        outer.update(f"{rel.replace(os.sep, '/')}  {inner.hexdigest()}\n".encode())
    return outer.hexdigest(), total


def write_dataset(executor, output: str, reports: dict, facts: ObjectFacts, scratch: str) -> tuple[int, Counter]:
    """The engine's dataset step: one :class:`PartTask` per parsed input on
    ``executor``; returns (rows written, rows per ``source_file``).  An input
    whose parts cannot be written is reported (damaged) and the run goes on."""
    commit = DatasetCommit(output)
    written: Counter = Counter()
    try:
        tasks = [PartTask(rep.path, rep.display_path, list(rep.runs), facts, commit.tmp, scratch,
                          size=len(rep.runs))
                 for rep in reports.values() if rep.runs]
        tasks.sort(key=lambda t: -t.size)
        for task, result in executor.map_unordered(run_part_task, tasks):
            if not isinstance(result, PartResult):  # TaskFailed: its worker died twice, or an error
                rep = reports[task.path]
                rep.damaged = True
                rep.errors.append(f"its rows could not be written to the dataset: {result}")
                continue
            commit.add(result)
            written.update(result.rows_by_file)
        commit.close()
    except BaseException:
        commit.abort()
        raise
    return commit.rows, written

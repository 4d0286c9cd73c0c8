"""The timeline's Arrow schema: the single source of truth for columns.

Every writer, the sorter and the findings reader use :data:`TIMELINE_SCHEMA`.
:class:`BatchBuilder` turns engine-complete :class:`~forensic.model.Event`
objects into record batches column by column (no per-row dicts).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from forensic import __version__
from forensic.model import Event


def _use_jemalloc() -> None:
    """Arrow's allocator for the whole process: jemalloc where the wheel has
    it, unless the user chose one (ARROW_DEFAULT_MEMORY_POOL).

    Measured on the benchmark set (bench/run.py, 2 workers): with the default
    mimalloc a process that has not allocated yet (the parent, merging the
    workers' runs) took twice as long to merge, and peak memory was 367 MB
    against 288 MB with jemalloc; the system allocator sat between.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        # Freed pages go back to the system at once: with the wheel's decay
        # the final merge of a 200 MB trace held 416 MB resident for 119 MB
        # allocated (188 MB with no decay, at the same speed).
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, AttributeError):  # a build without jemalloc
        pass


_use_jemalloc()

TIMELINE_COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    # name, type, nullable, meaning
    ("timestamp", pa.timestamp("us", tz="UTC"), True, "when it happened, UTC"),
    ("timestamp_desc", pa.string(), False, "what the time means"),
    ("message", pa.string(), False, "one human-readable line"),
    ("source", pa.string(), False, "artifact family"),
    ("event_type", pa.string(), False, "normalised kind, lower_snake"),
    ("event_id", pa.int64(), True, "native number"),
    ("host", pa.string(), True, "computer name"),
    ("instance", pa.string(), True, "SQL Server instance"),
    ("user", pa.string(), True, "login or account that acted"),
    ("database", pa.string(), True, "database name"),
    ("object_name", pa.string(), True, "object the event is about"),
    ("object_type", pa.string(), True, "sys.objects-style type code or config"),
    ("flags", pa.list_(pa.string()), False, "detection flags"),
    ("source_file", pa.string(), False, "input path as given"),
    ("source_sha256", pa.string(), False, "SHA-256 of the input"),
    ("source_record", pa.int64(), True, "line, record or row number"),
    ("local_time", pa.string(), True, "time as the artifact wrote it"),
    ("tz_source", pa.string(), False, "how timestamp was made UTC"),
    ("attributes", pa.string(), False, "JSON object with everything else"),
)

TIMELINE_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable, metadata={"description": doc})
     for name, typ, nullable, doc in TIMELINE_COLUMNS],
    metadata={"producer": f"mssql-forensic {__version__}", "schema": "mssql-forensic timeline v1"},
)

COLUMN_NAMES = tuple(c[0] for c in TIMELINE_COLUMNS)

# Parquet writer settings for every timeline file and dataset part.  Columns
# with few distinct values are dictionary-encoded; the free-text columns are
# not (the writer would try a dictionary, then give up).  Min/max statistics
# only where a reader can skip row groups by them: the file is sorted by time,
# so a row group's other string columns span most of their values anyway.
# On the benchmark set this writes about 35% faster than Arrow's defaults
# (statistics on the constant-ish string columns alone were a fifth of the
# encoding) and 22% smaller.
_FREE_TEXT = ("message", "local_time", "attributes")
PARQUET_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "use_dictionary": [n for n in COLUMN_NAMES if n not in (*_FREE_TEXT, "timestamp", "source_record")],
    "write_statistics": ["timestamp", "event_id", "event_type", "source_record"],
}
SORT_KEYS = [("timestamp", "ascending"), ("source_file", "ascending"), ("source_record", "ascending")]


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def attributes_json(attributes: dict) -> str:
    """Attributes as compact JSON with sorted keys (reproducible outputs).

    orjson does it ~20x faster than the standard library; odd values it
    refuses (lone surrogates from damaged text) fall back to json with
    ``ensure_ascii`` so they stay representable.
    """
    try:
        return orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                            default=_json_default).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(attributes, ensure_ascii=True, sort_keys=True, separators=(",", ":"),
                          default=_json_default)


class BatchBuilder:
    """Collects finished events and emits record batches of ``size`` rows."""

    def __init__(self, source_file: str, source_sha256: str, size: int = 20_000):
        self.source_file = source_file
        self.source_sha256 = source_sha256
        self.size = size
        self._reset()

    def _reset(self) -> None:
        self._cols: dict[str, list] = {name: [] for name in COLUMN_NAMES}

    def __len__(self) -> int:
        return len(self._cols["message"])

    def add(self, ev: Event) -> pa.RecordBatch | None:
        c = self._cols
        ts = ev.timestamp
        if ts is not None and ts.tzinfo is not None and ts.utcoffset():
            ts = ts.astimezone(UTC)
        c["timestamp"].append(ts)
        c["timestamp_desc"].append(ev.timestamp_desc)
        c["message"].append(ev.message)
        c["source"].append(ev.source)
        c["event_type"].append(ev.event_type)
        c["event_id"].append(ev.event_id)
        c["host"].append(ev.host)
        c["instance"].append(ev.instance)
        c["user"].append(ev.user)
        c["database"].append(ev.database)
        c["object_name"].append(ev.object_name)
        c["object_type"].append(ev.object_type)
        c["flags"].append(ev.flags)
        c["source_file"].append(self.source_file)
        c["source_sha256"].append(self.source_sha256)
        c["source_record"].append(ev.source_record)
        c["local_time"].append(ev.local_text)
        c["tz_source"].append(ev.tz_source or "assumed_utc")
        c["attributes"].append(attributes_json(ev.attributes))
        if len(self) >= self.size:
            return self.flush()
        return None

    def flush(self) -> pa.RecordBatch | None:
        if not len(self):
            return None
        arrays = [pa.array(self._cols[name], type=typ) for name, typ, _n, _d in TIMELINE_COLUMNS]
        self._reset()
        return pa.RecordBatch.from_arrays(arrays, schema=TIMELINE_SCHEMA)

"""Timeline writers: Parquet, JSON Lines, CSV, Timesketch JSON Lines.

All write to a temporary name beside the output and rename at the end, so an
interrupted run never leaves a half-written timeline under the final name.

CSV is made for spreadsheets, and evidence text is attacker-controlled: every
string cell (flags and attributes included) that a spreadsheet would run as a
formula is prefixed with ``'`` (see :func:`neutralise_cell`); one CSV record
per event, multi-line text quoted; NUL becomes U+2400 (spreadsheets cut cells
at NUL).

Timesketch JSON Lines (:func:`timesketch_record`) carries the fields
Timesketch requires (``message``, ``datetime``, ``timestamp_desc``), its
``timestamp`` in epoch microseconds, every timeline column as a field, the
attributes JSON string unchanged plus each top-level attribute flattened to
an ``attr_<key>`` string field.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from forensic import __version__
from forensic.schema import COLUMN_NAMES, PARQUET_OPTIONS, TIMELINE_SCHEMA

FORMATS = ("parquet", "jsonl", "csv", "timesketch")
# Parquet row groups: 64Ki rows or 24 MB of Arrow data, whichever comes
# first.  One group is held while the next is encoded, and the last is
# encoded after the merge has ended; against 100,000 rows / 48 MB this cut
# the final merge's peak memory from about 276 to 200 MB and its tail from
# 0.11 to 0.05 s (bench multi-file set), for a file 0.2% larger.
ROW_GROUP_ROWS = 65_536
ROW_GROUP_BYTES = 24 << 20
# What makes a spreadsheet cell a formula (OWASP "CSV injection"), with the
# full-width forms some spreadsheets also accept.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Characters a spreadsheet skips before looking for one.
_LEADING_BLANKS = " \t\r\n\x0b\x0c\u00a0\u3000"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ATTR_KEY = re.compile(r"[^A-Za-z0-9_]")


def format_for(path: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return "parquet"


def temp_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.partial-{os.getpid()}")


def _iso(ts) -> str | None:
    if ts is None:
        return None
    return ts.isoformat().replace("+00:00", "Z")


def neutralise_cell(value: str) -> str:
    """Make a string cell inert for spreadsheets.

    A cell that starts with a formula character (after any blanks) gets a
    leading ``'``; so does a cell that already starts with ``'``, which keeps
    the change reversible: drop one leading ``'`` from any cell that has one.
    NUL becomes U+2400.
    """
    if not value:
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\u2400")
    if value[0] == "'" or value.lstrip(_LEADING_BLANKS).startswith(_FORMULA_START) \
            or value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_cell(name: str, value: Any) -> Any:
    """One timeline value as a CSV cell (flags joined with ``;``)."""
    if name == "timestamp":
        return _iso(value) or ""
    if name == "flags":
        return neutralise_cell(";".join(value or []))
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise_cell(value)
    return value


def _attr_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def timesketch_record(row: dict[str, Any]) -> dict[str, Any]:
    """One timeline row as a Timesketch event.

    ``datetime`` is ISO 8601 UTC and ``timestamp`` epoch microseconds (what
    Timesketch means by it).  A row with no time (a state row) gets the epoch
    with ``timestamp_desc`` ``Not a time``, as Plaso does, and keeps its own
    description in ``original_timestamp_desc``.  Attribute values are all
    strings in ``attr_*`` so that a field never changes type between events
    (OpenSearch refuses an event whose field type conflicts with the mapping).
    """
    ts = row["timestamp"]
    out: dict[str, Any] = {"message": row["message"]}
    if ts is None:
        out["datetime"] = _EPOCH.isoformat()
        out["timestamp"] = 0
        out["timestamp_desc"] = "Not a time"
        out["original_timestamp_desc"] = row["timestamp_desc"]
    else:
        ts = ts.astimezone(UTC)
        out["datetime"] = ts.isoformat()
        delta = ts - _EPOCH
        out["timestamp"] = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        out["timestamp_desc"] = row["timestamp_desc"]
    out["data_type"] = f"mssql:{row['source']}:{row['event_type']}"
    for name in COLUMN_NAMES:
        if name not in out and name != "timestamp_desc":
            out[name] = row[name]
    try:
        attrs = json.loads(row["attributes"]) if row["attributes"] else {}
    except ValueError:
        attrs = {}
    if isinstance(attrs, dict):
        for key, value in attrs.items():
            field_name = "attr_" + _ATTR_KEY.sub("_", str(key))
            if field_name not in out and value is not None:
                out[field_name] = _attr_value(value)
    return out


class TimelineWriter:
    """Write record batches in timeline order to ``path``; ``close()`` commits."""

    def __init__(self, path: str, fmt: str, csv_bom: bool = False):
        self.path = path
        self.fmt = fmt
        self.tmp = temp_name(path)
        self.rows = 0
        self._closed = False
        if fmt == "parquet":
            schema = TIMELINE_SCHEMA.with_metadata({
                **(TIMELINE_SCHEMA.metadata or {}),
                b"mssql_forensic_version": __version__.encode(),
            })
            self._pq = pq.ParquetWriter(self.tmp, schema, **PARQUET_OPTIONS)
            # Row groups are encoded and compressed on a thread of their own
            # (Arrow releases the GIL there) while the caller merges the next
            # rows; one group at a time, so memory stays bounded.
            self._encoder = ThreadPoolExecutor(1, thread_name_prefix="parquet-writer")
            self._encoding: Future | None = None
            self._pending: list[pa.RecordBatch] = []
            self._pending_rows = 0
            self._pending_bytes = 0
        else:
            # backslashreplace: a lone surrogate from damaged UTF-16 must
            # not abort the whole output.
            self._fh = open(self.tmp, "w", encoding="utf-8-sig" if (fmt == "csv" and csv_bom) else "utf-8",
                            newline="", errors="backslashreplace")
            if fmt == "csv":
                self._csv = csv.writer(self._fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
                self._csv.writerow(COLUMN_NAMES)

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        if self.fmt == "parquet":
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            self._pending_bytes += batch.nbytes
            # A row group per ROW_GROUP_ROWS rows, or sooner when rows are large.
            if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
                self._flush_parquet()
            return
        rows = batch.to_pylist()
        if self.fmt == "jsonl":
            for row in rows:
                row["timestamp"] = _iso(row["timestamp"])
                self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif self.fmt == "timesketch":
            for row in rows:
                self._fh.write(json.dumps(timesketch_record(row), ensure_ascii=False) + "\n")
        else:
            for row in rows:
                self._csv.writerow([csv_cell(name, row[name]) for name in COLUMN_NAMES])

    def _flush_parquet(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=TIMELINE_SCHEMA)
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            self._wait_encoded()
            self._encoding = self._encoder.submit(self._pq.write_table, table, row_group_size=ROW_GROUP_ROWS)

    def _wait_encoded(self) -> None:
        """Wait for the row group being written; its error is raised here."""
        if self._encoding is not None:
            done, self._encoding = self._encoding, None
            done.result()

    def write_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.write(batch)

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        if self._closed:
            return
        if self.fmt == "parquet":
            self._flush_parquet()
            self._wait_encoded()
            self._encoder.shutdown()
            self._pq.close()
        else:
            self._fh.close()
        os.replace(self.tmp, self.path)
        self._closed = True

    def abort(self) -> None:
        if self._closed:
            return
        try:
            if self.fmt == "parquet":
                try:
                    self._wait_encoded()
                except Exception:  # noqa: BLE001, S110 - aborting anyway; the caller has the first error
                    pass
                self._encoder.shutdown()
                self._pq.close()
            else:
                self._fh.close()
        finally:
            self._closed = True
            try:
                os.remove(self.tmp)
            except OSError:
                pass

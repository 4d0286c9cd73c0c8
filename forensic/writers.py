"""Timeline writers: Parquet, JSON Lines, CSV.

All write to a temporary name beside the output and rename at the end, so an
interrupted run never leaves a half-written timeline under the final name.
CSV cells that a spreadsheet would run as a formula (starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return) are prefixed with ``'``: evidence
text is attacker-controlled.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from forensic import __version__
from forensic.schema import COLUMN_NAMES, TIMELINE_SCHEMA

FORMATS = ("parquet", "jsonl", "csv")
ROW_GROUP_ROWS = 100_000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
    if value and value.startswith(_FORMULA_START):
        return "'" + value
    return value


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
            self._pq = pq.ParquetWriter(self.tmp, schema, compression="zstd")
            self._pending: list[pa.RecordBatch] = []
            self._pending_rows = 0
        else:
            self._fh = open(self.tmp, "w", encoding="utf-8-sig" if (fmt == "csv" and csv_bom) else "utf-8",
                            newline="")
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
            if self._pending_rows >= ROW_GROUP_ROWS:
                self._flush_parquet()
            return
        rows = batch.to_pylist()
        if self.fmt == "jsonl":
            for row in rows:
                row["timestamp"] = _iso(row["timestamp"])
                self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            for row in rows:
                out = []
                for name in COLUMN_NAMES:
                    value = row[name]
                    if name == "timestamp":
                        value = _iso(value) or ""
                    elif name == "flags":
                        value = ";".join(value or [])
                    elif value is None:
                        value = ""
                    elif isinstance(value, str):
                        value = neutralise_cell(value)
                    out.append(value)
                self._csv.writerow(out)

    def _flush_parquet(self) -> None:
        if self._pending:
            self._pq.write_table(pa.Table.from_batches(self._pending, schema=TIMELINE_SCHEMA),
                                 row_group_size=ROW_GROUP_ROWS)
            self._pending, self._pending_rows = [], 0

    def write_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.write(batch)

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        if self._closed:
            return
        if self.fmt == "parquet":
            self._flush_parquet()
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
                self._pq.close()
            else:
                self._fh.close()
        finally:
            self._closed = True
            try:
                os.remove(self.tmp)
            except OSError:
                pass

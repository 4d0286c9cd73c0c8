"""``query``: SQL over a timeline with DuckDB (the optional ``query`` extra).

Two views: ``timeline`` (every row, ``attributes`` typed JSON so that
``attributes->>'client_address'`` works) and ``flagged`` (rows with at least
one flag).  Times are shown in UTC whatever the machine's zone.

The connection is read-only toward the disk: after the views are made, DuckDB
may open only the timeline itself (``allowed_paths``; a ``--layout dataset``
folder: ``allowed_directories``), external access is
switched off and the configuration locked, so a query cannot read other files,
write files (``COPY ... TO``), attach databases or install extensions (no
network either).  Results stream in Arrow batches: csv and jsonl output use
flat memory; the table shows at most ``--max-rows`` rows.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from forensic.writers import neutralise_cell


class QueryError(ValueError):
    """A usage error: no DuckDB, a bad timeline, a bad query."""


_JSONL_COLUMNS = {
    "timestamp": "VARCHAR", "timestamp_desc": "VARCHAR", "message": "VARCHAR", "source": "VARCHAR",
    "event_type": "VARCHAR", "event_id": "BIGINT", "host": "VARCHAR", "instance": "VARCHAR", "user": "VARCHAR",
    "database": "VARCHAR", "object_name": "VARCHAR", "object_type": "VARCHAR", "flags": "VARCHAR[]",
    "source_file": "VARCHAR", "source_sha256": "VARCHAR", "source_record": "BIGINT", "local_time": "VARCHAR",
    "tz_source": "VARCHAR", "attributes": "VARCHAR",
}


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(timeline_path: str):
    """A DuckDB connection with the ``timeline`` and ``flagged`` views, locked down."""
    try:
        import duckdb
    except ImportError:
        raise QueryError("the query command needs DuckDB: python -m pip install 'mssql-forensic[query]' "
                         "(or: python -m pip install duckdb)") from None
    from forensic.report_html import ReportError, timeline_kind

    path = os.path.abspath(timeline_path)
    try:
        kind = timeline_kind(path)
        parquet = kind in ("parquet", "dataset")
    except ReportError as exc:
        raise QueryError(str(exc)) from None
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass  # no ICU: TIMESTAMPTZ then prints in UTC anyway
    try:
        if kind == "dataset":
            # Every column from the files (hive directory names ignored); the
            # parts are sorted each on its own: ORDER BY for a global order.
            glob = os.path.join(path, "**", "*.parquet")
            source = f"read_parquet({_sql_str(glob)}, hive_partitioning = false)"
            con.execute(f"CREATE VIEW timeline AS SELECT * REPLACE (attributes::JSON AS attributes) FROM {source}")
        elif parquet:
            source = f"read_parquet({_sql_str(path)})"
            con.execute(f"CREATE VIEW timeline AS SELECT * REPLACE (attributes::JSON AS attributes) FROM {source}")
        else:
            cols = "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in _JSONL_COLUMNS.items()) + "}"
            source = f"read_json({_sql_str(path)}, format = 'newline_delimited', columns = {cols})"
            con.execute("CREATE VIEW timeline AS SELECT * REPLACE (timestamp::TIMESTAMPTZ AS timestamp, "
                        f"attributes::JSON AS attributes) FROM {source}")
        con.execute("CREATE VIEW flagged AS SELECT * FROM timeline WHERE len(flags) > 0")
        con.execute("SELECT * FROM timeline LIMIT 1").fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"{timeline_path}: not a timeline DuckDB can read ({str(exc).splitlines()[0]})") from None
    try:
        if kind == "dataset":
            con.execute(f"SET allowed_directories = [{_sql_str(path.rstrip(os.sep) + os.sep)}]")
        else:
            con.execute(f"SET allowed_paths = [{_sql_str(path)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:
        raise QueryError(f"this DuckDB ({duckdb.__version__}) cannot restrict file access "
                         f"({str(exc).splitlines()[0]}); install duckdb>=1.2") from None
    return con


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _cell(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, list):
        return neutralise_cell(";".join("" if v is None else str(_plain(v)) for v in value))
    if isinstance(value, dict):
        return neutralise_cell(json.dumps(value, ensure_ascii=False, default=str))
    if isinstance(value, str):
        return neutralise_cell(value)
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def run_query(timeline_path: str, sql: str, fmt: str, max_rows: int, out: TextIO, console: Console) -> int:
    """Run ``sql``; print the result to ``out`` as table, csv or jsonl.  Returns the number of rows."""
    con = connect(timeline_path)
    import duckdb
    try:
        rel = con.sql(sql)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from None
    if rel is None:
        return 0
    columns = list(rel.columns)
    try:
        reader = rel.to_arrow_reader(10_000) if hasattr(rel, "to_arrow_reader") else rel.fetch_record_batch(10_000)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from None
    n = 0
    try:
        if fmt == "csv":
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow([neutralise_cell(c) for c in columns])
            for batch in reader:
                for row in batch.to_pylist():
                    writer.writerow([_cell(row[c]) for c in batch.schema.names])
                    n += 1
        elif fmt == "jsonl":
            for batch in reader:
                for row in batch.to_pylist():
                    out.write(json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False,
                                         default=str) + "\n")
                    n += 1
        else:
            table = Table(show_lines=False)
            for c in columns:
                table.add_column(Text(c), overflow="fold")
            for batch in reader:
                for row in batch.to_pylist():
                    if n < max_rows:
                        table.add_row(*[Text(_text(v)) for v in row.values()])
                    n += 1
            view = Console(file=out, highlight=False, soft_wrap=False,
                           width=None if getattr(out, "isatty", lambda: False)() else 200)
            view.print(table)
            more = f"; {n - max_rows:,} not shown (--max-rows, or --format csv/jsonl for all)" if n > max_rows else ""
            console.print(f"{n:,} row(s){more}", markup=False, highlight=False)
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {exc}") from None
    return n

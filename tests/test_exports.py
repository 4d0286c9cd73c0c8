"""Timelines for the tools analysts use: Timesketch JSON Lines, spreadsheet-safe CSV, DuckDB queries."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, SQLPROD01_LOG, write_utf16

from forensic.writers import csv_cell, neutralise_cell, timesketch_record


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory):
    from typer.testing import CliRunner

    from forensic.cli import app
    out = tmp_path_factory.mktemp("exports") / "t.parquet"
    result = CliRunner().invoke(app, ["timeline", str(FIXTURES), "-o", str(out), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return out, pq.read_table(out).to_pylist()


def _epoch_us(ts: datetime) -> int:
    d = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


# -- Timesketch ---------------------------------------------------------------

def test_timesketch_jsonl(tmp_path, cli, parquet_run):
    out = tmp_path / "ts.jsonl"
    code, _o, err = cli("timeline", FIXTURES, "-o", out, "--format", "timesketch", "--workers", "1", "--quiet")
    assert code == 0, err
    lines = out.read_text(encoding="utf-8").splitlines()
    rows = parquet_run[1]
    assert len(lines) == len(rows)
    manifest = json.loads((tmp_path / "ts.jsonl.manifest.json").read_text())
    assert manifest["output"]["format"] == "timesketch"
    for line, row in zip(lines, rows, strict=True):
        ev = json.loads(line)
        # Timesketch's required fields.
        assert isinstance(ev["message"], str) and ev["message"] == row["message"]
        assert ev["timestamp_desc"] == row["timestamp_desc"] and ev["timestamp_desc"]
        when = datetime.fromisoformat(ev["datetime"])
        assert ev["datetime"].endswith("+00:00") and when == row["timestamp"]
        # Timesketch's timestamp is epoch microseconds.
        assert ev["timestamp"] == _epoch_us(row["timestamp"])
        # Every other column is a field; attributes kept as the JSON string and flattened.
        for name in ("source", "event_type", "event_id", "host", "instance", "user", "database", "object_name",
                     "object_type", "flags", "source_file", "source_sha256", "source_record", "local_time",
                     "tz_source", "attributes"):
            assert ev[name] == row[name], name
        assert ev["data_type"] == f"mssql:{row['source']}:{row['event_type']}"
        attrs = json.loads(row["attributes"])
        for key, value in attrs.items():
            flat = ev[f"attr_{key}"]
            assert isinstance(flat, str)
            if isinstance(value, str):
                assert flat == value
            elif isinstance(value, list | dict):
                assert json.loads(flat) == value


def test_timesketch_field_types_are_stable(tmp_path, cli):
    """OpenSearch maps a field on first sight: a field must keep one type across events."""
    out = tmp_path / "ts.jsonl"
    code, _o, _e = cli("timeline", FIXTURES, "-o", out, "--format", "timesketch", "--workers", "1", "--quiet")
    assert code == 0
    types: dict[str, set[str]] = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        for key, value in json.loads(line).items():
            if value is not None:
                types.setdefault(key, set()).add(type(value).__name__)
    assert {k: v for k, v in types.items() if len(v) > 1} == {}
    assert all(v == {"str"} for k, v in types.items() if k.startswith("attr_"))


def test_timesketch_row_without_time():
    row = {"timestamp": None, "timestamp_desc": "Object Created", "message": "state row", "source": "master_export",
           "event_type": "object_state", "event_id": None, "host": "H", "instance": "I", "user": None,
           "database": None, "object_name": "p", "object_type": "P", "flags": [], "source_file": "f",
           "source_sha256": "0" * 64, "source_record": 2, "local_time": None, "tz_source": "utc",
           "attributes": '{"a.b": 1, "nested": {"x": [1, 2]}, "flag": true, "none": null}'}
    ev = timesketch_record(row)
    assert ev["datetime"] == "1970-01-01T00:00:00+00:00" and ev["timestamp"] == 0
    assert ev["timestamp_desc"] == "Not a time" and ev["original_timestamp_desc"] == "Object Created"
    assert ev["attr_a_b"] == "1" and ev["attr_flag"] == "true" and json.loads(ev["attr_nested"]) == {"x": [1, 2]}
    assert "attr_none" not in ev


def test_timesketch_format_is_not_a_timeline_for_findings(tmp_path, cli):
    out = tmp_path / "ts.jsonl"
    assert cli("timeline", SQLPROD01_LOG, "-o", out, "--format", "timesketch", "--workers", "1", "--quiet")[0] == 0
    code, _o, err = cli("findings", out)
    assert code == 2 and "Timesketch export" in err


# -- CSV ----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("\n=1", "'\n=1"), ("  =1", "'  =1"), ("\u00a0=1", "'\u00a0=1"),
    ("\uff1dcmd|' /C calc'!A0", "'\uff1dcmd|' /C calc'!A0"),
    ("'already quoted", "''already quoted"),
    ("plain text", "plain text"), ("", ""), ("a=b", "a=b"),
    ("nul\x00byte", "nul\u2400byte"),
])
def test_neutralise_cell(value, expected):
    assert neutralise_cell(value) == expected
    # Reversible: drop one leading quote from any cell that has one.
    back = expected[1:] if expected.startswith("'") else expected
    assert back == value.replace("\x00", "\u2400")


def test_every_string_cell_is_neutralised():
    assert csv_cell("flags", ["=x", "y"]) == "'=x;y"
    assert csv_cell("attributes", '{"a": 1}') == '{"a": 1}'
    assert csv_cell("object_name", "-cmd") == "'-cmd"
    assert csv_cell("user", None) == "" and csv_cell("event_id", 5) == 5
    assert csv_cell("timestamp", datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"


def read_csv(path, bom=False):
    with open(path, encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_one_record_per_event_multiline_quoted(tmp_path, cli, parquet_run):
    out = tmp_path / "t.csv"
    code, _o, _e = cli("timeline", FIXTURES, "-o", out, "--workers", "1", "--quiet")
    assert code == 0
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    data = read_csv(out)
    rows = parquet_run[1]
    assert len(data) == len(rows)
    multiline = 0
    for rec, row in zip(data, rows, strict=True):
        message = rec["message"][1:] if rec["message"].startswith("'") else rec["message"]
        assert message == row["message"]
        assert rec["source_record"] == ("" if row["source_record"] is None else str(row["source_record"]))
        assert rec["flags"] == ";".join(row["flags"])
        multiline += "\n" in row["message"]
    assert multiline >= 3  # start-up banners: several lines, one record
    # Records end in CRLF; line breaks inside a message are inside quotes.
    assert raw.endswith(b"\r\n")
    # pyarrow's CSV reader (what pandas and DuckDB do) agrees on the record count.
    import pyarrow.csv as pacsv
    table = pacsv.read_csv(out, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert table.num_rows == len(rows)


def test_csv_bom_and_hostile_cells(tmp_path, cli):
    ev = tmp_path / "ev"
    write_utf16(ev / "ERRORLOG", [
        "2025-01-01 10:00:00.00 spid9s      Launched startup procedure '=cmd|\" /C calc\"!A0'.",
        "2025-01-01 10:00:01.00 spid9s      Launched startup procedure '@SUM(1+1)*cmd|\" /C calc\"!A0'.",
        "2025-01-01 10:00:02.00 spid51      -2+3+cmd|\" /C calc\"!A0\n\t=HYPERLINK(\"http://evil\")",
    ])
    out = tmp_path / "t.csv"
    code, _o, _e = cli("timeline", ev, "-o", out, "--workers", "1", "--quiet", "--tz", "UTC", "--csv-bom")
    assert code == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    data = read_csv(out, bom=True)
    assert len(data) == 3
    names = [r["object_name"] for r in data[:2]]
    assert names == ["'=cmd|\" /C calc\"!A0", "'@SUM(1+1)*cmd|\" /C calc\"!A0"]
    assert data[2]["message"].startswith("'-2+3") and "\n" in data[2]["message"]
    for rec in data:
        for value in rec.values():
            assert not value or value[0] not in "=+-@\t\r\n", value


# -- query ----------------------------------------------------------------------

def test_query_table_csv_jsonl(parquet_run, cli):
    pytest.importorskip("duckdb")
    timeline, rows = parquet_run
    code, out, err = cli("query", timeline, "SELECT count(*) AS n FROM timeline")
    assert code == 0, err
    assert f"{len(rows)}" in out and "1 row(s)" in err
    flagged = sum(1 for r in rows if r["flags"])
    code, out, _e = cli("query", timeline, "SELECT count(*) AS n FROM flagged", "--format", "jsonl")
    assert code == 0 and json.loads(out) == {"n": flagged}
    # attributes is JSON; times are UTC; lists come out readable.
    code, out, _e = cli("query", timeline,
                        "SELECT timestamp, flags, attributes->>'process' AS process, object_name FROM flagged "
                        "WHERE list_contains(flags, 'startup_procedure') AND source = 'errorlog' "
                        "ORDER BY timestamp, source_file, source_record", "--format", "jsonl")
    assert code == 0
    got = [json.loads(line) for line in out.splitlines()]
    want = [r for r in rows if "startup_procedure" in r["flags"] and r["source"] == "errorlog"]
    assert len(got) == len(want) >= 1
    assert got[0]["timestamp"] == want[0]["timestamp"].isoformat().replace("+00:00", "Z")
    assert got[0]["flags"] == want[0]["flags"]
    assert got[0]["process"] == json.loads(want[0]["attributes"]).get("process")
    code, out, _e = cli("query", timeline, "SELECT '=1+1' AS f, ['a', 'b'] AS l", "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [["f", "l"], ["'=1+1", "a;b"]]


def test_query_over_jsonl(tmp_path, cli):
    pytest.importorskip("duckdb")
    out = tmp_path / "t.jsonl"
    assert cli("timeline", SQLPROD01_LOG, "-o", out, "--workers", "1", "--quiet")[0] == 0
    n = len(out.read_text(encoding="utf-8").splitlines())
    code, text, err = cli("query", out, "SELECT count(*) AS n, min(timestamp) AS t FROM timeline", "--format",
                          "jsonl")
    assert code == 0, err
    got = json.loads(text)
    assert got["n"] == n and got["t"].endswith("Z")


def test_query_is_read_only(parquet_run, cli, tmp_path):
    pytest.importorskip("duckdb")
    timeline = parquet_run[0]
    target = tmp_path / "leak.csv"
    for sql in (f"COPY (SELECT 1) TO '{target}'", "SELECT * FROM read_csv('/etc/passwd')",
                "SET enable_external_access = true", f"ATTACH '{tmp_path / 'x.db'}'", "INSTALL httpfs"):
        code, _o, err = cli("query", timeline, sql)
        assert code == 2 and "query failed" in err, sql
    assert not target.exists() and not (tmp_path / "x.db").exists()


def test_query_errors(parquet_run, cli, tmp_path, monkeypatch):
    pytest.importorskip("duckdb")
    code, _o, err = cli("query", parquet_run[0], "SELEKT nonsense")
    assert code == 2 and "query failed" in err
    code, _o, err = cli("query", tmp_path / "missing.parquet", "SELECT 1")
    assert code == 2 and "no such timeline" in err
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    code, _o, err = cli("query", bad, "SELECT 1")
    assert code == 2 and "not a mssql-forensic timeline" in err
    monkeypatch.setitem(sys.modules, "duckdb", None)
    code, _o, err = cli("query", parquet_run[0], "SELECT 1")
    assert code == 2 and "pip install" in err and "[query]" in err


def test_query_table_caps_rows(parquet_run, cli):
    pytest.importorskip("duckdb")
    code, out, err = cli("query", parquet_run[0], "SELECT message FROM timeline", "--max-rows", "2")
    assert code == 0
    assert "not shown" in err and f"{len(parquet_run[1]):,} row(s)" in err

"""Flags follow the object across sources of one instance (ERRORLOG + trace)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pyarrow.parquet as pq
from conftest import SQLPROD01_LOG
from trc_builder import ServerTrace, object_event


def test_trace_creation_of_a_startup_procedure_is_flagged(tmp_path, cli):
    log = tmp_path / "SQLPROD01" / "Log"
    shutil.copytree(SQLPROD01_LOG, log)
    trace = ServerTrace("SQLPROD01", start=datetime(2025, 3, 5, 22, 40, 0))
    trace.event(46, object_event("P", "sp_sqlsvc_update", "master", 1, login="sa", host="WS-ATTACKER"),
                seconds=510)  # 22:48:30 local
    trace.event(46, object_event("P", "usp_report_daily", "ReportDB", 1, login="etl", host="APP01"), seconds=600)
    trace.stop(900)
    (log / "log_12.trc").write_bytes(trace.file())
    out = tmp_path / "out" / "t.parquet"
    code, _o, err = cli("timeline", tmp_path / "SQLPROD01", "-o", out, "--workers", "1")
    assert code == 0, err
    rows = pq.read_table(out).to_pylist()
    created = [r for r in rows if r["source"] == "default_trace" and r["object_name"] == "sp_sqlsvc_update"]
    assert len(created) == 1
    row = created[0]
    assert row["flags"] == ["startup_procedure"]
    assert "is flagged startup_procedure" in json.loads(row["attributes"])["correlation"][0]
    assert (row["host"], row["instance"]) == ("SQLPROD01", "MSSQLSERVER")
    # The trace's local time takes the instance's offset from its ERRORLOG (-5:00 then).
    assert row["timestamp"] == datetime(2025, 3, 6, 3, 48, 30, tzinfo=UTC)
    assert row["tz_source"] == "errorlog_utc_adjustment"
    benign = [r for r in rows if r["object_name"] == "usp_report_daily"]
    assert benign and benign[0]["flags"] == []

    code, stdout, _ = cli("findings", out, "--json")
    finding = [f for f in json.loads(stdout) if f["title"] == "Startup procedure sp_sqlsvc_update"][0]
    assert sorted(finding["sources"]) == ["default_trace", "errorlog"]
    assert finding["first_seen"] == "2025-03-06T03:48:30Z" and finding["event_count"] == 2

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


# --- the Correlator against a row-by-row oracle -------------------------------------

def _oracle(facts, rows: list[dict]) -> list[dict]:
    """What the Correlator must do, one row at a time (its first version)."""
    from forensic.correlate import object_key
    from forensic.instances import norm_host
    flagged, since_by_host = facts.closed(), facts.xp_cmdshell_enabled
    out = []
    for row in rows:
        row = dict(row)
        additions = []
        name = row["object_name"]
        if name and row["object_type"] != "config":
            key = object_key(row["host"], row["instance"], name)
            for flag in sorted(flagged.get(key, ())):
                additions.append((flag, f"{name} is flagged {flag} by other evidence of this instance"))
        if "sqlservr_child_process" in row["flags"] and "xp_cmdshell" not in row["flags"]:
            since = since_by_host.get(norm_host(row["host"]) or "")
            if since and row["timestamp"] is not None and row["timestamp"].isoformat() >= since:
                additions.append(("xp_cmdshell",
                                  f"process started by sqlservr.exe after xp_cmdshell was enabled ({since})"))
        attrs = json.loads(row["attributes"])
        notes, changed = attrs.get("correlation") or [], False
        for flag, why in additions:
            if flag not in row["flags"]:
                row["flags"] = [*row["flags"], flag]
                notes.append(why)
                changed = True
        if changed:
            attrs["correlation"] = notes
            row["attributes"] = json.dumps(attrs)
        out.append(row)
    return out


def _random_rows(rnd, n: int) -> list[dict]:
    from forensic.schema import COLUMN_NAMES
    hosts = ["SQLPROD01", "sqlprod01.corp.local", "WEB02", None, "evil|host"]
    names = ["sp_backdoor", "[dbo].[sp_backdoor]", "dbo.SP_BACKDOOR", "asm_evil", "usp_report", "", None,
             "x|sp_backdoor", "ClrProc", "xp_only_here"]
    rows = []
    for i in range(n):
        row = dict.fromkeys(COLUMN_NAMES)
        row.update(host=rnd.choice(hosts), instance=rnd.choice(["MSSQLSERVER", "mssqlserver", "SQL2", None]),
                   object_name=rnd.choice(names), object_type=rnd.choice(["P", "config", None, "AS", "PC"]),
                   flags=rnd.choice([[], ["sqlservr_child_process"], ["sqlservr_child_process", "xp_cmdshell"],
                                     ["startup_procedure"], ["lolbin", "sqlservr_child_process"]]),
                   timestamp=datetime(2025, 3, 6, rnd.randrange(24), tzinfo=UTC) if rnd.random() < 0.9 else None,
                   attributes=json.dumps({"n": i} if rnd.random() < 0.8 else {"n": i, "correlation": ["earlier"]}),
                   message=f"row {i}", source="test", timestamp_desc="t", source_file="f", source_sha256="0" * 64,
                   source_record=i)
        rows.append(row)
    return rows


def _facts():
    from forensic.correlate import ObjectFacts, object_key
    facts = ObjectFacts()
    facts.flagged[object_key("SQLPROD01", "MSSQLSERVER", "dbo.sp_backdoor")] = {"startup_procedure"}
    # A hostile host name with "|" in it: the flag must still follow the object.
    facts.flagged[object_key("evil|host", "MSSQLSERVER", "xp_only_here")] = {"startup_procedure",
                                                                            "extended_procedure"}
    facts.flagged[object_key("WEB02", "SQL2", "asm_evil")] = {"clr_assembly_load"}
    facts.links.add((object_key("WEB02", "SQL2", "ClrProc"), object_key("WEB02", "SQL2", "asm_evil")))
    facts.xp_cmdshell_enabled["SQLPROD01"] = "2025-03-06T12:00:00+00:00"
    return facts


def test_correlator_matches_the_row_by_row_oracle():
    import random

    import pyarrow as pa

    from forensic.correlate import Correlator
    from forensic.schema import TIMELINE_SCHEMA
    rnd = random.Random(7)
    rows = _random_rows(rnd, 3000)
    table = pa.Table.from_pylist(rows, schema=TIMELINE_SCHEMA)
    correlate = Correlator(_facts())
    got = []
    # Slices of all sizes: Arrow kernels must honour each slice's offset.
    start = 0
    for size in (1, 7, 500, 1, 2491):
        got += correlate(table.slice(start, size).to_batches()[0]).to_pylist()
        start += size
    expected = _oracle(_facts(), rows)
    assert len(got) == len(expected) == 3000
    for g, e in zip(got, expected, strict=True):
        assert (g["flags"], json.loads(g["attributes"])) == (e["flags"], json.loads(e["attributes"]))
    changed = sum(g["flags"] != r["flags"] for g, r in zip(got, rows, strict=True))
    assert correlate.changed == changed > 300  # the random rows do hit every case
    assert any("xp_cmdshell" in g["flags"] and "xp_cmdshell" not in r["flags"] for g, r in zip(got, rows, strict=True))
    assert any("clr_assembly_load" in g["flags"] and g["object_name"] == "ClrProc" for g in got)
    assert any("extended_procedure" in g["flags"] and g["host"] == "evil|host" for g in got)


def test_correlator_leaves_batches_alone_without_facts():
    import random

    import pyarrow as pa

    from forensic.correlate import Correlator, ObjectFacts
    from forensic.schema import TIMELINE_SCHEMA
    batch = pa.RecordBatch.from_pylist(_random_rows(random.Random(1), 50), schema=TIMELINE_SCHEMA)
    assert Correlator(ObjectFacts())(batch) is batch

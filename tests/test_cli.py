"""The contract end to end: `timeline` and `findings` on the bundled evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, REPO, SQLPROD01_LOG, snapshot, write_utf16

CONTRACT_TYPES = {
    "timestamp": pa.timestamp("us", tz="UTC"), "timestamp_desc": pa.string(), "message": pa.string(),
    "source": pa.string(), "event_type": pa.string(), "event_id": pa.int64(), "host": pa.string(),
    "instance": pa.string(), "user": pa.string(), "database": pa.string(), "object_name": pa.string(),
    "object_type": pa.string(), "flags": pa.list_(pa.string()), "source_file": pa.string(),
    "source_sha256": pa.string(), "source_record": pa.int64(), "local_time": pa.string(),
    "tz_source": pa.string(), "attributes": pa.string(),
}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    from typer.testing import CliRunner

    from forensic.cli import app
    out = tmp_path_factory.mktemp("run") / "timeline.parquet"
    before = snapshot(FIXTURES)
    result = CliRunner().invoke(app, ["timeline", str(FIXTURES), "-o", str(out), "--workers", "2"])
    after = snapshot(FIXTURES)
    return result, out, before, after


def rows(out):
    return pq.read_table(out).to_pylist()


def test_exit_code_columns_and_types(sample_run):
    result, out, _b, _a = sample_run
    assert result.exit_code == 0, result.output
    schema = pq.read_schema(out)
    for name, typ in CONTRACT_TYPES.items():
        assert schema.field(name).type == typ, name
    assert b"mssql-forensic" in schema.metadata[b"producer"]


def test_sorted_by_timestamp_file_record(sample_run):
    data = rows(sample_run[1])
    keys = [(r["timestamp"] is None, r["timestamp"] or datetime.min.replace(tzinfo=UTC), r["source_file"],
             r["source_record"]) for r in data]
    assert keys == sorted(keys)


def test_utc_times_and_tz_sources(sample_run):
    data = rows(sample_run[1])

    def one(event_type, obj=None, host=None):
        found = [r for r in data if r["event_type"] == event_type and (obj is None or r["object_name"] == obj)
                 and (host is None or r["host"] == host)]
        assert found, (event_type, obj)
        return found[0]
    # Winter, banner -5:00
    xp = one("config_changed", "xp_cmdshell")
    assert xp["local_time"] == "2025-03-05 22:45:09.54"
    assert xp["timestamp"] == datetime(2025, 3, 6, 3, 45, 9, 540000, tzinfo=UTC)
    assert xp["tz_source"] == "errorlog_utc_adjustment"
    # After the DST change (banner -4:00)
    launch = one("startup_procedure_launched", "sp_sqlsvc_update")
    assert launch["timestamp"] == datetime(2025, 3, 12, 11, 57, 42, 20000, tzinfo=UTC)
    # The 17177 line of 2025-03-10 00:00:48 is after the US switch: -4:00.
    pid_lines = [r for r in data if r["event_id"] == 17177 and r["local_time"] == "2025-03-10 00:00:48.92"]
    assert pid_lines[0]["timestamp"] == datetime(2025, 3, 10, 4, 0, 48, 920000, tzinfo=UTC)
    # Named instance, -7:00
    web = one("startup_procedure_failed", "usp_maint_bootstrap")
    assert (web["host"], web["instance"]) == ("WEB02", "SQLEXPRESS")
    assert web["timestamp"] == datetime(2024, 11, 2, 16, 3, 29, 100000, tzinfo=UTC)
    # Linux, 0:00
    lin = one("startup_procedure_launched", "usp_cache_warmup")
    assert lin["timestamp"] == datetime(2025, 6, 10, 14, 2, 14, 200000, tzinfo=UTC)
    assert {r["tz_source"] for r in data} <= {"errorlog_utc_adjustment", "errorlog_local_utc_pair"}


def test_host_and_instance_attributed_across_rotation_set(sample_run):
    data = rows(sample_run[1])
    cycled = [r for r in data if r["source_file"].endswith("ERRORLOG.2")]
    assert cycled and {(r["host"], r["instance"]) for r in cycled} == {("SQLPROD01", "MSSQLSERVER")}
    agent = [r for r in data if r["source"] == "sqlagent_log"]
    assert agent and {(r["host"], r["instance"]) for r in agent} == {("SQLPROD01", "MSSQLSERVER")}
    assert agent[0]["tz_source"] == "errorlog_utc_adjustment"


def test_flags_and_their_absence(sample_run):
    data = rows(sample_run[1])
    flagged = {(r["event_type"], r["object_name"]): r["flags"] for r in data if r["flags"]}
    assert flagged[("startup_procedure_launched", "sp_sqlsvc_update")] == ["startup_procedure"]
    assert flagged[("config_changed", "scan for startup procs")] == ["startup_procedure"]
    assert flagged[("assembly_loaded", "sqlsvcupdate")] == ["clr_assembly_load"]
    assert flagged[("config_changed", "clr strict security")] == ["clr_enabled"]
    assert flagged[("database_option_set", "TRUSTWORTHY")] == ["clr_enabled"]
    assert flagged[("extended_procedure_dll_loaded", "xp_svc_host")] == ["extended_procedure"]
    assert flagged[("config_changed", "default trace enabled")] == ["audit_tampering"]
    cycles = [r for r in data if r["event_type"] in ("errorlog_cycled", "errorlog_reinitialized")]
    assert len(cycles) == 6 and all(r["flags"] == ["audit_tampering"] for r in cycles)
    benign = [r for r in data if (r["event_type"], r["object_name"]) in {
        ("config_changed", "show advanced options"), ("config_changed", "Agent XPs"),
        ("extended_procedure_dll_loaded", "xp_sqlagent_is_starting"), ("database_option_set", "RECOVERY"),
        ("login_failed", None), ("login_succeeded", None), ("clr_initialized", None)}]
    assert len(benign) > 10 and all(r["flags"] == [] for r in benign)
    system_appdomain = [r for r in data if r["event_type"] == "appdomain_created"
                        and "mssqlsystemresource" in r["attributes"]]
    assert system_appdomain and system_appdomain[0]["flags"] == []


def test_provenance_on_every_row(sample_run):
    data = rows(sample_run[1])
    manifest = json.loads(open(str(sample_run[1]) + ".manifest.json").read())
    hashes = {i["path"]: i["sha256"] for i in manifest["inputs"]}
    for r in data:
        assert r["source_sha256"] == hashes[r["source_file"]]
        assert r["source_record"] >= 1
        json.loads(r["attributes"])


def test_manifest(sample_run):
    result, out, _b, _a = sample_run
    manifest = json.loads(open(str(out) + ".manifest.json").read())
    assert manifest["tool"] == "mssql-forensic" and manifest["version"]
    assert manifest["started_utc"].endswith("Z") and manifest["finished_utc"].endswith("Z")
    assert manifest["exit_code"] == 0
    assert manifest["totals"]["inputs"] == 9 and manifest["totals"]["skipped"] == 1  # README.txt is no artifact
    for item in manifest["inputs"]:
        assert {"path", "size", "sha256", "artifact_type", "parser", "events", "warnings", "errors",
                "time_zone"} <= set(item)
        assert len(item["sha256"]) == 64 and item["status"] == "complete"
    sqlprod = [i for i in manifest["inputs"] if "SQLPROD01" in i["path"] and i["path"].endswith("ERRORLOG.4")][0]
    assert sqlprod["time_zone"]["offsets"][0]["offset"] == "-05:00"
    assert sqlprod["time_zone"]["offsets"][1]["offset"] == "-04:00"


def test_evidence_untouched(sample_run):
    _r, _o, before, after = sample_run
    assert before == after


def test_same_result_with_one_worker(sample_run, tmp_path, cli):
    out = tmp_path / "one.parquet"
    code, _o, _e = cli("timeline", FIXTURES, "-o", out, "--workers", "1", "--quiet")
    assert code == 0
    assert pq.read_table(out).equals(pq.read_table(sample_run[1]))


def test_findings_json(sample_run, cli):
    code, stdout, _ = cli("findings", sample_run[1], "--json")
    assert code == 0
    findings = json.loads(stdout)
    titles = {(f["host"], f["title"]): f for f in findings}
    sp = titles[("SQLPROD01", "Startup procedure sp_sqlsvc_update")]
    assert sp["severity"] == "high" and sp["flags"] == ["startup_procedure"] and sp["sources"] == ["errorlog"]
    assert sp["first_seen"] == "2025-03-12T11:57:42.020000Z" and sp["event_count"] == 1
    assert sp["evidence"][0]["source_record"] == 39
    asm = titles[("SQLPROD01", "User CLR assembly sqlsvcupdate")]
    assert asm["object_name"] == "sqlsvcupdate" and asm["event_count"] >= 4
    assert findings[0]["severity"] == "high" and findings[-1]["severity"] in ("medium", "low")
    for f in findings:
        assert {"title", "severity", "flags", "object_name", "host", "instance", "first_seen", "last_seen",
                "sources", "event_count", "evidence"} <= set(f)
    code, table, _ = cli("findings", sample_run[1])
    assert code == 0 and "sp_sqlsvc_update" in table


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_other_formats(tmp_path, cli, fmt):
    out = tmp_path / f"t.{fmt}"
    code, _o, _e = cli("timeline", SQLPROD01_LOG, "-o", out, "--workers", "1", "--quiet")
    assert code == 0
    text = out.read_text(encoding="utf-8")
    if fmt == "jsonl":
        first = json.loads(text.splitlines()[0])
        assert set(CONTRACT_TYPES) <= set(first) and first["timestamp"].endswith("Z")
    else:
        import csv
        data = list(csv.DictReader(text.splitlines()))
        assert set(CONTRACT_TYPES) <= set(data[0])
        assert any(r["flags"] == "startup_procedure" for r in data)


def test_csv_neutralises_formulas(tmp_path, cli):
    ev = tmp_path / "ev"
    write_utf16(ev / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      =HYPERLINK(\"http://x\")"])
    out = tmp_path / "t.csv"
    code, _o, _e = cli("timeline", ev, "-o", out, "--workers", "1", "--quiet", "--tz", "UTC")
    assert code == 0
    assert "'=HYPERLINK" in out.read_text(encoding="utf-8")


# -- time-zone fallbacks ------------------------------------------------------

def test_cli_tz_and_assumed_utc(tmp_path, cli):
    ev = tmp_path / "ev"
    # An ERRORLOG without banner or pairs (a log cycled long ago).
    write_utf16(ev / "ERRORLOG", ["2025-07-01 12:00:00.00 spid51      Launched startup procedure 'x'."])
    out = tmp_path / "a.parquet"
    code, _o, err = cli("timeline", ev, "-o", out, "--workers", "1", "--tz", "Europe/Berlin")
    assert code == 0
    r = rows(out)[0]
    assert r["timestamp"] == datetime(2025, 7, 1, 10, 0, tzinfo=UTC) and r["tz_source"] == "cli"
    out2 = tmp_path / "b.parquet"
    code, _o, err = cli("timeline", ev, "-o", out2, "--workers", "1")
    assert code == 0
    r = rows(out2)[0]
    assert r["timestamp"] == datetime(2025, 7, 1, 12, 0, tzinfo=UTC) and r["tz_source"] == "assumed_utc"
    assert "assumed_utc" in err


def test_evidence_beats_cli_tz_with_warning(tmp_path, cli):
    out = tmp_path / "t.parquet"
    code, _o, err = cli("timeline", SQLPROD01_LOG, "-o", out, "--workers", "1", "--tz", "Asia/Tokyo")
    assert code == 0
    assert "disagrees with the evidence" in err
    xp = [r for r in rows(out) if r["object_name"] == "xp_cmdshell" and r["event_type"] == "config_changed"][0]
    assert xp["timestamp"] == datetime(2025, 3, 6, 3, 45, 9, 540000, tzinfo=UTC)


# -- exit codes and usage errors ----------------------------------------------

def test_damaged_input_exit_1(tmp_path, cli):
    ev = tmp_path / "ev"
    data = (SQLPROD01_LOG / "ERRORLOG.3").read_bytes()
    (ev).mkdir()
    (ev / "ERRORLOG").write_bytes(data[:-3])  # odd byte count: copied while written
    (ev / "notes.txt").write_text("not an artifact\n")
    out = tmp_path / "t.parquet"
    code, _o, err = cli("timeline", ev, "-o", out, "--workers", "1")
    assert code == 1
    assert "damaged" in err and "ERRORLOG" in err
    manifest = json.loads(open(str(out) + ".manifest.json").read())
    item = manifest["inputs"][0]
    assert item["status"] == "damaged" and item["warnings"] >= 1
    assert manifest["totals"]["skipped"] == 1
    assert len(rows(out)) > 10


@pytest.mark.parametrize("args,needle", [
    (["timeline", "/no/such/path", "-o", "{tmp}/t.parquet"], "no such file"),
    (["timeline", "{fix}", "-o", "{tmp}/t.parquet", "--tz", "Mars/Base"], "unknown time zone"),
    (["timeline", "{fix}", "-o", "{tmp}/t.parquet", "--bogus"], "No such option"),
    (["timeline", "{fix}", "-o", "{fix}/out.parquet"], "inside the evidence path"),
    (["timeline", "{fix}", "-o", "/proc/forbidden/t.parquet"], "cannot create output folder"),
])
def test_usage_errors_exit_2_and_write_nothing(tmp_path, cli, args, needle):
    args = [a.format(tmp=tmp_path, fix=FIXTURES) for a in args]
    before = set(os.listdir(tmp_path))
    code, out, err = cli(*args)
    assert code == 2
    assert needle in (out + err)
    assert set(os.listdir(tmp_path)) == before
    assert not (FIXTURES / "out.parquet").exists()


def test_output_under_a_file_is_a_usage_error(tmp_path, cli):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _o, err = cli("timeline", FIXTURES, "-o", blocker / "t.parquet")
    assert code == 2 and "cannot create output folder" in err
    assert blocker.read_text() == "x"


def test_python_dash_m_forensic(tmp_path):
    out = tmp_path / "t.jsonl"
    proc = subprocess.run([sys.executable, "-m", "forensic", "timeline", str(SQLPROD01_LOG), "-o", str(out),
                           "--quiet", "--workers", "1"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and out.exists()

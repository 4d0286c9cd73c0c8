"""Default trace / SQL Trace (.trc) parser: public samples, built fixtures, damage."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
from construct import GreedyRange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trc_builder import T0, ServerTrace, object_event, session, source

from forensic import pipeline
from forensic.model import Event, EventColumns, ParseWarning, expand
from forensic.rules import RULES_DIR, RuleSet, load_rules
from forensic.schema import attributes_json
from forensic.timezones import TimeContext
from parsers import default_trace, sniff
from parsers import trc_layout as L
from parsers.base import Source
from parsers.default_trace import (
    PARSER,
    TraceReader,
    _Decoder,
    rollover_order,
    rollover_sort_key,
    split_server_name,
)

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures-public" / "trc"
RULES = RuleSet(load_rules([RULES_DIR]))

# file -> (records incl. control records, timeline events, end of data or None = end of file)
SAMPLE_COUNTS = {
    "temporaltabledemo_log.trc": (40, 38, 10420),
    "temporaltabledemo_log_1.trc": (13, 11, 4212),
    "temporaltabledemo_log_2.trc": (2, 1, 2445),
    "storageemulatortracer_trace.trc": (135, 134, None),
    "yoursqldba_trace.trc": (3437, 3436, None),
}
SERVER_FILES = [n for n in SAMPLE_COUNTS if n.startswith("temporaltabledemo")]


def sample(name: str) -> Source:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"public sample {path} not available")
    return Source(str(path), path.stat().st_size, lambda: path.open("rb"))


def run(src: Source) -> tuple[list[Event], list[ParseWarning]]:
    """Events and warnings as the engine sees them: blocks expanded, host and
    instance from the first pass (the engine's attribution), rules applied."""
    evidence = PARSER.prescan(src)
    events, warnings = [], []
    for item in expand(PARSER.parse(src)):
        (events if isinstance(item, Event) else warnings).append(item)
        assert isinstance(item, Event | ParseWarning)
    for event in events:
        assert event.host is None and event.instance is None  # the engine's to fill
        event.host, event.instance = evidence.host, evidence.instance
        RULES.apply(event)
    return events, warnings


def damage(warnings: list[ParseWarning]) -> tuple[bool, int]:
    return any(w.damaged for w in warnings), sum(w.lost_records for w in warnings)


# --- public samples ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLE_COUNTS))
def test_sample_framing_accounts_for_every_byte(name):
    src = sample(name)
    records, data_events, data_end = SAMPLE_COUNTS[name]
    with src.open() as stream:
        reader = TraceReader(stream, src.size)
        assert reader.read_header() is None
        items = list(reader.records())
    assert not [i for i in items if isinstance(i, ParseWarning)]
    raw = [i for i in items if not isinstance(i, ParseWarning)]
    assert len(raw) == records == reader.index
    # Header, Profiler preamble, then records back to back with no gap.
    preamble = sum(3 + (4 if len(d) >= 255 else 0) + len(d) for _t, d in reader.preamble)
    assert raw[0].offset == L.HEADER_SIZE + preamble
    for before, after in zip(raw, raw[1:], strict=False):
        assert before.offset + before.size == after.offset
    end = raw[-1].offset + raw[-1].size
    if data_end is None:  # Profiler: records run to the last byte
        assert end == src.size and reader.data_end is None
    else:  # server: records, then zero padding to the end of the file
        assert end == data_end == reader.data_end
        with src.open() as stream:
            stream.seek(data_end)
            assert not stream.read().strip(b"\0")
    assert [r.index for r in raw] == list(range(records))


@pytest.mark.parametrize("name", ["temporaltabledemo_log.trc", "storageemulatortracer_trace.trc"])
def test_fast_walk_agrees_with_declared_layout(name):
    """The struct-based hot loop reads exactly what the construct Token/BeginRecord say."""
    src = sample(name)
    with src.open() as stream:
        reader = TraceReader(stream, src.size)
        reader.read_header()
        raw = [r for r in reader.records() if not isinstance(r, ParseWarning)]
    with src.open() as stream:
        header = L.Header.parse(stream.read(L.HEADER_SIZE))
        assert header.repeat_base in (12, 0xFBFA)
        for rec in raw:
            stream.seek(rec.offset)
            data = stream.read(rec.size)
            begin = L.Token.parse(data)
            assert begin.id == L.TRACE_BEGIN_RECORD
            assert L.BeginRecord.parse(begin.data).event_class == rec.event_class
            assert L.BeginRecord.parse(begin.data).record_length == rec.size - L.BEGIN_TOKEN_SIZE
            tokens = GreedyRange(L.Token).parse(data[L.BEGIN_TOKEN_SIZE:])
            assert sum(3 + (4 if t.len8 == 0xFF else 0) + t.length for t in tokens) == rec.size - 9
            assert {t.id: t.data for t in tokens if t.id < 0xFB00} == rec.columns
            assert [(t.id, t.data) for t in tokens if t.id >= 0xFB00 and t.id != L.TRACE_REPEATED_DATA] \
                == rec.specials


@pytest.mark.parametrize("name", list(SAMPLE_COUNTS))
def test_sample_parses_completely(name):
    events, warnings = run(sample(name))
    assert not warnings
    assert len(events) == SAMPLE_COUNTS[name][1]
    assert all(e.source == "default_trace" and e.timestamp_desc == "Trace Event Start" for e in events)
    assert all(e.local_time is not None and e.timestamp is None for e in events)
    # Benign system activity: statistics, system-table alters, config of
    # 'show advanced options' / 'Agent XPs', Profiler batches: no flag.
    assert not [e.message for e in events if e.flags]
    json.dumps([e.attributes for e in events])


def test_server_sample_events_and_times():
    events, _ = run(sample("temporaltabledemo_log.trc"))
    first = events[0]
    assert first.source_record == 1  # record 0 is the trace-start control record
    assert first.event_type == "server_started" and first.event_id == 18
    assert first.local_text == "2018-02-04 20:17:22.973"
    assert first.local_time == datetime(2018, 2, 4, 20, 17, 22, 973000)
    assert (first.host, first.instance) == ("DESKTOP-ONM6Q27", "LOCALDB#ABF592EB")
    kinds = [e.event_type for e in events]
    assert kinds.count("object_altered") == 28 and kinds.count("config_changed") == 8
    assert {e.object_type for e in events if e.event_type == "object_altered"} == {"S"}
    config = [e for e in events if e.event_type == "config_changed"]
    assert config[0].object_name == "show advanced options"
    assert config[0].attributes["old_value"] == "0" and config[0].attributes["new_value"] == "1"
    assert config[0].attributes["errorlog_source"] == "spid4s"
    assert config[0].event_id == 22 and config[0].attributes["message_id"] == 15457
    # The server has its duplicates (Severity 0 then 10): both kept.
    assert [e.attributes["severity"] for e in config[:2]] == [0, 10]
    last = events[-1]
    assert last.event_type == "server_stopped"
    assert last.user == "DESKTOP-ONM6Q27\\cbm"
    assert last.host == "DESKTOP-ONM6Q27"  # the server, from the header
    assert last.attributes["host_name"] == "DESKTOP-ONM6Q27"  # the client
    assert last.attributes["client_process_id"] == 16436
    assert last.attributes["login_sid"].startswith("S-1-5-21-")
    assert last.attributes["application_name"] == "Microsoft SQL Server"


@pytest.mark.parametrize("name", SERVER_FILES)
def test_server_samples_resolve_every_repeated_reference(name):
    events, warnings = run(sample(name))
    assert not warnings  # an unresolved reference would be reported
    assert not [e for e in events if "unresolved_repeated_columns" in e.attributes]


def test_repeated_values_resolved_from_the_same_spid():
    events, _ = run(sample("temporaltabledemo_log.trc"))
    by_record = {e.source_record: e for e in events}
    # Record 2 (Object:Altered, SPID 4) lists LoginName, LoginSid, IsSystem in
    # 0xFFF3: they come from record 1, the server start on SPID 4.
    rec = by_record[2]
    assert rec.attributes["repeated_columns"] == ["login_name", "login_sid", "is_system"]
    assert rec.user == "sa" and rec.attributes["login_sid"] == "0x01" and rec.attributes["is_system"] == 1
    assert by_record[31].attributes["repeated_columns"] == ["login_name", "login_sid", "is_system"]
    assert by_record[31].user == "sa"
    repeated = sum(1 for e in events if e.attributes.get("repeated_columns"))
    assert repeated == 35

    events, _ = run(sample("temporaltabledemo_log_1.trc"))
    created = [e for e in events if e.event_type == "object_created"]
    assert [e.attributes["event_subclass_name"] for e in created] == ["Begin", "Commit"]
    commit = created[1]
    assert set(commit.attributes["repeated_columns"]) == {
        "nt_user_name", "nt_domain_name", "host_name", "client_process_id", "application_name",
        "login_name", "login_sid"}
    assert commit.user == "DESKTOP-ONM6Q27\\cbm"
    assert commit.attributes["application_name"] == "Microsoft SQL Server Management Studio"
    assert commit.attributes["nt_user_name"] == "cbm"
    assert commit.object_type == "ST" and commit.object_name == "_WA_Sys_00000003_0000004A"


def test_profiler_samples():
    events, _ = run(sample("yoursqldba_trace.trc"))
    assert events[0].source_record == 0  # no trace-start record in this file
    kinds = [e.event_type for e in events]
    assert (kinds.count("sp_stmt_starting"), kinds.count("sp_stmt_completed")) == (1681, 1679)
    assert events[0].local_text == "2021-11-14 21:46:20.920"
    assert events[0].host == "MAURICESQL" and events[0].instance == "SQL2K17"

    events, _ = run(sample("storageemulatortracer_trace.trc"))
    rpc = [e for e in events if e.event_type == "rpc_completed"]
    assert len(rpc) == 124
    assert all(isinstance(e.attributes["binary_data"], str) for e in rpc if "binary_data" in e.attributes)
    long_text = max(len(e.attributes.get("text_data", "")) for e in rpc)
    assert long_text > 255  # values stored with the 0xFF long-length form
    assert events[0].host is None and events[0].instance == "MSSQLLocalDb"  # "(localdb)" is no host


def test_prescan_facts():
    ev = PARSER.prescan(sample("temporaltabledemo_log.trc"))
    assert (ev.host, ev.instance) == ("DESKTOP-ONM6Q27", "LOCALDB#ABF592EB")
    facts = ev.facts
    assert facts["trace_writer"] == "server" and facts["sql_version"] == "13.0.4001"
    assert facts["trace_options"] == 2 and facts["trace_option_flags"] == ["TRACE_FILE_ROLLOVER"]
    assert facts["trace_max_file_size_mb"] == 20 and facts["trace_stop_time"] is None
    assert facts["trace_start_time"] == "2018-02-04 20:17:22.973"
    assert facts["trace_stopped_at"] == "2018-02-04 20:17:25.757"
    assert len(facts["traced_events"]) == 34
    assert facts["traced_events"][0]["columns"][-1] == 26  # ServerName listed last for event 18
    assert facts["header_option_flags"] == ["rolled_over", "first_file"]
    assert facts["records"] == 40 and facts["lost_records"] == 0 and facts["data_end_offset"] == 10420
    json.dumps(facts)

    facts = PARSER.prescan(sample("storageemulatortracer_trace.trc")).facts
    assert facts["trace_writer"] == "profiler"
    assert facts["trace_filters"] == [{
        "column_id": 10, "column": "ApplicationName", "operator": "NOT LIKE",
        "value": "SQL Server Profiler - 77cac553-0724-4a86-a4a5-c840fe758df5", "logical": "AND"}]
    assert [f["event_id"] for f in facts["profiler_traced_events"]] == [10, 12, 13]
    assert facts["profiler_column_order"][0] == 27
    facts = PARSER.prescan(sample("yoursqldba_trace.trc")).facts
    assert [f["value"] for f in facts["profiler_filters"]][2] == 72
    assert "trace_start_time" not in facts and facts["trace_stopped_at"] == "2021-11-14 21:47:43.407"


def test_prescan_time_anchor_from_errorlog_event():
    """A 17177 heartbeat logged as a trace ErrorLog event gives the instance's offset."""
    trace = ServerTrace("SQLPROD01")
    line = ("2025-03-14 00:00:51.22 spid31s     This instance of SQL Server has been using a process ID of 5624"
            " since 3/12/2025 7:57:41 AM (local) 3/12/2025 11:57:41 AM (UTC). This is an informational message"
            " only; no user action is required.\r\n")
    trace.event(22, {**session(), 1: line, 20: 0, 31: 17177})
    ev = PARSER.prescan(source(trace.file()))
    assert [(a.offset_minutes, a.kind) for a in ev.anchors] == [(-240, "errorlog_local_utc_pair")]
    assert ev.anchors[0].source_file.endswith("log.trc")
    (event,) = run(source(trace.file()))[0]
    assert event.event_type == "process_id_reported" and event.attributes["pid"] == "5624"
    assert not PARSER.prescan(source(persistence_trace().file())).anchors


def test_errorlog_event_with_error_header_line():
    trace = ServerTrace()
    text = ("2024-03-05 14:02:12.15 Logon       Error: 18456, Severity: 14, State: 8.\r\n"
            "2024-03-05 14:02:12.15 Logon       Login failed for user 'sa'. Reason: Password did not match that"
            " for the login provided. [CLIENT: 10.9.8.7]\r\n")
    trace.event(22, {**session(), 1: text, 20: 14, 31: 18456})
    (event,) = run(source(trace.file()))[0]
    assert event.event_type == "login_failed" and event.attributes["message_id"] == 18456
    assert event.attributes["client_address"] == "10.9.8.7" and event.attributes["message_state"] == 8
    assert event.attributes["errorlog_source"] == "Logon"
    assert event.message.startswith("ErrorLog by sa from WS01 via SSMS: Login failed for user 'sa'.")


def test_sniff():
    for name in SAMPLE_COUNTS:
        src = sample(name)
        with src.open() as stream:
            assert PARSER.sniff(stream.read(4096), "renamed.bin")
            stream.seek(0)
            assert sniff(stream.read(4096), "renamed.bin") is PARSER
    assert not PARSER.sniff(b"2018-02-04 20:17:22.97 Server      Microsoft SQL Server 2016", "ERRORLOG")
    assert not PARSER.sniff(b"\xff\xfe", "log.trc")
    assert not PARSER.sniff(b"ElfFile\x00" + bytes(100), "x.evtx")


# --- built fixtures -----------------------------------------------------------------


def persistence_trace() -> ServerTrace:
    trace = ServerTrace("WS01\\SQL2019")
    trace.event(18, {**session(login="sa", host="WS01", spid=9), 21: 2, 23: 1}, seconds=0)
    for subclass in (0, 1):
        trace.event(46, object_event("AS", "sqlsvcupdate", "AppDB", subclass), seconds=10 + subclass)
    for subclass in (0, 1):
        trace.event(46, object_event("PC", "usp_update", "AppDB", subclass), seconds=20 + subclass)
    for subclass in (0, 1):
        trace.event(46, object_event("P", "sp_maint", "master", subclass), seconds=30 + subclass)
    trace.event(22, {**session(), 1: "2024-03-05 14:02:52.12 spid57      Configuration option 'scan for startup"
                     " procs' changed from 0 to 1. Run the RECONFIGURE statement to install.\r\n",
                     20: 10, 31: 15457, 35: "master"}, seconds=41)
    trace.event(13, {**session(), 1: "EXEC sp_procoption N'sp_maint', 'startup', 'on'"}, seconds=42)
    trace.event(164, object_event("ST", "_WA_Sys_00000002_0A9D95DB", "AppDB", 1), seconds=50)
    trace.event(164, object_event("S", "sysschobjs", "AppDB", 1), seconds=51)
    trace.event(108, {**session(), 21: 1, 38: "sysadmin", 42: "backdoor", 23: 1}, seconds=60)
    trace.event(108, {**session(), 21: 2, 38: "sysadmin", 42: "olduser", 23: 1}, seconds=61)
    trace.event(108, {**session(), 21: 1, 38: "dbcreator", 42: "dev", 23: 1}, seconds=62)
    trace.event(175, {**session(), 1: "exec sp_trace_setstatus 1, 0", 23: 1}, seconds=70)
    trace.event(20, {**session(login="sa", host="ATTACKER", spid=61, app="sqlmap"),
                     1: "Login failed for user 'sa'. Reason: Password did not match that for the login provided."
                        " [CLIENT: 10.1.2.3]", 31: 18456, 23: 0}, seconds=80)
    trace.stop(90)
    return trace


def test_built_persistence_trace():
    events, warnings = run(source(persistence_trace().file()))
    assert not warnings
    by_name = {}
    for e in events:
        by_name.setdefault((e.event_type, e.object_name), []).append(e)

    assembly = by_name[("object_created", "sqlsvcupdate")]
    assert [e.object_type for e in assembly] == ["AS", "AS"]
    commit = assembly[1]
    assert commit.message == "Object:Created (Commit) AS AppDB.sqlsvcupdate by sa from WS01 via SSMS"
    assert commit.user == "sa" and commit.database == "AppDB" and commit.event_id == 46
    assert (commit.host, commit.instance) == ("WS01", "SQL2019")
    assert commit.attributes["host_name"] == "WS01" and commit.attributes["spid"] == 57
    assert commit.attributes["application_name"] == "SSMS" and commit.attributes["client_process_id"] == 4242
    # The Commit row took LoginName etc. from the Begin row of SPID 57 (0xFFF3).
    assert "login_name" in commit.attributes["repeated_columns"]
    assert commit.local_text == "2024-03-05 14:02:22.123"
    assert commit.local_time == datetime(2024, 3, 5, 14, 2, 22, 123000)
    assert all(e.flags == ["clr_assembly_load"] for e in assembly)

    clr_proc = by_name[("object_created", "usp_update")]
    assert [e.object_type for e in clr_proc] == ["PC", "PC"]
    assert all("clr_assembly_load" in e.flags for e in clr_proc)

    proc = by_name[("object_created", "sp_maint")]
    assert proc[0].object_type == "P" and not proc[0].flags  # a procedure alone is no evidence

    config = by_name[("config_changed", "scan for startup procs")][0]
    assert config.flags == ["startup_procedure"] and config.user == "sa"
    assert config.attributes["new_value"] == "1"

    batch = [e for e in events if e.event_type == "sql_batch_starting"][0]
    assert batch.flags == ["startup_procedure"]
    assert batch.attributes["text_data"].startswith("EXEC sp_procoption")

    # Benign: statistics and a system table.
    assert not by_name[("object_altered", "_WA_Sys_00000002_0A9D95DB")][0].flags
    assert not by_name[("object_altered", "sysschobjs")][0].flags

    roles = [e for e in events if e.event_id == 108]
    assert [e.flags for e in roles] == [["sysadmin_granted"], [], []]
    assert roles[0].object_name == "backdoor" and roles[0].attributes["event_subclass_name"] == "Add"
    assert "role sysadmin" in roles[0].message

    alter_trace = [e for e in events if e.event_id == 175][0]
    assert alter_trace.flags == ["audit_tampering"]
    assert set(alter_trace.attributes["rules"]) == {"trace-alter-trace", "trace-default-trace-stopped"}

    failed = [e for e in events if e.event_type == "login_failed"][0]
    assert failed.user == "sa" and failed.attributes["client_address"] == "10.1.2.3"
    assert failed.attributes["host_name"] == "ATTACKER" and failed.host == "WS01"


def test_text_rules_fire_and_stay_quiet():
    trace = ServerTrace()
    texts = {
        "EXEC master..xp_cmdshell 'whoami'": ["xp_cmdshell"],
        "CREATE ASSEMBLY [evil] FROM 0x4D5A WITH PERMISSION_SET = UNSAFE": ["clr_assembly_load"],
        "DECLARE @o INT; EXEC sp_OACreate 'WScript.Shell', @o OUT": ["ole_automation"],
        "EXEC sp_addextendedproc 'xp_evil', 'evil.dll'": ["extended_procedure"],
        "ALTER SERVER ROLE [sysadmin] ADD MEMBER [backdoor]": ["sysadmin_granted"],
        "ALTER SERVER AUDIT [Audit-1] WITH (STATE = OFF)": ["audit_tampering"],
        "SELECT name FROM sys.procedures": [],
        "SELECT * FROM sys.assemblies": [],
    }
    for n, text in enumerate(texts):
        trace.event(13, {**session(), 1: text}, seconds=n)
    trace.event(117, {**session(), 21: 2}, seconds=50)
    trace.event(117, {**session(), 21: 1}, seconds=51)
    events, warnings = run(source(trace.file()))
    assert not warnings
    assert [e.flags for e in events[:len(texts)]] == list(texts.values())
    assert [e.attributes["rules"] for e in events[-2:]] == [["trace-audit-stopped"], ["trace-audit-changed"]]


def test_every_column_type_and_unknown_tokens():
    trace = ServerTrace("SQLHOST")  # no instance part: the default instance
    guid = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    sid = bytes.fromhex("010500000000000515000000") + (1001).to_bytes(4, "little") * 4
    record = trace.event(46, {
        **object_event("U", "t1", "AppDB", 1), 2: b"\x00\xffbin", 13: 37000, 15: T0, 54: guid, 43: sid,
        59: "parent", 66: 2}, seconds=5)
    # Append tokens the parser must keep raw: an unknown column id, an
    # unknown special id and TEXT_FILTERED.
    extra = L.build_token(70, b"\x01\x02") + L.build_token(0xFFF8, b"\xaa") + L.build_token(0xFFF5, b"")
    body = record[L.BEGIN_TOKEN_SIZE:] + extra
    trace.records[-1] = L.build_record(46, [body])
    events, warnings = run(source(trace.file()))
    assert not warnings
    (e,) = events
    assert (e.host, e.instance) == ("SQLHOST", "MSSQLSERVER")
    a = e.attributes
    assert a["binary_data"] == "00ff62696e" and a["duration"] == 37000
    assert a["end_time"] == "2024-03-05 14:02:11.123" and a["guid"] == guid
    assert a["target_login_sid"] == "S-1-5-21-1001-1001-1001-1001"
    assert a["parent_name"] == "parent" and a["group_id"] == 2 and a["object_type"] == 8277
    assert e.object_type == "U" and a["object_type_name"] == "User Table"
    assert a["column_70"] == "0102"
    assert [t["id"] for t in a["special_tokens"]] == ["0xfff8", "0xfff5"]
    assert a["special_tokens"][1]["name"] == "TRACE_TEXT_FILTERED"


def test_profiler_style_file_any_column_order():
    order = [1, 10, 12, 14, 11]
    preamble = (L.build_token(L.PROFILER_MARK, b"") + L.build_traced_event(13, order)
                + L.build_token(L.PROFILER_COLUMN_ORDER, L.ColumnList.build([27, *order])))
    rec = L.build_record(13, L.build_columns({1: "select 1", 10: "app", 12: 60, 14: T0, 11: "bob"}, order=order))
    data = L.build_header("(local)", file_format=L.FORMAT_PROFILER, repeat_base=L.REPEAT_BASE_PROFILER) \
        + preamble + rec + rec
    events, warnings = run(source(data, "saved.trc"))
    assert not warnings and len(events) == 2
    assert [e.source_record for e in events] == [0, 1]
    assert events[0].user == "bob" and events[0].attributes["text_data"] == "select 1"
    assert events[0].host is None and events[0].instance == "MSSQLSERVER"
    facts = PARSER.prescan(source(data, "saved.trc")).facts
    assert facts["trace_writer"] == "profiler" and facts["profiler_traced_events"][0]["columns"] == order


def test_control_records_never_become_events():
    trace = ServerTrace()
    trace.records.append(L.build_record(0xFFF7, [L.build_token(14, L.systemtime_bytes(T0))]))
    trace.event(18, {**session(), 21: 2})
    trace.stop()
    events, warnings = run(source(trace.file()))
    assert not warnings and [e.event_id for e in events] == [18]
    facts = PARSER.prescan(source(trace.file())).facts
    assert [c["kind"] for c in facts["control_records"]] == ["trace_start", "rollover", "trace_stop"]


def test_rollover_order():
    names = ["log_10.trc", "log.trc", "LOG_9.trc", "log_2.trc", "other.trc"]
    assert rollover_order(names) == ["log.trc", "log_2.trc", "LOG_9.trc", "log_10.trc", "other.trc"]
    assert rollover_sort_key("C:\\Data\\MSSQL\\Log\\log_123.trc")[:2] == ("log", 123)
    assert PARSER.prescan(source(ServerTrace().file(), "log_7.trc")).facts["rollover_sequence"] == 7


def test_server_name_split():
    assert split_server_name("WS01\\SQL2019") == ("WS01", "SQL2019")
    assert split_server_name("WS01") == ("WS01", "MSSQLSERVER")
    assert split_server_name("tcp:10.0.0.5,1433") == ("10.0.0.5", "MSSQLSERVER")
    assert split_server_name(".\\SQLEXPRESS") == (None, "SQLEXPRESS")
    assert split_server_name("") == (None, None)


# --- damaged input ---------------------------------------------------------------------


def three_events() -> tuple[ServerTrace, list[int]]:
    """A trace with start, three events, stop; returns the record offsets."""
    trace = ServerTrace()
    for n in range(3):
        trace.event(46, object_event("AS", f"asm{n}", "AppDB", 1, spid=50 + n), seconds=n)
    trace.stop()
    offsets, pos = [], L.HEADER_SIZE
    for rec in trace.records:
        offsets.append(pos)
        pos += len(rec)
    return trace, offsets


def test_truncated_final_record():
    trace, offsets = three_events()
    data = trace.data()
    cut = data[:offsets[3] + 40]  # inside the third event, as in a copy taken while writing
    events, warnings = run(source(cut))
    assert [e.object_name for e in events] == ["asm0", "asm1"]
    assert len(warnings) == 1 and warnings[0].lost_records == 1 and warnings[0].damaged
    assert f"0x{offsets[3]:x}" in warnings[0].position and "truncated" in warnings[0].message


@pytest.mark.parametrize("cut", range(1, 12))
def test_truncation_inside_begin_token_or_header_of_last_record(cut):
    trace, offsets = three_events()
    events, warnings = run(source(trace.data()[:offsets[3] + cut]))
    assert [e.object_name for e in events] == ["asm0", "asm1"]
    assert damage(warnings) == (True, 1)
    assert len(warnings) == 1 and "truncated" in warnings[0].message
    assert warnings[0].position == f"offset 0x{offsets[3]:x}"


def test_token_length_past_end_of_record():
    trace, offsets = three_events()
    data = bytearray(trace.data())
    # The ObjectName token of the second event: make its 1-byte length overrun the record.
    name_token = L.build_token(34, "asm1".encode("utf-16-le"))
    at = data.index(name_token, offsets[2])
    data[at + 2] = 0xFE
    events, warnings = run(source(bytes(data)))
    assert [e.object_name for e in events] == ["asm0", "asm2"]
    assert damage(warnings) == (True, 1)
    assert f"0x{offsets[2]:x}" in warnings[0].position


def test_long_length_claiming_a_gigabyte_in_a_small_file():
    trace, offsets = three_events()
    body = L.build_columns({34: "x"}) + [b"\x01\x00\xff" + (0x3FFFFFF0).to_bytes(4, "little") + b"short"]
    trace.records[2] = L.build_record(46, body)
    data = trace.file()
    reads = []

    class Spy(io.BytesIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    src = Source("/e/log.trc", len(data), lambda: Spy(data))
    events, warnings = run(src)
    assert [e.object_name for e in events] == ["asm0", "asm2"]
    assert damage(warnings) == (True, 1)
    assert "1 GB" in warnings[0].message or "past" in warnings[0].message
    assert max(reads) <= 4 << 20  # nothing sized by the corrupt length


def test_record_length_field_corrupt_but_tokens_intact():
    trace, offsets = three_events()
    data = bytearray(trace.data())
    for value in (0x7FFFFFFF, 3, 0x40000000 * 3):
        data[offsets[2] + 5:offsets[2] + 9] = (value % (1 << 32)).to_bytes(4, "little")
        events, warnings = run(source(bytes(data)))
        assert [e.object_name for e in events] == ["asm0", "asm1", "asm2"]
        assert damage(warnings) == (True, 0)
        assert "record kept" in warnings[0].message


def test_zero_run_mid_file():
    trace, offsets = three_events()
    data = trace.data()
    holed = data[:offsets[2]] + bytes(512) + data[offsets[2]:]
    events, warnings = run(source(holed))
    assert [e.object_name for e in events] == ["asm0", "asm1", "asm2"]
    assert damage(warnings) == (True, 0)
    assert f"0x{offsets[2]:x}" in warnings[0].message


def test_zeroed_block_over_records():
    trace, offsets = three_events()
    data = bytearray(trace.data())
    data[offsets[1] + 20:offsets[2] + 30] = bytes(offsets[2] + 10 - offsets[1])  # wipe across two records
    events, warnings = run(source(bytes(data)))
    assert [e.object_name for e in events] == ["asm2"]
    damaged, lost = damage(warnings)
    assert damaged and lost == 2


def test_garbage_between_records_resyncs():
    trace, offsets = three_events()
    data = trace.data()
    garbled = data[:offsets[2]] + bytes(range(1, 200)) + data[offsets[2]:]
    events, warnings = run(source(garbled))
    assert [e.object_name for e in events] == ["asm0", "asm1", "asm2"]
    assert damage(warnings)[0]
    assert any("skipped" in w.message for w in warnings)


def test_begin_token_destroyed_resyncs_and_counts():
    trace, offsets = three_events()
    data = bytearray(trace.data())
    data[offsets[2]:offsets[2] + 3] = b"\x11\x22\x33"
    events, warnings = run(source(bytes(data)))
    assert [e.object_name for e in events] == ["asm0", "asm2"]
    assert damage(warnings) == (True, 1)


def test_unresolved_repeated_reference_is_reported_not_fatal():
    trace = ServerTrace()
    trace.event(46, object_event("AS", "a", "AppDB", 0))
    trace.event(46, object_event("AS", "a", "AppDB", 1))
    data = trace.data()
    # Drop the Begin row: the Commit row's 0xFFF3 now points at nothing, as
    # when reading starts at a later rollover file.
    first_event = L.HEADER_SIZE + len(trace.records[0])
    data = data[:first_event] + data[first_event + len(trace.records[1]):]
    events, warnings = run(source(data))
    assert len(events) == 1 and "login_name" not in events[0].attributes
    assert events[0].user == "sa"  # SessionLoginName, which is never repeated, still names the login
    assert "login_name" in events[0].attributes["unresolved_repeated_columns"]
    assert len(warnings) == 1 and not warnings[0].damaged


def test_sql_server_2000_and_foreign_headers_are_reported():
    old = L.build_header("OLDBOX", major=8, build=2039) + bytes(100)
    assert PARSER.sniff(old, "x.trc")
    events, warnings = run(source(old))
    assert not events and len(warnings) == 1 and warnings[0].damaged
    assert "2000" in warnings[0].message
    odd = L.build_header("X", header_size=600) + bytes(10)
    assert run(source(odd))[1][0].damaged
    for data in (b"", b"\xff\xfe\x90\x02", b"\x00" * 700, L.build_header("X")[:300]):
        events, warnings = run(source(data))
        assert not events and len(warnings) == 1 and warnings[0].damaged
    assert PARSER.prescan(source(old)).host is None


def test_bad_time_keeps_the_event():
    trace = ServerTrace()
    trace.event(46, {**object_event("AS", "a", "AppDB", 1), 14: L.SystemTime.build(dict(
        year=2024, month=13, day=40, hour=0, minute=0, second=0, millisecond=0))})
    events, warnings = run(source(trace.file()))
    assert len(events) == 1 and events[0].local_time is None and "start_time_raw" in events[0].attributes
    assert events[0].local_text == "2024-13-40 00:00:00.000"  # as written
    assert damage(warnings) == (True, 0)


def test_rows_without_a_time_come_as_single_events_in_file_order():
    trace = ServerTrace()
    trace.event(46, object_event("U", "before", "AppDB", 1), seconds=1)
    trace.event(46, {**object_event("U", "zero", "AppDB", 1), 14: bytes(16)}, seconds=2)
    trace.event(46, {**object_event("U", "short", "AppDB", 1), 14: b"\x01\x02"}, seconds=3)
    trace.event(46, object_event("U", "after", "AppDB", 1), seconds=4)
    items = list(PARSER.parse(source(trace.file())))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["EventColumns", "ParseWarning", "Event", "Event", "EventColumns"]
    events = [e for e in expand(items) if isinstance(e, Event)]
    assert [e.object_name for e in events] == ["before", "zero", "short", "after"]
    assert [e.local_text for e in events] == ["2024-03-05 14:02:12.123", "0000-00-00 00:00:00.000", None,
                                              "2024-03-05 14:02:15.123"]
    assert events[2].attributes["start_time_raw"] == "0102"
    offset = L.HEADER_SIZE + sum(len(r) for r in trace.records[:2])
    assert "not a valid date" in items[1].message and items[1].position == f"offset 0x{offset:x}"


# --- the hot loop, the general path and the engine ---------------------------------------


def _general_path_only(monkeypatch) -> None:
    """Send every record through TraceReader's general path."""
    monkeypatch.setattr(_Decoder, "_fast", lambda self, reader, pos: pos)


def _items(src: Source) -> list[tuple]:
    out = []
    for item in expand(PARSER.parse(src)):
        if isinstance(item, Event):
            out.append(("event", {k: getattr(item, k) for k in item.__slots__}))
        else:
            out.append(("warning", item.message, item.position, item.lost_records, item.damaged))
    return out


def busy_trace() -> bytes:
    """Records that repeat their layouts, so that compiled layouts and row code are used."""
    trace = ServerTrace("WS01\\SQL2019")
    who = [session(login="CORP\\dba", host="WS01", app='App "quoted" \\ é', spid=57, nt_user="dba",
                   nt_domain="CORP"), session(login="sa", spid=4)]
    for n in range(240):
        cols = who[n % 2]
        kind = n % 6
        if kind == 0:
            trace.event(46, object_event("U", f"t{n % 10}", "AppDB", n % 2, **{"spid": cols[12]}), seconds=n)
        elif kind == 1:
            trace.event(164, {**object_event("AS", "asm", "AppDB", 1), **cols}, seconds=n)
        elif kind == 2:
            trace.event(93, {**cols, 3: 2, 13: 37000, 15: T0, 25: 31, 35: "tempdb", 36: "templog"}, seconds=n)
        elif kind == 3:
            trace.event(22, {**cols, 1: f"2024-03-05 14:02:{n % 60:02d}.12 spid57      Configuration option"
                             " 'show advanced options' changed from 0 to 1. Run the RECONFIGURE statement to"
                             " install.\r\n", 20: 10, 31: 15457, 35: "master"}, seconds=n)
        elif kind == 4:
            trace.event(20, {**cols, 1: "Login failed for user 'sa'. Reason: Password did not match that for the"
                             " login provided. [CLIENT: 10.1.2.3]", 31: 18456}, seconds=n)
        else:
            trace.event(13, {**cols, 1: "EXEC master..xp_cmdshell 'whoami'\n-- \u0001 {braces}"}, seconds=n)
    return trace.file()


def _fixtures() -> dict[str, bytes]:
    trace, offsets = three_events()
    data = trace.data()
    fixtures = {"busy": busy_trace(), "persistence": persistence_trace().file(), "three": data,
                "truncated": data[:offsets[3] + 40], "garbage": data[:offsets[2]] + bytes(range(1, 200)) + data[
                    offsets[2]:], "zeros": data[:offsets[2]] + bytes(512) + data[offsets[2]:]}
    for name in SAMPLE_COUNTS:
        path = SAMPLES / name
        if path.exists():
            fixtures[name] = path.read_bytes()
    return fixtures


@pytest.mark.parametrize("name", list(_fixtures()))
def test_hot_loop_and_general_path_give_the_same_rows(name, monkeypatch):
    src = source(_fixtures()[name])
    calls = []
    general = _Decoder.raw_record
    monkeypatch.setattr(_Decoder, "raw_record", lambda self, rec: calls.append(rec.index) or general(self, rec))
    fast = _items(src)
    events = sum(1 for i in fast if i[0] == "event")
    assert events
    if name not in ("storageemulatortracer_trace.trc", "yoursqldba_trace.trc"):
        # Server-style records all take the hot loop (Profiler files begin with unresolvable 0xFFF3).
        assert len(calls) < events / 2
    _general_path_only(monkeypatch)
    assert _items(src) == fast


@pytest.mark.parametrize("name", list(_fixtures()))
def test_row_code_from_the_first_record_gives_the_same_rows(name, monkeypatch):
    """Row code compiled at once (and tiny blocks) changes no row, damaged files included."""
    src = source(_fixtures()[name])
    monkeypatch.setattr(default_trace, "ROW_CODE_AFTER", 1)
    monkeypatch.setattr(default_trace, "BLOCK_ROWS", 5)
    eager = _items(src)
    _general_path_only(monkeypatch)
    assert _items(src) == eager


def test_row_code_writes_the_engines_json():
    """Rows made by generated code carry their attributes as JSON text, exactly
    as the engine would encode the general path's dict; message events keep a
    dict (the engine's rules read their TextData)."""
    encoded = 0
    for item in PARSER.parse(source(busy_trace())):
        if isinstance(item, EventColumns):
            for event_class, attrs in zip(item.event_id, item.attributes, strict=True):
                if isinstance(attrs, str):
                    encoded += 1
                    assert attrs == attributes_json(json.loads(attrs))
                    assert event_class not in default_trace.MESSAGE_EVENTS | {default_trace.LOGIN_FAILED}
    assert encoded > 100


def test_block_boundaries_change_nothing(monkeypatch):
    src = source(_fixtures()["persistence"])
    whole = _items(src)
    monkeypatch.setattr(default_trace, "BLOCK_ROWS", 3)
    blocks = [i for i in PARSER.parse(src) if isinstance(i, EventColumns)]
    assert len(blocks) > 3 and max(len(b) for b in blocks) <= 3
    assert _items(src) == whole


@pytest.mark.parametrize("which", ["persistence", "busy"])
def test_engine_flags_the_same_rows_and_keeps_the_rest_columnar(which, tmp_path, monkeypatch):
    # busy: xp_cmdshell statement text in rows whose attributes the row code wrote as JSON.
    data = persistence_trace().file() if which == "persistence" else busy_trace()
    path = tmp_path / "log.trc"
    path.write_bytes(data)
    task = pipeline.ParseTask(path=str(path), display_path=str(path), root=str(tmp_path), size=len(data),
                              sha256="0" * 64, parser_name="default_trace", host="WS01", instance="SQL2019",
                              time_context=TimeContext.build([], None))
    report = pipeline.InputReport(str(path), str(path), "default_trace")
    taken: list[Event] = []
    needing = pipeline.columns_needing_events

    def spy(cols, task, rules):
        events = list(needing(cols, task, rules))
        taken.extend(events)
        return iter(events)

    monkeypatch.setattr(pipeline, "columns_needing_events", spy)
    table = pa.Table.from_batches(list(pipeline.iter_input_batches(task, report)))
    events, _ = run(source(data))
    assert table.num_rows == len(events) == report.events and not report.errors
    rows = dict(zip(table["source_record"].to_pylist(), table.to_pylist(), strict=True))
    for event in events:
        row = rows[event.source_record]
        assert row["flags"] == event.flags
        assert (row["host"], row["instance"], row["message"], row["local_time"]) == \
            (event.host, event.instance, event.message, event.local_text)
        assert json.loads(row["attributes"]) == event.attributes
    flagged = {e.source_record for e in events if e.flags}
    assert flagged and flagged <= {e.source_record for e in taken}
    # Rows no rule can fire on (statistics, system tables, plain DDL) stay columnar.
    assert len(taken) < len(events) - 3
    if which == "busy":
        assert {e.event_id for e in events if "xp_cmdshell" in e.flags} == {13}


@pytest.mark.parametrize("name", list(_fixtures()))
def test_blocks_vouch_for_the_keys_of_their_json_rows(name, monkeypatch):
    """A block's encoded_keys holds every key of its JSON-text rows (rules skip
    JSON rows for any other attribute)."""
    monkeypatch.setattr(default_trace, "ROW_CODE_AFTER", 1)
    monkeypatch.setattr(default_trace, "BLOCK_ROWS", 7)
    json_rows = 0
    for item in PARSER.parse(source(_fixtures()[name])):
        if isinstance(item, EventColumns):
            for attrs in item.attributes:
                if isinstance(attrs, str):
                    json_rows += 1
                    assert set(json.loads(attrs)) <= item.encoded_keys
    if name in ("busy", "three", "temporaltabledemo_log.trc"):
        assert json_rows


def test_crafted_candidate_storm_stays_linear():
    """Many fake begin-record tokens in a damaged region: every candidate fails fast."""
    fake = L.BEGIN_MAGIC + (10).to_bytes(2, "little") + (64).to_bytes(4, "little") + b"\x01\x01\x10" + bytes(16)
    trace, offsets = three_events()
    data = trace.data()
    data = data[:offsets[2]] + b"\x01" + fake * 20000 + data[offsets[2]:]
    t0 = time.perf_counter()
    events, warnings = run(source(data))
    assert time.perf_counter() - t0 < 30
    assert [e.object_name for e in events] == ["asm0", "asm1", "asm2"]
    assert damage(warnings) == (True, 20001)  # the stray byte + each fake start count as lost
    assert len(warnings) == 1  # one damaged region, one warning


def test_streams_in_bounded_reads():
    trace = ServerTrace(repeat=False)
    for n in range(1000):
        trace.event(46, object_event("U", f"t{n}", "AppDB", n % 2, spid=50 + n % 7), seconds=n)
    events = b"".join(trace.records[1:])
    data = L.build_header("WS01") + trace.records[0] + events * 60
    assert len(data) > 2 * (4 << 20)  # larger than any single read allowed below
    reads = []

    class Spy(io.BytesIO):
        def read(self, n=-1):
            reads.append(n)
            return super().read(n)

    src = Source("/e/log.trc", len(data), lambda: Spy(data))
    count = sum(len(item) for item in PARSER.parse(src) if isinstance(item, EventColumns))
    assert count == 60000
    assert reads and max(reads) <= 4 << 20 and -1 not in reads


# --- never a traceback ------------------------------------------------------------------


def _check(data: bytes) -> None:
    src = source(data)
    for item in expand(PARSER.parse(src)):
        assert isinstance(item, Event | ParseWarning)
        if isinstance(item, Event):
            json.dumps(item.attributes)
            item.message.encode("utf-8")
    PARSER.prescan(src)


HEADER = L.build_header("FUZZ\\X")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(data):
    _check(data)
    _check(HEADER + data)
    _check(HEADER + L.BEGIN_MAGIC + data)


def _base_sample() -> bytes:
    path = SAMPLES / "temporaltabledemo_log.trc"
    if path.exists():
        with path.open("rb") as f:
            return f.read(12000)  # the data part: the rest is padding
    return persistence_trace().file()


BASE = _base_sample()


def _flipped(flips: list[tuple[int, int]]) -> bytearray:
    """BASE with the given (byte, bit) pairs flipped."""
    data = bytearray(BASE)
    for at, bit in flips:
        data[at] ^= 1 << bit
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(BASE)), st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 7)),
                                         max_size=8))
def test_truncated_and_bit_flipped_sample_never_raises(cut, flips):
    data = _flipped(flips)
    _check(bytes(data[:cut]))
    _check(bytes(data))


def _prescan_general_path(monkeypatch) -> None:
    """The prescan with every record through TraceReader's general path, ErrorLog events all walked."""
    monkeypatch.setattr(TraceReader, "_skip_framed", lambda self, pos: pos)
    monkeypatch.setattr(default_trace, "_PRESCAN_NEEDLES", None)


def _prescan(data: bytes) -> tuple:
    ev = PARSER.prescan(source(data))
    return ev.host, ev.instance, ev.facts, ev.anchors


def _length_damaged() -> dict[str, bytes]:
    """The second event's record-length field too short, too long, or past the end."""
    trace, offsets = three_events()
    out = {}
    for value in (3, 40, 0x7FFFFFFF, offsets[3] - offsets[2] - 9 + 7):
        data = bytearray(trace.data())
        data[offsets[2] + 5:offsets[2] + 9] = value.to_bytes(4, "little")
        out[f"length_{value}"] = bytes(data)
    return out


@pytest.mark.parametrize("name", [*_fixtures(), *_length_damaged()])
def test_prescan_fast_framing_gives_the_same_facts(name, monkeypatch):
    data = {**_fixtures(), **_length_damaged()}[name]
    fast = _prescan(data)
    _prescan_general_path(monkeypatch)
    assert _prescan(data) == fast


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(BASE)), st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 7)),
                                         max_size=8))
def test_prescan_fast_framing_same_facts_on_damage(cut, flips):
    data = bytes(_flipped(flips)[:cut])
    fast = _prescan(data)
    with pytest.MonkeyPatch.context() as mp:
        _prescan_general_path(mp)
        assert _prescan(data) == fast

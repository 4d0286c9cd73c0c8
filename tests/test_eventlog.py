"""EVTX parser: both engines over the public samples, damaged copies, flags.

The public samples live in ../shared/fixtures-public/evtx (README there);
damaged copies are built from them in tmp dirs at test time.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forensic.model import Event, ParseWarning
from forensic.rules import RuleSet, default_rules
from parsers import evtx_engines, sniff
from parsers.base import Source
from parsers.eventlog import (
    PARSER,
    build_event,
    decode_sql_binary,
    parse_audit_block,
    parse_event_time,
    select,
    tables,
)
from parsers.evtx_engines import CHUNK_SIZE, FILE_HEADER_SIZE, EvtxRecord, Prefilter

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures-public" / "evtx"
ENGINES = ["rust", "python"]

# Rows each public sample must give (see the selection table and the README
# of the samples).  The 4688 sample has 140 records: the 69 cmd.exe children
# of sqlservr.exe are rows; the 69 conhost.exe children of cmd.exe, cscript
# and TVupu.exe are neither started by nor are a SQL Server program, so they
# are skipped.
EXPECTED_ROWS = {
    "mdec_ID15457_clr_enabled.evtx": 2,
    "mdec_ID15457_xp_cmdshell_enabled.evtx": 2,
    "mdec_ID17115_single_user_mode_startup_params.evtx": 1,
    "mdec_ID33205_server_audit_disabled.evtx": 4,
    "mdec_ID33205_sysadmin_role_member_added.evtx": 1,
    "mdec_ID4688_sqlservr_cmd_children_msf.evtx": 69,
    "sbou_LM_xp_cmdshell_MSSQL_Events.evtx": 21,
    "sbou_sysmon_1_exec_via_sql_xpcmdshell.evtx": 1,
}
RECORDS = {"mdec_ID4688_sqlservr_cmd_children_msf.evtx": 140}

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="public EVTX samples not available")

RULES = RuleSet(default_rules())


def file_source(path: Path) -> Source:
    return Source(str(path), path.stat().st_size, lambda: open(path, "rb"))


def run(src: Source, engine: str, **options) -> tuple[list[Event], list[ParseWarning], dict]:
    """All rows (with the default rules applied), warnings and the stats."""
    gen = PARSER.parse(src, {"evtx_engine": engine, **options})
    events, warnings = [], []
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            stats = stop.value
            break
        if isinstance(item, Event):
            RULES.apply(item)
            events.append(item)
        else:
            assert isinstance(item, ParseWarning)
            warnings.append(item)
    return events, warnings, stats


def row(ev: Event) -> dict:
    """Every field of a row, JSON-normalised, for field-by-field comparison."""
    out = {name: getattr(ev, name) for name in ev.__slots__}
    out["timestamp"] = ev.timestamp.isoformat() if ev.timestamp else None
    out["attributes"] = json.loads(json.dumps(ev.attributes, sort_keys=True))
    return out


@pytest.fixture(scope="module")
def parsed():
    """{(sample name, engine): (events, warnings, stats)} for every public sample."""
    out = {}
    for path in sorted(SAMPLES.glob("*.evtx")):
        for engine in ENGINES:
            out[path.name, engine] = run(file_source(path), engine)
    return out


def by_name(parsed, name, engine="rust"):
    return parsed[name, engine][0]


# --------------------------------------------------------------------------
# Both engines over the public samples


def test_all_public_samples_present():
    assert sorted(p.name for p in SAMPLES.glob("*.evtx")) == sorted(EXPECTED_ROWS)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_row_counts(parsed, name, engine):
    events, warnings, stats = parsed[name, engine]
    assert len(events) == EXPECTED_ROWS[name]
    assert warnings == []
    assert stats["engine"] == engine
    assert stats["rows"] == EXPECTED_ROWS[name]
    assert stats["records_read"] == RECORDS.get(name, EXPECTED_ROWS[name])
    assert stats["records_skipped"] == stats["records_read"] - stats["rows"]
    assert stats["records_lost"] == 0


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_engines_agree_field_by_field(parsed, name):
    rust = [row(e) for e in parsed[name, "rust"][0]]
    python = [row(e) for e in parsed[name, "python"][0]]
    assert len(rust) == len(python) > 0
    for a, b in zip(rust, python, strict=True):
        assert a == b


@pytest.mark.parametrize("engine", ENGINES)
def test_prefilter_changes_nothing_but_cost(parsed, engine):
    for path in sorted(SAMPLES.glob("*.evtx")):
        events, _w, stats = run(file_source(path), engine, evtx_prefilter=False)
        assert [row(e) for e in events] == [row(e) for e in parsed[path.name, engine][0]]
        assert stats["records_skipped_undecoded"] == 0
    # On the 4688 sample most non-SQL records are dropped before decoding.
    stats = parsed["mdec_ID4688_sqlservr_cmd_children_msf.evtx", engine][2]
    assert stats["records_skipped_undecoded"] >= 69


def test_common_columns(parsed):
    for events, _w, _s in parsed.values():
        for ev in events:
            assert ev.source == "evtx"
            assert ev.tz_source == "utc"
            assert ev.timestamp is not None and ev.timestamp.tzinfo is not None
            assert ev.timestamp.utcoffset().total_seconds() == 0
            assert ev.event_type and ev.event_type == ev.event_type.lower()
            assert ev.message and "\n" not in ev.message.split("\n", 1)[0]
            assert isinstance(ev.source_record, int)
            assert isinstance(ev.attributes["record_number"], int)
            assert ev.attributes["chunk"] is not None
            json.dumps(ev.attributes)


# --------------------------------------------------------------------------
# What the rows say


def test_named_instance_radar(parsed):
    (clr_show, clr_on) = by_name(parsed, "mdec_ID15457_clr_enabled.evtx")
    for ev in (clr_show, clr_on):
        assert ev.instance == "RADAR"
        assert ev.host == "mssql01.offsec.lan"
        assert ev.attributes["computer"] == "mssql01.offsec.lan"
        assert ev.attributes["provider"] == "MSSQL$RADAR"
        assert ev.attributes["server_name"] == "MSSQL01\\RADAR"
        assert ev.attributes["error_number"] == 15457
        assert ev.attributes["severity"] == 10
        assert ev.attributes["session_database"] == "master"
    assert clr_on.event_type == "config_changed"
    assert clr_on.object_name == "clr enabled" and clr_on.object_type == "config"
    assert clr_on.attributes["old_value"] == "0" and clr_on.attributes["new_value"] == "1"
    assert clr_on.message == ("Configuration option 'clr enabled' changed from 0 to 1. "
                              "Run the RECONFIGURE statement to install.")
    assert clr_on.timestamp == datetime(2021, 4, 13, 21, 56, 47, 264689, tzinfo=UTC)
    assert clr_on.source_record == 151004


def test_default_instance_and_logins(parsed):
    events = by_name(parsed, "sbou_LM_xp_cmdshell_MSSQL_Events.evtx")
    assert {e.instance for e in events} == {"MSSQLSERVER"}
    assert {e.host for e in events} == {"MSEDGEWIN10"}
    logins = [e for e in events if e.event_id == 18454]
    assert len(logins) == 4
    for ev in logins:
        assert ev.event_type == "login_succeeded"
        assert ev.user == "root"
        assert ev.attributes["client_address"] == "10.0.2.17"
        assert ev.message.startswith("Login succeeded for user 'root'. Connection made using SQL Server authentication.")
    assert Counter(e.event_type for e in events) == Counter(
        {"audit_login_succeeded": 12, "login_succeeded": 4, "config_changed": 4, "audit_execute": 1})


def test_record_ids_come_from_the_xml_not_the_header(parsed):
    events = by_name(parsed, "sbou_LM_xp_cmdshell_MSSQL_Events.evtx")
    assert [e.source_record for e in events] == list(range(9687, 9708))
    assert [e.attributes["record_number"] for e in events] == list(range(1, 22))


def test_audit_event_time_is_the_timestamp(parsed):
    events = by_name(parsed, "sbou_LM_xp_cmdshell_MSSQL_Events.evtx")
    (ex,) = [e for e in events if e.event_type == "audit_execute"]
    # event_time:2019-11-04 09:27:26.1750932 (UTC); TimeCreated is the batched write.
    assert ex.timestamp == datetime(2019, 11, 4, 9, 27, 26, 175093, tzinfo=UTC)
    assert ex.attributes["event_time"] == "2019-11-04 09:27:26.1750932"
    # (python-evtx's own float conversion shows .315067; the FILETIME truncates to .315066)
    assert ex.attributes["time_created"] == "2019-11-04T09:27:26.315066Z"
    assert ex.timestamp_desc == "Audit Event Time"
    assert ex.attributes["action_id"] == "EX"
    assert ex.attributes["statement"] == "EXEC master..xp_cmdshell 'Whoami'"
    assert ex.attributes["application_name"] == ".Net SqlClient Data Provider"
    assert ex.attributes["client_address"] == "10.0.2.17"
    assert ex.object_name == "xp_cmdshell" and ex.object_type == "X"
    assert ex.user == "root"
    audits = [e for e in events if e.event_id == 33205]
    assert len({e.attributes["time_created"] for e in audits}) == 2  # batched writes
    assert len({e.timestamp for e in audits}) > 2  # the real times differ


def test_audit_records_radar(parsed):
    events = by_name(parsed, "mdec_ID33205_server_audit_disabled.evtx")
    assert [e.attributes["action_id"] for e in events] == ["AUSC", "AUSC", "LGIS", "AL"]
    alter = events[3]
    assert alter.instance == "RADAR"
    assert alter.user == "OFFSEC\\admin-hacker"
    assert alter.object_name == "Test-audit-srv-object"
    assert alter.attributes["statement"] == "ALTER SERVER AUDIT [Test-audit-srv-object]\r\nWITH (STATE = OFF)"
    assert alter.attributes["class_type"] == "A"
    assert events[0].attributes["info_action"] == "destroyed"
    login = events[2]
    assert login.attributes["client_address"] == "10.23.23.9"  # from additional_information
    assert login.attributes["statement"].startswith("-- network protocol: TCP/IP\r\nset quoted_identifier on")


def test_startup_parameters_single_user(parsed):
    (ev,) = by_name(parsed, "mdec_ID17115_single_user_mode_startup_params.evtx")
    assert ev.event_type == "startup_parameters"
    assert ev.attributes["parameters"] == ['-s "RADAR"', "-m"]
    assert ev.attributes["single_user"] is True
    assert ev.message.split("\n")[0] == "Command Line Startup Parameters:"


def test_process_rows(parsed):
    events = by_name(parsed, "mdec_ID4688_sqlservr_cmd_children_msf.evtx")
    for ev in events:
        assert ev.event_type == "process_created"
        assert ev.object_name == "cmd.exe"
        assert ev.instance == "RADAR"
        assert ev.user == "OFFSEC\\Svc-SQL-DB01"
        assert ev.attributes["parent_image"].endswith("\\MSSQL12.RADAR\\MSSQL\\Binn\\sqlservr.exe")
        assert ev.attributes["command_line"].startswith('"C:\\Windows\\system32\\cmd.exe" /c echo ')
        assert ev.attributes["event_data"]["NewProcessName"] == "C:\\Windows\\System32\\cmd.exe"
    (sysmon,) = by_name(parsed, "sbou_sysmon_1_exec_via_sql_xpcmdshell.evtx")
    assert sysmon.instance == "SQLEXPRESS"
    assert sysmon.user == "MSEDGEWIN10\\sqlsvc"
    assert sysmon.attributes["integrity_level"] == "High"
    assert sysmon.attributes["parent_command_line"].endswith("-sSQLEXPRESS")
    assert sysmon.timestamp == datetime(2019, 11, 3, 13, 51, 58, 263043, tzinfo=UTC)


# --------------------------------------------------------------------------
# Flags (Sigma's SQL Server rules on their samples, and more) and no flags


def flags_of(events):
    return [e.flags for e in events]


def test_flags_on_the_samples(parsed):
    xp = by_name(parsed, "mdec_ID15457_xp_cmdshell_enabled.evtx")
    assert xp[0].flags == ["xp_cmdshell"]  # Sigma d08dd86f
    sbou = by_name(parsed, "sbou_LM_xp_cmdshell_MSSQL_Events.evtx")
    changes = {(e.object_name, e.attributes["new_value"]): e.flags for e in sbou if e.event_id == 15457}
    assert changes[("xp_cmdshell", "1")] == ["xp_cmdshell"]
    assert changes[("xp_cmdshell", "0")] == ["xp_cmdshell"]  # turned off again: still flagged (low)
    (ex,) = [e for e in sbou if e.event_type == "audit_execute"]
    assert ex.flags == ["xp_cmdshell"]  # Sigma 7f103213
    (role,) = by_name(parsed, "mdec_ID33205_sysadmin_role_member_added.evtx")
    assert role.flags == ["sysadmin_granted"]  # Sigma 08200f85
    audit = by_name(parsed, "mdec_ID33205_server_audit_disabled.evtx")
    assert flags_of(audit) == [["audit_tampering"], ["audit_tampering"], [], ["audit_tampering"]]  # Sigma 350dfb37
    clr = by_name(parsed, "mdec_ID15457_clr_enabled.evtx")
    assert clr[1].flags == ["clr_enabled"]  # no Sigma rule covers this
    for name in ("mdec_ID4688_sqlservr_cmd_children_msf.evtx", "sbou_sysmon_1_exec_via_sql_xpcmdshell.evtx"):
        assert all(e.flags == ["sqlservr_child_process"] for e in by_name(parsed, name))  # Sigma 869b9ca7


def test_benign_events_stay_unflagged(parsed):
    sbou = by_name(parsed, "sbou_LM_xp_cmdshell_MSSQL_Events.evtx")
    for ev in sbou:
        if ev.event_type in ("audit_login_succeeded", "login_succeeded") or ev.object_name == "show advanced options":
            assert ev.flags == [], ev.message
    clr = by_name(parsed, "mdec_ID15457_clr_enabled.evtx")
    assert clr[0].object_name == "show advanced options" and clr[0].flags == []
    xp = by_name(parsed, "mdec_ID15457_xp_cmdshell_enabled.evtx")
    assert xp[1].attributes["action_id"] == "ALST" and xp[1].flags == []  # RECONFIGURE;
    (params,) = by_name(parsed, "mdec_ID17115_single_user_mode_startup_params.evtx")
    assert params.flags == []


# --------------------------------------------------------------------------
# Events without a public sample: synthetic records through the same code


def record(**kw) -> EvtxRecord:
    base = dict(time_created=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), record_id=100, header_record=1, chunk=0,
                computer="SQL01.corp.example")
    base.update(kw)
    return EvtxRecord(**base)


def classic(event_id, *strings, provider="MSSQLSERVER"):
    return record(provider=provider, channel="Application", event_id=event_id, qualifiers=16384,
                  strings=list(strings))


def audit(statement="", **fields):
    keys = dict(audit_schema_version="1", event_time="2024-05-01 11:59:58.1234567", action_id="EX  ",
                succeeded="true", class_type="P ", server_principal_name="CORP\\mallory",
                server_instance_name="SQL01", database_name="master", schema_name="", object_name="")
    keys.update(fields)
    lines = [f"{k}:{v}" for k, v in keys.items()]
    lines.insert(lines.index(f"object_name:{keys['object_name']}") + 1, f"statement:{statement}")
    lines.append("additional_information:")
    return classic(33205, "\n".join(lines) + "\n")


def as_row(rec: EvtxRecord) -> Event:
    sel, fields = select(rec)
    assert sel is not None, rec
    ev = build_event(rec, sel, fields)
    RULES.apply(ev)
    # The cheap pre-filter must let every selected record through (a JSON
    # rendering of the record stands in for the Rust engine's text).
    text = json.dumps({"p": rec.provider, "d": rec.data, "s": rec.strings, "c": rec.channel}, ensure_ascii=False)
    assert Prefilter(tables().needles).text_hit(text.replace("\\\\", "\\")), "needles miss a selected record"
    return ev


@pytest.mark.parametrize(("rec", "event_type", "flags", "object_name"), [
    (classic(17135, "dbo.evil_startup"), "startup_procedure_launched", ["startup_procedure"], "evil_startup"),
    (classic(17133, "dbo.evil_startup"), "startup_procedure_failed", ["startup_procedure"], "evil_startup"),
    (classic(8128, "maggie.dll", "1.0.0.0", "sp_maggie"), "extended_procedure_dll_loaded", ["extended_procedure"], "sp_maggie"),
    (classic(8128, "xplog70.dll", "2019.150.2000", "xp_cmdshell"), "extended_procedure_dll_loaded", ["xp_cmdshell"], "xp_cmdshell"),
    (classic(15281, "procedure", "sys.xp_cmdshell", "xp_cmdshell", "xp_cmdshell", "xp_cmdshell", "xp_cmdshell",
             provider="MSSQL$SQLEXPRESS"), "feature_blocked", ["xp_cmdshell"], "xp_cmdshell"),
    (classic(5084, "TRUSTWORTHY", "ON", "AppDB"), "database_option_set", ["clr_enabled"], "TRUSTWORTHY"),
    (classic(15457, "Ole Automation Procedures", "0", "1"), "config_changed", ["ole_automation"], "Ole Automation Procedures"),
    (classic(10311, "3", "AppDB.dbo[runtime].2"), "appdomain_unload_ddl", ["clr_assembly_load"], None),
    (classic(18456, "sa", " Reason: Password did not match that for the login provided.", " [CLIENT: 203.0.113.9]"),
     "login_failed", [], None),
    (classic(17126), "server_ready", [], None),
    (classic(17104, "4242"), "server_process_id", [], None),
    (classic(42424, "something odd"), "sql_server_message", [], None),
    (audit("EXEC sp_procoption N'dbo.evil', 'startup', 'on'", object_name="sp_procoption"), "audit_execute",
     ["startup_procedure"], "sp_procoption"),
    (audit("DECLARE @o INT; EXEC sp_OACreate 'WScript.Shell', @o OUT", object_name="sp_OACreate", class_type="X "),
     "audit_execute", ["ole_automation"], "sp_OACreate"),
    (audit("CREATE ASSEMBLY [evil] FROM 0x4D5A AUTHORIZATION dbo WITH PERMISSION_SET = UNSAFE",
           action_id="CR  ", class_type="AS", object_name="evil", database_name="AppDB"), "audit_create",
     ["clr_assembly_load"], "evil"),
    (audit("EXEC sp_addextendedproc 'xp_evil', 'c:\\temp\\evil.dll'", object_name="sp_addextendedproc"),
     "audit_execute", ["extended_procedure"], "sp_addextendedproc"),
    (audit("EXEC sp_addsrvrolemember 'mallory', 'sysadmin'", object_name="sp_addsrvrolemember"), "audit_execute",
     ["sysadmin_granted"], "sp_addsrvrolemember"),
    (audit("DROP SERVER AUDIT SPECIFICATION [spec]", action_id="DR  ", class_type="SA", object_name="spec"),
     "audit_drop", ["audit_tampering"], "spec"),
    (audit("ALTER DATABASE SET TRUSTWORTHY ON", action_id="AL  ", class_type="DB"), "audit_alter", ["clr_enabled"], None),
    (audit("exec sp_configure 'show advanced options', 1", object_name="sp_configure"), "audit_execute", [], "sp_configure"),
    (audit("ALTER SERVER ROLE [db_creator] ADD MEMBER [bob]", action_id="APRL", class_type="SG", object_name="dbcreator"),
     "audit_add_member", [], "dbcreator"),
])
def test_synthetic_sql_server_events(rec, event_type, flags, object_name):
    ev = as_row(rec)
    assert ev.event_type == event_type
    assert ev.flags == flags
    assert ev.object_name == object_name
    assert ev.instance in ("MSSQLSERVER", "SQLEXPRESS")


def test_classic_message_text_matches_errorlog_text():
    ev = as_row(classic(17135, "master.dbo.evil_startup"))
    assert ev.message == "Launched startup procedure 'master.dbo.evil_startup'."
    assert ev.object_type == "P" and ev.attributes["schema"] == "dbo"
    ev = as_row(classic(18456, "sa", " Reason: Could not find a login matching the name provided.", " [CLIENT: 10.1.2.3]"))
    assert ev.message == ("Login failed for user 'sa'. Reason: Could not find a login matching the name provided."
                          " [CLIENT: 10.1.2.3]")
    assert ev.user == "sa" and ev.attributes["client_address"] == "10.1.2.3"
    # Strings that fit no known format keep their text and stay classifiable.
    ev = as_row(classic(8128, "only one string"))
    assert ev.message == "only one string" and "message_rebuilt" not in ev.attributes


def sysmon(event_id, **data):
    return record(provider="Microsoft-Windows-Sysmon", channel="Microsoft-Windows-Sysmon/Operational",
                  event_id=event_id, data=data)


SQLSERVR = "C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER\\MSSQL\\Binn\\sqlservr.exe"


def test_sysmon_image_load_and_file_create():
    ev = as_row(sysmon(7, Image=SQLSERVR, ImageLoaded="C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER"
                       "\\MSSQL\\Binn\\odsole70.dll", Signed="true", Signature="Microsoft Corporation", User="NT Service\\MSSQLSERVER"))
    assert (ev.event_type, ev.object_name, ev.instance, ev.flags) == ("image_loaded", "odsole70.dll", "MSSQLSERVER", ["ole_automation"])
    ev = as_row(sysmon(7, Image=SQLSERVR, ImageLoaded="C:\\ProgramData\\x\\evil.dll", Signed="false"))
    assert ev.flags == ["extended_procedure"]
    ev = as_row(sysmon(7, Image=SQLSERVR, ImageLoaded="C:\\Windows\\System32\\ntdll.dll", Signed="true"))
    assert ev.flags == []
    ev = as_row(sysmon(11, Image=SQLSERVR, TargetFilename="C:\\Users\\Public\\payload.exe"))
    assert (ev.event_type, ev.object_name) == ("file_created", "payload.exe")
    # Image loads into other processes are not ours.
    assert select(sysmon(7, Image="C:\\Windows\\explorer.exe", ImageLoaded="C:\\x.dll"))[0] is None
    assert select(sysmon(1, Image="C:\\Windows\\System32\\cmd.exe", ParentImage="C:\\Windows\\explorer.exe"))[0] is None


def test_sqlagent_children_are_rows_but_not_sqlservr_children():
    ev = as_row(sysmon(1, Image="C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                       ParentImage="C:\\Program Files\\Microsoft SQL Server\\MSSQL15.RADAR\\MSSQL\\Binn\\SQLAGENT.EXE",
                       ParentCommandLine='"C:\\...\\SQLAGENT.EXE" -i RADAR', User="CORP\\svc"))
    assert ev.event_type == "process_created" and ev.instance == "RADAR" and ev.flags == []
    ev = as_row(record(provider="Microsoft-Windows-Security-Auditing", channel="Security", event_id=4688,
                       data={"NewProcessName": "C:\\Program Files\\Microsoft SQL Server\\Client SDK\\ODBC\\170\\Tools\\Binn\\SQLCMD.EXE",
                             "ParentProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "sqlcmd -S .\\RADAR,2020",
                             "SubjectUserName": "admin", "SubjectDomainName": "CORP"}))
    assert (ev.object_name, ev.instance, ev.flags) == ("SQLCMD.EXE", "RADAR", [])
    helper = as_row(sysmon(1, Image="C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER\\MSSQL\\Binn\\SQLDumper.exe",
                           ParentImage=SQLSERVR))
    assert helper.flags == ["sqlservr_child_process"]
    assert helper.attributes["rules"] == ["evtx-sqlservr-helper-process"]


def test_system_service_events():
    rec = record(provider="Service Control Manager", channel="System", event_id=7036,
                 data={"param1": "SQL Server (RADAR)", "param2": "running"}, binary="MSSQL$RADAR".encode("utf-16-le"))
    ev = as_row(rec)
    assert (ev.event_type, ev.instance, ev.object_name) == ("service_state_changed", "RADAR", "SQL Server (RADAR)")
    assert ev.message == "The SQL Server (RADAR) service entered the running state."
    assert ev.attributes["service_name"] == "MSSQL$RADAR"
    ev = as_row(record(provider="Service Control Manager", channel="System", event_id=7045,
                       data={"ServiceName": "MSSQLSERVER", "ImagePath": '"C:\\...\\sqlservr.exe" -sMSSQLSERVER',
                             "StartType": "auto start", "AccountName": "NT Service\\MSSQLSERVER"}))
    assert (ev.event_type, ev.instance, ev.user) == ("service_installed", "MSSQLSERVER", "NT Service\\MSSQLSERVER")
    assert select(record(provider="Service Control Manager", channel="System", event_id=7036,
                         data={"param1": "Windows Update", "param2": "running"}))[0] is None


# --------------------------------------------------------------------------
# Pieces


def test_sniff():
    head = (SAMPLES / "mdec_ID15457_clr_enabled.evtx").read_bytes()[:4096]
    assert PARSER.sniff(head, "renamed.bin")
    assert sniff(head, "x.bin") is PARSER
    assert not PARSER.sniff(b"ElfChnk\x00" + bytes(100), "x.evtx")
    assert not PARSER.sniff(b"", "x.evtx")
    assert not PARSER.sniff("2024-01-01 10:00:00.00 Server ".encode("utf-16"), "ERRORLOG")


def test_decode_sql_binary():
    blob = bytes.fromhex("613C00000A0000000E0000004D005300530051004C00300031005C00520041004400410052000000"
                         "070000006D00610073007400650072000000")
    assert decode_sql_binary(blob) == {"error_number": 15457, "severity": 10, "server_name": "MSSQL01\\RADAR",
                                       "database": "master"}
    assert decode_sql_binary(b"") is None
    assert decode_sql_binary(b"\x01\x00\x00\x00\x02\x00\x00\x00\xff\xff\xff\xff") == {"error_number": 1, "severity": 2}


def test_audit_block_splitting():
    block = ("event_time:2024-01-02 03:04:05.1234567\naction_id:EX  \nobject_name:x\n"
             "statement:SELECT 1\nobject_name:forged\nserver_principal_name:forged\n-- still the statement\n"
             "additional_information:<a/>\nuser_defined_information:\nnew_future_key:1\napplication_name:app\n")
    fields = parse_audit_block(block)
    assert fields["statement"] == ("SELECT 1\nobject_name:forged\nserver_principal_name:forged\n-- still the statement")
    assert fields["object_name"] == "x"
    assert "server_principal_name" not in fields
    assert fields["user_defined_information"] == "\nnew_future_key:1"
    assert fields["application_name"] == "app"
    assert parse_event_time(fields["event_time"]) == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert parse_event_time("garbage") is None


def test_audit_without_event_time_falls_back_to_time_created():
    ev = as_row(audit("SELECT 1", event_time="not a time"))
    assert ev.timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert ev.attributes["event_time_invalid"] is True


def test_selection_needles_are_literal_parts_of_the_conditions():
    """Every provider-only entry's needles are substrings of its provider regex."""
    for sel in tables().selections:
        assert sel.needles, sel.name
        if not sel.any_field:
            assert any(n.lower() in sel.provider.pattern.lower() for n in sel.needles), sel.name


# --------------------------------------------------------------------------
# Engine choice


def test_unknown_engine_is_a_warning():
    events, warnings, stats = run(file_source(SAMPLES / "mdec_ID15457_clr_enabled.evtx"), "turbo")
    assert events == [] and len(warnings) == 1 and "turbo" in warnings[0].message
    assert stats == {"engine": None}


def test_rust_missing(monkeypatch):
    monkeypatch.setattr(evtx_engines, "rust_available", lambda: False)
    src = file_source(SAMPLES / "mdec_ID15457_clr_enabled.evtx")
    events, warnings, _ = run(src, "rust")
    assert events == [] and len(warnings) == 1
    assert "pyevtx-rs" in warnings[0].message and warnings[0].damaged
    events, warnings, stats = run(src, "auto")
    assert len(events) == 2 and warnings == [] and stats["engine"] == "python"


def test_python_missing(monkeypatch):
    monkeypatch.setattr(evtx_engines, "python_available", lambda: False)
    events, warnings, _ = run(file_source(SAMPLES / "mdec_ID15457_clr_enabled.evtx"), "python")
    assert events == [] and "python-evtx" in warnings[0].message


@pytest.mark.parametrize("engine", ENGINES)
def test_non_file_source(engine):
    data = (SAMPLES / "sbou_LM_xp_cmdshell_MSSQL_Events.evtx").read_bytes()
    events, warnings, _ = run(Source.from_bytes(data, "archive.zip!Application.evtx"), engine)
    assert len(events) == 21 and warnings == []


def test_prescan():
    ev = PARSER.prescan(file_source(SAMPLES / "sbou_LM_xp_cmdshell_MSSQL_Events.evtx"))
    assert (ev.host, ev.instance) == ("MSEDGEWIN10", "MSSQLSERVER")
    ev = PARSER.prescan(file_source(SAMPLES / "mdec_ID4688_sqlservr_cmd_children_msf.evtx"))
    assert (ev.host, ev.instance, ev.facts["evtx_channel"]) == ("mssql01.offsec.lan", None, "Security")


# --------------------------------------------------------------------------
# Damaged copies (built here from the 4688 sample: 5 chunks of 28 records)


BASE = SAMPLES / "mdec_ID4688_sqlservr_cmd_children_msf.evtx"


def chunk_offset(index: int) -> int:
    return FILE_HEADER_SIZE + index * CHUNK_SIZE


def damaged(tmp_path: Path, name: str, edit) -> Path:
    data = bytearray(BASE.read_bytes())
    data = edit(data) or data
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


def record_offsets(data: bytes, chunk: int) -> list[int]:
    pos, out = chunk_offset(chunk) + 0x200, []
    while data[pos:pos + 4] == b"\x2a\x2a\x00\x00":
        out.append(pos)
        pos += struct.unpack_from("<I", data, pos + 4)[0]
    return out


def total_lost(warnings):
    return sum(w.lost_records for w in warnings)


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_file(tmp_path, engine):
    path = damaged(tmp_path, "trunc.evtx", lambda d: d[:chunk_offset(2) + 30000])
    events, warnings, stats = run(file_source(path), engine)
    (w,) = warnings
    assert w.position == "chunk 2 (offset 0x21000)" and w.damaged
    assert "truncated" in w.message
    # Chunks 0-1 whole (28 + 28 records), then the records wholly before the cut.
    assert stats["records_read"] == 56 + 12
    assert w.lost_records == 16 == stats["records_lost"]
    assert len(events) == 34


@pytest.mark.parametrize("engine", ENGINES)
def test_garbage_chunk_header(tmp_path, engine):
    def edit(d):
        d[chunk_offset(1):chunk_offset(1) + 8] = b"GARBAGE!"
    events, warnings, stats = run(file_source(damaged(tmp_path, "garbage.evtx", edit)), engine)
    (w,) = warnings
    assert w.position.startswith("chunk 1") and "bad chunk magic" in w.message and w.damaged
    # The records behind the broken header are still read (by python-evtx for the Rust engine).
    assert len(events) == 69 and stats["records_read"] == 140
    if engine == "rust":
        assert stats["records_salvaged"] == 28 and stats["engine_errors"] == 1
        assert all(e.attributes.get("salvaged") for e in events if e.attributes["chunk"] == 1)


@pytest.mark.parametrize("engine", ENGINES)
def test_garbage_chunk_content(tmp_path, engine):
    def edit(d):
        d[chunk_offset(3):chunk_offset(4)] = bytes((i * 7 + 3) % 256 for i in range(CHUNK_SIZE))
    events, warnings, stats = run(file_source(damaged(tmp_path, "noise.evtx", edit)), engine)
    # One warning for the chunk itself, one for the 28 records its neighbours say are missing.
    assert [w.position for w in warnings] == ["chunk 3 (offset 0x31000)"] * 2
    assert "bad chunk magic" in warnings[0].message and "28 records missing" in warnings[1].message
    assert total_lost(warnings) == 28 == stats["records_lost"]
    assert stats["records_read"] == 112 and len(events) < 69


@pytest.mark.parametrize("engine", ENGINES)
def test_wiped_chunk_between_chunks(tmp_path, engine):
    def edit(d):
        d[chunk_offset(2):chunk_offset(3)] = bytes(CHUNK_SIZE)
    events, warnings, stats = run(file_source(damaged(tmp_path, "wiped.evtx", edit)), engine)
    (w,) = warnings
    assert w.position == "chunk 2 (offset 0x21000)" and w.damaged
    assert "all zeros" in w.message and w.lost_records == 28 == stats["records_lost"]
    assert stats["records_read"] == 112
    # Trailing all-zero slots (the 12 unused ones of the intact sample) are no damage.
    assert run(file_source(BASE), engine)[1] == []


@pytest.mark.parametrize("engine", ENGINES)
def test_flipped_bytes_cost_one_record(tmp_path, engine):
    def edit(d):
        # Break the template reference of a cmd.exe record (a row) in chunk 2.
        pos = next(p for p in record_offsets(d, 2) if "sqlservr.exe".encode("utf-16-le") in d[p:p + 4000])
        d[pos + 0x1A:pos + 0x24] = bytes(b ^ 0xFF for b in d[pos + 0x1A:pos + 0x24])
    events, warnings, stats = run(file_source(damaged(tmp_path, "flip.evtx", edit)), engine)
    (w,) = warnings
    assert w.position.startswith("chunk 2") and w.lost_records == 1 and w.damaged
    assert "offset 0x" in w.message
    assert stats["records_read"] == 139
    assert len(events) == 68


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_size_record(tmp_path, engine):
    def edit(d):
        struct.pack_into("<I", d, record_offsets(d, 0)[1] + 4, 0)
    events, warnings, stats = run(file_source(damaged(tmp_path, "zero.evtx", edit)), engine)
    (w,) = warnings
    assert w.position.startswith("chunk 0") and w.lost_records == 1
    assert "offset 0x" in w.message
    # One bad record never ends the chunk, let alone the file.
    assert stats["records_read"] == 139


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_checksum_keeps_every_record(tmp_path, engine):
    def edit(d):
        pos = d.find("/c echo ".encode("utf-16-le"), chunk_offset(3))
        d[pos + 16:pos + 18] = "Z".encode("utf-16-le")
    events, warnings, stats = run(file_source(damaged(tmp_path, "crc.evtx", edit)), engine)
    (w,) = warnings
    assert w.position.startswith("chunk 3") and "data checksum mismatch" in w.message
    assert w.lost_records == 0 and w.damaged  # a clean (not dirty) file should not have it
    assert len(events) == 69 and stats["records_lost"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_stale_header_of_dirty_log(tmp_path, engine):
    def edit(d):
        struct.pack_into("<H", d, 0x2A, 1)  # header says 1 chunk (there are 5)
        struct.pack_into("<I", d, 0x78, 1)  # dirty
        struct.pack_into("<I", d, 0x7C, zlib.crc32(bytes(d[:0x78])))
    path = damaged(tmp_path, "dirty.evtx", edit)
    events, warnings, stats = run(file_source(path), engine)
    assert len(events) == 69 and stats["records_recovered"] == 112
    (w,) = warnings
    assert "112 records" in w.message and not w.damaged and w.lost_records == 0
    # python-evtx's own iterator follows the stale count and drops the newest records.
    from Evtx.Evtx import Evtx
    with Evtx(str(path)) as log:
        assert sum(1 for _ in log.records()) == 28


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("data", [b"ElfFile\x00", b"ElfFile\x00" + bytes(4088), b"ElfFile\x00" + bytes(range(256)) * 300,
                                  b"ElfFile\x00" + bytes(4088) + b"ElfChnk\x00" + bytes(100)])
def test_garbage_input_never_raises(engine, data):
    events, warnings, stats = run(Source.from_bytes(data, "junk.evtx"), engine)
    assert events == []
    assert stats["records_read"] == 0


def test_damaged_engines_agree_on_rows(tmp_path):
    """On a file with a bad record, both engines keep the same rows."""
    def edit(d):
        struct.pack_into("<I", d, record_offsets(d, 0)[1] + 4, 0)
        d[chunk_offset(1):chunk_offset(1) + 8] = b"GARBAGE!"
    path = damaged(tmp_path, "multi.evtx", edit)
    rust = [row(e) for e in run(file_source(path), "rust")[0]]
    python = [row(e) for e in run(file_source(path), "python")[0]]
    for r in rust:
        r["attributes"].pop("salvaged", None)
    assert sorted(rust, key=lambda r: r["source_record"]) == sorted(python, key=lambda r: r["source_record"])


# --------------------------------------------------------------------------
# The pre-filter and the CLI


def test_prefilter_forms():
    pf = Prefilter(["sqlservr.exe", "mssql", "bcp.exe"])
    json_text = '{"Channel":"Security","Computer":"MSSQL01.corp","EventData":{"NewProcessName":"C:\\\\x\\\\%s"}}'
    assert pf.text_hit(json_text % "SQLSERVR.EXE")
    assert not pf.text_hit(json_text % "conhost.exe")  # the host name alone does not count
    assert pf.text_hit('{"Provider":{"#attributes":{"Name":"MSSQL$RADAR"}}}')
    for text in ("C:\\Binn\\SqlServr.exe", "bcp.exe out", "x MSSQL$A"):
        assert pf.bytes_hit(text.encode("utf-16-le"), 0, 2 * len(text))
        assert pf.bytes_hit(text.encode("cp1252"), 0, len(text))
    assert not pf.bytes_hit("svc-sql-db01 conhost.exe".encode("utf-16-le"), 0, 50)
    assert pf.literal_hit(["Provider", "MSSQLSERVER"]) and not pf.literal_hit(["Security"])
    assert not Prefilter([]).active and Prefilter([]).text_hit("anything")


def test_selection_prefilter_looks_where_the_selections_look():
    from parsers.eventlog import selection_prefilter, tables
    pf = selection_prefilter(tables())

    def record(channel, event_id, data, provider="Microsoft-Windows-Security-Auditing"):
        system = (f'"System":{{"Provider":{{"#attributes":{{"Name":"{provider}"}}}},"EventID":{event_id},'
                  f'"Channel":"{channel}","Computer":"MSSQL01.corp"}}')
        text = f'{{"Event":{{{system},"EventData":{{{data}}}}}}}'
        json.loads(text)  # as pyevtx-rs renders records: valid JSON
        return text
    sql_parent = '"NewProcessName":"C:\\\\Windows\\\\cmd.exe","ParentProcessName":"C:\\\\Binn\\\\SQLSERVR.EXE"'
    assert pf.text_hit(record("Security", 4688, sql_parent))
    # The needle elsewhere in a 4688 (the command line, a user name) is not enough ...
    assert not pf.text_hit(record("Security", 4688, '"NewProcessName":"C:\\\\x\\\\cmd.exe",'
                                                      '"CommandLine":"sqlcmd.exe -Q x","SubjectUserName":"svc-sql"'))
    # ... nor the right field in a record of another id or channel.
    assert not pf.text_hit(record("Security", 4624, sql_parent))
    assert not pf.text_hit(record("Setup", 4688, sql_parent))
    # Event ids with qualifiers, channels in any case, no field condition.
    app = record("application", '{"#attributes":{"Qualifiers":16384},"#text":17137}', '"Data":"x"', provider="MSSQL$RADAR")
    assert pf.text_hit(app) and not pf.text_hit(app.replace("MSSQL$RADAR", "Outlook"))
    # A quoted service image path: the escaped quote does not end the value.
    service = '"ServiceName":"evil","ImagePath":"\\"C:\\\\Program Files\\\\sqlservr.exe\\" -s"'
    assert pf.text_hit(record("System", 7045, service, "Service Control Manager"))
    # Every occurrence of a field name counts (UserData may nest one twice).
    twice = '"UserData":{"A":{"Image":"C:\\\\x.exe"},"B":{"Image":"C:\\\\sqlservr.exe"}}'
    assert pf.text_hit(record("Microsoft-Windows-Sysmon/Operational", 7, twice, "Microsoft-Windows-Sysmon"))
    # Not as expected: searched on the whole text, never skipped on a guess.
    odd = '"NewProcessName":{"#attributes":{"x":1},"#text":"C:\\\\sqlservr.exe"}'
    assert pf.text_hit(record("Security", 4688, odd))
    assert pf.text_hit(record("Security", 4688, sql_parent).replace('"Channel"', '"Kanal"'))
    assert not pf.text_hit(record("Security", 4688, '"NewProcessName":null,"ParentProcessName":null,"X":"sqlservr.exe"'))
    # A derived field (7036's binary_text): anywhere in the record.
    assert pf.text_hit(record("System", 7036, '"param1":"x","Binary":"00","Note":"MSSQLSERVER"', "Service Control Manager"))


def test_cli_end_to_end_engines_agree(tmp_path):
    """python -m forensic timeline over the samples: same rows with either engine."""
    import subprocess
    import sys

    pytest.importorskip("forensic.cli")
    pq = pytest.importorskip("pyarrow.parquet")
    repo = Path(__file__).resolve().parents[1]
    tables_by_engine = {}
    for engine in ENGINES:
        out = tmp_path / f"{engine}.parquet"
        proc = subprocess.run([sys.executable, "-m", "forensic", "timeline", str(SAMPLES), "-o", str(out),
                               "--evtx-engine", engine, "--quiet"], cwd=repo, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        tables_by_engine[engine] = pq.read_table(out).to_pylist()
    rust, python = tables_by_engine["rust"], tables_by_engine["python"]
    assert len(rust) == sum(EXPECTED_ROWS.values())
    assert rust == python
    # (Counts are the engine's business: it spreads flags to related events.)
    flags = {f for r in rust for f in r["flags"]}
    assert flags == {"sqlservr_child_process", "xp_cmdshell", "audit_tampering", "sysadmin_granted", "clr_enabled"}


def test_random_damage_never_raises():
    """Random byte damage anywhere after the file magic: rows and warnings, never an exception."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    data = (SAMPLES / "sbou_LM_xp_cmdshell_MSSQL_Events.evtx").read_bytes()

    @hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
    @hypothesis.given(st.lists(st.tuples(st.integers(8, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=40),
                      st.integers(8, len(data)))
    def check(edits, cut):
        damaged_data = bytearray(data)
        for pos, value in edits:
            damaged_data[pos] = value
        for engine in ENGINES:
            events, warnings, stats = run(Source.from_bytes(bytes(damaged_data[:cut])), engine)
            assert stats["records_read"] <= 21
            assert len(events) <= 21

    check()


def test_utc_anchor_from_17177():
    """17176/17177 give the server's UTC offset; EVTX gives the exact UTC time of 17177."""
    pytest.importorskip("forensic.timezones")
    from parsers.eventlog import _pair_anchor

    rec = record(provider="MSSQL$RADAR", channel="Application", event_id=17177, record_id=5,
                 strings=["7676", "6/1/2025 9:22:45 AM", "6/1/2025 5:22:45 AM"],
                 time_created=datetime(2025, 6, 2, 0, 0, 53, tzinfo=UTC))
    anchor = _pair_anchor(rec, "Application.evtx")
    assert anchor.offset_minutes == 240
    assert anchor.local == datetime(2025, 6, 2, 4, 0, 53)  # when it was written, in local time
    assert anchor.source_record == 5
    rec.event_id = 17176  # the previous run's last heartbeat
    assert _pair_anchor(rec, "Application.evtx").local == datetime(2025, 6, 1, 9, 22, 45)
    ev = as_row(rec)
    assert ev.event_type == "process_id_reported" and ev.attributes["pid"] == "7676"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cut", [None, FILE_HEADER_SIZE + 2 * CHUNK_SIZE + 30000])
def test_non_seekable_stream(engine, cut, tmp_path, monkeypatch):
    """An archive member that cannot seek: streamed (python) or spooled to a deleted temp file (Rust)."""
    import io
    import tempfile

    data = BASE.read_bytes()[:cut]

    class Pipe(io.RawIOBase):
        def __init__(self):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self.inner.read(min(len(buffer), 5000))  # short reads, like a pipe
            buffer[:len(chunk)] = chunk
            return len(chunk)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    src = Source("evidence.zip!Security.evtx", len(data), lambda: io.BufferedReader(Pipe()))
    events, warnings, stats = run(src, engine)
    assert len(events) == (69 if cut is None else 34)
    assert stats["records_lost"] == (0 if cut is None else 16)
    assert list(tmp_path.iterdir()) == []  # the spooled copy is gone


def test_missing_time_created_falls_back_to_the_record_header():
    rec = classic(17126)
    rec.time_created, rec.header_time = None, datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    ev = as_row(rec)
    assert ev.timestamp == rec.header_time and ev.attributes["time_from_record_header"] is True


def test_record_number_past_int64_keeps_the_row():
    """EVTX record numbers are unsigned 64-bit; a damaged one past int64 (found
    by the fuzz harness on a mutated public sample) cannot be source_record."""
    ev = as_row(record(provider="MSSQLSERVER", channel="Application", event_id=17135, qualifiers=16384,
                       strings=["dbo.evil_startup"], record_id=2**63 + 9696))
    assert ev.source_record is None
    assert ev.attributes["record_id_out_of_range"] == str(2**63 + 9696)
    assert ev.event_type == "startup_procedure_launched"

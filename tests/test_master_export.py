"""master_export: every export shape, view recognition, assembly bytes, flags.

Fixtures under tests/fixtures/master_export/ are written to the rules of
../shared/reference/master-exports.md (quirks included); the rest are built
here from the same rules.  my_assembly.dll / helper_functions.dll were
compiled from the .cs files beside them; they are only ever read as bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forensic.model import Event, ParseWarning
from forensic.rules import RULES_DIR, RuleSet, default_rules, load_rules
from parsers import catalog_views, clr_binary, export_shapes
from parsers.base import Source
from parsers.master_export import PARSER

FIX = Path(__file__).parent / "fixtures" / "master_export"
COLLECT = Path(__file__).resolve().parents[1] / "forensic" / "collect"
EVIL_DLL = (FIX / "my_assembly.dll").read_bytes()
GOOD_DLL = (FIX / "helper_functions.dll").read_bytes()
RULES = RuleSet(default_rules())


def run(data: bytes | str | Path, **options) -> tuple[list[Event], list[ParseWarning]]:
    if isinstance(data, Path):
        data = data.read_bytes()
    if isinstance(data, str):
        data = data.encode("utf-8")
    events: list[Event] = []
    warnings: list[ParseWarning] = []
    for item in PARSER.parse(Source.from_bytes(data, "export"), options):
        if isinstance(item, Event):
            RULES.apply(item)
            events.append(item)
        else:
            warnings.append(item)
    return events, warnings


def named(events: list[Event], name: str) -> list[Event]:
    return [e for e in events if e.object_name == name]


def flags_of(events: list[Event], name: str) -> set[str]:
    found = named(events, name)
    assert found, f"no event for {name!r}"
    return {f for e in found for f in e.flags}


def sniff(data: bytes | str) -> bool:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return PARSER.sniff(data[:4096], "x")


# --------------------------------------------------------------------------
# Recognition


@pytest.mark.parametrize("name", [
    "ps51_autoexec.csv", "ps7_dbatools_spconfigure.csv", "ssms_noheader_procedures.csv",
    "ssms_header_unquoted.csv", "sqlcmd_fixed.txt", "sqlcmd_sep_utf16.txt", "clixml_dbatools_utf16.xml",
    "dbatools_export.sql", "collect_output.xml",
])
def test_sniff_recognises_fixture_shapes(name):
    assert PARSER.sniff((FIX / name).read_bytes()[:4096], "renamed.bin")


@pytest.mark.parametrize("data", [
    # ERRORLOG (UTF-16 and UTF-8): the ERRORLOG parser's, never ours.
    "\ufeff2024-03-01 02:10:05.13 Server      Microsoft SQL Server 2019 (RTM-CU18)\r\n".encode("utf-16-le"),
    b"2024-03-01 02:10:05.13 spid71      Configuration option 'xp_cmdshell' changed from 0 to 1.\n",
    b"Just some notes about the server.\nNothing to see.\n",
    b'#TYPE System.Diagnostics.Process\n"Name","Id","Handles"\n"pwsh","8","950"\n',
    b"a,b,c\n1,2,3\n",
    b'[{"firstName":"Ann","age":4}]',
    b"<html><body>name create_date</body></html>",
    b'<?xml version="1.0"?><config><setting name="x"/></config>',
    b"",
    # CLIXML of something else (a PSCredential).
    b'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0"><TN RefId="0">'
    b'<T>System.Management.Automation.PSCredential</T></TN><Props><S N="UserName">CONTOSO\\x</S>'
    b'<SS N="Password">01000000d08c9ddf</SS></Props></Obj></Objs>',
    bytes(range(256)) * 4,
    b"\x00" * 100,
])
def test_sniff_refuses_what_is_no_export(data):
    assert not sniff(data)


def test_sniff_never_raises_on_garbage():
    for seed in range(200):
        blob = hashlib.sha256(str(seed).encode()).digest() * 64
        PARSER.sniff(blob[: seed * 13 % 4096], "x")


@pytest.mark.parametrize("columns,view", [
    (["name", "is_auto_executed", "create_date"], "procedures"),
    (["ProcedureName", "ProcedureDefinition", "CREATED"], "procedures"),
    (["Name", "Startup", "CreateDate", "ImplementationType"], "procedures"),
    (["ROUTINE_NAME", "ROUTINE_DEFINITION"], "procedures"),
    (["object_id", "definition", "uses_ansi_nulls"], "sql_modules"),
    (["name", "assembly_id", "clr_name", "permission_set_desc"], "assemblies"),
    (["Name", "SecurityLevel", "Owner", "Version"], "assemblies"),
    (["assembly_id", "name", "file_id", "content"], "assembly_files"),
    (["object_id", "assembly_id", "assembly_class", "assembly_method"], "assembly_modules"),
    (["name", "minimum", "maximum", "config_value", "run_value"], "configurations"),
    (["Name", "DisplayName", "ConfiguredValue", "RunningValue"], "configurations"),
    (["configuration_id", "name", "value", "value_in_use"], "configurations"),
    (["name", "principal_id", "sid", "type", "create_date"], "server_principals"),
    (["Role", "Name", "SqlInstance"], "role_members"),
    (["role_principal_id", "member_principal_id"], "role_members"),
    (["name", "object_id", "parent_class", "type", "create_date"], "server_triggers"),
    (["name", "DdlTriggerEvents", "IsEnabled"], "server_triggers"),
    (["name", "dll"], "extended_procedures"),
    (["name", "object_id", "type", "dll_name"], "extended_procedures"),
    (["name", "database_id", "owner_sid", "is_trustworthy_on"], "databases"),
    (["hash", "description", "create_date", "created_by"], "trusted_assemblies"),
    (["name", "object_id", "type", "create_date"], "objects"),
    (["Vulnerability", "Severity", "IsVulnerable"], None),
])
def test_view_recognised_from_columns(columns, view):
    rec, _ = catalog_views.canonical(dict.fromkeys(columns, "1"))
    assert catalog_views.recognise(set(rec)) == view


# --------------------------------------------------------------------------
# Shapes


def test_powershell51_export_csv_datarow():
    events, warnings = run(FIX / "ps51_autoexec.csv")
    assert not warnings
    pscmd = named(events, "sp_add_pscmd")
    assert [e.timestamp_desc for e in pscmd] == ["Object Created", "Object Modified"]
    created = pscmd[0]
    assert created.local_time == datetime(2016, 7, 24, 15, 16, 29)
    assert created.local_text == "7/24/2016 3:16:29 PM"
    assert created.timestamp is None  # the engine converts local time
    assert (created.host, created.instance, created.database) == ("SQL01", "PROD", "master")
    assert created.attributes["schema"] == "dbo"
    assert created.source_record == 1 and named(events, "sp_SendStartupEmail")[0].source_record == 2
    # Multi-line definition, doubled quotes undone; DataRow members dropped.
    assert created.attributes["definition"].count("\n") == 2
    assert "''http://203.0.113.7/a''" in created.attributes["definition"]
    assert not {"RowError", "RowState", "ItemArray", "HasErrors", "Table"} & set(created.attributes.get("columns", {}))
    assert set(created.flags) == {"startup_procedure", "xp_cmdshell"}
    assert flags_of(events, "sp_SendStartupEmail") == {"startup_procedure"}


def test_powershell7_export_csv_dbatools_spconfigure():
    events, warnings = run(FIX / "ps7_dbatools_spconfigure.csv")
    assert not warnings
    assert all(e.object_type == "config" and e.timestamp is None and e.local_time is None for e in events)
    assert all(e.timestamp_desc == "Snapshot" and e.event_type == "configuration_option" for e in events)
    assert {(e.host, e.instance) for e in events} == {("SQL02", "ÅRHUS")}
    xp = named(events, "xp_cmdshell")[0]
    assert xp.attributes["smo_name"] == "XPCmdShellEnabled" and xp.flags == ["xp_cmdshell"]
    # Configured 1 but running 0 (no RECONFIGURE yet) is still evidence.
    assert named(events, "Ole Automation Procedures")[0].flags == ["ole_automation"]
    for benign in ("clr enabled", "clr strict security", "scan for startup procs", "max server memory (MB)",
                   "default trace enabled"):
        assert named(events, benign)[0].flags == [], benign


def test_ssms_csv_without_header_is_matched_to_select_star_layout():
    events, warnings = run(FIX / "ssms_noheader_procedures.csv")
    assert not warnings
    assert {e.attributes["view"] for e in events} == {"sys.procedures"}
    assert flags_of(events, "sp_add_osadmin") == {"startup_procedure"}
    assert flags_of(events, "sp_MSrepl_startup") == set()
    assert flags_of(events, "usp_cleanup") == set()
    assert named(events, "sp_MSrepl_startup")[0].attributes["is_ms_shipped"] is True
    assert named(events, "sp_add_osadmin")[1].local_time == datetime(2024, 3, 2 - 1, 2, 14, 7, 3000)


def test_ssms_csv_unquoted_commas_and_line_breaks_are_folded_back():
    events, warnings = run(FIX / "ssms_header_unquoted.csv")
    osadmin = named(events, "sp_add_osadmin")[0]
    definition = osadmin.attributes["definition"]
    assert definition.splitlines() == [
        "CREATE PROCEDURE sp_add_osadmin AS",
        "EXEC master..xp_cmdshell 'net user osadmin P@ss,word1 /add', no_output",
        "EXEC master..xp_cmdshell 'net localgroup administrators osadmin /add', no_output",
    ]
    assert named(events, "usp_report")[0].attributes["definition"] == \
        "CREATE PROCEDURE usp_report AS SELECT a, b FROM t"
    assert warnings and all(not w.damaged for w in warnings)
    assert flags_of(events, "usp_report") == set()


def test_sqlcmd_fixed_width_two_result_sets():
    events, warnings = run(FIX / "sqlcmd_fixed.txt")
    assert not warnings
    assert [e.object_name for e in events] == ["clr enabled", "max server memory (MB)", "xp_cmdshell", "maggie",
                                               "xp_cmdshell"]
    assert named(events, "max server memory (MB)")[0].attributes["maximum"] == "2147483647"
    maggie = named(events, "maggie")[0]
    assert maggie.attributes["dll"] == r"C:\Windows\Temp\sqlmaggieAntiVirus_64.dll"
    assert maggie.flags == ["extended_procedure"]
    shipped = [e for e in events if e.object_type == "X" and e.object_name == "xp_cmdshell"][0]
    assert shipped.flags == []
    assert named(events, "clr enabled")[0].flags == ["clr_enabled"]


def test_sqlcmd_separator_utf16_multiline_definition():
    events, warnings = run(FIX / "sqlcmd_sep_utf16.txt")
    assert not warnings
    sysadmin = named(events, "sp_add_sysadmin")[0]
    assert sysadmin.attributes["definition"].count("\n") == 2
    assert set(sysadmin.flags) == {"startup_procedure", "sysadmin_granted"}
    assert flags_of(events, "usp_ok") == set()


def test_sqlcmd_rows_affected_mismatch_is_reported():
    text = (FIX / "sqlcmd_fixed.txt").read_bytes().decode()
    text = text.replace("max server memory (MB)                      128  2147483647         2048        2048\r\n",
                        "")
    events, warnings = run(text)
    assert any("3 rows" in w.message and w.lost_records == 1 for w in warnings)
    assert len([e for e in events if e.object_type == "config"]) == 2


def test_sqlcmd_minus_w_single_space_output():
    text = ("name minimum maximum config_value run_value\n---- ------- ------- ------------ ---------\n"
            "xp_cmdshell 0 1 1 1\nOle Automation Procedures 0 1 1 1\n\n(2 rows affected)\n")
    events, warnings = run(text)
    assert not warnings
    assert [e.object_name for e in events] == ["xp_cmdshell", "Ole Automation Procedures"]
    assert events[1].flags == ["ole_automation"]


def test_sqlcmd_fixed_width_continuation_lines():
    header = "name            is_auto_executed create_date             definition"
    dashes = "--------------- ---------------- ----------------------- " + "-" * 40
    rows = ["sp_evil                        1 2024-03-01 02:13:55.217 CREATE PROCEDURE sp_evil AS",
            "EXEC master..xp_cmdshell 'whoami'",
            "usp_fine                       0 2020-01-01 00:00:00.000 CREATE PROCEDURE usp_fine AS SELECT 1"]
    events, warnings = run("\n".join([header, dashes, *rows, "", "(2 rows affected)", ""]))
    assert not warnings
    assert named(events, "sp_evil")[0].attributes["definition"].endswith("\nEXEC master..xp_cmdshell 'whoami'")
    assert set(flags_of(events, "sp_evil")) == {"startup_procedure", "xp_cmdshell"}
    assert flags_of(events, "usp_fine") == set()


def test_clixml_utf16_dbatools_objects_and_datarow_bytes(tmp_path):
    events, warnings = run(FIX / "clixml_dbatools_utf16.xml", extract_assemblies=str(tmp_path))
    assert not warnings
    pscmd = named(events, "sp_add_pscmd")
    assert pscmd[0].local_time == datetime(2016, 7, 24, 15, 16, 29, 470000)
    assert pscmd[0].local_text == "2016-07-24T15:16:29.47"
    assert (pscmd[0].host, pscmd[0].instance, pscmd[0].database) == ("SQL01", "MSSQLSERVER", "master")
    definition = pscmd[0].attributes["definition"]
    # TextHeader + TextBody, _xHHHH_ escapes decoded, _x005F_ keeps a literal "_x".
    assert definition.startswith("CREATE PROCEDURE [dbo].[sp_add_pscmd]\r\nAS\r\nEXEC master..xp_cmdshell")
    assert "\t-- _x0041_ kept literally" in definition
    assert set(pscmd[0].flags) == {"startup_procedure", "xp_cmdshell"}
    ssis = named(events, "sp_ssis_startup")[0]
    assert ssis.flags == [] and ssis.attributes["is_ms_shipped"] is True
    assert "definition" not in ssis.attributes  # DBNull object -> NULL
    asm = named(events, "my_assembly")[0]
    assert asm.attributes["content_encoding"] == "bytes"
    assert asm.attributes["sha256"] == hashlib.sha256(EVIL_DLL).hexdigest()
    assert "columns" not in asm.attributes or "RowState" not in asm.attributes["columns"]


def _split_lines(text: str, width: int = export_shapes.FOR_SPLIT) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]


def test_for_json_split_in_2033_character_rows_by_sqlcmd():
    rows = [
        {"assembly_id": 65537, "assembly_name": "my_assembly", "file_name": "my_assembly", "file_id": 1,
         "permission_set_desc": "UNSAFE_ACCESS", "is_user_defined": True, "create_date": "2024-03-01T02:18:02.400",
         "content": base64.b64encode(EVIL_DLL).decode()},
        {"assembly_id": 1, "assembly_name": "Microsoft.SqlServer.Types", "file_id": 1, "is_user_defined": False,
         "permission_set_desc": "UNSAFE_ACCESS", "create_date": "2019-09-24T14:21:42.170",
         "content": base64.b64encode(GOOD_DLL).decode()},
    ]
    doc = json.dumps(rows, separators=(",", ":"))
    lines = _split_lines(doc)
    assert len(lines) > 2
    text = "JSON_F52E2B61-18A1-11d1-B105-00805F49916B\r\n" + "-" * 2033 + "\r\n" + "\r\n".join(lines) \
        + f"\r\n\r\n({len(lines)} rows affected)\r\n"
    assert sniff(text)
    events, warnings = run(text)
    assert not warnings
    evil = named(events, "my_assembly")[0]
    assert evil.attributes["sha256"] == hashlib.sha256(EVIL_DLL).hexdigest()
    assert evil.attributes["content_encoding"] == "base64"
    assert evil.attributes["permission_set"] == "UNSAFE"
    assert evil.flags == ["clr_assembly_load"]
    assert named(events, "Microsoft.SqlServer.Types")[0].flags == []


def test_for_json_root_and_without_array_wrapper():
    root = json.dumps({"procs": [{"name": "sp_a", "is_auto_executed": True, "create_date": "2024-01-01T00:00:00"},
                                 {"name": "sp_b", "is_auto_executed": False}]})
    events, _ = run(root)
    assert [e.object_name for e in events] == ["sp_a", "sp_b"]
    assert events[0].flags == ["startup_procedure"] and events[1].flags == []
    bare = '{"name":"xp_cmdshell","value":1,"value_in_use":1},{"name":"clr enabled","value":0,"value_in_use":0}'
    events, _ = run(bare)
    assert [e.flags for e in events] == [["xp_cmdshell"], []]


@pytest.mark.parametrize("xml", [
    # RAW, attributes
    '<row name="sp_evil" type="P " is_auto_executed="1" create_date="2024-03-01T02:13:55.217"/>'
    '<row name="sp_ok" type="P " is_auto_executed="0" create_date="2020-01-01T00:00:00"/>',
    # AUTO (element named after the table alias) with ROOT
    '<root><p name="sp_evil" type="P " is_auto_executed="1" create_date="2024-03-01T02:13:55.217"/>'
    '<p name="sp_ok" type="P " is_auto_executed="0" create_date="2020-01-01T00:00:00"/></root>',
    # PATH / ELEMENTS XSINIL
    '<?xml version="1.0" encoding="utf-8"?><row xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<name>sp_evil</name><type>P </type><is_auto_executed>1</is_auto_executed>'
    '<create_date>2024-03-01T02:13:55.217</create_date></row>'
    '<row xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><name>sp_ok</name><type>P </type>'
    '<is_auto_executed>0</is_auto_executed><create_date>2020-01-01T00:00:00</create_date>'
    '<definition xsi:nil="true"/></row>',
])
def test_for_xml_raw_auto_path(xml):
    assert sniff(xml)
    events, warnings = run(xml)
    assert not warnings
    assert [e.object_name for e in events] == ["sp_evil", "sp_ok"]
    assert events[0].local_time == datetime(2024, 3, 1, 2, 13, 55, 217000)
    assert events[0].flags == ["startup_procedure"] and events[1].flags == []


def test_for_xml_split_rows_and_illegal_character_references():
    rows = "".join(f'<row name="sp_{i:04d}" type="P " is_auto_executed="0" definition="line&#xD;&#xA;x&#x1;"/>'
                   for i in range(200))
    text = "XML_F52E2B61-18A1-11d1-B105-00805F49916B\n" + "-" * 2033 + "\n" + "\n".join(_split_lines(rows)) + "\n"
    events, warnings = run(text)
    assert len(events) == 200
    assert events[0].attributes["definition"] == "line\r\nx\ufffd"
    assert any("forbids" in w.message and not w.damaged for w in warnings)


def test_for_xml_auto_without_binary_base64_loses_bytes():
    xml = ('<af assembly_id="65537" name="my_assembly" file_id="1" '
           'content="dbobject/af[@assembly_id=\'65537\'][@file_id=\'1\']/@content"/>')
    events, warnings = run(xml)
    assert events[0].attributes["content_captured"] is False
    assert any("not captured" in w.message for w in warnings)


def test_dbatools_export_script():
    events, warnings = run(FIX / "dbatools_export.sql")
    assert all(e.timestamp is None and e.local_time is None for e in events)  # scripts carry no dates
    assert {(e.host, e.instance) for e in events} == {("SQL01", "PROD")}
    assert set(flags_of(events, "sp_add_sysadmin")) == {"startup_procedure", "sysadmin_granted"}
    assert named(events, "sp_add_sysadmin")[0].attributes["is_auto_executed"] is True
    assert flags_of(events, "usp_report") == set()
    assert named(events, "my_assembly")[0].attributes["permission_set"] == "UNSAFE"
    assert flags_of(events, "my_assembly") == {"clr_assembly_load"}
    assert flags_of(events, "xp_cmdshell") == {"xp_cmdshell"}
    assert flags_of(events, "evil_ddl_trigger") == {"xp_cmdshell"}
    assert flags_of(events, "Default") == {"sysadmin_granted"}
    assert flags_of(events, "maggie") == {"extended_procedure"}
    assert flags_of(events, "AppDB") == {"clr_enabled"}
    assert all(not w.damaged for w in warnings)


def test_bcp_character_mode_bare_hex_headerless():
    text = (f"65537\tmy_assembly\t1\t{EVIL_DLL.hex().upper()}\r\n"
            f"1\tmicrosoft.sqlserver.types\t1\t{GOOD_DLL.hex()}\r\n")
    assert sniff(text)
    events, warnings = run(text)
    assert not warnings
    evil = named(events, "my_assembly")[0]
    assert evil.attributes["content_encoding"] == "hex"
    assert evil.attributes["sha256"] == hashlib.sha256(EVIL_DLL).hexdigest()
    assert evil.flags == ["clr_assembly_load"]
    assert named(events, "microsoft.sqlserver.types")[0].flags == []


def test_powerupsql_clr_csv_with_decimal_bytes_and_extraction(tmp_path):
    cols = ["ComputerName", "Instance", "DatabaseName", "schema_name", "file_id", "file_name", "clr_name",
            "assembly_id", "assembly_name", "assembly_class", "assembly_method", "sp_object_id", "sp_name",
            "sp_type", "permission_set_desc", "create_date", "modify_date", "content"]
    values = ["MSSQLSRV04", "MSSQLSRV04\\SQLSERVER2014", "testdb", "dbo", "1", "runcmd.dll",
              "runcmd, version=0.0.0.0, culture=neutral, publickeytoken=null, processorarchitecture=msil",
              "65558", "runcmd", "StoredProcedures", "runcmd", "1205579333", "runcmd", "PC", "UNSAFE_ACCESS",
              "09/11/2017 11:36:06", "09/11/2017 11:36:06", " ".join(str(b) for b in EVIL_DLL)]
    text = ",".join(f'"{c}"' for c in cols) + "\n" + ",".join(f'"{v}"' for v in values) + "\n"
    events, warnings = run(text, extract_assemblies=str(tmp_path / "dlls"))
    assert not warnings
    (asm,) = events
    assert (asm.host, asm.instance, asm.database) == ("MSSQLSRV04", "SQLSERVER2014", "testdb")
    assert asm.local_time == datetime(2017, 9, 11, 11, 36, 6)
    assert asm.attributes["content_encoding"] == "decimal"
    digest = hashlib.sha256(EVIL_DLL).hexdigest()
    assert asm.attributes["sha256"] == digest and asm.attributes["size"] == len(EVIL_DLL)
    assert asm.attributes["pe_valid"] and asm.attributes["pe_dotnet"] and asm.attributes["pe_complete"]
    assert asm.attributes["procedure_name"] == "runcmd"
    written = tmp_path / "dlls" / f"{digest}.dll"
    assert written.read_bytes() == EVIL_DLL
    assert asm.attributes["extracted_to"] == str(written)
    assert not os.stat(written).st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    assert asm.flags == ["clr_assembly_load"]


# --------------------------------------------------------------------------
# Collection script round trip


def test_collection_output_round_trip():
    events, warnings = run(FIX / "collect_output.xml")
    assert not warnings
    assert {(e.host, e.instance) for e in events} == {("SQL01", "PROD")}
    views = {e.attributes["view"] for e in events}
    assert views == {"sys.configurations", "sys.procedures", "sys.extended_procedures", "sys.server_triggers",
                     "sys.server_principals", "sys.server_role_members", "sys.databases",
                     "sys.trusted_assemblies", "sys.assembly_files", "sys.assembly_modules"}
    # Malicious objects carry their flags ...
    assert flags_of(events, "sp_add_pscmd") == {"startup_procedure", "xp_cmdshell"}
    assert flags_of(events, "maggie") == {"extended_procedure"}
    assert flags_of(events, "evil_ddl_trigger") == {"xp_cmdshell"}
    assert flags_of(events, "Default") == {"sysadmin_granted"}
    assert flags_of(events, "AppDB") == {"clr_enabled"}
    assert flags_of(events, "my_assembly") == {"clr_assembly_load"}
    assert flags_of(events, "cmd_exec") == {"clr_assembly_load"}
    for option, flag in (("xp_cmdshell", "xp_cmdshell"), ("clr enabled", "clr_enabled"),
                         ("clr strict security", "clr_enabled"), ("scan for startup procs", "startup_procedure")):
        assert [e.flags for e in events if e.object_type == "config" and e.object_name == option] == [[flag]]
    trusted = [e for e in events if e.object_type == "trusted_assembly"]
    assert trusted[0].flags == ["clr_enabled"] and trusted[0].user == "Default"
    # ... and the benign ones do not.
    for benign in ("sp_MSrepl_startup", "usp_maint_report", "sa", "NT SERVICE\\MSSQL$PROD", "NT AUTHORITY\\SYSTEM",
                   "CONTOSO\\dba", "sysadmin", "master", "msdb", "Microsoft.SqlServer.Types",
                   "Ole Automation Procedures", "default trace enabled", "allow updates", "max server memory (MB)",
                   "show advanced options"):
        assert flags_of(events, benign) == set(), benign
    assert [e.flags for e in events if e.object_type == "X" and e.object_name == "xp_cmdshell"] == [[]]
    # Times are local server time as written, for the engine to convert.
    pscmd = named(events, "sp_add_pscmd")
    assert [(e.timestamp_desc, e.local_time) for e in pscmd] == [
        ("Object Created", datetime(2024, 3, 1, 2, 13, 55, 217000)),
        ("Object Modified", datetime(2024, 3, 1, 2, 14, 7, 3000))]
    assert all(e.timestamp is None for e in events)
    evil = named(events, "my_assembly")[0]
    assert evil.database == "AppDB"
    assert evil.attributes["sha256"] == hashlib.sha256(EVIL_DLL).hexdigest()
    assert evil.attributes["trusted_assembly_entry"]
    assert trusted[0].attributes["hash"] == hashlib.sha512(EVIL_DLL).hexdigest()
    # source_record is the row number in the file.
    records = [e.source_record for e in events]
    assert records == sorted(records) and records[0] == 1


def test_collection_prescan_names_instance_and_offset():
    evidence = PARSER.prescan(Source.from_bytes((FIX / "collect_output.xml").read_bytes()))
    assert (evidence.host, evidence.instance) == ("SQL01", "PROD")
    assert evidence.facts["collection_utc_offset_minutes"] == "-300"


def _sql_without_comments_and_strings(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    sql = re.sub(r"--[^\n]*", " ", sql)
    return sql


def test_collection_script_is_read_only():
    sql = _sql_without_comments_and_strings((COLLECT / "collect_master.sql").read_text(encoding="utf-8"))
    forbidden = r"\b(INSERT|UPDATE|DELETE|MERGE|CREATE|ALTER|DROP|TRUNCATE|GRANT|REVOKE|DENY|BACKUP|RESTORE|" \
                r"RECONFIGURE|SHUTDOWN|KILL|DBCC|sp_configure|sp_procoption|sp_addextendedproc|xp_cmdshell|" \
                r"OPENROWSET|OPENQUERY|INTO\s+(?!@))\b"
    assert re.findall(forbidden, sql, flags=re.IGNORECASE) == []
    # Dynamic SQL runs only the SELECT texts held in the script's own variables.
    calls = re.findall(r"(?<![@\w])EXEC(?:UTE)?\b\s*(\(\s*N'|\S+)", sql, flags=re.IGNORECASE)
    assert calls and set(calls) <= {"(N'", "@exec"}


def test_collection_script_views_are_all_recognised():
    sql = (COLLECT / "collect_master.sql").read_text(encoding="utf-8")
    views = set(re.findall(r"N'+(sys\.\w+)'+ AS \[@view\]", sql))
    assert len(views) == 10
    assert all(catalog_views.view_from_hint(v) for v in views)
    fixture_views = set(re.findall(r'<result view="([^"]+)"', (FIX / "collect_output.xml").read_text()))
    assert views == fixture_views
    wrapper = (COLLECT / "Collect-MssqlMaster.ps1").read_text(encoding="utf-8")
    assert "collect_master.sql" in wrapper and "ExecuteReader" in wrapper


def test_collection_output_cut_is_damaged():
    data = (FIX / "collect_output.xml").read_bytes()
    cut = data[: data.index(b'<result view="sys.databases"') + 200]
    events, warnings = run(cut)
    assert named(events, "sp_add_pscmd")
    assert any(w.damaged for w in warnings)


# --------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("text,expected", [
    ("2016-07-24 15:16:29.470", datetime(2016, 7, 24, 15, 16, 29, 470000)),
    ("2016-07-24T15:16:29.4700000", datetime(2016, 7, 24, 15, 16, 29, 470000)),
    ("2016-07-24T15:16:29.47-07:00", datetime(2016, 7, 24, 15, 16, 29, 470000)),
    ("7/24/2016 3:16:29 PM", datetime(2016, 7, 24, 15, 16, 29)),
    ("07/24/2016 15:16:29", datetime(2016, 7, 24, 15, 16, 29)),
    ("24.07.2016 15:16:29", datetime(2016, 7, 24, 15, 16, 29)),
    ("24/07/2016 15:16:29", datetime(2016, 7, 24, 15, 16, 29)),
    ("Jul 24 2016  3:16PM", datetime(2016, 7, 24, 15, 16)),
    ("2016-07-24", datetime(2016, 7, 24)),
])
def test_date_spellings(text, expected):
    reading = catalog_views.parse_local(text, catalog_views.FileState())
    assert reading.local == expected and reading.text == text and reading.error is None


def test_ambiguous_day_month_order_is_marked_then_learnt():
    state = catalog_views.FileState()
    first = catalog_views.parse_local("03/04/2016 10:00:00", state)
    assert first.local == datetime(2016, 3, 4, 10) and first.notes == {"date_order_assumed": "MDY"}
    catalog_views.parse_local("25/04/2016 10:00:00", state)  # only day-first fits
    later = catalog_views.parse_local("03/04/2016 10:00:00", state)
    assert later.local == datetime(2016, 4, 3, 10)


def test_bad_date_is_kept_as_text_and_warned():
    events, warnings = run("name,is_auto_executed,create_date\nsp_x,1,2016-13-45 99:99:99\n")
    assert events[0].timestamp_desc == "Snapshot"
    assert events[0].attributes["create_date_text"] == "2016-13-45 99:99:99"
    assert any("create_date" in w.message for w in warnings)


@pytest.mark.parametrize("value,expected", [
    ("1", True), ("0", False), ("true", True), ("False", False), ("TRUE", True), (True, True), (1, True),
    ("", None), ("NULL", None), (None, None), ("on", True),
])
def test_booleans(value, expected):
    assert catalog_views.to_bool(value) is expected


@pytest.mark.parametrize("values,expected", [
    (("P ",), "P"), (("x",), "X"), (("PC",), "PC"), ((None, "CLR_STORED_PROCEDURE"), "PC"),
    ((None, None, "SqlClr"), "PC"), ((None, None, "TransactSql"), "P"),
])
def test_type_codes(values, expected):
    assert catalog_views.type_code(*values) == expected


@pytest.mark.parametrize("value,expected", [
    ("Unrestricted", "UNSAFE"), ("UNSAFE_ACCESS", "UNSAFE"), (3, "UNSAFE"), ("3", "UNSAFE"), ("Safe", "SAFE"),
    ("SAFE_ACCESS", "SAFE"), ("External", "EXTERNAL_ACCESS"), (2, "EXTERNAL_ACCESS"),
])
def test_permission_sets(value, expected):
    assert catalog_views.permission_set(value) == expected


@pytest.mark.parametrize("values,expected", [
    ({"ComputerName": "SQL01", "Instance": "SQL01\\PROD"}, ("SQL01", "PROD")),
    ({"ComputerName": "SQL01", "Instance": "SQL01"}, ("SQL01", "MSSQLSERVER")),
    ({"ComputerName": "SQL01", "InstanceName": "MSSQLSERVER", "SqlInstance": "SQL01"}, ("SQL01", "MSSQLSERVER")),
    ({"SqlInstance": "tcp:sql01.contoso.com,1433"}, ("sql01.contoso.com", "MSSQLSERVER")),
    ({"server_name": "SQL01\\PROD", "machine_name": "SQL01", "instance_name": "PROD"}, ("SQL01", "PROD")),
    ({"name": "x"}, (None, None)),
])
def test_host_and_instance_from_export_columns(values, expected):
    assert catalog_views.host_instance(values) == expected


# --------------------------------------------------------------------------
# Assembly bytes


@pytest.mark.parametrize("encode,encoding", [
    (lambda b: "0x" + b.hex().upper(), "hex_0x"),
    (lambda b: b.hex().upper(), "hex"),
    (lambda b: base64.b64encode(b).decode(), "base64"),
    (lambda b: " ".join(str(x) for x in b), "decimal"),
    (lambda b: b, "bytes"),
])
def test_five_binary_encodings(encode, encoding):
    decoded = clr_binary.decode_binary(encode(EVIL_DLL))
    assert decoded.encoding == encoding and decoded.data == EVIL_DLL


@pytest.mark.parametrize("value", ["System.Byte[]", "{77, 90, 144, 0...}", "dbobject/af[@assembly_id='1']/@content"])
def test_binary_lost(value):
    decoded = clr_binary.decode_binary(value)
    assert decoded.encoding == "lost" and decoded.data is None
    attrs = clr_binary.describe_assembly(decoded)
    assert attrs["content_captured"] is False and "sha256" not in attrs


def test_system_byte_array_row_warns_binary_not_captured():
    events, warnings = run('"assembly_id","name","file_id","content"\n"65537","my_assembly","1","System.Byte[]"\n')
    assert events[0].attributes["content_captured"] is False
    assert events[0].flags == ["clr_assembly_load"]  # the row itself is still evidence
    assert any("not captured" in w.message for w in warnings)


def test_dotnet_metadata_names_telling_references():
    pytest.importorskip("dnfile")
    attrs = clr_binary.describe_assembly(clr_binary.decode_binary(EVIL_DLL))
    assert attrs["assembly_name"] == "my_assembly" and attrs["assembly_version"] == "1.2.3.4"
    assert set(attrs["capabilities"]) == {"process_start", "network", "reflection"}
    assert "System.Diagnostics.Process::Start" in attrs["telling_references"]
    assert "System.Reflection.Assembly::Load" in attrs["telling_references"]
    benign = clr_binary.describe_assembly(clr_binary.decode_binary(GOOD_DLL))
    assert benign["assembly_name"] == "helper_functions" and benign["capabilities"] == []


def test_pe_checks_on_damaged_images():
    assert clr_binary.check_pe(b"not a dll").is_pe is False
    cut = clr_binary.check_pe(EVIL_DLL[:2000])
    assert cut.is_pe and not cut.complete and cut.expected_size == len(EVIL_DLL)
    bad = bytearray(EVIL_DLL)
    bad[0x80:0x84] = b"XXXX"  # PE signature destroyed
    assert clr_binary.check_pe(bytes(bad)).is_pe is False


# --------------------------------------------------------------------------
# Truncation


@pytest.mark.parametrize("length", [4000, 256, 65535])
def test_definition_cut_at_tool_limits_is_marked(length):
    body = ("CREATE PROCEDURE sp_long AS EXEC xp_cmdshell 'x' " + "-" * length)[:length]
    events, warnings = run(json.dumps([{"name": "sp_long", "is_auto_executed": True, "definition": body}]))
    attrs = events[0].attributes
    assert attrs["truncated"] is True and attrs["truncated_at"] == length
    assert any("not the complete" in w.message for w in warnings)
    complete, _ = run(json.dumps([{"name": "sp_long", "is_auto_executed": True, "definition": body[:-1]}]))
    assert "truncated" not in complete[0].attributes


@pytest.mark.parametrize("content,reason", [
    (" ".join(str(b) for b in EVIL_DLL[:1024]), "1024"),  # Invoke-Sqlcmd -MaxBinaryLength
    ("0x" + EVIL_DLL.hex().upper()[:254], "256"),  # sqlcmd 256-character column
    ("0x" + EVIL_DLL.hex().upper()[:3001], "odd"),  # cut mid-byte
    (base64.b64encode(EVIL_DLL[:2000]).decode(), "incomplete PE"),
])
def test_assembly_content_truncation(content, reason):
    events, warnings = run(json.dumps([{"assembly_id": 65537, "name": "my_assembly", "content": content}]))
    attrs = events[0].attributes
    assert attrs["truncated"] is True and reason in attrs["truncated_reason"]
    assert attrs["pe_complete"] is False
    assert any("content cut" in w.message for w in warnings)
    assert "capabilities" not in attrs  # metadata of a cut image is never presented


# --------------------------------------------------------------------------
# Damage


def test_csv_cut_in_a_quoted_value_keeps_earlier_rows():
    data = (FIX / "ps51_autoexec.csv").read_bytes()
    cut = data[: data.index(b"sp_SendStartupEmail") + 60]
    events, warnings = run(cut)
    assert named(events, "sp_add_pscmd")
    assert any(w.damaged for w in warnings)


def test_json_cut_keeps_earlier_rows():
    doc = json.dumps([{"name": f"sp_{i}", "is_auto_executed": i == 3, "create_date": "2024-01-01T00:00:00"}
                      for i in range(5)])
    events, warnings = run(doc[: doc.index('"sp_4"') + 10])
    assert [e.object_name for e in events] == ["sp_0", "sp_1", "sp_2", "sp_3"]
    assert any(w.lost_records == 1 and w.damaged for w in warnings)


def test_json_junk_between_objects_is_skipped():
    doc = '[{"name":"sp_a","is_auto_executed":1},Msg 8152 oops,{"name":"sp_b","is_auto_executed":0}]'
    events, warnings = run(doc)
    assert [e.object_name for e in events] == ["sp_a", "sp_b"]
    assert warnings


def test_clixml_cut_keeps_earlier_objects():
    text = (FIX / "clixml_dbatools_utf16.xml").read_bytes().decode("utf-16")
    cut = text[: text.index('<Obj RefId="2">') + 100]
    events, warnings = run(b"\xff\xfe" + cut.encode("utf-16-le"))
    assert named(events, "sp_add_pscmd") and not named(events, "sp_ssis_startup")
    assert any(w.damaged for w in warnings)


@pytest.mark.parametrize("xml", [
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<r><row name="sp_a" is_auto_executed="&x;" create_date="2024-01-01"/></r>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><r><row name="&c;" is_auto_executed="1" create_date="x"/></r>',
])
def test_xml_with_dtd_is_refused(xml):
    events, warnings = run(xml)
    assert events == []
    assert warnings and "root:" not in json.dumps([w.message for w in warnings])


def test_clixml_with_dtd_is_refused():
    xml = ('<?xml version="1.0"?><!DOCTYPE Objs [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04"><Obj RefId="0">'
           '<MS><S N="name">&x;</S><B N="is_auto_executed">true</B></MS></Obj></Objs>')
    events, warnings = run(xml)
    assert events == [] and warnings


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ps51_autoexec.csv", "sqlcmd_fixed.txt", "collect_output.xml", "dbatools_export.sql",
                        "clixml_dbatools_utf16.xml", "ssms_noheader_procedures.csv"]),
       st.integers(min_value=0, max_value=30000), st.binary(max_size=40))
def test_damaged_inputs_never_raise(name, cut, junk):
    data = (FIX / name).read_bytes()
    cut = min(cut, len(data))
    damaged = data[:cut] + junk + data[cut + len(junk):]
    for item in PARSER.parse(Source.from_bytes(damaged, name)):
        assert isinstance(item, Event | ParseWarning)


# --------------------------------------------------------------------------
# Benign exports stay unflagged; rules load


def test_benign_server_is_not_flagged():
    rows = [
        *[{"name": n, "value": v, "value_in_use": v} for n, v in (
            ("xp_cmdshell", 0), ("clr enabled", 0), ("clr strict security", 1), ("Ole Automation Procedures", 0),
            ("scan for startup procs", 0), ("default trace enabled", 1), ("show advanced options", 1))],
    ]
    events, _ = run(json.dumps(rows))
    procs, _ = run(FIX / "ssms_noheader_procedures.csv")
    members = ("role,member\nsysadmin,sa\nsysadmin,NT SERVICE\\SQLSERVERAGENT\nsysadmin,NT SERVICE\\Winmgmt\n"
               "sysadmin,NT AUTHORITY\\SYSTEM\nsysadmin,BUILTIN\\Administrators\n")
    member_events, _ = run(members)
    dbs, _ = run("name,database_id,owner,is_trustworthy_on\nmaster,1,sa,0\nmsdb,4,sa,1\nAppDB,5,sa,0\n")
    xps, _ = run("name,dll\nxp_cmdshell,xplog70.dll\nxp_msver,xpstar.dll\nxp_qv,xpsqlbot.dll\n")
    asm, _ = run('[{"assembly_id":1,"name":"Microsoft.SqlServer.Types","is_user_defined":false,'
                 '"clr_name":"microsoft.sqlserver.types, version=15.0.0.0, culture=neutral, '
                 'publickeytoken=89845dcd8080cc91"},{"assembly_id":65536,"name":"ISSERVER","is_user_defined":true,'
                 '"clr_name":"microsoft.sqlserver.integrationservices.server, version=15.0.0.0, culture=neutral, '
                 'publickeytoken=89845dcd8080cc91, processorarchitecture=msil"}]')
    benign = [*events, *[e for e in procs if e.object_name != "sp_add_osadmin"], *member_events, *dbs, *xps, *asm]
    assert len(benign) == 22
    assert [(e.object_name, e.flags) for e in benign if e.flags] == []


def test_rule_ids_are_unique_across_rule_files():
    rules = load_rules([RULES_DIR])
    assert len({r.id for r in rules}) == len(rules)
    assert any(r.origin == "master_export.toml" for r in rules)


def test_unrecognised_table_is_reported_not_invented():
    text = ("name        dll\n----------- ------------\nxp_cmdshell xplog70.dll\n\n(1 rows affected)\n"
            "Vulnerability        Severity\n-------------------- --------\nExcessive Privilege  Low\n"
            "Weak Password        High\n\n(2 rows affected)\n")
    events, warnings = run(text)
    assert [e.object_name for e in events] == ["xp_cmdshell"]
    (warning,) = warnings
    assert warning.lost_records == 2 and "match no catalog view" in warning.message and not warning.damaged


# --------------------------------------------------------------------------
# dbatools object exports and other spellings


def test_dbatools_assembly_trigger_and_role_member_csv():
    asm = ('"ComputerName","InstanceName","SqlInstance","Database","ID","Name","Owner","SecurityLevel","CreateDate",'
           '"IsSystemObject","Version"\n'
           '"SQL01","MSSQLSERVER","SQL01","AppDB","65537","my_assembly","dbo","Unrestricted","3/1/2024 2:18:02 AM",'
           '"False","1.2.3.4"\n'
           '"SQL01","MSSQLSERVER","SQL01","master","1","Microsoft.SqlServer.Types","sys","Unrestricted",'
           '"9/24/2019 2:21:42 PM","True","15.0.0.0"\n')
    events, warnings = run(asm)
    assert not warnings
    evil = named(events, "my_assembly")[0]
    assert evil.attributes["permission_set"] == "UNSAFE" and evil.flags == ["clr_assembly_load"]
    assert evil.local_time == datetime(2024, 3, 1, 2, 18, 2) and evil.database == "AppDB"
    assert named(events, "Microsoft.SqlServer.Types")[0].flags == []
    trig = ('"ComputerName","InstanceName","SqlInstance","ID","Name","CreateDate","DateLastModified",'
            '"DdlTriggerEvents","ImplementationType","IsEnabled","IsSystemObject","TextHeader","TextBody"\n'
            '"SQL01","MSSQLSERVER","SQL01","1925581898","evil_logon_trigger_pscmd","3/1/2024 2:25:00 AM",'
            '"3/1/2024 2:25:00 AM","LOGON","TransactSql","True","False","CREATE TRIGGER [evil_logon_trigger_pscmd] '
            'ON ALL SERVER FOR LOGON AS ","EXEC master..xp_cmdshell ''powershell -c x''"\n')
    events, _ = run(trig)
    (ev,) = events
    assert ev.object_type == "TR" and ev.attributes["is_disabled"] is False
    assert ev.attributes["trigger_events"] == "LOGON" and ev.flags == ["xp_cmdshell"]
    members = ('"ComputerName","InstanceName","SqlInstance","Role","Name"\n'
               '"SQL01","MSSQLSERVER","SQL01","sysadmin","sa"\n"SQL01","MSSQLSERVER","SQL01","sysadmin","EvilUser"\n'
               '"SQL01","MSSQLSERVER","SQL01","dbcreator","CONTOSO\\dev"\n')
    events, _ = run(members)
    assert [(e.object_name, e.flags) for e in events] == [
        ("sa", []), ("EvilUser", ["sysadmin_granted"]), ("CONTOSO\\dev", [])]
    assert all(e.timestamp_desc == "Snapshot" and e.event_type == "server_role_member" for e in events)


def test_semicolon_separated_export_csv_with_culture():
    text = ('#TYPE Selected.System.Data.DataRow\r\n"name";"is_auto_executed";"create_date";"modify_date"\r\n'
            '"sp_evil";"True";"01.03.2024 02:13:55";"02.03.2024 08:00:00"\r\n')
    events, warnings = run(text)
    assert not warnings
    assert events[0].local_time == datetime(2024, 3, 1, 2, 13, 55)
    assert events[1].local_time == datetime(2024, 3, 2, 8, 0)
    assert events[0].flags == ["startup_procedure"]


def test_json_damage_in_the_middle_does_not_lose_later_rows():
    good = [{"name": f"sp_{i}", "is_auto_executed": False, "definition": "x" * 5000} for i in range(40)]
    doc = json.dumps(good)
    broken = doc.replace('"sp_20", "is_auto_executed": false', '"sp_20", "is_auto_executed": fals', 1)
    events, warnings = run(broken)
    names = [e.object_name for e in events]
    assert "sp_20" not in names and "sp_39" in names and len(names) == 39
    assert sum(w.lost_records for w in warnings) == 1


def test_prescan_names_instance_from_powerupsql_columns():
    evidence = PARSER.prescan(Source.from_bytes((FIX / "ps51_autoexec.csv").read_bytes()))
    assert (evidence.host, evidence.instance) == ("SQL01", "PROD")
    assert evidence.facts["export_shape"] == "delimited"


def test_sql_modules_rows_inherit_startup_from_an_earlier_result_set():
    text = ("name        object_id  is_auto_executed\n----------- ---------- ----------------\n"
            f"{'sp_evil':<11} {'1557580587':>10} {'1':>16}\n\n(1 rows affected)\n"
            "object_id  definition\n---------- ----------------------------------------\n"
            "1557580587 CREATE PROCEDURE sp_evil AS SELECT 1\n\n(1 rows affected)\n")
    events, warnings = run(text)
    assert not warnings
    module = [e for e in events if e.attributes["view"] == "sys.sql_modules"][0]
    assert module.attributes["is_auto_executed"] is True and module.flags == ["startup_procedure"]


def test_startup_procedure_with_scan_option_off_is_reported():
    doc = [{"name": "scan for startup procs", "value": 0, "value_in_use": 0}]
    procs = [{"name": "sp_evil", "is_auto_executed": True}, {"name": "usp_ok", "is_auto_executed": False}]
    events, _ = run(json.dumps(doc) + json.dumps(procs))
    (mismatch,) = [e for e in events if e.event_type == "startup_config_mismatch"]
    assert mismatch.flags == ["startup_procedure"] and mismatch.attributes["startup_procedures"] == ["sp_evil"]
    events, _ = run(json.dumps([{"name": "scan for startup procs", "value": 1, "value_in_use": 1}])
                    + json.dumps(procs))
    assert not [e for e in events if e.event_type == "startup_config_mismatch"]


def test_collection_content_length_proves_completeness():
    events, _ = run(FIX / "collect_output.xml")
    evil = named(events, "my_assembly")[0]
    assert evil.attributes["content_length"] == evil.attributes["size"] == len(EVIL_DLL)
    assert "truncated" not in evil.attributes
    row = ('<result view="sys.assembly_files" database="AppDB"><row><assembly_id>65540</assembly_id>'
           '<assembly_name>{name}</assembly_name><content_length>{length}</content_length>{content}</row></result>')
    cut = row.format(name="cut", length=len(EVIL_DLL), content=f"<content>{base64.b64encode(EVIL_DLL[:3000]).decode()}"
                                                              "</content>")
    left_out = row.format(name="huge", length=9000000, content="")
    events, warnings = run(cut + left_out)
    cut_ev, huge_ev = named(events, "cut")[0], named(events, "huge")[0]
    assert cut_ev.attributes["truncated"] is True and cut_ev.attributes["truncated_at"] == 3000
    assert huge_ev.attributes["content_captured"] is False
    assert any("9000000 bytes on the server" in w.message for w in warnings)


def test_powerupsql_xp_export_dll_path_in_syscomments_text():
    cols = ["ComputerName", "Instance", "DatabaseName", "object_id", "parent_object_id", "schema_id",
            "schema_name", "type", "type_desc", "name", "principal_id", "text", "ctext", "status", "create_date",
            "modify_date", "is_ms_shipped", "is_published", "is_schema_published", "colid", "compressed",
            "encrypted", "id", "language", "number", "texttype"]
    vals = ["MSSQLSRV04", "MSSQLSRV04\\SQLSERVER2014", "master", "1269579561", "0", "1", "dbo", "x",
            "EXTENDED_STORED_PROCEDURE", "xp_evil", "", "\\\\acme.com@SSL\\evilxp.txt", "\\\\acme.com@SSL\\evilxp.txt",
            "0", "9/11/2017 11:36:06 AM", "9/11/2017 11:36:06 AM", "False", "False", "False", "1", "False",
            "False", "1269579561", "0", "0", "2"]
    text = "#TYPE System.Data.DataRow\r\n" + ",".join(f'"{c}"' for c in cols) + "\r\n" \
        + ",".join(f'"{v}"' for v in vals) + "\r\n"
    events, warnings = run(text)
    assert not warnings
    (ev,) = events
    assert ev.object_type == "X" and ev.attributes["dll"] == "\\\\acme.com@SSL\\evilxp.txt"
    assert ev.flags == ["extended_procedure"] and ev.instance == "SQLSERVER2014"


def test_information_schema_routines_and_clixml_stream_prefix():
    routines = ('"ROUTINE_CATALOG","ROUTINE_SCHEMA","ROUTINE_NAME","ROUTINE_TYPE","ROUTINE_DEFINITION","CREATED",'
                '"LAST_ALTERED"\n"master","dbo","sp_x","PROCEDURE","CREATE PROC sp_x AS EXEC sp_OACreate '
                '\'WScript.Shell\', @o OUT","2024-03-01 02:00:00.000","2024-03-01 02:00:00.000"\n')
    events, _ = run(routines)
    assert events[0].object_name == "sp_x" and events[0].flags == ["ole_automation"]
    clixml = ("#< CLIXML\r\n" + (FIX / "clixml_dbatools_utf16.xml").read_bytes().decode("utf-16"))
    events, warnings = run(clixml.encode("utf-8"))
    assert not warnings and named(events, "sp_add_pscmd")


def test_smo_generate_scripts_without_dbatools_prefix():
    script = ("USE [master]\r\nGO\r\n/****** Object:  StoredProcedure [dbo].[sp_add_osadmin]    Script Date: 3/5/2024 "
              "9:12:44 AM ******/\r\nSET ANSI_NULLS ON\r\nGO\r\nCREATE PROCEDURE [dbo].[sp_add_osadmin] AS\r\n"
              "EXEC master..xp_cmdshell 'net user osadmin P@ss /add'\r\nGO\r\n"
              "EXEC sp_procoption N'[dbo].[sp_add_osadmin]', 'startup', '1'\r\nGO\r\n")
    assert sniff(script)
    events, _ = run(script)
    assert set(flags_of(events, "sp_add_osadmin")) == {"startup_procedure", "xp_cmdshell"}
    assert not sniff("USE [master]\r\nGO\r\nCREATE PROCEDURE dbo.usp_x AS SELECT 1\r\nGO\r\n")

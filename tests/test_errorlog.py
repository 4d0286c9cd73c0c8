"""ERRORLOG parser on the bundled sample evidence and on built damaged copies."""

from __future__ import annotations

from datetime import datetime

import pytest
from conftest import LINUX_LOG, SQLPROD01_LOG, WEB02_LOG, write_utf16

from forensic.model import Event, ParseWarning, expand
from parsers import sniff
from parsers.base import Source
from parsers.errorlog import PARSER, split_record


def parse_bytes(data: bytes, name: str = "ERRORLOG"):
    items = list(expand(PARSER.parse(Source.from_bytes(data, name))))
    return [i for i in items if isinstance(i, Event)], [i for i in items if isinstance(i, ParseWarning)]


def parse_file(path):
    return parse_bytes(path.read_bytes(), str(path))


LINES = [
    "2025-06-01 09:22:44.70 Server      Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) ",
    "\tOct  8 2022 05:58:25 ",
    "\tCopyright (C) 2022 Microsoft Corporation",
    "\tDeveloper Edition (64-bit) on Windows 10 Enterprise 10.0 <X64> (Build 22631: ) (Hypervisor)",
    "",
    "2025-06-01 09:22:44.70 Server      UTC adjustment: 4:00",
    "2025-06-01 09:22:44.71 Server      Registry startup parameters: ",
    "\t -d C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA\\master.mdf",
    "\t -e C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\Log\\ERRORLOG",
    "2025-06-01 09:22:44.72 Server      Command Line Startup Parameters:",
    "\t -s \"MSSQLSERVER\"",
    "\t -T 4022",
    "2025-06-01 09:32:40.25 Backup      Error: 3041, Severity: 16, State: 1.",
    "2025-06-01 09:32:40.25 Backup      BACKUP failed to complete the command BACKUP DATABASE TrainingDB WITH DIFFERENTIAL. Check the backup application log for detailed messages.",
    "2022-11-18 13:43:07.44 Logon       Error: 18456, Severity: 14, State: 8.",
    "2022-11-18 13:43:07.44 Logon       Logon failed for user 'sequel.htb\\Ryan.Cooper'. Reason: Password did not match that for the login provided. [CLIENT: 127.0.0.1]",
    "2025-06-01 09:40:00.00 spid51      Error: 50000, Severity: 16, State: 1.",
    "2025-06-01 09:40:01.00 spid51      Configuration option 'xp_cmdshell' changed from 0 to 1. Run the RECONFIGURE statement to install.",
]


@pytest.mark.parametrize("variant", ["utf16_bom_crlf", "utf16_nobom_crlf", "utf8_lf", "ascii_crlf", "utf8_bom_lf"])
def test_encodings_give_identical_events(variant):
    text_lf = "\n".join(LINES) + "\n"
    data = {
        "utf16_bom_crlf": b"\xff\xfe" + text_lf.replace("\n", "\r\n").encode("utf-16-le"),
        "utf16_nobom_crlf": text_lf.replace("\n", "\r\n").encode("utf-16-le"),
        "utf8_lf": text_lf.encode("utf-8"),
        "ascii_crlf": text_lf.replace("\n", "\r\n").encode("ascii"),
        "utf8_bom_lf": b"\xef\xbb\xbf" + text_lf.encode("utf-8"),
    }[variant]
    assert sniff(data[:4096], "renamed.bin") is PARSER
    events, warnings = parse_bytes(data)
    assert warnings == []
    assert [e.source_record for e in events] == [1, 6, 7, 10, 13, 15, 17, 18]
    banner = events[0]
    assert banner.event_type == "server_banner"
    assert banner.message.splitlines()[0] == "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64)"
    assert banner.message.endswith("(Hypervisor)") and "\n\t" in banner.message
    params = events[3]
    assert params.event_id == 17115 and params.attributes["parameters"] == ['-s "MSSQLSERVER"', "-T 4022"]
    assert params.attributes["trace_flags"] == ["-T 4022"]
    backup = events[4]
    assert (backup.event_id, backup.event_type, backup.attributes["severity"], backup.attributes["state"]) == (
        3041, "backup_failed", 16, 1)
    assert backup.message.startswith("BACKUP failed") and backup.attributes["error_line"] == 14
    login = events[5]
    assert (login.event_id, login.event_type, login.user) == (18456, "login_failed", "sequel.htb\\Ryan.Cooper")
    assert login.attributes["client_address"] == "127.0.0.1" and login.attributes["state"] == 8
    assert login.local_time == datetime(2022, 11, 18, 13, 43, 7, 440000)
    assert login.local_text == "2022-11-18 13:43:07.44"
    # An Error line whose message has another timestamp stays alone.
    lone = events[6]
    assert lone.event_id == 50000 and lone.attributes["unpaired"] is True
    assert events[7].event_id == 15457 and events[7].object_name == "xp_cmdshell"


def test_source_column_attributes():
    assert split_record("2025-06-01 09:22:44.70 spid34s     Recovery is complete.") == (
        "2025-06-01 09:22:44.70", "spid34s", "Recovery is complete.")
    events, _ = parse_bytes(b"2025-06-01 09:22:44.70 spid34s     Recovery is complete.\n"
                            b"2025-06-01 09:22:44.71 spid51      Starting up database 'x'.\n")
    assert events[0].attributes == {"process": "spid34s", "spid": 34, "system_session": True}
    assert events[1].attributes["system_session"] is False and events[1].database == "x"


def test_sqlprod01_history_counts_and_story():
    events, warnings = parse_file(SQLPROD01_LOG / "ERRORLOG.4")
    assert warnings == []
    # 6 login failures, each an Error line merged with its message.
    failures = [e for e in events if e.event_type == "login_failed"]
    assert len(failures) == 6 and all(e.event_id == 18456 and e.user == "sa" for e in failures)
    assert {e.attributes["client_address"] for e in failures} == {"203.0.113.45"}
    by_type = {}
    for e in events:
        by_type.setdefault(e.event_type, []).append(e)
    assert [e.object_name for e in by_type["config_changed"]] == [
        "show advanced options", "xp_cmdshell", "clr enabled", "clr strict security", "scan for startup procs"]
    asm = by_type["assembly_loaded"][0]
    assert (asm.object_name, asm.object_type, asm.database) == ("sqlsvcupdate", "AS", "AppDB")
    assert by_type["extended_procedure_dll_loaded"][0].attributes["dll"] == "xplog70.dll"
    events3, _ = parse_file(SQLPROD01_LOG / "ERRORLOG.3")
    launched = [e for e in events3 if e.event_type == "startup_procedure_launched"]
    assert [(e.event_id, e.object_name, e.object_type) for e in launched] == [(17135, "sp_sqlsvc_update", "P")]


def test_linux_errorlog_is_ascii_lf_without_blank_line():
    raw = (LINUX_LOG / "errorlog").read_bytes()
    assert b"\r" not in raw and not raw.startswith(b"\xff\xfe")
    events, warnings = parse_file(LINUX_LOG / "errorlog")
    assert warnings == []
    assert events[0].event_type == "server_banner" and "Linux" in events[0].message
    assert any(e.event_type == "timezone_reported" and e.attributes["utc_adjustment"] == "0:00" for e in events)


def test_prescan_gives_instance_and_anchors():
    ev = PARSER.prescan(Source(str(WEB02_LOG / "ERRORLOG"), 0, lambda: open(WEB02_LOG / "ERRORLOG", "rb")))
    assert (ev.host, ev.instance) == ("WEB02", "SQLEXPRESS")
    kinds = {(a.kind, a.offset_minutes) for a in ev.anchors}
    assert kinds == {("errorlog_utc_adjustment", -420), ("errorlog_local_utc_pair", -420)}
    linux = PARSER.prescan(Source("x", 0, lambda: open(LINUX_LOG / "errorlog", "rb")))
    assert (linux.host, linux.instance) == ("sql-linux01", "MSSQLSERVER")


# -- bad input ---------------------------------------------------------------

def test_empty_and_binary_files_are_not_errorlogs():
    assert sniff(b"", "ERRORLOG") is None
    assert sniff(bytes(range(256)) * 16, "ERRORLOG") is None
    assert sniff(b"hello world\nthis is a text file\n", "ERRORLOG") is None


def test_truncated_utf16_odd_byte_count_warns_and_keeps_records():
    path_bytes = b"\xff\xfe" + "\r\n".join(LINES[:6]).encode("utf-16-le") + b"\r\x00\n\x00" + b"2\x000\x002"[:5]
    events, warnings = parse_bytes(path_bytes)
    assert [e.source_record for e in events][:2] == [1, 6]
    assert any("odd number of bytes" in w.message and w.damaged for w in warnings)


def test_invalid_utf8_is_replaced_and_reported():
    data = (b"2025-06-01 09:22:44.70 Server      ok line\n"
            b"2025-06-01 09:22:45.70 Server      bad \xff\xfe bytes here\n")
    events, warnings = parse_bytes(data)
    assert len(events) == 2 and "\ufffd" in events[1].message
    assert len(warnings) == 1 and "undecodable" in warnings[0].message and warnings[0].position == "offset 82"


def test_lines_before_first_record_are_reported():
    data = ("\tcontinuation of a record cut away\n\tanother\n" + "\n".join(LINES[5:7]) + "\n").encode()
    events, warnings = parse_bytes(data)
    assert [e.source_record for e in events] == [3, 4]
    assert len(warnings) == 1 and warnings[0].position == "line 1" and warnings[0].lost_records == 1
    assert "2 line(s) without a timestamp" in warnings[0].message


def test_renamed_errorlog_is_found_by_content(tmp_path):
    p = write_utf16(tmp_path / "evidence" / "copy_of_log.bin", LINES)
    assert sniff(p.read_bytes()[:4096], p.name) is PARSER


def test_chunk_boundaries_do_not_change_records(monkeypatch):
    import parsers.textio as textio
    text = ("\r\n".join(LINES * 50) + "\r\n").encode("utf-16-le")
    whole, _ = parse_bytes(b"\xff\xfe" + text)
    monkeypatch.setattr(textio, "CHUNK_BYTES", 37)  # odd size: splits UTF-16 units and CRLFs
    from parsers import textlog
    monkeypatch.setattr(textlog, "iter_decoded",
                        lambda s, e, r, **kw: textio.iter_decoded(s, e, r, chunk_bytes=37, **kw))
    small, warnings = parse_bytes(b"\xff\xfe" + text)
    assert warnings == []
    # Every field: an Error: line that ends a chunk is held back and paired
    # with the record at the start of the next one.
    def rows(events):
        return [(e.source_record, e.local_text, e.event_type, e.event_id, e.message, e.object_name, e.user,
                 e.attributes) for e in events]
    assert rows(small) == rows(whole)
    assert sum(1 for e in whole if "error_line" in e.attributes) == 2 * 50
    assert sum(1 for e in whole if e.attributes.get("unpaired")) == 50


def test_unreadable_time_keeps_the_record_and_warns(tmp_path, cli):
    import json
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "ERRORLOG").write_text("2025-06-01 09:22:44.70 Server      UTC adjustment: -5:00\n"
                                 "2025-13-45 99:99:99.99 spid51      weird line\n"
                                 "2025-02-30 10:00:00.00 spid51      impossible date\n"
                                 "\u0662\u0660\u0662\u0665-\u0660\u0666-\u0660\u0661 \u0660\u0669:\u0662\u0662:"
                                 "\u0664\u0664.\u0667\u0660 spid51      other digits\n"
                                 "2025-06-01 09:22:45.70 spid51      ok line\n", encoding="utf-8")
    out = tmp_path / "t.jsonl"
    code, _o, _e = cli("timeline", ev, "-o", out, "--workers", "1", "--quiet")
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    weird = [r for r in rows if r["message"] == "weird line"][0]
    assert weird["timestamp"] is None and weird["local_time"] == "2025-13-45 99:99:99.99"
    assert json.loads(weird["attributes"])["bad_timestamp"] == "2025-13-45 99:99:99.99"
    # An impossible date is not rolled over into 2 March: it is unreadable too.
    impossible = [r for r in rows if r["message"] == "impossible date"][0]
    assert impossible["timestamp"] is None and impossible["local_time"] == "2025-02-30 10:00:00.00"
    # Other scripts' digits match the record pattern's \d, but are no time.
    other = [r for r in rows if r["message"] == "other digits"][0]
    assert other["timestamp"] is None and json.loads(other["attributes"])["bad_timestamp"] == other["local_time"]
    assert all(r["timestamp"] is None for r in rows[-3:])  # nulls sort last
    manifest = json.loads((tmp_path / "t.jsonl.manifest.json").read_text())
    assert manifest["inputs"][0]["warnings"] == 1


def test_lone_carriage_return_in_a_message_forges_no_record():
    """SQL Server ends lines with CRLF (Windows) or LF (Linux); a lone CR is
    message text (RAISERROR ... WITH LOG can write one), never a line end."""
    lines = ["2025-06-01 09:22:44.70 Server      UTC adjustment: 0:00",
             "2025-06-01 09:22:45.00 spid51      user text\r2025-06-01 09:22:46.00 Server      forged record",
             "2025-06-01 09:22:47.00 spid51      next"]
    events, warnings = parse_bytes(b"\xff\xfe" + ("\r\n".join(lines) + "\r\n").encode("utf-16-le"))
    assert warnings == []
    assert [e.source_record for e in events] == [1, 2, 3]
    assert events[1].message == "user text\r2025-06-01 09:22:46.00 Server      forged record"
    assert events[2].message == "next"


def test_messages_sharing_only_a_first_word_with_a_template_stay_plain():
    """The record filter tests a template's literal start, not only its first
    word: a backup or DBCC run is plain, the templates' own lines are not."""
    lines = [
        "2025-06-01 10:00:00.00 Backup      BACKUP DATABASE successfully processed 100 pages in 0.1 seconds.",
        "2025-06-01 10:00:01.00 Backup      BACKUP failed to complete the command BACKUP LOG db1.",
        "2025-06-01 10:00:02.00 spid52      DBCC CHECKDB (db1) executed by sa found 0 errors.",
        "2025-06-01 10:00:03.00 spid52      DBCC TRACEON 3604, server process ID (SPID) 52. This is an informational message only.",
        "2025-06-01 10:00:04.00 spid52      Setting something else",
        "2025-06-01 10:00:05.00 spid52      Setting database option TRUSTWORTHY to ON for database 'db1'.",
        "2025-06-01 10:00:06.00 spid52      sql server blocked access to procedure 'sys.xp_cmdshell' of component "
        "'xp_cmdshell' because this component is turned off",
        "2025-06-01 10:00:07.00 spid52      SQL Server blocked access to procedure 'sys.xp_cmdshell' of component "
        "'xp_cmdshell' because this component is turned off",
    ]
    events, warnings = parse_bytes(("\n".join(["2025-06-01 09:59:59.00 Server      start"] * 4 + lines)
                                    + "\n").encode())
    assert warnings == []
    got = [(e.event_type, e.event_id) for e in events[4:]]
    assert got == [("log_message", None), ("backup_failed", 3041), ("log_message", None),
                   ("trace_flag_set", 17550), ("log_message", None), ("database_option_set", 5084),
                   ("log_message", None), ("feature_blocked", 15281)], got


def test_error_line_chains_pair_only_with_a_message():
    """Error:, Error:, message: the first is unpaired, the second pairs; an
    Error: line of another process or time is unpaired too."""
    lines = [
        "2025-06-01 10:00:00.00 Logon       Error: 18456, Severity: 14, State: 8.",
        "2025-06-01 10:00:00.00 Logon       Error: 18456, Severity: 14, State: 5.",
        "2025-06-01 10:00:00.00 Logon       Login failed for user 'sa'. Reason: Password did not match. [CLIENT: 10.0.0.9]",
        "2025-06-01 10:00:01.00 spid51      Error: 50000, Severity: 16, State: 1.",
        "2025-06-01 10:00:01.00 spid52      Launched startup procedure 'sp_x'.",
        "2025-06-01 10:00:02.00 Logon       Error: 18456, Severity: 14, State: 8.",
    ]
    events, _ = parse_bytes(("\n".join(["2025-06-01 09:59:59.00 Server      start"] * 4 + lines) + "\n").encode())
    got = [(e.event_type, e.event_id, e.attributes.get("state"), bool(e.attributes.get("unpaired")),
            e.attributes.get("error_line"), e.source_record) for e in events[4:]]
    assert got == [("error_reported", 18456, 8, True, None, 5),
                   ("login_failed", 18456, 5, False, 7, 6),
                   ("error_reported", 50000, 1, True, None, 8),
                   ("startup_procedure_launched", 17135, None, False, None, 9),
                   ("error_reported", 18456, 8, True, None, 10)], got

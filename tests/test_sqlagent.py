"""SQL Server Agent log: records, levels, message numbers, continuation lines."""

from __future__ import annotations

from datetime import datetime

from conftest import SQLPROD01_LOG

from forensic.model import Event, ParseWarning
from parsers import sniff
from parsers.base import Source
from parsers.sqlagent import PARSER


def test_agent_log_records():
    data = (SQLPROD01_LOG / "SQLAGENT.OUT").read_bytes()
    assert data.startswith(b"\xff\xfe")
    assert sniff(data[:4096], "renamed.txt") is PARSER
    items = list(PARSER.parse(Source.from_bytes(data, "SQLAGENT.OUT")))
    events = [i for i in items if isinstance(i, Event)]
    assert not [i for i in items if isinstance(i, ParseWarning)]
    assert len(events) == 10
    first = events[0]
    assert (first.event_id, first.event_type, first.attributes["level"]) == (100, "agent_started", "info")
    assert first.local_time == datetime(2025, 3, 12, 7, 57, 55) and first.local_text == "2025-03-12 07:57:55"
    warn = [e for e in events if e.event_id == 396][0]
    assert warn.attributes["level"] == "warning"
    job = events[-1]
    assert job.attributes == {"level": "error", "tag": "LOG"}
    assert job.event_type == "job_failed" and job.object_name == "AppDB maintenance"
    assert job.message.endswith("continuation of the message on a second line")
    assert job.source_record == 10


def test_agent_prescan_and_utf8_variant():
    text = ("2025-01-02 03:04:05 - ? [101] SQL Server WEB02\\SQLEXPRESS version 13.00.5026 (Agent max connections 0)\n"
            "2025-01-02 03:04:06 - ! [298] SQLServer Error: 18456, Login failed for user 'x'.\n")
    src = Source.from_bytes(text.encode(), "SQLAGENT.1")
    assert sniff(text.encode(), "x") is PARSER
    ev = PARSER.prescan(src)
    assert (ev.host, ev.instance) == ("WEB02", "SQLEXPRESS")
    events = [e for e in PARSER.parse(src) if isinstance(e, Event)]
    assert [e.event_id for e in events] == [101, 298]
    assert events[1].attributes["level"] == "error"


def test_errorlog_is_not_an_agent_log():
    line = b"2025-06-01 09:22:44.70 Server      UTC adjustment: 4:00\n"
    assert sniff(line, "SQLAGENT.OUT") is not PARSER

"""SQL Server Agent log (``SQLAGENT.OUT``, ``SQLAGENT.1`` ...).

Line form (``../shared/reference/errorlog.md`` 1.1)::

    2025-03-12 07:57:55 - ? [100] Microsoft SQLServerAgent version 15.0.4322.2 ...

``?`` info, ``+`` warning, ``!`` error; ``[NNN]`` a message number or a tag
such as ``[LOG]``; no fractional seconds.  Lines without a timestamp continue
the record before.  Times are server-local like the ERRORLOG's, so the engine
converts them with the instance's offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from forensic.model import Event, InputEvidence, ParseWarning
from parsers.base import Source
from parsers.textio import decode_head
from parsers.textlog import iter_records

SOURCE = "sqlagent_log"
_TS = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
RECORD_START = re.compile(rf"^{_TS} - [?+!] ", re.MULTILINE)
_RECORD = re.compile(rf"^({_TS}) - ([?+!]) (?:\[([^\]]*)\] ?)?(.*)$", re.DOTALL)
_LEVELS = {"?": "info", "+": "warning", "!": "error"}

# Agent message numbers worth a name (the rest stay agent_message).
_EVENT_TYPES = {
    98: "agent_stopped",
    100: "agent_started",
    129: "agent_started",
    101: "agent_server_info",
    339: "agent_host_info",
    495: "service_account",
}
_SERVER = re.compile(r"^SQL Server (\S+) version")
_LOCAL_COMPUTER = re.compile(r"^Local computer is (\S+)")
_JOB = re.compile(r"job '([^']+)'", re.IGNORECASE)


def _local(ts: str) -> datetime | None:
    try:
        return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


class SqlAgentParser:
    name = "sqlagent"
    artifact_type = "sqlagent_log"

    def sniff(self, head: bytes, name: str) -> bool:
        lines = [ln for ln in decode_head(head).replace("\r", "").split("\n")[:40] if ln.strip()]
        if not lines:
            return False
        hits = sum(1 for ln in lines if RECORD_START.match(ln))
        return bool(RECORD_START.match(lines[0])) or hits >= 2

    def parse(self, src: Source, options: Mapping[str, Any] | None = None) -> Iterator[Event | ParseWarning]:
        for item in iter_records(src, RECORD_START):
            if isinstance(item, ParseWarning):
                yield item
                continue
            m = _RECORD.match(item.text)
            if m is None:  # cannot happen: the record start matched
                continue
            ts, level, tag, message = m.groups()
            message = "\n".join(line.rstrip() for line in message.split("\n")).strip()
            attrs: dict[str, Any] = {"level": _LEVELS[level]}
            event_id = None
            if tag is not None:
                number = tag.strip()
                # ASCII digits only (str.isdigit() also accepts "²", which int() refuses)
                # and within int64: damaged or forged tags stay text.
                if number.isascii() and number.isdigit() and len(number) <= 18:
                    event_id = int(number)
                else:
                    attrs["tag"] = tag
            local = _local(ts)
            if local is None:
                attrs["bad_timestamp"] = ts
            ev = Event(source=SOURCE, event_type=_EVENT_TYPES.get(event_id, "agent_message"), message=message,
                       local_time=local, local_text=ts, event_id=event_id, source_record=item.line,
                       attributes=attrs)
            job = _JOB.search(message)
            if job:
                ev.object_name = job.group(1)
                ev.object_type = "job"
                if ev.event_type == "agent_message" and attrs["level"] == "error":
                    ev.event_type = "job_failed"
            yield ev

    def prescan(self, src: Source) -> InputEvidence:
        """Server and host names from the first records (they come at start-up)."""
        ev = InputEvidence()
        for n, item in enumerate(iter_records(src, RECORD_START)):
            if n > 200:
                break
            if isinstance(item, ParseWarning):
                continue
            m = _RECORD.match(item.text)
            if not m:
                continue
            text = m.group(4)
            server = _SERVER.match(text)
            if server:
                host, _, inst = server.group(1).partition("\\")
                ev.host = ev.host or host
                ev.instance = ev.instance or inst or "MSSQLSERVER"
            computer = _LOCAL_COMPUTER.match(text)
            if computer and not ev.host:
                ev.host = computer.group(1)
        return ev


PARSER = SqlAgentParser()

"""Windows event logs (EVTX): SQL Server, Security and Sysmon events.

Which records become rows is data (``parsers/data/evtx_selection.toml``):
SQL Server's own events in the Application log, process creations (Security
4688, Sysmon 1) involving the SQL Server programs, Sysmon image loads and file
creations by ``sqlservr.exe``, and Service Control Manager events of SQL
Server services.  Everything else is skipped, most of it before it is even
decoded (see :class:`parsers.evtx_engines.Prefilter`), and counted.

Classic SQL Server events carry only insertion strings; we rebuild the text
the ERRORLOG would show (``parsers/data/evtx_messages.toml``) and classify it
with :func:`parsers.sqlmessages.classify`, so ERRORLOG and EVTX rows of the
same message look alike and fire the same rules.  SQL Server Audit records
(33205) are split into their fields and timed by their own ``event_time``.

Times are the XML ``TimeCreated`` (UTC) and ids the XML ``EventRecordID``:
the record header's number and time differ from them in exported logs and
are kept only as provenance.

Two engines read the file (``options["evtx_engine"]``: ``auto``, ``rust``,
``python``); see :mod:`parsers.evtx_engines`.
"""

from __future__ import annotations

import logging
import re
import struct
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from forensic.model import TZ_ERRORLOG_PAIR, TZ_UTC, Event, InputEvidence, ParseWarning, TimeAnchor
from parsers import evtx_engines as engines
from parsers.base import Source
from parsers.errorlog import startup_parameter_attributes
from parsers.evtx_engines import (
    FILE_MAGIC,
    NO_PREFILTER,
    ChunkDamage,
    ChunkScanner,
    EvtxRecord,
    Prefilter,
    ReadStats,
    format_time,
)
from parsers.sqlmessages import classify, split_schema

SOURCE = "evtx"
ENGINES = ("auto", "rust", "python")
_DATA = Path(__file__).parent / "data"
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# The data tables


@dataclass(frozen=True, slots=True)
class Selection:
    name: str
    channels: frozenset[str]
    provider: re.Pattern[str]
    event_ids: frozenset[int] | None
    any_field: tuple[tuple[str, re.Pattern[str]], ...]
    needles: tuple[str, ...]
    builder: str
    event_type: str = ""
    timestamp_desc: str = "Event Logged"
    message: str = ""
    user: str = ""
    object_name: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    instance_fields: tuple[str, ...] = ()

    def accepts(self, rec: EvtxRecord, fields: Mapping[str, Any]) -> bool:
        if rec.channel.lower() not in self.channels:
            return False
        if self.event_ids is not None and rec.event_id not in self.event_ids:
            return False
        if not self.provider.search(rec.provider):
            return False
        if not self.any_field:
            return True
        return any(pattern.search(_text(fields.get(name))) for name, pattern in self.any_field)


@dataclass(frozen=True, slots=True)
class Tables:
    selections: tuple[Selection, ...]
    instances: tuple[tuple[re.Pattern[str], str | None], ...]
    engine_messages: dict[int, dict[str, Any]]
    agent_messages: dict[int, dict[str, Any]]
    audit_keys: tuple[str, ...]
    audit_actions: dict[str, str]
    audit_object_classes: dict[str, str]

    @property
    def needles(self) -> tuple[str, ...]:
        return tuple(n for s in self.selections for n in s.needles)


def _expand(pattern: str, named: Mapping[str, str]) -> str:
    for key, value in named.items():
        pattern = pattern.replace("{" + key + "}", value)
    return pattern


@cache
def tables() -> Tables:
    sel = tomllib.loads((_DATA / "evtx_selection.toml").read_text(encoding="utf-8"))
    msg = tomllib.loads((_DATA / "evtx_messages.toml").read_text(encoding="utf-8"))
    named = sel.get("patterns", {})
    selections = []
    for entry in sel["select"]:
        selections.append(Selection(
            name=entry["name"],
            channels=frozenset(c.lower() for c in entry["channels"]),
            provider=re.compile(entry["provider"], re.IGNORECASE),
            event_ids=frozenset(entry["event_ids"]) if "event_ids" in entry else None,
            any_field=tuple((k, re.compile(_expand(v, named))) for k, v in entry.get("any_field", {}).items()),
            needles=tuple(entry.get("needles", ())),
            builder=entry["builder"],
            event_type=entry.get("event_type", ""),
            timestamp_desc=entry.get("timestamp_desc", "Event Logged"),
            message=entry.get("message", ""),
            user=entry.get("user", ""),
            object_name=entry.get("object_name", ""),
            attributes=tuple(entry.get("attributes", {}).items()),
            instance_fields=tuple(entry.get("instance_fields", ())),
        ))
    instances = tuple((re.compile(i["regex"]), i.get("instance")) for i in sel.get("instance", []))
    audit = msg.get("audit", {})
    return Tables(
        selections=tuple(selections),
        instances=instances,
        engine_messages={int(k): v for k, v in msg.get("engine", {}).items()},
        agent_messages={int(k): v for k, v in msg.get("agent", {}).items()},
        audit_keys=tuple(audit.get("keys", ())),
        audit_actions=dict(audit.get("actions", {})),
        audit_object_classes=dict(audit.get("object_classes", {})),
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(map(str, value))
    return str(value)


def instance_from(values: Iterable[Any]) -> str | None:
    """The SQL Server instance named by the first value an instance pattern matches."""
    patterns = tables().instances
    for value in values:
        text = _text(value)
        if not text:
            continue
        for pattern, fixed in patterns:
            m = pattern.search(text)
            if m:
                return fixed or m.group("instance")
    return None


# --------------------------------------------------------------------------
# Classic SQL Server events


def decode_sql_binary(blob: bytes | None) -> dict[str, Any] | None:
    """The Binary blob of a classic SQL Server event.

    uint32 error number, uint32 severity, then two counted UTF-16LE strings
    (count in characters, terminating NUL included): server[\\instance] and
    database.  Observed in every public sample; no state field.
    """
    if not blob or len(blob) < 12:
        return None
    error, severity, count = struct.unpack_from("<III", blob, 0)
    out: dict[str, Any] = {"error_number": error, "severity": severity}
    pos = 12
    for key in ("server_name", "database"):
        if count > 1024 or pos + 2 * count > len(blob):
            break
        value = blob[pos:pos + 2 * count].decode("utf-16-le", errors="replace").rstrip("\x00")
        if value:
            out[key] = value
        pos += 2 * count
        if pos + 4 > len(blob):
            break
        count, = struct.unpack_from("<I", blob, pos)
        pos += 4
    return out


_PLACEHOLDER = re.compile(r"%(\d+)")


def render_insertion(formats: Any, strings: list[str]) -> str | None:
    """Fill %1..%n; None when no format fits the strings the event has."""
    if not formats:
        return None
    candidates = [formats] if isinstance(formats, str) else list(formats)
    best = None
    for fmt in candidates:
        indices = [int(i) for i in _PLACEHOLDER.findall(fmt)]
        highest = max(indices, default=0)
        if highest > len(strings):
            continue
        if highest == len(strings):
            best = fmt
            break
        best = best or fmt
    if best is None:
        return None
    return _PLACEHOLDER.sub(lambda m: strings[int(m.group(1)) - 1], best)


def _string_ref(ref: Any, strings: list[str]) -> str | None:
    m = _PLACEHOLDER.fullmatch(str(ref)) if ref else None
    if not m or int(m.group(1)) > len(strings):
        return None
    return strings[int(m.group(1)) - 1].strip() or None


def _build_sqlserver(rec: EvtxRecord, ev: Event, tbl: Tables) -> None:
    attrs = ev.attributes
    ev.instance = instance_from([rec.provider])
    agent = "agent" in rec.provider.lower()
    blob = decode_sql_binary(rec.binary)
    if blob:
        attrs.update(blob)
        database = attrs.pop("database", None)
        if database:
            attrs["session_database"] = database
        if ev.instance is None and "\\" in blob.get("server_name", ""):
            ev.instance = blob["server_name"].split("\\", 1)[1]
    attrs["strings"] = list(rec.strings)
    entry = (tbl.agent_messages if agent else tbl.engine_messages).get(rec.event_id or -1, {})
    text = render_insertion(entry.get("format"), rec.strings)
    if text is None:
        text = _fallback_text(rec)
    else:
        attrs["message_rebuilt"] = True
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if rec.event_id == 33205 and not agent:
        # The block is split losslessly into fields; no need to keep it twice.
        del attrs["strings"]
        attrs.pop("message_rebuilt", None)
        _build_audit(rec, ev, tbl, rec.strings[0] if rec.strings else "")
        return
    ev.message = text
    ev.event_type = "sql_agent_message" if agent else "sql_server_message"
    match = classify(text.split("\n", 1)[0], rec.event_id)
    if match is not None:
        ev.event_type = match.event_type
        ev.object_name, ev.object_type = match.object_name, match.object_type
        ev.user, ev.database = match.user, match.database
        attrs.update(match.attributes)
    elif entry.get("event_type"):
        ev.event_type = entry["event_type"]
    for column in ("object_name", "user", "database"):
        if getattr(ev, column) is None and entry.get(column):
            setattr(ev, column, _string_ref(entry[column], rec.strings))
    if ev.object_type is None and entry.get("object_type") and ev.object_name:
        ev.object_type = entry["object_type"]
    for key, ref in entry.get("attributes", {}).items():
        value = _string_ref(ref, rec.strings)
        if value is not None and key not in attrs:
            attrs[key] = value
    if ev.event_type == "startup_parameters":
        attrs.update(startup_parameter_attributes(text))
        # -m / -m"SqlSetup": single-user mode, used to regain sysadmin access.
        attrs["single_user"] = any(p.startswith("-m") for p in attrs["parameters"])


def _fallback_text(rec: EvtxRecord) -> str:
    if not rec.strings:
        return f"{rec.provider} event {rec.event_id} (no insertion strings)"
    if len(rec.strings) == 1:
        return rec.strings[0]
    return " | ".join(rec.strings)


# --------------------------------------------------------------------------
# SQL Server Audit (33205)


@cache
def _audit_key_order() -> dict[str, int]:
    return {k: i for i, k in enumerate(tables().audit_keys)}


def parse_audit_block(text: str) -> dict[str, str]:
    """``key:value`` lines -> dict; multi-line values run to the next key.

    A key line only counts when it comes later in SQL Server's key order than
    the previous one, so a statement containing ``\nobject_name:x`` cannot
    forge a field.  Unknown ``word:`` lines stay part of the value.  (Line by
    line with dict lookups: a regex alternation of 46 keys was ~10x slower.)
    """
    order = _audit_key_order()
    fields: dict[str, str] = {}
    key, parts, last = None, [], -1
    for line in text.split("\n"):
        colon = line.find(":")
        rank = order.get(line[:colon], -1) if colon > 0 else -1
        if rank > last:
            if key is not None:
                fields[key] = "\n".join(parts)
            key, parts, last = line[:colon], [line[colon + 1:]], rank
        elif key is not None:
            parts.append(line)
    if key is not None:
        if parts and parts[-1] == "" and len(parts) > 1:
            parts.pop()  # the block's final newline
        fields[key] = "\n".join(parts)
    return fields


def parse_event_time(value: str) -> datetime | None:
    """``2019-11-04 09:27:26.1750932`` (UTC, 7 digits) -> aware datetime (µs)."""
    m = re.match(r"^\s*(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*$", value or "")
    return engines.utc_from_match(m) if m else None


_XML_VALUE = re.compile(r"<(address|state|error|action|session|object)>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</\1>", re.DOTALL)

_AUDIT_ATTRIBUTES = (
    "audit_schema_version", "sequence_number", "session_id", "server_principal_id", "database_principal_id",
    "target_server_principal_id", "target_database_principal_id", "object_id", "transaction_id",
    "permission_bitmask", "sequence_group_id", "session_server_principal_name", "server_principal_sid",
    "database_principal_name", "target_server_principal_name", "target_server_principal_sid",
    "target_database_principal_name", "server_instance_name", "additional_information",
    "user_defined_event_id", "user_defined_information", "application_name", "duration_milliseconds",
    "response_rows", "affected_rows", "connection_id", "host_name",
)


def _build_audit(rec: EvtxRecord, ev: Event, tbl: Tables, block: str) -> None:
    attrs = ev.attributes
    fields = parse_audit_block(block)
    action = fields.get("action_id", "").strip()
    name = tbl.audit_actions.get(action, action.lower() or "unknown")
    ev.event_type = f"audit_{name}"
    ev.timestamp_desc = "Audit Event Time"
    attrs["time_created"] = format_time(rec.time_created) if rec.time_created else None
    attrs["event_time"] = fields.get("event_time")
    event_time = parse_event_time(fields.get("event_time", ""))
    if event_time is not None:
        ev.timestamp = event_time
    else:
        attrs["event_time_invalid"] = True
    attrs["action_id"] = action
    attrs["action"] = name
    class_type = fields.get("class_type", "").strip()
    attrs["class_type"] = class_type
    succeeded = fields.get("succeeded", "").strip().lower()
    if succeeded in ("true", "false"):
        attrs["succeeded"] = succeeded == "true"
    statement = fields.get("statement", "")
    attrs["statement"] = statement
    for key in _AUDIT_ATTRIBUTES:
        value = fields.get(key, "")
        if value.strip():
            attrs[key] = value.strip() if key != "additional_information" else value
    for tag, value in _XML_VALUE.findall(fields.get("additional_information", "")):
        attrs.setdefault(f"info_{tag}", value)
    client = fields.get("client_ip", "").strip() or attrs.get("info_address")
    if client:
        attrs["client_address"] = client
    ev.user = fields.get("server_principal_name", "").strip() or fields.get("session_server_principal_name", "").strip() or None
    ev.database = fields.get("database_name", "").strip() or None
    obj = fields.get("object_name", "").strip()
    if obj:
        schema, bare = split_schema(obj)
        ev.object_name = bare
        schema = fields.get("schema_name", "").strip() or schema
        if schema:
            attrs["schema"] = schema
    ev.object_type = tbl.audit_object_classes.get(class_type)
    server = fields.get("server_instance_name", "").strip()
    if ev.instance is None and "\\" in server:
        ev.instance = server.split("\\", 1)[1]
    if action == "LGIF" and statement:
        match = classify(statement.strip(), 18456)
        if match is not None:
            for key, value in match.attributes.items():
                attrs.setdefault(key, value)
    ev.message = _audit_message(action, name, ev, statement, attrs)


def _audit_message(action: str, name: str, ev: Event, statement: str, attrs: dict[str, Any]) -> str:
    target = ".".join(p for p in (ev.database, attrs.get("schema"), ev.object_name) if p)
    parts = [f"SQL Server Audit {action or '?'} ({name.replace('_', ' ')})"]
    if ev.user:
        parts.append(f"by {ev.user}")
    if target:
        parts.append(f"on {target}")
    if attrs.get("succeeded") is False:
        parts.append("(failed)")
    line = " ".join(parts)
    flat = " ".join(statement.split())
    if flat:
        line += ": " + (flat if len(flat) <= 300 else flat[:297] + "...")
    elif attrs.get("info_action"):
        line += f": audit session {attrs.get('info_session', '')} {attrs['info_action']}".rstrip()
    return line


# --------------------------------------------------------------------------
# Named-field events (Security, Sysmon, System)


_FIELD_REF = re.compile(r"\{(\w+)(?:\|(\w+))?\}")


def _format(template: str, fields: Mapping[str, Any]) -> tuple[str, bool]:
    """(text, any field present); a missing or empty field renders as '-'."""
    found = False

    def sub(m: re.Match[str]) -> str:
        nonlocal found
        value = _text(fields.get(m.group(1)))
        if not value:
            return "-"
        found = True
        if m.group(2) == "basename":
            value = re.split(r"[\\/]", value)[-1]
        return value

    return _FIELD_REF.sub(sub, template), found


def _binary_text(blob: bytes | None) -> str | None:
    if not blob or len(blob) % 2:
        return None
    text = blob.decode("utf-16-le", errors="replace").rstrip("\x00")
    return text if text and text.isprintable() else None


def _named_fields(rec: EvtxRecord) -> dict[str, Any]:
    fields = rec.data
    if rec.binary and "binary_text" not in fields:
        text = _binary_text(rec.binary)
        if text:
            fields = {**fields, "binary_text": text}
    return fields


def _build_fields(rec: EvtxRecord, sel: Selection, fields: Mapping[str, Any], ev: Event) -> None:
    ev.event_type = sel.event_type
    ev.timestamp_desc = sel.timestamp_desc
    ev.message = _format(sel.message, fields)[0] if sel.message else f"{rec.provider} event {rec.event_id}"
    for column in ("user", "object_name"):
        template = getattr(sel, column)
        if template:
            text, found = _format(template, fields)
            setattr(ev, column, text if found else None)
    for key, name in sel.attributes:
        value = fields.get(name)
        if value not in (None, ""):
            ev.attributes[key] = value
    ev.attributes["event_data"] = dict(rec.data)
    ev.instance = instance_from(fields.get(name) for name in sel.instance_fields)


# --------------------------------------------------------------------------
# Record -> Event


# Fields a selection may test that are not in the record's JSON as such.
_DERIVED_FIELDS = frozenset({"binary_text"})


def selection_prefilter(tbl: Tables) -> Prefilter:
    """The pre-filter for ``tbl``: per selection, its channels, event ids,
    needles, and the fields those must be found in (none when a field
    condition involves a derived field: then anywhere in the record)."""
    return engines.SelectionPrefilter(
        engines.SelectionRule(s.channels, s.event_ids, s.needles,
                              () if any(name in _DERIVED_FIELDS for name, _p in s.any_field)
                              else tuple(name for name, _p in s.any_field))
        for s in tbl.selections)


def select(rec: EvtxRecord, tbl: Tables | None = None) -> tuple[Selection | None, Mapping[str, Any]]:
    tbl = tbl or tables()
    fields = _named_fields(rec)
    for sel in tbl.selections:
        if sel.accepts(rec, fields):
            return sel, fields
    return None, fields


_INT64_MAX = 2**63 - 1


def build_event(rec: EvtxRecord, sel: Selection, fields: Mapping[str, Any], tbl: Tables | None = None) -> Event:
    tbl = tbl or tables()
    attrs: dict[str, Any] = {
        "channel": rec.channel,
        "provider": rec.provider,
        "computer": rec.computer,
        "record_number": rec.header_record,
        "chunk": rec.chunk,
        "selection": sel.name,
    }
    for key in ("qualifiers", "level", "task", "keywords", "user_sid"):
        value = getattr(rec, key)
        if value is not None:
            attrs[key] = value
    if rec.process_id is not None:
        attrs["execution_process_id"] = rec.process_id
        attrs["execution_thread_id"] = rec.thread_id
    if rec.salvaged:
        attrs["salvaged"] = True
    ev = Event(
        source=SOURCE,
        event_type="event",
        message="",
        timestamp=rec.time_created,
        tz_source=TZ_UTC,
        event_id=rec.event_id,
        host=rec.computer or None,
        source_record=rec.record_id if rec.record_id is not None else rec.header_record,
        attributes=attrs,
    )
    if rec.record_id is None:
        attrs["event_record_id_missing"] = True
    if ev.source_record is not None and not 0 <= ev.source_record <= _INT64_MAX:
        # Record numbers are unsigned 64-bit in the file, the column is int64:
        # a damaged one past that keeps its row, its number as text.
        attrs["record_id_out_of_range"] = str(ev.source_record)
        ev.source_record = None
    if rec.time_created is None and rec.header_time is not None:
        # No TimeCreated in the XML: the record header's write time is the
        # best the record offers (UTC as well, but when it was written).
        ev.timestamp = rec.header_time
        attrs["time_from_record_header"] = True
    if sel.builder == "sqlserver":
        _build_sqlserver(rec, ev, tbl)
    else:
        _build_fields(rec, sel, fields, ev)
    return ev


# --------------------------------------------------------------------------
# The parser


def choose_engine(requested: Any) -> tuple[str | None, ParseWarning | None]:
    """Which engine to run, or a warning saying why none can."""
    wanted = str(requested or "auto").strip().lower()
    if wanted not in ENGINES:
        return None, ParseWarning(f"unknown EVTX engine {requested!r}: use auto, rust or python", None, 0, True)
    rust, python = engines.rust_available(), engines.python_available()
    if wanted == "rust" and not rust:
        return None, ParseWarning(
            "EVTX engine 'rust' was requested but the 'evtx' package (pyevtx-rs) is not installed: "
            "install it (pip install evtx) or run with --evtx-engine python", None, 0, True)
    if wanted == "python" and not python:
        return None, ParseWarning(
            "EVTX engine 'python' was requested but python-evtx is not installed: "
            "install it (pip install python-evtx) or run with --evtx-engine rust", None, 0, True)
    if wanted == "auto":
        if rust:
            return "rust", None
        if python:
            _log.info("pyevtx-rs not installed; reading EVTX with python-evtx (slower)")
            return "python", None
        return None, ParseWarning("no EVTX library installed (need the 'evtx' or 'python-evtx' package)", None, 0, True)
    return wanted, None


class EventLogParser:
    name = "evtx"
    artifact_type = "evtx"
    source = SOURCE

    def sniff(self, head: bytes, name: str) -> bool:
        return head[:8] == FILE_MAGIC

    def prescan(self, src: Source) -> InputEvidence:
        """Host, and for Application logs the SQL Server instances and UTC anchors.

        Only an Application log (judged by its first record) is read through,
        and only SQL Server's own records are decoded; other logs stop after
        one record.
        """
        evidence = InputEvidence()
        engine, _warning = choose_engine("auto")
        if engine is None:
            return evidence
        instances: list[str] = []
        first = True
        try:
            for rec in self._records(src, engine, _PrescanFilter(), ReadStats(engine), {"evtx_salvage": False}):
                if isinstance(rec, ChunkDamage):
                    continue
                if first:
                    first = False
                    evidence.host = rec.computer or None
                    evidence.facts["evtx_channel"] = rec.channel
                    if rec.channel.lower() != "application":
                        break
                if not re.match(r"(?i)^MSSQL(?:SERVER|\$)", rec.provider):
                    continue
                instance = instance_from([rec.provider])
                if instance and instance not in instances:
                    instances.append(instance)
                if rec.event_id in (17176, 17177):
                    anchor = _pair_anchor(rec, src.display_path)
                    if anchor is not None:
                        evidence.anchors.append(anchor)
        except Exception as exc:  # noqa: BLE001 - prescan is best effort; parse reports damage
            evidence.facts["evtx_prescan_error"] = f"{type(exc).__name__}: {exc}"
        if len(instances) == 1:
            evidence.instance = instances[0]
        if instances:
            evidence.facts["evtx_instances"] = instances
        return evidence

    def parse(self, src: Source, options: Mapping[str, Any] | None = None) -> Iterator[Event | ParseWarning]:
        """Rows and warnings; the generator's return value is a stats dict
        (records read, skipped, lost, recovered, ...)."""
        options = options or {}
        engine, warning = choose_engine(options.get("evtx_engine", "auto"))
        if warning is not None:
            yield warning
        if engine is None:
            return {"engine": None}
        tbl = tables()
        use_prefilter = options.get("evtx_prefilter", True)
        prefilter = selection_prefilter(tbl) if use_prefilter else NO_PREFILTER
        stats = ReadStats(engine)
        skipped = rows = 0
        for item in self._records(src, engine, prefilter, stats, options, warnings=True):
            if isinstance(item, ParseWarning):
                yield item
                continue
            if isinstance(item, ChunkDamage):
                yield ParseWarning(item.message, item.position, item.lost, item.damaged)
                continue
            sel, fields = select(item, tbl)
            if sel is None:
                skipped += 1
                continue
            try:
                event = build_event(item, sel, fields, tbl)
            except Exception as exc:  # noqa: BLE001 - one odd record never ends the file
                yield ParseWarning(f"record {item.record_id}: could not build a row ({type(exc).__name__}: {exc})",
                                   f"record {item.header_record}", 1, True)
                continue
            rows += 1
            yield event
        if stats.records_recovered:
            yield ParseWarning(
                f"{stats.records_recovered} records were read from {stats.chunks_recovered} chunks beyond the "
                f"{stats.header_chunk_count} the file header counts (stale header"
                f"{' of a dirty log' if stats.file_dirty else ''}; python-evtx's own iterator would drop them)",
                "file header", 0, False)
        result = {
            "engine": engine,
            "records_read": stats.records_read,
            "records_skipped": stats.prefilter_skipped + skipped,
            "records_skipped_undecoded": stats.prefilter_skipped,
            "rows": rows,
            "records_lost": stats.records_lost,
            "records_recovered": stats.records_recovered,
            "records_salvaged": stats.records_salvaged,
            "chunks": stats.chunks,
            "chunks_empty": stats.chunks_empty,
            "chunks_damaged": stats.chunks_damaged,
            "engine_errors": stats.engine_errors,
        }
        _log.debug("%s: %s", src.display_path, result)
        return result

    def _records(self, src: Source, engine: str, prefilter: Prefilter, stats: ReadStats,
                 options: Mapping[str, Any] | None = None, warnings: bool = False
                 ) -> Iterator[EvtxRecord | ChunkDamage | ParseWarning]:
        options = options or {}
        with src.open() as stream:
            scanner = ChunkScanner(stream)
            header = scanner.header
            stats.file_dirty = header.dirty
            stats.header_chunk_count = header.chunk_count
            if warnings and not header.valid:
                yield ParseWarning("the file header has no ElfFile magic; reading its chunks anyway", "offset 0x0", 0, True)
            elif warnings and not header.checksum_ok:
                yield ParseWarning("file header checksum mismatch" + (" (dirty log)" if header.dirty else ""),
                                   "offset 0x0", 0, not header.dirty)
            if engine == "python":
                yield from engines.read_python(scanner, prefilter, stats)
                return
            threads = int(options.get("evtx_threads", 1) or 0)
            with engines.rust_target(src.open, src.size) as target:
                reader = engines.RustReader(target, scanner, prefilter, stats, threads=threads,
                                            salvage=options.get("evtx_salvage", True))
                yield from reader
                if warnings:
                    for problem in reader.file_problems:
                        yield ParseWarning(problem, None, 0, False)
                    if reader.unplaced:
                        yield ParseWarning(f"{len(reader.unplaced)} records could not be placed in a chunk "
                                           "(chunk headers disagree with record numbers)", None, 0, False)


class _PrescanFilter(Prefilter):
    """Decode the first record (it names the host and the log), then only SQL Server's."""

    def __init__(self):
        super().__init__(("mssql",))
        self.fresh = True

    def text_hit(self, text: str) -> bool:
        if self.fresh:
            self.fresh = False
            return True
        return super().text_hit(text)

    def bytes_hit(self, buf: bytes, start: int, end: int) -> bool:
        if self.fresh:
            self.fresh = False
            return True
        return super().bytes_hit(buf, start, end)


def _pair_anchor(rec: EvtxRecord, path: str) -> TimeAnchor | None:
    """A UTC-offset anchor from a 17176/17177 event (local/UTC pair in its strings)."""
    try:
        from forensic.timezones import pair_offset, parse_pair_time
    except ImportError:
        return None
    if len(rec.strings) < 3:
        return None
    offset = pair_offset(rec.strings[1], rec.strings[2])
    if offset is None:
        return None
    if rec.event_id == 17176:
        local = parse_pair_time(rec.strings[1])  # the previous run's last heartbeat
    elif rec.time_created is not None:
        local = (rec.time_created + timedelta(minutes=offset)).replace(tzinfo=None)
    else:
        local = None
    if local is None:
        return None
    return TimeAnchor(local, offset, TZ_ERRORLOG_PAIR, path, rec.record_id)


PARSER = EventLogParser()

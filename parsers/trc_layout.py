"""The byte layout of SQL Trace ``.trc`` files (SQL Server 2005 and later).

Declared once with ``construct`` and used both ways: :mod:`parsers.default_trace`
parses the header and the control payloads with these structures, and the
tests and the benchmark *build* trace files with the same structures, so a
fixture can never drift from what the parser reads.

The hot loop of the parser walks tokens with ``struct.unpack_from`` instead of
:data:`Token` because construct costs tens of microseconds per token; the
constants it uses (:data:`TOKEN_HEAD`, :data:`LONG_LENGTH`, ...) live here so
both paths share one definition.  ``docs/default_trace.md`` and
``../shared/reference/trc-format.md`` describe the format.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from construct import (
    Bytes,
    Computed,
    Const,
    Default,
    GreedyRange,
    IfThenElse,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64sl,
    Rebuild,
    Struct,
    len_,
    this,
)

from parsers.trc_names import BIGINT, COLUMN_TYPES, GUID, INT, TEXT, TIME

# --- constants --------------------------------------------------------------

UNICODE_TAG = 0xFEFF
HEADER_SIZE = 656
PROVIDER = "Microsoft SQL Server"
PROVIDER_UTF16 = PROVIDER.encode("utf-16-le")

# Header file-format word as written by each writer (trc-format.md section 2).
FORMAT_SERVER = 1
FORMAT_PROFILER = 9
# Repeat-base slot: the key column of the 0xFFF3 cache; Profiler writes 0xFBFA.
REPEAT_BASE_SPID = 12
REPEAT_BASE_PROFILER = 0xFBFA

# Special token ids (names from the RML/SqlNexus sources, see trc-format.md 12).
TRACE_FLUSH = 0xFFF2
TRACE_REPEATED_DATA = 0xFFF3
TRACE_REPEATED_BASE = 0xFFF4
TRACE_TEXT_FILTERED = 0xFFF5
TRACE_BEGIN_RECORD = 0xFFF6
TRACE_STOP_MARK = 0xFFF9
TRACE_START_MARK = 0xFFFA
TRACED_FILTERS = 0xFFFB
TRACED_EVENTS = 0xFFFC
TRACED_OPTIONS = 0xFFFD
TRACE_VERSION = 0xFFFE
# Profiler-only preamble tokens.
PROFILER_MARK = 0xFBED
PROFILER_COLUMN_ORDER = 0xFBFC
PROFILER_FILTERS = 0xFBFB

SPECIAL_NAMES = {
    TRACE_FLUSH: "TRACE_FLUSH",
    TRACE_REPEATED_DATA: "TRACE_REPEATED_DATA",
    TRACE_REPEATED_BASE: "TRACE_REPEATED_BASE",
    TRACE_TEXT_FILTERED: "TRACE_TEXT_FILTERED",
    TRACE_BEGIN_RECORD: "TRACE_BEGIN_RECORD",
    0xFFF7: "TRACE_SKIPPED_RECORDS",
    0xFFF8: "TRACE_ERROR",
    TRACE_STOP_MARK: "TRACE_STOP",
    TRACE_START_MARK: "TRACE_START",
    TRACED_FILTERS: "TRACED_FILTERS",
    TRACED_EVENTS: "TRACED_EVENTS",
    TRACED_OPTIONS: "TRACED_OPTIONS",
    TRACE_VERSION: "TRACE_VERSION",
    PROFILER_MARK: "PROFILER_MARK",
    PROFILER_COLUMN_ORDER: "PROFILER_COLUMN_ORDER",
    PROFILER_FILTERS: "PROFILER_FILTERS",
}

# Event classes of control records (trace-format.md section 5).  Any class at
# or above CONTROL_CLASS_MIN is a control record and never a timeline row.
CONTROL_CLASS_MIN = 0xF000
CLASS_TRACE_START = 0xFFFE
CLASS_TRACE_STOP = 0xFFFD
CONTROL_NAMES = {
    0xFFFF: "invalid",
    CLASS_TRACE_START: "trace_start",
    CLASS_TRACE_STOP: "trace_stop",
    0xFFFC: "trace_error",
    0xFFFB: "skipped_events",
    0xFFFA: "nop",
    0xFFF9: "pause",
    0xFFF8: "header",
    0xFFF7: "rollover",
}

# The token head: uint16 id + uint8 length; 0xFF escapes to a uint32 length.
TOKEN_HEAD = struct.Struct("<HB")
LONG_LENGTH = struct.Struct("<I")
LONG_ESCAPE = 0xFF
BEGIN_PAYLOAD = struct.Struct("<HI")
# The 9 bytes every record starts with: F6 FF 06 + event class + length.
BEGIN_TOKEN = struct.Struct("<HBHI")
BEGIN_MAGIC = b"\xf6\xff\x06"
BEGIN_TOKEN_SIZE = BEGIN_TOKEN.size

# SQL Server caps a column value at 1 GB (ms190762); more is corruption.
MAX_VALUE_LENGTH = 0x40000000

# --- construct structures ---------------------------------------------------


class Utf16Z:
    """Helpers for fixed-size, NUL-padded UTF-16LE header fields."""

    @staticmethod
    def decode(raw: bytes) -> str:
        # errors="replace": a damaged header must still give a readable name.
        return raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0]

    @staticmethod
    def encode(text: str, size: int) -> bytes:
        data = text.encode("utf-16-le")[:size]
        return data + b"\x00" * (size - len(data))


Header = Struct(
    # The tag and size are read as plain integers, not Const, so that a foreign
    # header is reported with what it says instead of a construct exception.
    "unicode_tag" / Default(Int16ul, UNICODE_TAG),
    "header_size" / Default(Int16ul, HEADER_SIZE),
    "file_format" / Default(Int16ul, FORMAT_SERVER),
    "provider" / Default(Bytes(256), Utf16Z.encode(PROVIDER, 256)),
    "definition_type" / Default(Bytes(128), bytes(128)),
    "major" / Default(Int8ul, 13),
    "minor" / Default(Int8ul, 0),
    "build" / Default(Int16ul, 4001),
    "options" / Default(Int32ul, 0x2),
    "server_name" / Bytes(256),
    "repeat_base" / Default(Int16ul, REPEAT_BASE_SPID),
)
assert Header.sizeof() == HEADER_SIZE

Token = Struct(
    "id" / Int16ul,
    "len8" / Rebuild(Int8ul, lambda ctx: LONG_ESCAPE if len(ctx.data) >= LONG_ESCAPE else len(ctx.data)),
    "length" / IfThenElse(this.len8 == LONG_ESCAPE, Rebuild(Int32ul, len_(this.data)), Computed(this.len8)),
    "data" / Bytes(this.length),
)

BeginRecord = Struct("event_class" / Int16ul, "record_length" / Int32ul)

SystemTime = Struct(
    "year" / Int16ul,
    "month" / Int16ul,
    # 1-based day of week (Sunday = 1), unlike Win32; never used for dates.
    "weekday" / Default(Int16ul, 0),
    "day" / Int16ul,
    "hour" / Int16ul,
    "minute" / Int16ul,
    "second" / Int16ul,
    "millisecond" / Int16ul,
)

# Tagged fields: the tag bytes are sys.fn_trace_getinfo property numbers.
TracedOptions = Struct(
    Const(1, Int8ul),
    "options" / Int32ul,
    Const(3, Int8ul),
    "max_size_mb" / Int64sl,
    Const(4, Int8ul),
    "stop_time" / Bytes(16),
)

TracedEvent = Struct("event_id" / Int16ul, "columns" / GreedyRange(Int16ul))

# Server-side filter list (0xFFFB inside the trace-start record).
TracedFilter = Struct(
    "column_id" / Int16ul,
    "logical_operator" / Int8ul,
    "comparison_operator" / Int8ul,
    "value_length" / Rebuild(Int16ul, len_(this.value)),
    "value" / Bytes(this.value_length),
)
TracedFilters = GreedyRange(TracedFilter)

# Profiler's own filter list (0xFBFB in the preamble): no logical operator,
# uint32 length, NUL-terminated strings.
ProfilerFilter = Struct(
    "column_id" / Int16ul,
    "comparison_operator" / Int8ul,
    "value_length" / Rebuild(Int32ul, len_(this.value)),
    "value" / Bytes(this.value_length),
)
ProfilerFilters = GreedyRange(ProfilerFilter)

ColumnList = GreedyRange(Int16ul)  # 0xFFF3 repeated ids, 0xFBFC column order

TRACE_OPTION_NAMES = {
    1: "TRACE_PRODUCE_ROWSET",
    2: "TRACE_FILE_ROLLOVER",
    4: "SHUTDOWN_ON_ERROR",
    8: "TRACE_PRODUCE_BLACKBOX",
}
HEADER_OPTION_NAMES = {1: "rolled_over", 2: "first_file"}
COMPARISON_OPERATORS = {0: "=", 1: "<>", 2: ">", 3: "<", 4: ">=", 5: "<=", 6: "LIKE", 7: "NOT LIKE"}
LOGICAL_OPERATORS = {0: "AND", 1: "OR"}


def bit_names(value: int, names: Mapping[int, str]) -> list[str]:
    return [name for bit, name in names.items() if value & bit]


# --- value encodings shared by parser and builder ---------------------------

SYSTEMTIME = struct.Struct("<8H")


def systemtime_bytes(when: datetime | None) -> bytes:
    if when is None:
        return bytes(16)
    return SystemTime.build(dict(
        year=when.year, month=when.month, weekday=(when.isoweekday() % 7) + 1, day=when.day,
        hour=when.hour, minute=when.minute, second=when.second, millisecond=when.microsecond // 1000,
    ))


def format_systemtime(fields: tuple[int, ...]) -> str:
    """The time as SQL Server tools show it: ``2018-02-04 20:17:22.973``."""
    year, month, _weekday, day, hour, minute, second, ms = fields
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}.{ms:03d}"


def systemtime_datetime(fields: tuple[int, ...]) -> datetime | None:
    """Naive local datetime, or None when the value is unset or impossible."""
    year, month, _weekday, day, hour, minute, second, ms = fields
    if year == 0:
        return None
    try:
        return datetime(year, month, day, hour, minute, second, ms * 1000)
    except ValueError:
        return None


# --- builders (tests, benchmark) --------------------------------------------


def build_header(server_name: str, *, file_format: int = FORMAT_SERVER, major: int = 13, minor: int = 0,
                 build: int = 4001, options: int = 0x2, repeat_base: int = REPEAT_BASE_SPID,
                 unicode_tag: int = UNICODE_TAG, header_size: int = HEADER_SIZE) -> bytes:
    return Header.build(dict(
        unicode_tag=unicode_tag, header_size=header_size, file_format=file_format, major=major,
        minor=minor, build=build, options=options, server_name=Utf16Z.encode(server_name, 256),
        repeat_base=repeat_base,
    ))


def build_token(token_id: int, data: bytes) -> bytes:
    return Token.build(dict(id=token_id, data=data))


def build_record(event_class: int, tokens: Iterable[bytes], *, record_length: int | None = None) -> bytes:
    """A begin-record token followed by already-built tokens.

    ``record_length`` overrides the computed length (damaged fixtures).
    """
    body = b"".join(tokens)
    length = len(body) if record_length is None else record_length
    payload = BeginRecord.build(dict(event_class=event_class, record_length=length))
    return build_token(TRACE_BEGIN_RECORD, payload) + body


def build_traced_options(options: int = 2, max_size_mb: int = 20, stop_time: datetime | None = None) -> bytes:
    return build_token(TRACED_OPTIONS, TracedOptions.build(dict(
        options=options, max_size_mb=max_size_mb, stop_time=systemtime_bytes(stop_time))))


def build_traced_event(event_id: int, columns: Iterable[int]) -> bytes:
    return build_token(TRACED_EVENTS, TracedEvent.build(dict(event_id=event_id, columns=list(columns))))


def build_traced_filters(filters: Iterable[Mapping]) -> bytes:
    return build_token(TRACED_FILTERS, TracedFilters.build(list(filters)))


def build_repeated(column_ids: Iterable[int]) -> bytes:
    return build_token(TRACE_REPEATED_DATA, ColumnList.build(list(column_ids)))



def encode_value(column_id: int, value: object) -> bytes:
    """A column value as the server stores it (bytes pass through untouched)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    kind = COLUMN_TYPES.get(column_id)
    if kind == TEXT:
        return str(value).encode("utf-16-le")
    if kind == INT:
        return struct.pack("<i", value)
    if kind == BIGINT:
        return struct.pack("<q", value)
    if kind == TIME:
        return systemtime_bytes(value)  # type: ignore[arg-type]
    if kind == GUID:
        return uuid.UUID(str(value)).bytes_le
    raise TypeError(f"column {column_id}: give bytes for a value of type {kind}")


def build_columns(columns: Mapping[int, object], *, order: Iterable[int] | None = None) -> list[bytes]:
    """Column tokens in ascending id order (server files) or in ``order`` (Profiler)."""
    ids = list(order) if order is not None else sorted(columns)
    return [build_token(cid, encode_value(cid, columns[cid])) for cid in ids]


def build_start_record(when: datetime, events: Mapping[int, Iterable[int]], *, options: int = 2,
                       max_size_mb: int = 20, stop_time: datetime | None = None,
                       filters: Iterable[Mapping] | None = None) -> bytes:
    """A trace-start control record as the server writes it (one 0xFFFC per event)."""
    tokens = [build_token(14, systemtime_bytes(when)), build_traced_options(options, max_size_mb, stop_time)]
    tokens += [build_traced_event(event_id, columns) for event_id, columns in events.items()]
    if filters:
        tokens.append(build_traced_filters(filters))
    return build_record(CLASS_TRACE_START, tokens)


def build_stop_record(when: datetime) -> bytes:
    return build_record(CLASS_TRACE_STOP, [build_token(14, systemtime_bytes(when)), build_token(TRACE_STOP_MARK, b"")])

"""Offline parser for SQL Trace ``.trc`` files: the default trace and Profiler saves.

Layout: :mod:`parsers.trc_layout` (construct structures, also used by the tests
to build fixtures).  Names: :mod:`parsers.trc_names`.  Format notes:
``docs/default_trace.md`` and ``../shared/reference/trc-format.md``.

How a file is read
------------------
The file is streamed through a bounded window (:class:`_Window`); nothing
larger than one record plus one chunk is ever held.  After the 656-byte header
comes a stream of tokens; a record is a begin-record token (``F6 FF 06``,
event class, record length) followed by its column tokens.  Every record is
framed twice: by its record-length field and by walking its tokens.  When the
two agree the record is kept.  When they disagree the token walk decides (the
record is kept if its tokens end exactly at the next begin-record token);
otherwise the record is dropped, counted in ``lost_records`` and the reader
resynchronises on the next plausible begin-record token.  Zero bytes at a
record boundary are padding when they run to the end of the file (server
files) and damage anywhere else.

``source_record`` is the 0-based index of the record among *all* records of
the file, control records included (so the trace-start record of a server
file is record 0, as in trc-format.md); ``attributes.offset`` is its byte
offset, which stays exact even after damage.

Speed
-----
Rows leave as :class:`~forensic.model.EventColumns` blocks.  Three tiers read
a record, each giving exactly the row of the one below (the tests compare
them on samples, built fixtures and damaged files):

1. :class:`TraceReader` (general path): frames, checks and reports damage;
   :meth:`_Decoder.raw_record` decodes the record into a dict.  Control
   records, damage, special tokens, duplicate columns, bad times and
   unresolved 0xFFF3 references always take it.
2. The hot loop (:meth:`_Decoder._fast`) walks a well-formed record's tokens
   with ``struct`` and decodes them by column id from lists, not a generic
   parse; from the second record of an event class and length on, a compiled
   layout (:class:`_Shape`) reads all of a record's heads with one
   ``unpack_from`` (proof that the walk would find the same tokens) and all
   its values with another.
3. Row code (:func:`_compile_rows`): for a layout and 0xFFF3 list met often,
   generated Python (constant keys and positions only) makes the row in one
   call and writes its attributes straight as the JSON the engine would write
   (sorted, compact), so the engine neither encodes nor decodes them.

Texts, times per second, repeated values and layouts are cached in bounded
caches.
"""

from __future__ import annotations

import codecs
import re
import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from pathlib import PurePath
from typing import Any, BinaryIO

import orjson
from construct import ConstructError

from forensic.model import Event, EventColumns, InputEvidence, ParseWarning
from parsers import trc_layout as L
from parsers import trc_names as N
from parsers.base import Source
from parsers.errorlog import RECORD_START, prescan_errorlog, split_record
from parsers.sqlmessages import classify

SOURCE = "default_trace"
TIMESTAMP_DESC = "Trace Event Start"
CHUNK = 1 << 21  # 2 MiB read window: large enough to amortise reads, small enough to stream.
# How far the fallback token walk may look for the next record when a record's
# length field is wrong; real records are a few KB, 4 MiB leaves wide margin.
FREE_WALK_LIMIT = 4 << 20
FREE_WALK_TOKENS = 512  # real records hold at most ~70 tokens
# A record larger than the 1 GB value cap plus room for its other columns can
# only be a corrupt length field.
MAX_RECORD_LENGTH = L.MAX_VALUE_LENGTH + (1 << 20)
MESSAGE_TEXT_LIMIT = 500
# Token ids from here up are special tokens (0xFFxx server, 0xFBxx Profiler),
# not columns; column ids are 1-66 today and stay far below.
SPECIAL_MIN = 0xF000
# Event classes whose TextData is SQL Server message text (ERRORLOG line or
# message): classified with the shared catalogue so the same rules fire.
ERRORLOG_EVENT = 22
MESSAGE_EVENTS = frozenset({21, ERRORLOG_EVENT, 162})
LOGIN_FAILED = 20


# --- reading ----------------------------------------------------------------


class _Window:
    """A forward-only window over a stream.

    ``ensure(start, end)`` makes ``[start, end)`` available in ``buf`` (data
    before ``start`` is dropped) and returns how far the data really reaches,
    which is less than ``end`` only at the end of the file.  Requests never go
    backwards past the current record, so no seek is needed and archive
    members work as well as files.
    """

    def __init__(self, stream: BinaryIO, size: int):
        self.stream = stream
        self.size = size
        self.buf = b""
        self.base = 0  # file offset of buf[0]

    def _read(self, n: int) -> bytes:
        parts = []
        while n > 0:
            data = self.stream.read(n)
            if not data:
                break
            parts.append(data)
            n -= len(data)
        return b"".join(parts)

    def ensure(self, start: int, end: int) -> int:
        end = min(end, self.size)
        buf_end = self.base + len(self.buf)
        if start >= self.base and end <= buf_end:
            return end
        if start < self.base:
            # Not needed by the reader's access pattern; kept correct for seekable streams.
            self.stream.seek(start)
            self.buf, self.base = b"", start
            buf_end = start
        if start > buf_end:  # skip forward without keeping the bytes
            gap = start - buf_end
            while gap > 0:
                skipped = len(self._read(min(gap, CHUNK)))
                if not skipped:
                    break
                gap -= skipped
            self.buf, self.base = b"", start
            buf_end = start
        keep = self.buf[start - self.base:]
        want = max(end - buf_end, CHUNK) if end > buf_end else 0
        self.buf = keep + self._read(want)
        self.base = start
        # A stream shorter than the declared size: trust the stream.
        if len(self.buf) < end - start:
            self.size = self.base + len(self.buf)
        return min(end, self.base + len(self.buf))

    def bytes_at(self, start: int, n: int) -> bytes:
        end = self.ensure(start, start + n)
        return self.buf[start - self.base:end - self.base]


@dataclass(slots=True)
class RawRecord:
    index: int
    offset: int
    event_class: int
    size: int  # bytes from the begin-record token to the next record
    columns: dict[int, bytes] = field(default_factory=dict)
    repeated: list[int] = field(default_factory=list)
    specials: list[tuple[int, bytes]] = field(default_factory=list)
    duplicates: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def is_control(self) -> bool:
        return self.event_class >= L.CONTROL_CLASS_MIN


@dataclass(slots=True)
class TraceHeader:
    file_format: int
    provider: str
    major: int
    minor: int
    build: int
    options: int
    server_name: str
    repeat_base: int

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"

    @property
    def writer(self) -> str:
        if self.file_format == L.FORMAT_SERVER:
            return "server"
        if self.file_format == L.FORMAT_PROFILER:
            return "profiler"
        return f"unknown ({self.file_format})"


# Walk outcomes besides success.
_CUT = "cut"  # a token runs past the limit of the walk
_ZERO = "zero"  # token id 0: padding or zeroed bytes
_BEGIN = "begin"  # a begin-record token inside a record frame
_HUGE = "huge"  # a 4-byte length above the 1 GB cap
_ALIEN = "alien"  # tokens that no trace writer produces (checked when the length field is wrong)

_utf16_decode = codecs.utf_16_le_decode
_unpack_head = L.TOKEN_HEAD.unpack_from
_unpack_long = L.LONG_LENGTH.unpack_from


def _walk(buf: bytes, p: int, end: int, free: bool) -> tuple[list[tuple[int, bytes]], int, str | None]:
    """Tokens of ``buf[p:end]``: (tokens, position reached, problem or None).

    Framed walk (``free=False``): the tokens must fill the record frame; a
    begin-record token inside it is a problem.  This is the hot loop: plain
    ``struct`` calls, no construct.

    Free walk (``free=True``, when the length field is not trusted): a
    begin-record token ends the walk cleanly, and tokens must look like a
    record's (column ids below 128 each at most once, or special 0xFBxx /
    0xFxxx ids; at most FREE_WALK_TOKENS of them), so that garbage or a
    crafted file stops the walk early instead of costing a long one.
    """
    tokens: list[tuple[int, bytes]] = []
    append = tokens.append
    seen: set[int] = set()
    while p < end:
        if p + 3 > end:
            return tokens, p, _CUT
        tid, n = _unpack_head(buf, p)
        if tid == 0:
            return tokens, p, _ZERO
        if tid == L.TRACE_BEGIN_RECORD:
            return tokens, p, (None if free else _BEGIN)
        if free:
            if tid < 0x80:
                if tid in seen:
                    return tokens, p, _ALIEN
                seen.add(tid)
            elif tid < SPECIAL_MIN or len(tokens) >= FREE_WALK_TOKENS:
                return tokens, p, _ALIEN
        if n == L.LONG_ESCAPE:
            if p + 7 > end:
                return tokens, p, _CUT
            n = _unpack_long(buf, p + 3)[0]
            if n > L.MAX_VALUE_LENGTH:
                return tokens, p, _HUGE
            d = p + 7
        else:
            d = p + 3
        q = d + n
        if q > end:
            return tokens, p, _CUT
        append((tid, buf[d:q]))
        p = q
    return tokens, p, None


_PROBLEM_TEXT = {
    _CUT: "a token runs past the end of the record",
    _ZERO: "zero bytes inside the record",
    _BEGIN: "the record-length field overlaps the next record",
    _HUGE: "a token claims more than the 1 GB column maximum",
    _ALIEN: "the tokens are not trace columns",
}


def _plausible_class(event_class: int) -> bool:
    return 1 <= event_class < 0x400 or event_class >= L.CONTROL_CLASS_MIN


class TraceReader:
    """Frames one ``.trc`` stream into raw records, preamble tokens and warnings.

    ``records()`` yields :class:`RawRecord` and :class:`ParseWarning`; every
    dropped record is counted once, either in its own warning or in the
    warning of the damaged region that holds it.
    """

    def __init__(self, stream: BinaryIO, size: int, *, walk_classes: frozenset[int] | None = None,
                 walk_needles: tuple[bytes, ...] | None = None):
        self.win = _Window(stream, size)
        # None: walk every record.  Otherwise only control records and these
        # classes are walked; the others are only framed (prescan).
        self.walk_classes = walk_classes
        # With walk_classes: walk a record of those classes only if its bytes
        # hold one of these (the prescan looks for a few texts in ErrorLog
        # events; most of them have none).
        self.walk_needles = walk_needles
        self.header: TraceHeader | None = None
        self.preamble: list[tuple[int, bytes]] = []
        self.data_end: int | None = None
        self.index = 0  # records framed so far (source_record of the next one)
        self.lost = 0
        self._skip_start: int | None = None  # start of the damaged region being skipped
        self._skip_lost = 0

    # header ---------------------------------------------------------------

    def read_header(self) -> ParseWarning | None:
        raw = self.win.bytes_at(0, L.HEADER_SIZE)
        tag = int.from_bytes(raw[:2], "little")
        if len(raw) < 2 or tag != L.UNICODE_TAG:
            return ParseWarning(f"not a SQL Server 2005+ trace header (starts with {raw[:2].hex() or 'nothing'});"
                                " file not read", "offset 0x0")
        if len(raw) < L.HEADER_SIZE:
            return ParseWarning(f"trace header cut off: {len(raw)} of {L.HEADER_SIZE} bytes; file not read",
                                "offset 0x0")
        fields = L.Header.parse(raw)
        header = TraceHeader(
            file_format=fields.file_format,
            provider=L.Utf16Z.decode(fields.provider),
            major=fields.major,
            minor=fields.minor,
            build=fields.build,
            options=fields.options,
            server_name=L.Utf16Z.decode(fields.server_name),
            repeat_base=fields.repeat_base,
        )
        if fields.header_size != L.HEADER_SIZE or 0 < header.major < 9:
            # SQL Server 2000 files have another header and a 4-byte begin-record
            # payload; guessing at them would invent records.
            return ParseWarning(
                f"unsupported trace header (header size {fields.header_size}, version {header.version});"
                " SQL Server 2000 and older traces are not supported; file not read", "offset 0x2")
        self.header = header
        return None

    # records --------------------------------------------------------------

    def records(self) -> Iterator[RawRecord | ParseWarning]:
        """Records and warnings in file order.  With ``walk_classes`` set
        (prescan), records that are only framed are counted in ``index`` but
        not yielded: nothing in them is read."""
        pos: int | None = L.HEADER_SIZE
        framed_only = self.walk_classes is not None
        while pos is not None:
            if framed_only and self._skip_start is None:
                pos = self._skip_framed(pos)
            pos = yield from self._step(pos)
        if self._skip_start is not None:
            yield self._end_skip(self.data_end if self.data_end is not None else self.win.size)

    def _step(self, pos: int) -> Iterator[RawRecord | ParseWarning]:
        win = self.win
        avail = win.ensure(pos, pos + L.BEGIN_TOKEN_SIZE)
        if avail <= pos:
            return None
        head = win.buf[pos - win.base:avail - win.base]
        if head[0] == 0 and (len(head) == 1 or head[1] == 0):
            return (yield from self._zeros(pos))
        if head[:3] == L.BEGIN_MAGIC and len(head) == L.BEGIN_TOKEN_SIZE:
            return (yield from self._record_at(pos, head))
        if len(head) < L.BEGIN_TOKEN_SIZE and L.BEGIN_MAGIC.startswith(head[:3]):
            # The file ends inside a begin-record token: a copy of a file being written.
            if self._skip_start is not None:
                yield self._end_skip(pos)
            self.lost += 1
            self.index += 1
            yield ParseWarning(f"record {self.index - 1} at 0x{pos:x} is truncated: the file ends inside its"
                               " begin-record token; dropped", f"offset 0x{pos:x}", lost_records=1)
            return None
        if self.index == 0 and self._skip_start is None:
            nxt = self._preamble_token(pos)
            if nxt is not None:
                return nxt
        self._open_region(pos, lost=1)
        return self._find_begin(pos + 1)

    def _zeros(self, pos: int) -> Iterator[ParseWarning]:
        zero_end = self._zero_run_end(pos)
        if zero_end >= self.win.size:
            self.data_end = pos  # padding up to the end: how server files end
            return None
        if self.win.bytes_at(zero_end, 3) == L.BEGIN_MAGIC:
            if self._skip_start is None:
                yield ParseWarning(
                    f"zero bytes from 0x{pos:x} to 0x{zero_end:x} between records; records may be missing there",
                    f"offset 0x{pos:x}", lost_records=0, damaged=True)
            return zero_end
        self._open_region(pos, lost=1)
        return self._find_begin(zero_end)

    def _skip_framed(self, pos: int) -> int:
        """Step over records that are only framed (prescan) while their frames
        are sound; returns the first record that needs :meth:`_step`.

        The test is :meth:`_record_at`'s for such a record whose length field
        lands on the next begin-record token; anything else (control records,
        walked classes, zero padding, damage, the last record) is left to the
        general path.  A quarter of the general path's time per record.
        """
        win = self.win
        walk, magic, unpack = self.walk_classes, L.BEGIN_MAGIC, L.BEGIN_TOKEN.unpack_from
        control, head_size = L.CONTROL_CLASS_MIN, L.BEGIN_TOKEN_SIZE
        buf, base = win.buf, win.base
        while True:
            rel = pos - base
            if rel < 0 or rel + head_size > len(buf):
                win.ensure(pos, pos + head_size)
                buf, base = win.buf, win.base
                rel = pos - base
                if rel + head_size > len(buf):
                    return pos
            if buf[rel:rel + 3] != magic:
                return pos
            _tid, _n, event_class, length = unpack(buf, rel)
            if event_class >= control or length > MAX_RECORD_LENGTH:
                return pos
            end = pos + head_size + length
            if end + 3 > win.size:
                return pos
            if end + 3 - base > len(buf):
                win.ensure(pos, end + 3)
                buf, base = win.buf, win.base
                if end + 3 - base > len(buf):
                    return pos
            if buf[end - base:end - base + 3] != magic:
                return pos
            if event_class in walk and self._walks(buf, pos + head_size - base, end - base):  # type: ignore[operator]
                return pos
            self.index += 1
            pos = end

    def _walks(self, buf: bytes, start: int, end: int) -> bool:
        """Whether a record of a walked class (bytes ``buf[start:end]``) is walked."""
        needles = self.walk_needles
        return needles is None or any(buf.find(n, start, end) >= 0 for n in needles)

    def _record_at(self, pos: int, head: bytes) -> Iterator[RawRecord | ParseWarning]:
        win = self.win
        _tid, _n, event_class, length = L.BEGIN_TOKEN.unpack_from(head)
        body = pos + L.BEGIN_TOKEN_SIZE
        end = body + length
        tokens: list[tuple[int, bytes]] | None = None
        reason = ""
        frame_sound = False  # the length field lands on the next begin-record token
        if length > MAX_RECORD_LENGTH:
            reason = f"record length {length} is larger than any valid record"
        elif end > win.size:
            reason = f"record length {length} runs past the end of the file (0x{win.size:x})"
        else:
            win.ensure(pos, end + 3)
            frame_sound = win.bytes_at(end, 3) == L.BEGIN_MAGIC
            if (self.walk_classes is not None and event_class < L.CONTROL_CLASS_MIN
                    and (event_class not in self.walk_classes
                         or not self._walks(win.buf, body - win.base, end - win.base))
                    and self._next_ok(end)):
                tokens = []  # prescan: a consistent frame is enough
            else:
                # Tokens that fill the frame exactly make a good record, whatever
                # follows it (damage after it is the next step's business).
                toks, _reached, problem = _walk(win.buf, body - win.base, end - win.base, False)
                if problem is None:
                    tokens = toks
                else:
                    reason = _PROBLEM_TEXT[problem]

        kept_by_walk = False
        if tokens is None:
            # The length field and the tokens disagree: let the tokens decide.
            limit = win.ensure(pos, body + FREE_WALK_LIMIT)
            toks, reached, problem = _walk(win.buf, body - win.base, limit - win.base, True)
            reached += win.base
            at_eof = reached >= win.size
            if problem is None and not at_eof and win.bytes_at(reached, 3) == L.BEGIN_MAGIC:
                tokens, end, kept_by_walk = toks, reached, True
            elif problem is None and at_eof and end < win.size:
                tokens, end, kept_by_walk = toks, reached, True
            else:
                truncated = end > win.size and (at_eof or (problem == _CUT and limit >= win.size))
                return (yield from self._drop(pos, event_class, reason, truncated, frame_sound, end,
                                              reached if problem == _ZERO else None))

        if self._skip_start is not None:
            yield self._end_skip(pos)
        if kept_by_walk:
            yield ParseWarning(
                f"record {self.index} at 0x{pos:x}: record-length field says {length} bytes but its tokens"
                f" end after {end - body}; record kept", f"offset 0x{pos:x}", lost_records=0, damaged=True)
        yield self._record(self.index, pos, end - pos, event_class, tokens)
        self.index += 1
        return end

    def _drop(self, pos: int, event_class: int, reason: str, truncated: bool, frame_sound: bool,
              end: int, zero_at: int | None) -> Iterator[ParseWarning]:
        """Count a record that cannot be kept and say where reading goes on."""
        index = self.index
        self.index += 1
        in_region = self._skip_start is not None
        if in_region:
            self._skip_lost += 1
        else:
            self.lost += 1
            what = "truncated: the file ends inside it" if truncated else f"unreadable ({reason})"
            yield ParseWarning(f"record {index} ({N.event_name(event_class)}) at 0x{pos:x} is {what}; dropped",
                               f"offset 0x{pos:x}", lost_records=1)
        if frame_sound:
            return end  # only this record is lost; the next one starts where its length says
        if zero_at is not None:
            return zero_at  # the record stops at zero bytes: let the zero-run logic judge them
        found = self._find_begin(pos + 1)
        if found is None and truncated and not in_region:
            return None  # a cut-off last record: nothing else to report
        self._open_region(pos + 1, lost=0)  # this record is counted already
        return found

    def _open_region(self, start: int, lost: int) -> None:
        """Start (or extend) a damaged region; one warning covers it when it ends."""
        if self._skip_start is None:
            self._skip_start, self._skip_lost = start, 0
        self._skip_lost += lost

    def _end_skip(self, stop: int) -> ParseWarning:
        start, lost = self._skip_start or 0, self._skip_lost
        self._skip_start, self._skip_lost = None, 0
        self.lost += lost
        return ParseWarning(
            f"bytes 0x{start:x}-0x{stop:x} ({stop - start} bytes) do not frame as trace records and were skipped"
            + (f"; {lost} record(s) lost there" if lost else "; records may have been lost there"),
            f"offset 0x{start:x}", lost_records=lost, damaged=True)

    def _next_ok(self, end: int) -> bool:
        """Whether ``end`` is where a record may end: the next record, zero padding or EOF."""
        nxt = self.win.bytes_at(end, 3)
        # A shorter ``nxt`` means the file ends there: a cut-off begin token still marks the boundary.
        return L.BEGIN_MAGIC.startswith(nxt) or not nxt.strip(b"\0")

    def _zero_run_end(self, pos: int) -> int:
        """First non-zero byte at or after ``pos``, or the end of the file."""
        while True:
            end = self.win.ensure(pos, pos + CHUNK)
            if end <= pos:
                return pos
            chunk = self.win.buf[pos - self.win.base:end - self.win.base]
            stripped = chunk.lstrip(b"\0")
            if stripped:
                return end - len(stripped)
            pos = end

    def _find_begin(self, pos: int) -> int | None:
        """Offset of the next plausible begin-record token at or after ``pos``."""
        win = self.win
        while True:
            end = win.ensure(pos, pos + CHUNK)
            if end - pos < L.BEGIN_TOKEN_SIZE:
                return None
            rel, limit = pos - win.base, end - win.base
            while True:
                hit = win.buf.find(L.BEGIN_MAGIC, rel, limit)
                if hit < 0 or hit + L.BEGIN_TOKEN_SIZE > limit:
                    break
                _tid, _n, event_class, length = L.BEGIN_TOKEN.unpack_from(win.buf, hit)
                absolute = win.base + hit
                if _plausible_class(event_class) and length <= win.size - absolute - L.BEGIN_TOKEN_SIZE:
                    return absolute
                rel = hit + 1
            # Overlap the next chunk by a token's length: a hit may straddle the boundary.
            pos = max(pos + 1, end - L.BEGIN_TOKEN_SIZE + 1)

    def _preamble_token(self, pos: int) -> int | None:
        """Take one Profiler preamble token (ids 0xFBxx-0xFFxx) at ``pos``."""
        win = self.win
        head = win.bytes_at(pos, 7)
        if len(head) < 3:
            return None
        tid, n = L.TOKEN_HEAD.unpack_from(head)
        if tid < 0xFB00 or tid == L.TRACE_BEGIN_RECORD:
            return None
        start = pos + 3
        if n == L.LONG_ESCAPE:
            if len(head) < 7:
                return None
            n = L.LONG_LENGTH.unpack_from(head, 3)[0]
            start = pos + 7
        if n > FREE_WALK_LIMIT or win.ensure(pos, start + n) < start + n:
            return None
        self.preamble.append((tid, win.buf[start - win.base:start + n - win.base]))
        return start + n

    def _record(self, index: int, pos: int, size: int, event_class: int,
                tokens: list[tuple[int, bytes]]) -> RawRecord:
        rec = RawRecord(index, pos, event_class, size)
        columns = dict(tokens)
        if len(columns) == len(tokens) and (not columns or max(columns) < SPECIAL_MIN):
            rec.columns = columns  # the usual case: only column tokens, each once
            return rec
        columns = rec.columns
        for tid, data in tokens:
            if tid >= SPECIAL_MIN:
                if tid == L.TRACE_REPEATED_DATA:
                    rec.repeated.extend(int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data) - 1, 2))
                else:
                    rec.specials.append((tid, data))
            elif tid in columns:
                rec.duplicates.append((tid, data))
            else:
                columns[tid] = data
        return rec


# --- decoding -----------------------------------------------------------------


@lru_cache(maxsize=4096)  # a trace repeats a few logins' SIDs thousands of times
def _sid_text(raw: bytes) -> str:
    """A Windows SID as ``S-1-5-21-...``; other logins' SIDs (``sa`` = 0x01, SQL logins) as hex."""
    if len(raw) >= 8 and raw[0] == 1 and len(raw) == 8 + 4 * raw[1]:
        authority = int.from_bytes(raw[2:8], "big")
        subs = [str(int.from_bytes(raw[i:i + 4], "little")) for i in range(8, len(raw), 4)]
        return "-".join(["S", "1", str(authority), *subs])
    return "0x" + raw.hex()


def _int(raw: bytes) -> int | str:
    # Trust the stored length, not the documented type (trc-format.md 7.1).
    return int.from_bytes(raw, "little", signed=True) if len(raw) in (1, 2, 4, 8) else raw.hex()


def _text(raw: bytes) -> str:
    # errors="replace": odd lengths and lone surrogates must not reach the writers.
    # The codec function directly: bytes.decode() has no C fast path for UTF-16-LE.
    return _utf16_decode(raw, "replace")[0]


def _time(raw: bytes) -> str:
    if len(raw) != 16:
        return raw.hex()
    ms = raw[14] | raw[15] << 8
    if ms >= 1000:
        return L.format_systemtime(L.SYSTEMTIME.unpack(raw))
    return _second_text(raw[:14]) + _MILLISECONDS[ms]


@lru_cache(maxsize=4096)  # consecutive events share their second
def _second_text(raw: bytes) -> str:
    year, month, _weekday, day, hour, minute, second = _SYSTEMTIME_SECONDS(raw)
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"


_SYSTEMTIME_SECONDS = struct.Struct("<7H").unpack


_MILLISECONDS = [f".{ms:03d}" for ms in range(1000)]


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else raw.hex()


def _hex(raw: bytes) -> str:
    return raw.hex()


_BY_TYPE = {N.INT: _int, N.BIGINT: _int, N.TEXT: _text, N.TIME: _time, N.IMAGE: _hex, N.GUID: _guid}
# Column id -> decoder, looked up once per value instead of branching on the type.
_DECODERS = {cid: (_sid_text if cid in N.SID_COLUMNS else _BY_TYPE[kind]) for cid, kind in N.COLUMN_TYPES.items()}


@lru_cache(maxsize=1024)  # the same few 0xFFF3 lists recur on every record
def _column_keys_cached(ids: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(N.COLUMN_KEYS.get(c) or f"column_{c}" for c in ids)


def _column_keys(ids: tuple[int, ...]) -> list[str]:
    return list(_column_keys_cached(ids))


def decode_value(column_id: int, raw: bytes) -> Any:
    """A column value as a JSON-friendly Python value; unknown columns and odd sizes stay hex."""
    decoder = _DECODERS.get(column_id)
    return decoder(raw) if decoder is not None else raw.hex()


_ERROR_LINE = re.compile(r"^Error: (?P<num>[0-9]{1,10}), Severity: (?P<sev>[0-9]{1,10}), State: (?P<state>[0-9]{1,10})\.\s*")


def _errorlog_split(line: str) -> tuple[str, str | None]:
    """(message, ERRORLOG source column) of a line, with the ERRORLOG parser's own split."""
    if RECORD_START.match(line):
        _ts, process, message = split_record(line)
        return message.strip(), process
    return line, None


def _message_body(text: str) -> tuple[str, dict[str, Any], int | None]:
    """The message of an ERRORLOG line held in TextData, without date and spid.

    ErrorLog trace events carry the line as ERRORLOG wrote it
    (``2018-02-04 20:17:25.48 spid4s      Configuration option ...``); an
    ``Error: N, Severity: S, State: T.`` line before the message gives its number.
    """
    extra: dict[str, Any] = {}
    number = None
    body, process = _errorlog_split(text.strip())
    if process:
        extra["errorlog_source"] = process
    m = _ERROR_LINE.match(body)
    if m and body[m.end():].strip():
        number = int(m.group("num"))
        extra.update(message_severity=int(m.group("sev")), message_state=int(m.group("state")))
        body = _errorlog_split(body[m.end():].strip())[0]
    return body, extra, number


MESSAGE_CACHE_CHARS = 4000  # longer message texts are not kept in the cache
# RECORD_START for a match at the start only (MULTILINE costs time here).
_RECORD_START = re.compile(RECORD_START.pattern).match


def _message_event(text: str, error: int | None) -> tuple:
    """(extra attributes, catalogue match, message detail, keys and JSON texts of
    all attributes the message adds) of a message event's TextData.

    The ERRORLOG timestamp at the start of the text is the only part that
    changes from line to line, so the rest is classified once (cached).
    """
    text = text.strip()
    record = _RECORD_START(text) is not None
    rest = text[23:] if record else text  # the timestamp is always 22 characters and a space
    if len(rest) > MESSAGE_CACHE_CHARS:
        return _message_event_rest.__wrapped__(rest, record, error)
    return _message_event_rest(rest, record, error)


@lru_cache(maxsize=4096)
def _message_event_rest(rest: str, record: bool, error: int | None) -> tuple:
    # The same text as _message_body() sees it: any 22-character timestamp gives the same split.
    body, extra, number = _message_body("0000-00-00 00:00:00.00 " + rest if record else rest)
    match = classify(body, number if number is not None else error)
    # What the row's attributes get from the message, as _Decoder._row adds it.
    added = dict(extra)
    if match is not None:
        if match.event_id is not None:
            added["message_id"] = match.event_id
        added.update(match.attributes)
    return (tuple(extra.items()), match, _short(body) if body else None, tuple(added),
            tuple(_json(value) for value in added.values()))


def _short(text: str) -> str:
    """First line of a text, cut to MESSAGE_TEXT_LIMIT (the full text stays in attributes)."""
    line = text[:MESSAGE_TEXT_LIMIT * 2].strip().partition("\n")[0].rstrip("\r")
    return line if len(line) <= MESSAGE_TEXT_LIMIT else line[:MESSAGE_TEXT_LIMIT] + "..."


def split_server_name(name: str) -> tuple[str | None, str | None]:
    """Header server name -> (host, instance); ``MACHINE`` alone is ``MSSQLSERVER``.

    Profiler writes the name the user connected to, which may be an alias such
    as ``(localdb)\\X``, ``.`` or ``tcp:10.0.0.5,1433``: such names give no host.
    """
    name = re.sub(r"^(tcp|np|lpc|admin):", "", name.strip(), flags=re.I)
    name = name.split(",", 1)[0].strip()
    if not name:
        return None, None
    machine, _, instance = name.partition("\\")
    instance = instance or "MSSQLSERVER"
    if machine.lower() in {".", "(local)", "localhost", "(localdb)", "127.0.0.1", "::1"}:
        return None, instance
    return machine, instance


def rollover_sort_key(name: str) -> tuple[str, int, str]:
    """Order of a rollover set: ``log.trc`` < ``log_1.trc`` < ... < ``log_123.trc``.

    SQL Server numbers the files of the default trace with a growing suffix
    (it keeps the newest five), so the number, not the text, gives the order.
    """
    base = PurePath(name.replace("\\", "/").rsplit("!", 1)[-1]).name
    m = re.match(r"^(?P<stem>.*?)(?:_(?P<n>\d+))?\.trc$", base, re.I)
    if not m:
        return base.lower(), 0, base
    return m.group("stem").lower(), int(m.group("n") or 0), base


def rollover_order(names: list[str]) -> list[str]:
    return sorted(names, key=rollover_sort_key)


# --- control records -> facts ----------------------------------------------------


def _parse_or_hex(struct_, data: bytes) -> Any:
    try:
        return struct_.parse(data)
    except (ConstructError, ValueError, OverflowError):
        return None


def _traced_event(data: bytes) -> dict[str, Any]:
    # One Profiler sample stores an odd-length payload led by its own length byte.
    if len(data) % 2 and data and data[0] == len(data) - 1:
        data = data[1:]
    parsed = _parse_or_hex(L.TracedEvent, data)
    if parsed is None or len(data) < 2:
        return {"raw": data.hex()}
    return {"event_id": parsed.event_id, "event": N.event_name(parsed.event_id), "columns": list(parsed.columns)}


def _filter_value(column_id: int, raw: bytes) -> Any:
    if N.COLUMN_TYPES.get(column_id) == N.TEXT:
        return raw.decode("utf-16-le", errors="replace").rstrip("\0")
    return decode_value(column_id, raw)


def _filters(struct_, data: bytes, with_logical: bool) -> list[dict[str, Any]] | dict[str, str]:
    parsed = _parse_or_hex(struct_, data)
    if parsed is None or sum((6 if with_logical else 7) + len(f.value) for f in parsed) != len(data):
        return {"raw": data.hex()}
    out = []
    for f in parsed:
        entry = {
            "column_id": f.column_id,
            "column": N.COLUMNS.get(f.column_id, (str(f.column_id), ""))[0],
            "operator": L.COMPARISON_OPERATORS.get(f.comparison_operator, str(f.comparison_operator)),
            "value": _filter_value(f.column_id, f.value),
        }
        if with_logical:
            entry["logical"] = L.LOGICAL_OPERATORS.get(f.logical_operator, str(f.logical_operator))
        out.append(entry)
    return out


def _time_text(data: bytes) -> str | None:
    if len(data) != 16:
        return None
    fields = L.SYSTEMTIME.unpack(data)
    return None if fields[0] == 0 else L.format_systemtime(fields)


def control_facts(rec: RawRecord) -> dict[str, Any]:
    """What a trace-start/stop (or other control) record says, for the manifest."""
    facts: dict[str, Any] = {"record": rec.index, "offset": rec.offset,
                             "kind": L.CONTROL_NAMES.get(rec.event_class, f"control_0x{rec.event_class:04x}")}
    if N.C_START in rec.columns:
        facts["time"] = _time_text(rec.columns[N.C_START])
    events = []
    for tid, data in rec.specials:
        if tid == L.TRACED_OPTIONS:
            opts = _parse_or_hex(L.TracedOptions, data)
            if opts is None:
                facts["options_raw"] = data.hex()
            else:
                facts.update(
                    options=opts.options, option_flags=L.bit_names(opts.options, L.TRACE_OPTION_NAMES),
                    max_file_size_mb=opts.max_size_mb, stop_time=_time_text(opts.stop_time))
        elif tid == L.TRACED_EVENTS:
            events.append(_traced_event(data))
        elif tid == L.TRACED_FILTERS:
            facts["filters"] = _filters(L.TracedFilters, data, True)
        else:
            facts.setdefault("special_tokens", []).append({"id": f"0x{tid:04x}", "data": data.hex()})
    if events:
        facts["traced_events"] = events
    other = {N.COLUMN_KEYS.get(c, f"column_{c}"): decode_value(c, v) for c, v in rec.columns.items() if c != N.C_START}
    if other:
        facts["columns"] = other
    return facts


def _preamble_facts(tokens: list[tuple[int, bytes]]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for tid, data in tokens:
        if tid == L.TRACED_EVENTS:
            facts.setdefault("profiler_traced_events", []).append(_traced_event(data))
        elif tid == L.PROFILER_COLUMN_ORDER:
            parsed = _parse_or_hex(L.ColumnList, data)
            facts["profiler_column_order"] = list(parsed) if parsed is not None else data.hex()
        elif tid == L.PROFILER_FILTERS:
            facts["profiler_filters"] = _filters(L.ProfilerFilters, data, False)
        elif tid != L.PROFILER_MARK:
            facts.setdefault("preamble_tokens", []).append({"id": f"0x{tid:04x}", "data": data.hex()})
    return facts


def header_facts(header: TraceHeader) -> dict[str, Any]:
    return {
        "trace_server_name": header.server_name,
        "trace_writer": header.writer,
        "trace_file_format": header.file_format,
        "sql_version": header.version,
        "header_options": header.options,
        "header_option_flags": L.bit_names(header.options, L.HEADER_OPTION_NAMES),
        "repeat_base_column": header.repeat_base,
    }


# --- events -------------------------------------------------------------------


# Per-column decoding tables for the hot loop, indexed by column id (a list
# lookup, not a dict): the kind of decoding, the attribute key, and the
# decoder of the kinds that are not inlined.
_K_BAIL, _K_INT, _K_TEXT, _K_START, _K_FUNC = 0, 1, 2, 3, 4
_TABLE_SIZE = 256  # column ids at or above this (never written by a server) take the general path
_KINDS = [_K_BAIL] * _TABLE_SIZE
_KEYS: list[str] = [f"column_{cid}" for cid in range(_TABLE_SIZE)]
_FUNCS: list[Any] = [_hex] * _TABLE_SIZE
for _cid in range(1, _TABLE_SIZE):  # id 0 is zero bytes: damage, judged by the general path
    _KINDS[_cid] = _K_FUNC
for _cid, _kind in N.COLUMN_TYPES.items():
    _KEYS[_cid] = N.COLUMN_KEYS[_cid]
    _FUNCS[_cid] = _DECODERS[_cid]
    _KINDS[_cid] = {N.INT: _K_INT, N.BIGINT: _K_INT, N.TEXT: _K_TEXT}.get(_kind, _K_FUNC)
_KINDS[N.C_START] = _K_START  # kept raw: it becomes local_text
_START_KEY = _KEYS[N.C_START]
_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}  # signed little-endian, as _int() reads them
_I32, _I64 = struct.Struct("<i").unpack_from, struct.Struct("<q").unpack_from
_U16 = struct.Struct("<H").unpack_from
_SYSTEMTIME = L.SYSTEMTIME.unpack

# Caches are bounded (cleared when full) so that memory stays flat whatever the file.
TEXT_CACHE_MAX_BYTES = 256  # short text values (names, hosts, logins) repeat; long ones rarely do
TEXT_CACHE_ENTRIES = 20_000
REPEAT_CACHE_KEYS = 100_000  # distinct repeated-data keys (SPIDs); a crafted header could make it grow
SHAPE_CACHE_ENTRIES = 4096
_UNSET = object()
SECOND_CACHE_ENTRIES = 20_000
# Row code is compiled (about a millisecond) for a layout and 0xFFF3 list met
# this often; rarer ones keep the dict path.
ROW_CODE_AFTER = 8
BLOCK_ROWS = 10_000
ROW_WIDTH = 10  # values per row in _Decoder.rows: the columns of EventColumns


@lru_cache(maxsize=1024)
def _repeated_ids(data: bytes) -> tuple[tuple[tuple[int, str], ...], tuple[str, ...], frozenset[str] | None, Any]:
    """A 0xFFF3 payload -> (((column id, attribute key), ...), keys, key set or
    None when a column is listed twice or none is, getter of the keys' values)."""
    ids = [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data) - 1, 2)]
    pairs = tuple((cid, N.COLUMN_KEYS.get(cid) or f"column_{cid}") for cid in ids)
    names = tuple(name for _cid, name in pairs)
    if len(set(names)) != len(names) or len(names) < 2:
        return pairs, names, None, None
    return pairs, names, frozenset(names), itemgetter(*names)


class _Shape:
    """The token layout of a record as two ``struct`` formats.

    Records of one event class repeat their layout (same columns, same value
    sizes), so after two records with the same class and length the layout is
    compiled.  One ``unpack_from`` reads every token head (values skipped):
    when they equal the compiled ones, walking the tokens would find exactly
    these tokens.  Another reads every value (heads skipped).
    """

    __slots__ = ("heads", "expect", "unpack", "keys", "keyset", "values", "texts", "funcs", "repeated", "misses",
                 "disjoint", "kinds", "positions", "funcs_by_value", "rows")

    def __init__(self, heads: str, expect: list[int], values: str, keys: list[str], positions: list[int],
                 texts: list[int], funcs: list[tuple[int, Any]], repeated: int, kinds: list[str]):
        self.heads = struct.Struct(heads).unpack_from
        self.expect = tuple(expect)
        self.unpack = struct.Struct(values).unpack_from
        self.keys = tuple(keys)
        self.keyset = frozenset(keys)
        self.positions = tuple(positions)  # per key: its index in what unpack() gives
        # The column values in key order: all unpacked values but the 0xFFF3 payload.
        self.values = (lambda vals: vals) if repeated < 0 else itemgetter(*positions)
        self.texts = tuple(texts)  # positions in values() of UTF-16 text
        self.funcs = tuple(funcs)  # (position in values(), decoder)
        self.repeated = repeated  # index of the 0xFFF3 payload in what unpack() gives, or -1
        self.misses = 0
        self.disjoint: dict[bytes, bool] = {}  # 0xFFF3 payload -> names none of its columns explicitly
        self.kinds = tuple(kinds)  # per key: "i" int, "t" text, "f" decoder, "s" StartTime
        self.funcs_by_value = dict(funcs)
        self.rows: dict[bytes | None, _RowCode | None] = {}  # 0xFFF3 payload -> row code

    @classmethod
    def of(cls, buf: bytes, p: int, end: int) -> _Shape | None:
        """The layout of the well-formed record body ``buf[p:end]`` (already walked)."""
        heads, values, expect, keys, positions, texts, funcs, kinds = ["<"], ["<"], [], [], [], [], [], []
        repeated = -1
        k = 0  # values so far
        while p < end:
            tid, n = _unpack_head(buf, p)
            if n == L.LONG_ESCAPE:
                n = _unpack_long(buf, p + 3)[0]
                heads.append(f"HBI{n}x")
                values.append("7x")
                expect += [tid, L.LONG_ESCAPE, n]
                p += 7 + n
            else:
                heads.append(f"HB{n}x")
                values.append("3x")
                expect += [tid, n]
                p += 3 + n
            if tid == L.TRACE_REPEATED_DATA:
                repeated = k
                values.append(f"{n}s")
            else:
                kind = _KINDS[tid]
                code = _INT_CODES.get(n) if kind == _K_INT else None
                values.append(code or f"{n}s")
                if kind == _K_TEXT:
                    texts.append(len(keys))
                    kinds.append("t")
                elif kind == _K_START:
                    kinds.append("s")
                elif code is None:
                    funcs.append((len(keys), _FUNCS[tid]))
                    kinds.append("f")
                else:
                    kinds.append("i")
                keys.append(_KEYS[tid])
                positions.append(k)
            k += 1
        if len(positions) < 2:
            return None  # itemgetter of one index gives no tuple; such records are rare
        return cls("".join(heads), expect, "".join(values), keys, positions, texts, funcs, repeated, kinds)


@lru_cache(maxsize=4096)
def _class_info(event_class: int, subclass: int | None) -> tuple[str, str | None, str, str]:
    """(event class name, subclass name, event_type, message head)."""
    name = N.event_name(event_class)
    sub_name = N.subclass_name(event_class, subclass)
    return name, sub_name, N.event_type(event_class, subclass), name + (f" ({sub_name})" if sub_name else "")


@lru_cache(maxsize=4096)
def _object_type(raw_type: int) -> tuple[str | None, str | None]:
    code = N.object_type_code(raw_type)
    return code, (N.OBJECT_TYPE_NAMES.get(code, code) if code else None)


def _valid_time(fields: tuple[int, ...]) -> bool:
    year, month, _weekday, day, hour, minute, second, ms = fields
    if 0 < year <= 9999 and 0 < month <= 12 and 0 < day <= 28 and hour < 24 and minute < 60 and second < 60 \
            and ms < 1000:
        return True
    return L.systemtime_datetime(fields) is not None


# --- compiled rows ------------------------------------------------------------------

_dumps = orjson.dumps
_JSON_CACHE_ENTRIES = 10_000


def _json(value: Any) -> str:
    """A value as compact JSON, exactly as :func:`forensic.schema.attributes_json` writes it."""
    return _dumps(value).decode()


class _RowCode:
    """Generated code for the rows of one record layout and one 0xFFF3 list.

    ``fn(vals, offset, index)`` adds the row of a record read with the layout
    to the decoder's block and stores its columns in the repeated-data cache;
    it gives False, having changed nothing, when the record needs the general
    path (bad StartTime, a repeated column not in the cache).  The attributes
    JSON is what ``attributes_json`` makes of the row the general path builds
    (same keys, same sorted order, same encodings), written by one f-string
    instead of a dict and a serializer; the tests compare the two.  Only
    constant keys and positions go into the generated source, never evidence.
    """

    __slots__ = ("fn", "json_keys")

    def __init__(self, fn: Any, json_keys: frozenset[str] = frozenset()):
        self.fn = fn
        # The keys its attributes JSON may hold (none: its rows keep a dict).
        self.json_keys = json_keys


def _compile_rows(shape: _Shape, event_class: int, payload: bytes | None, decoder: _Decoder) -> _RowCode | None:
    """The row code of a layout, or None when its rows need the dict path
    (message events, which are classified; StartTime or the key column taken
    from the cache; an 0xFFF3 list naming an explicit column or one twice)."""
    key_name, texts, jsons = decoder.key_name, decoder.texts, decoder.jsons
    names: tuple[str, ...] = ()
    if payload is not None:
        _pairs, names, unique, _get = _repeated_ids(payload)
        if unique is None or not unique.isdisjoint(shape.keyset):
            return None
    columns = dict(zip(shape.keys, range(len(shape.keys)), strict=True))
    if _START_KEY not in columns or (names and key_name not in columns):
        return None
    # Message events are classified with the message catalogue; their rows keep
    # a dict: the engine's rules read their TextData, which from a dict costs a
    # lookup and from JSON text a decode of the whole row (more than encoding it).
    classified = ("text_data" in columns or "text_data" in names) and (
        event_class in MESSAGE_EVENTS or event_class == LOGIN_FAILED)
    lines = []
    value: dict[str, str] = {}  # key -> expression of its Python value
    json: dict[str, str] = {}  # key -> expression of its JSON text
    key = -1
    for k, (name, kind, pos) in enumerate(zip(shape.keys, shape.kinds, shape.positions, strict=True)):
        if kind == "i":
            value[name] = json[name] = f"v[{pos}]"
        elif kind == "t":
            if classified and name == "text_data":
                # A message event's text carries its own time: not worth caching.
                lines.append(f"a{k} = TEXT(v[{pos}])")
                value[name] = f"a{k}"
            else:
                lines.append(f"a{k} = TG(v[{pos}]) or T(v[{pos}])")
                value[name], json[name] = f"a{k}[0]", f"a{k}[1]"
        elif kind == "f":
            lines.append(f"a{k} = F{k}(v[{pos}])")
            value[name], json[name] = f"a{k}", f"J(a{k})"
        else:  # StartTime: kept raw, for the cache only
            value[name] = f"v[{pos}]"
        if name == key_name:
            if kind != "i":
                return None  # the cache key must be the value itself
            key = pos
    if names:
        lines += ["try:", "    rv = G(known)", "except KeyError:", "    return False"]
        if not classified:  # a classified row's dict takes the values, not their JSON
            lines.append("rj = RJ(rv) or R(rv)")
        for m, name in enumerate(names):
            value[name], json[name] = f"rv[{m}]", f"rj[{m}]"
    # The cache holds every column of the record, StartTime included.
    lines += [f"known[{name!r}] = {value[name]}" for name in shape.keys]

    def get(name: str) -> str:
        return value.get(name, "None")

    lines += [
        f"sub = {get('event_sub_class')}",
        f"raw_type = {get('object_type')}",
        f"user = {get('login_name')} or {get('session_login_name')} or None",
        f"database = {get('database_name')} or None",
        f"object_name = {get('object_name')} or {get('target_login_name')} or {get('file_name')} or None",
        f"text = {get('text_data')}",
        f"role, client, app = {get('role_name')}, {get('host_name')}, {get('application_name')}",
    ]
    # qualified_name as JSON: spliced from the two names' JSON texts when each
    # comes from one column (JSON escapes character by character).
    name_from = [n for n in ("object_name", "target_login_name", "file_name") if n in value]
    if len(name_from) == 1 and "database_name" in json and json.get(name_from[0]):
        qualified = f"{json['database_name']}[:-1] + '.' + {json[name_from[0]]}[1:]"
    else:
        qualified = "J(f'{database}.{object_name}')"
    lines += [
        "kind, message, e_sub, object_type, e_type = INFO(sub, raw_type)",
    ]
    if classified:
        return _compile_classified(shape, event_class, names, key, columns, lines, value, decoder)
    lines += [
        "if object_name and database:",
        f"    e_q = ',\"qualified_name\":' + {qualified}",
        "    message = (f'{message} {object_type} {database}.{object_name}{SUF(role, user, client, app)}'"
        " if object_type else f'{message} {database}.{object_name}{SUF(role, user, client, app)}')",
        "else:",
        "    e_q = ''",
        "    if object_name:",
        "        message = (f'{message} {object_type} {object_name}{SUF(role, user, client, app)}' if object_type"
        " else f'{message} {object_name}{SUF(role, user, client, app)}')",
        "    elif database:",
        "        message = f'{message} {database}{SUF(role, user, client, app)}'",
        "    else:",
        "        message += SUF(role, user, client, app)",
        "if text:",
        "    message += ': ' + SHORT(text)",
    ]
    parts = _json_parts(event_class, names, json)
    lines.append(f"attributes = {_json_template(parts, _OPTIONAL)}")
    source = _row_source(event_class, shape.positions[columns[_START_KEY]], key, bool(names), lines)
    scope: dict[str, Any] = {**decoder.row_scope,
        "TG": texts.get, "T": _Texts(texts), "J": _json, "RJ": jsons.get, "R": _JsonTuple(jsons),
        "G": _getter(names) if names else None, "INFO": _info_json(event_class), "SHORT": _short, "SUF": _suffix,
        **{f"F{k}": func for k, func in shape.funcs_by_value.items()},
    }
    exec(_code(source, event_class), scope)  # noqa: S102 - constants and positions only
    return _RowCode(scope["rows"], frozenset([*parts, *_OPTIONAL]))


def _row_source(event_class: int, start: int, key: int, resolved: bool, lines: list[str]) -> str:
    """The row function: StartTime and the repeated-data cache first (a record
    that needs the general path gives False before anything changes), then
    ``lines``, then the row goes to the block."""
    head = [
        f"start = v[{start}]",
        "if len(start) != 16:",
        "    return False",
        "prefix = SEC(start[:14]) or SECOND(start)",
        "if prefix is None:",
        "    return False",
        "ms = U16(start, 14)[0]",
        "if ms >= 1000:",
        "    return False",
    ]
    if key >= 0:
        head += [f"known = CACHE(v[{key}])", "if known is None:",
                 "    return False" if resolved else f"    known = NEW(v[{key}])"]
    else:
        head.append("known = {}")
    tail = [
        f"ROW((kind, {event_class}, message, prefix + MS[ms], index, user, database, object_name, object_type,"
        " attributes))",
        "return True",
    ]
    return "def rows(v, offset, index):\n" + "".join(f"    {line}\n" for line in head + lines + tail)


def _compile_classified(shape: _Shape, event_class: int, names: tuple[str, ...], key: int,
                        columns: dict[str, int], lines: list[str], value: dict[str, str], decoder: _Decoder
                        ) -> _RowCode:
    """Row code for message events: classified with the message catalogue, the
    attributes dict built as :meth:`_Decoder._row` builds it (same keys, same
    order of precedence: the columns, then what the row adds, then what the
    message adds)."""
    own = [f"{name!r}: {value[name]}" for name in (*shape.keys, *names) if name != _START_KEY]
    own.append(f"'event_class_name': {N.event_name(event_class)!r}")
    lines += [
        "if object_name and database:",
        "    qualified = f'{database}.{object_name}'",
        "else:",
        "    qualified = None",
        f"error = {value.get('error', 'None')}",
        "extra, match, detail, _mkeys, _mjson = MSG(text, error if type(error) is int else None)",
        f"attributes = {{{', '.join(own)}}}",
        "if e_sub:",
        "    attributes['event_subclass_name'] = e_sub",
        "if e_type:",
        "    attributes['object_type_name'] = e_type",
        "if qualified is not None:",
        "    attributes['qualified_name'] = qualified",
        *([f"attributes['repeated_columns'] = {list(names)!r}"] if names else []),
        "attributes['offset'] = offset",
        "if extra:",
        "    attributes.update(extra)",
        "if match is not None:",
        *(["    kind = match.event_type"] if event_class != LOGIN_FAILED else []),
        "    if match.event_id is not None:",
        "        attributes['message_id'] = match.event_id",
        "    attributes.update(match.attributes)",
        "    object_name = match.object_name or object_name",
        "    object_type = match.object_type or object_type",
        "    user = match.user or user",
        "    database = match.database or database",
        "message += SUF(role, user, client, app)",
        "if detail is not None:",
        "    message += ': ' + detail",
    ]
    source = _row_source(event_class, shape.positions[columns[_START_KEY]], key, bool(names), lines)
    scope: dict[str, Any] = {
        **decoder.row_scope,
        "TG": decoder.texts.get, "T": _Texts(decoder.texts), "TEXT": _text,
        "G": _getter(names) if names else None, "INFO": _info(event_class), "MSG": _message_event, "SUF": _suffix,
        **{f"F{k}": func for k, func in shape.funcs_by_value.items()},
    }
    exec(_code(source, event_class), scope)  # noqa: S102 - constants and positions only
    return _RowCode(scope["rows"])


@lru_cache(maxsize=4096)
def _suffix(role: str | None, user: str | None, client: str | None, app: str | None) -> str:
    """The end of a row's message: who, from where, with what."""
    out = f" role {role}" if role else ""
    if user:
        out += f" by {user}"
    if client:
        out += f" from {client}"
    if app:
        out += f" via {app}"
    return out


_OPTIONAL = {"event_subclass_name": "{e_sub}", "object_type_name": "{e_type}", "qualified_name": "{e_q}"}


def _json_parts(event_class: int, names: tuple[str, ...], json: dict[str, str]) -> dict[str, str]:
    """Attribute key -> f-string part of its JSON value, for the keys a row always has."""
    parts: dict[str, str] = {name: f"{{{expr}}}" for name, expr in json.items() if name != "offset"}
    parts["event_class_name"] = _braces(_json(N.event_name(event_class)))
    parts["offset"] = "{offset}"
    if names:
        parts["repeated_columns"] = _braces(_json(list(names)))
    return parts


def _json_template(parts: dict[str, str], optional: dict[str, str]) -> str:
    """An f-string expression for the attributes JSON: keys sorted as
    attributes_json sorts them; optional keys come as ready ',"key":value'
    fragments (or nothing)."""
    template = "".join(optional[name] if name in optional else f",{_braces(_json(name))}:{parts[name]}"
                       for name in sorted([*parts, *optional]))
    if template.startswith(","):  # the first key is always there: no comma to cut
        return "f" + repr("{{" + template[1:] + "}}")
    return f"'{{' + f{template!r}[1:] + '}}'"


@lru_cache(maxsize=256)
def _code(source: str, event_class: int) -> Any:
    """Compiled row code (compiling costs a millisecond; layouts that differ only
    in value sizes share their source)."""
    return compile(source, f"<trace rows {event_class}>", "exec")


def _braces(text: str) -> str:
    """Literal text for an f-string."""
    return text.replace("{", "{{").replace("}", "}}")


def _getter(names: tuple[str, ...]) -> Any:
    getter = itemgetter(*names)
    return getter if len(names) > 1 else (lambda known: (getter(known),))


class _Texts:
    """Miss handler of the text cache: UTF-16 value -> (text, JSON text)."""

    def __init__(self, texts: dict[bytes, tuple[str, str]]):
        self.texts = texts

    def __call__(self, raw: bytes) -> tuple[str, str]:
        text = _utf16_decode(raw, "replace")[0]
        entry = (text, _json(text))
        if len(raw) <= TEXT_CACHE_MAX_BYTES:
            if len(self.texts) >= TEXT_CACHE_ENTRIES:
                self.texts.clear()
            self.texts[raw] = entry
        return entry

    def text(self, raw: bytes) -> tuple[str, str | None]:
        """The same for a caller that needs no JSON (long texts are not encoded)."""
        if len(raw) <= TEXT_CACHE_MAX_BYTES:
            return self(raw)
        return _utf16_decode(raw, "replace")[0], None


class _JsonTuple:
    """Miss handler of the cache of repeated values: values -> their JSON texts."""

    def __init__(self, jsons: dict[Any, tuple[str, ...]]):
        self.jsons = jsons

    def __call__(self, values: tuple) -> tuple[str, ...]:
        out = tuple(_json(v) for v in values)
        if len(self.jsons) >= _JSON_CACHE_ENTRIES:
            self.jsons.clear()
        self.jsons[values] = out
        return out


@lru_cache(maxsize=256)
def _info(event_class: int) -> Any:
    """(sub, raw_type) -> (event_type, message head, subclass name, object type, its name)."""

    @lru_cache(maxsize=4096)
    def info(sub: Any, raw_type: Any) -> tuple[str, str, str | None, str | None, str | None]:
        _name, sub_name, kind, head = _class_info(event_class, sub if type(sub) is int else None)
        object_type, type_name = _object_type(raw_type) if type(raw_type) is int else (None, None)
        return kind, head, sub_name, object_type, type_name
    return info


@lru_cache(maxsize=256)
def _info_json(event_class: int) -> Any:
    """The same with the optional attributes as JSON fragments."""
    plain = _info(event_class)

    @lru_cache(maxsize=4096)
    def info(sub: Any, raw_type: Any) -> tuple[str, str, str, str | None, str]:
        kind, head, sub_name, object_type, type_name = plain(sub, raw_type)
        return (kind, head, ',"event_subclass_name":' + _json(sub_name) if sub_name else "", object_type,
                ',"object_type_name":' + _json(type_name) if type_name else "")
    return info


class _Decoder:
    """Turns one file's records into timeline rows (see "Speed" above).

    Rows go into :class:`EventColumns` blocks; rows whose time cannot be given
    as local text (bad or missing StartTime) are yielded as single events, in
    file order.
    """

    def __init__(self, header: TraceHeader):
        self.header = header
        # Key of the repeated-data cache (SPID in every known server file).
        base = header.repeat_base
        self.key_column = base if base in N.COLUMNS else N.C_SPID
        self.key_name = N.COLUMN_KEYS[self.key_column]
        # key column value (decoded) -> attribute key -> decoded value
        # (StartTime raw): what the last event of that key said.
        self.cache: dict[Any, dict[str, Any]] = {}
        self.texts: dict[bytes, tuple[str, str]] = {}  # UTF-16 value -> (text, JSON text)
        self.text_miss = _Texts(self.texts).text
        self.jsons: dict[Any, tuple[str, ...]] = {}  # repeated values -> their JSON texts
        self.shapes: dict[tuple[int, int], _Shape] = {}  # (event class, record length) -> layout
        self.seen_shapes: set[tuple[int, int]] = set()
        self.seconds: dict[bytes, str] = {}  # SYSTEMTIME up to the second -> its text
        self.row_codes: dict[tuple, _RowCode | None] = {}
        # Every key the JSON attributes of rows so far may hold (all row codes
        # compiled so far: a superset for any block; rules skip JSON rows
        # whose text cannot hold the attribute they test).
        self.json_keys: frozenset[str] = frozenset()
        self.row_code_seen: dict[tuple, int] = {}
        self.unresolved = 0
        self.first_unresolved: int | None = None
        # The next block's rows, flat: each row adds its ROW_WIDTH values in
        # EventColumns column order with one extend() (not one append per
        # column), and no row tuple outlives the call, so the garbage collector
        # has no per-row object to track; take_block() slices out the columns.
        self.rows: list[Any] = []
        self.row_scope = {
            "SEC": self.seconds.get, "SECOND": self._second, "CACHE": self.cache.get, "NEW": self._new_known,
            "U16": _U16, "MS": _MILLISECONDS, "ROW": self.rows.extend,
        }

    # blocks -------------------------------------------------------------------

    def pending(self) -> int:
        return len(self.rows) // ROW_WIDTH

    def take_block(self) -> EventColumns | None:
        rows = self.rows
        if not rows:
            return None
        block = EventColumns(SOURCE, TIMESTAMP_DESC, *(rows[i::ROW_WIDTH] for i in range(ROW_WIDTH)),
                             encoded_keys=self.json_keys)
        rows.clear()
        return block

    def _second(self, start: bytes) -> str | None:
        """Text of a StartTime up to the second, or None when it is no valid time."""
        fields = _SYSTEMTIME(start)
        if not _valid_time((*fields[:7], 0)):
            return None
        if len(self.seconds) >= SECOND_CACHE_ENTRIES:
            self.seconds.clear()
        text = self.seconds[start[:14]] = L.format_systemtime(fields)[:19]
        return text

    def _new_known(self, key: Any) -> dict[str, Any]:
        """An empty repeated-data cache entry for ``key``."""
        if len(self.cache) >= REPEAT_CACHE_KEYS:
            self.cache.clear()
        known: dict[str, Any] = {}
        self.cache[key] = known
        return known

    # the whole file ---------------------------------------------------------------

    def run(self, reader: TraceReader) -> Iterator[EventColumns | Event | ParseWarning]:
        pos: int | None = L.HEADER_SIZE
        while pos is not None:
            if reader._skip_start is None:
                pos = self._fast(reader, pos)
                if self.pending() >= BLOCK_ROWS:
                    yield self.take_block()  # type: ignore[misc]
                    continue
            # One step of the general path: a record the hot loop left, damage, padding.
            step = reader._step(pos)
            while True:
                try:
                    item = next(step)
                except StopIteration as stop:
                    pos = stop.value
                    break
                if isinstance(item, ParseWarning):
                    yield item
                elif not item.is_control:
                    single = self.raw_record(item)
                    if single and isinstance(single[-1], Event):
                        block = self.take_block()  # file order: the rows before it first
                        if block is not None:
                            yield block
                    yield from single
        if reader._skip_start is not None:
            yield reader._end_skip(reader.data_end if reader.data_end is not None else reader.win.size)
        block = self.take_block()
        if block is not None:
            yield block

    def _fast(self, reader: TraceReader, pos: int) -> int:
        """Read well-formed event records from ``pos`` until one needs the general
        path or the block is full; returns where reading goes on."""
        win = reader.win
        buf, base = win.buf, win.base
        blen = len(buf)
        begin = L.BEGIN_TOKEN.unpack_from
        texts, shapes, seconds, cache = self.texts, self.shapes, self.seconds, self.cache
        text_miss = self.text_miss
        walk = self._walk
        key_name = self.key_name
        finish = self._row
        add_row = self.rows.extend
        rows = BLOCK_ROWS - self.pending()
        while rows > 0:
            rel = pos - base
            if rel + 9 > blen:
                win.ensure(pos, pos + 9)
                buf, base = win.buf, win.base
                blen, rel = len(buf), pos - base
                if rel + 9 > blen:
                    return pos
            tid, n, event_class, length = begin(buf, rel)
            if tid != 0xFFF6 or n != 6 or event_class >= L.CONTROL_CLASS_MIN or length > MAX_RECORD_LENGTH:
                return pos
            body = rel + 9
            end = body + length
            if end > blen:
                if base + end > win.size:
                    return pos
                win.ensure(pos, base + end + 3)
                buf, base = win.buf, win.base
                blen, rel = len(buf), pos - base
                body, end = rel + 9, rel + 9 + length
                if end > blen:
                    return pos
            shape = shapes.get((event_class, length))
            attrs = None
            if shape is not None:
                if shape.heads(buf, body) == shape.expect:
                    if shape.misses:
                        shape.misses = 0
                    vals = shape.unpack(buf, body)
                    payload = vals[shape.repeated] if shape.repeated >= 0 else None
                    code = shape.rows.get(payload, _UNSET)
                    if code is _UNSET:
                        code = self._row_code(shape, event_class, payload)
                    if code is not None:
                        if not code.fn(vals, pos, reader.index):
                            return pos
                        reader.index += 1
                        pos = base + end
                        rows -= 1
                        continue
                    values = shape.values(vals)
                    if shape.texts or shape.funcs:
                        values = list(values)
                        for i in shape.texts:
                            raw = values[i]
                            values[i] = (texts.get(raw) or text_miss(raw))[0]
                        for i, func in shape.funcs:
                            values[i] = func(values[i])
                    attrs = dict(zip(shape.keys, values, strict=True))
                    if payload is not None:
                        repeated = payload
                        disjoint = shape.disjoint.get(repeated)
                        if disjoint is None:
                            unique = _repeated_ids(repeated)[2]
                            disjoint = shape.disjoint[repeated] = unique is not None and unique.isdisjoint(
                                shape.keyset)
                    else:
                        repeated = None
            if attrs is None:
                walked = walk(buf, body, end, event_class, length, shape)
                if walked is None:
                    return pos
                attrs, repeated = walked
                if repeated is not None:
                    unique = _repeated_ids(repeated)[2]
                    disjoint = unique is not None and unique.isdisjoint(attrs)
            resolved = None
            if repeated is not None:
                key = attrs.get(key_name)
                known = cache.get(key) if key is not None else None
                if known is None:
                    return pos  # unresolved: reported by the general path
                pairs, names, unique, getter = _repeated_ids(repeated)
                if disjoint and known.keys() >= unique:  # type: ignore[operator]
                    attrs.update(zip(names, getter(known), strict=True))
                    resolved = list(names)
                else:
                    resolved = []
                    for _cid, name in pairs:
                        if name in attrs:
                            continue  # an explicit value always wins
                        if name not in known:
                            return pos
                        attrs[name] = known[name]
                        resolved.append(name)
            start = attrs.get(_START_KEY)
            if start is None or len(start) != 16:
                return pos
            prefix = seconds.get(start[:14])
            if prefix is None:
                fields = _SYSTEMTIME(start)
                if not _valid_time((*fields[:7], 0)):
                    return pos
                if len(seconds) >= SECOND_CACHE_ENTRIES:
                    seconds.clear()
                prefix = seconds[start[:14]] = L.format_systemtime(fields)[:19]
            ms = _U16(start, 14)[0]
            if ms >= 1000:
                return pos
            # The record is kept: from here on nothing can send it back.
            key = attrs.get(key_name)
            if key is not None:
                known = cache.get(key)
                if known is None:
                    if len(cache) >= REPEAT_CACHE_KEYS:
                        cache.clear()
                    cache[key] = attrs.copy()
                else:
                    known.update(attrs)
            del attrs[_START_KEY]
            kind, message, user, database, object_name, object_type = finish(event_class, pos, attrs, resolved)
            add_row((kind, event_class, message, prefix + _MILLISECONDS[ms], reader.index, user, database,
                     object_name, object_type, attrs))
            reader.index += 1
            pos = base + end
            rows -= 1
        return pos

    def _walk(self, buf: bytes, p: int, end: int, event_class: int, length: int, shape: _Shape | None
              ) -> tuple[dict[str, Any], bytes | None] | None:
        """Walk and decode a record body token by token: (attributes, 0xFFF3
        payload), or None when the record needs the general path.  Compiles the
        record's layout when its class and length recur."""
        attrs: dict[str, Any] = {}
        repeated = None
        kinds, keys, funcs, texts, text_miss = _KINDS, _KEYS, _FUNCS, self.texts, self.text_miss
        head, long_len, i32, i64 = _unpack_head, _unpack_long, _I32, _I64
        start, count = p, 0
        try:
            while p < end:
                tid, n = head(buf, p)
                if n == 0xFF:
                    n = long_len(buf, p + 3)[0]
                    if n > L.MAX_VALUE_LENGTH:
                        return None
                    d = p + 7
                else:
                    d = p + 3
                p = d + n
                if tid < 256:
                    kind = kinds[tid]
                    if kind == 1:  # int
                        if n == 4:
                            value: Any = i32(buf, d)[0]
                        elif n == 8:
                            value = i64(buf, d)[0]
                        else:
                            value = _int(buf[d:p])
                    elif kind == 2:  # text
                        raw = buf[d:p]
                        value = (texts.get(raw) or text_miss(raw))[0]
                    elif kind == 3:  # StartTime, decoded with the row
                        value = buf[d:p]
                    elif kind == 4:
                        value = funcs[tid](buf[d:p])
                    else:
                        return None
                    attrs[keys[tid]] = value
                    count += 1
                elif tid == 0xFFF3 and repeated is None:
                    repeated = buf[d:p]
                else:
                    return None  # special tokens, a second 0xFFF3, odd ids: the general path
        except struct.error:
            return None  # a token head past the end of the buffer
        if p != end or count != len(attrs):
            return None  # a token runs past the record, or a column comes twice
        # Compile the layout on the second record of this class and length (or
        # when the compiled one keeps failing).
        key = (event_class, length)
        if shape is None:
            if key in self.seen_shapes:
                if len(self.shapes) >= SHAPE_CACHE_ENTRIES:
                    self.shapes.clear()
                compiled = _Shape.of(buf, start, end)
                if compiled is not None:
                    self.shapes[key] = compiled
            else:
                if len(self.seen_shapes) >= SHAPE_CACHE_ENTRIES:
                    self.seen_shapes.clear()
                self.seen_shapes.add(key)
        else:
            shape.misses += 1
            if shape.misses >= 2:
                compiled = _Shape.of(buf, start, end)
                if compiled is not None:
                    self.shapes[key] = compiled
        return attrs, repeated

    def _row_code(self, shape: _Shape, event_class: int, payload: bytes | None) -> _RowCode | None:
        """The row code of a layout and 0xFFF3 list; layouts that differ only in
        value sizes share it."""
        signature = (event_class, shape.keys, shape.kinds, shape.positions, payload)
        code = self.row_codes.get(signature, _UNSET)
        if code is _UNSET:
            seen = self.row_code_seen.get(signature, 0) + 1
            if seen < ROW_CODE_AFTER:
                if len(self.row_code_seen) >= SHAPE_CACHE_ENTRIES:
                    self.row_code_seen.clear()
                self.row_code_seen[signature] = seen
                return None  # the dict path for now; asked again next time
            if len(self.row_codes) >= SHAPE_CACHE_ENTRIES:
                self.row_codes.clear()
            code = self.row_codes[signature] = _compile_rows(shape, event_class, payload, self)
            if code is not None and not code.json_keys <= self.json_keys:
                self.json_keys = self.json_keys | code.json_keys
        if len(shape.rows) >= 64:
            shape.rows.clear()
        shape.rows[payload] = code
        return code  # type: ignore[return-value]

    # the general path -----------------------------------------------------------------

    def _resolve(self, rec: RawRecord, attrs: dict[str, Any]) -> tuple[list[str], list[int]]:
        """Apply 0xFFF3 from the per-key cache, then remember this record's values:
        (keys of the resolved columns, ids of the missing ones)."""
        key = attrs.get(self.key_name)
        known = self.cache.get(key) if key is not None else None
        resolved, missing = [], []
        for cid in rec.repeated:
            name = N.COLUMN_KEYS.get(cid) or f"column_{cid}"
            if name in attrs:
                continue  # an explicit value always wins
            if known is not None and name in known:
                attrs[name] = known[name]
                resolved.append(name)
            else:
                missing.append(cid)
        if key is not None:
            # Resolved values equal the cached ones, so updating with all is safe.
            if key not in self.cache and len(self.cache) >= REPEAT_CACHE_KEYS:
                self.cache.clear()
            self.cache.setdefault(key, {}).update(attrs)
        if missing:
            self.unresolved += len(missing)
            if self.first_unresolved is None:
                self.first_unresolved = rec.index
        return resolved, missing

    def raw_record(self, rec: RawRecord) -> list[Event | ParseWarning]:
        """A record framed by the general path: its row goes to the block; a row
        that cannot be a block row comes back as an event (with its warning)."""
        attrs: dict[str, Any] = {}
        for cid, raw in rec.columns.items():
            attrs[N.COLUMN_KEYS.get(cid) or f"column_{cid}"] = raw if cid == N.C_START else decode_value(cid, raw)
        resolved, missing = self._resolve(rec, attrs)  # also when nothing is repeated: it feeds the cache
        start_raw = attrs.pop(_START_KEY, None)
        out: list[Event | ParseWarning] = []
        local_text = None
        time_ok = False
        if start_raw is not None and len(start_raw) == 16:
            fields = _SYSTEMTIME(start_raw)
            local_text = L.format_systemtime(fields)
            time_ok = _valid_time(fields)
            if not time_ok:
                attrs["start_time_raw"] = start_raw.hex()
                out.append(ParseWarning(f"record {rec.index} at 0x{rec.offset:x}: StartTime {local_text} is not a"
                                        " valid date; event kept without a time", f"offset 0x{rec.offset:x}",
                                        lost_records=0, damaged=True))
        elif start_raw is not None:
            attrs["start_time_raw"] = start_raw.hex()
        for tid, data in rec.specials:
            attrs.setdefault("special_tokens", []).append(
                {"id": f"0x{tid:04x}", "name": L.SPECIAL_NAMES.get(tid, "unknown"), "data": data.hex()})
        if rec.duplicates:
            attrs["duplicate_columns"] = [{"column": c, "data": d.hex()} for c, d in rec.duplicates]
        if missing:
            attrs["unresolved_repeated_columns"] = _column_keys(tuple(missing))
        kind, message, user, database, object_name, object_type = self._row(rec.event_class, rec.offset, attrs,
                                                                             resolved)
        if time_ok:
            self.rows.extend((kind, rec.event_class, message, local_text, rec.index, user, database, object_name,
                              object_type, attrs))
            return out
        # No readable time: a single event (the engine says how its time is missing).
        out.append(Event(source=SOURCE, event_type=kind, message=message, timestamp_desc=TIMESTAMP_DESC,
                         local_text=local_text, event_id=rec.event_class, user=user, database=database,
                         object_name=object_name, object_type=object_type, source_record=rec.index,
                         attributes=attrs))
        return out

    # one row ------------------------------------------------------------------------

    def _row(self, ec: int, offset: int, attrs: dict[str, Any], resolved: list[str] | None) -> tuple:
        """Name, classify and describe a record's decoded columns (``attrs``, completed
        in place): (event_type, message, user, database, object_name, object_type)."""
        sub = attrs.get("event_sub_class")
        name, sub_name, kind, message = _class_info(ec, sub if type(sub) is int else None)
        raw_type = attrs.get("object_type")
        object_type = type_name = None
        if type(raw_type) is int:
            object_type, type_name = _object_type(raw_type)
        user = attrs.get("login_name") or attrs.get("session_login_name") or None
        database = attrs.get("database_name") or None
        object_name = attrs.get("object_name") or attrs.get("target_login_name") or attrs.get("file_name") or None
        text = attrs.get("text_data")
        role, client, app = attrs.get("role_name"), attrs.get("host_name"), attrs.get("application_name")

        attrs["event_class_name"] = name
        if sub_name:
            attrs["event_subclass_name"] = sub_name
        if type_name:
            attrs["object_type_name"] = type_name
        if object_name and database:
            # One field for rules that need database and name together.
            attrs["qualified_name"] = f"{database}.{object_name}"
        if resolved:
            attrs["repeated_columns"] = resolved
        attrs["offset"] = offset

        if type(text) is str and (ec in MESSAGE_EVENTS or ec == LOGIN_FAILED):
            error = attrs.get("error")
            extra, match, detail, _keys, _json_texts = _message_event(text, error if type(error) is int else None)
            attrs.update(extra)
            if match is not None:
                if ec != LOGIN_FAILED:
                    kind = match.event_type
                if match.event_id is not None:
                    attrs["message_id"] = match.event_id
                object_name = match.object_name or object_name
                object_type = match.object_type or object_type
                user = match.user or user
                database = match.database or database
                attrs.update(match.attributes)
            # The message text names what the event is about.
        else:
            detail = _short(text) if type(text) is str and text else None
            if object_name:
                message += (f" {object_type}" if object_type else "") + (
                    f" {database}.{object_name}" if database else f" {object_name}")
            elif database:
                message += f" {database}"
        message += _suffix(role, user, client, app)
        if detail is not None:
            message += f": {detail}"
        return kind, message, user, database, object_name, object_type


# --- the parser object ----------------------------------------------------------

# What the prescan looks for in ErrorLog events' TextData ("(UTC)" of 17177,
# "UTC adjustment"), as UTF-16LE bytes: events without it are only framed.
_PRESCAN_NEEDLES = ("UTC".encode("utf-16-le"),)


class DefaultTraceParser:
    name = "default_trace"
    artifact_type = "default_trace"

    def sniff(self, head: bytes, name: str) -> bool:
        # FF FE, then the provider name at offset 6; the header size is not
        # required so that foreign header variants reach parse() and are reported.
        return len(head) >= 6 + len(L.PROVIDER_UTF16) and head[:2] == b"\xff\xfe" \
            and head[6:6 + len(L.PROVIDER_UTF16)] == L.PROVIDER_UTF16


    def prescan(self, src: Source) -> InputEvidence:
        """Header (server name -> host/instance), control records, time anchors.

        Walks the record framing only: apart from control records and ErrorLog
        events (which may carry the 17177 local/UTC pair or a "UTC adjustment"
        line), records are not decoded, so it reads the file once at little
        CPU cost.
        """
        errorlog_lines: list[str] = []
        try:
            with src.open() as stream:
                reader = TraceReader(stream, src.size, walk_classes=frozenset({ERRORLOG_EVENT}),
                                     walk_needles=_PRESCAN_NEEDLES)
                if reader.read_header() is not None or reader.header is None:
                    return InputEvidence()
                header = reader.header
                facts = header_facts(header)
                controls = []
                for item in reader.records():
                    if not isinstance(item, RawRecord):
                        continue
                    if item.is_control:
                        controls.append(control_facts(item))
                    elif item.event_class == ERRORLOG_EVENT and N.C_TEXT in item.columns:
                        text = _text(item.columns[N.C_TEXT])
                        if "(UTC)" in text or "UTC adjustment" in text:
                            errorlog_lines.append(text.strip())
                facts.update(_preamble_facts(reader.preamble))
        except OSError:
            return InputEvidence()
        _summarise_controls(facts, controls)
        facts["records"] = reader.index
        facts["lost_records"] = reader.lost
        if reader.data_end is not None:
            facts["data_end_offset"] = reader.data_end
        facts["rollover_sequence"] = rollover_sort_key(src.name)[1]
        host, instance = split_server_name(header.server_name)
        return InputEvidence(host=host, instance=instance, facts=facts,
                             anchors=_errorlog_anchors(errorlog_lines, src))

    def parse(self, src: Source, options: Mapping[str, Any] | None = None
              ) -> Iterator[EventColumns | Event | ParseWarning]:
        """Timeline rows as :class:`EventColumns` blocks (file order); a row without a
        readable StartTime comes as a single :class:`Event`.  Host and instance are
        the engine's (from :meth:`prescan`'s server name)."""
        try:
            stream = src.open()
        except OSError as exc:
            yield ParseWarning(f"cannot open: {exc}", None)
            return
        with stream:
            reader = TraceReader(stream, src.size)
            problem = reader.read_header()
            if problem is not None:
                yield problem
                return
            assert reader.header is not None
            decoder = _Decoder(reader.header)
            yield from decoder.run(reader)
        if decoder.unresolved:
            yield ParseWarning(
                f"{decoder.unresolved} repeated-data value(s) could not be resolved (first in record"
                f" {decoder.first_unresolved}): the earlier event of that session is not in this file;"
                " those columns are left empty", f"record {decoder.first_unresolved}", lost_records=0,
                damaged=False)


def _errorlog_anchors(lines: list[str], src: Source) -> list:
    """Time-zone anchors from ERRORLOG lines that ErrorLog trace events carry.

    The lines are ERRORLOG lines verbatim, so the ERRORLOG parser's own
    prescan reads them (one implementation of the 17177 pair and the
    "UTC adjustment" banner).
    """
    if not lines:
        return []
    text = "\n".join(lines) + "\n"
    try:
        evidence = prescan_errorlog(Source.from_bytes(text.encode("utf-16"), src.display_path))
    except (ValueError, UnicodeError):
        return []
    return list(evidence.anchors)


def _summarise_controls(facts: dict[str, Any], controls: list[dict[str, Any]]) -> None:
    """Lift the trace-start and trace-stop details to the top of the facts."""
    for control in controls:
        if control["kind"] == "trace_start" and "trace_start_time" not in facts:
            facts["trace_start_time"] = control.get("time")
            for key in ("options", "option_flags", "max_file_size_mb", "stop_time", "filters", "traced_events"):
                if key in control:  # lifted, not repeated: the event list alone is 34 entries
                    facts[f"trace_{key}" if not key.startswith("trace") else key] = control.pop(key)
        elif control["kind"] == "trace_stop":
            facts["trace_stopped_at"] = control.get("time")
    if controls:
        facts["control_records"] = controls


PARSER = DefaultTraceParser()

"""Reading EVTX files: one chunk scanner, two record engines, one record shape.

An EVTX file is a 4 KiB file header followed by 64 KiB chunks.  Every chunk is
self-contained (its string and template offsets are chunk-relative), which is
what lets us read a file of any size one chunk at a time and lets a damaged
chunk cost only its own records.

Two engines turn records into :class:`EvtxRecord`:

``rust``    the ``evtx`` package (pyevtx-rs): fast; we ask it for JSON and
            decode only the records that pass the cheap pre-filter.
``python``  python-evtx's node classes, driven chunk by chunk by our own
            walker.  python-evtx's iterator trusts the file header's chunk
            count (stale on dirty logs, so the newest records are silently
            dropped) and stops a chunk at the first bad record; our walker
            visits every physical chunk and resynchronises on the next record
            magic instead.

Both engines share :class:`ChunkScanner` (magic, record-number range and
checksums of every physical chunk), so damage is accounted for the same way:
per chunk, the records its header promises against the records read.  When
the Rust engine comes up short in a chunk, the python walker salvages what it
can from that chunk.

Neither engine renders XML text.  Values keep their types up to one canonical
form (:func:`canon`), so that both engines produce equal records.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tempfile
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import IO, Any, BinaryIO, NamedTuple

CHUNK_SIZE = 0x10000
FILE_HEADER_SIZE = 0x1000
CHUNK_HEADER_SIZE = 0x200
FILE_MAGIC = b"ElfFile\x00"
CHUNK_MAGIC = b"ElfChnk\x00"
RECORD_MAGIC = b"\x2a\x2a\x00\x00"
_RECORD_HEADER = struct.Struct("<IIQ")  # magic, size, record number (then FILETIME written)
_MIN_RECORD = 28  # 24-byte header + 4-byte trailing size copy
_ZERO_CHUNK = bytes(CHUNK_SIZE)
_EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
# How many chunks the Rust engine may run ahead of the last chunk it was seen
# in before a record is declared unplaceable (bounds memory: 64 KiB each).
_LOOKAHEAD = 256
# A Rust iterator that only ever raises would otherwise spin forever.
_MAX_CONSECUTIVE_ERRORS = 10_000
# Non-file inputs are copied to a temporary file for the Rust engine, which
# needs to seek; never more than this is copied.
SPOOL_LIMIT = 64 * 1024**3


# --------------------------------------------------------------------------
# The record shape both engines produce


@dataclass(slots=True)
class EvtxRecord:
    """One event, as both engines see it (XML System fields + EventData)."""

    provider: str = ""
    event_id: int | None = None
    qualifiers: int | None = None
    version: int | None = None
    level: int | None = None
    task: int | None = None
    opcode: int | None = None
    keywords: str | None = None
    time_created: datetime | None = None
    record_id: int | None = None  # XML EventRecordID
    channel: str = ""
    computer: str = ""
    user_sid: str | None = None
    process_id: int | None = None
    thread_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)  # named EventData / UserData leaves
    strings: list[str] = field(default_factory=list)  # unnamed <Data>: insertion strings %1..%n
    binary: bytes | None = None
    # Provenance: the record header's number (differs from EventRecordID in
    # exported logs) and the physical chunk the record was read from.
    header_record: int | None = None
    header_time: datetime | None = None  # only a fallback when the XML has no TimeCreated
    chunk: int | None = None
    salvaged: bool = False


def canon(value: Any) -> Any:
    """One textual form per value, whichever engine decoded it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex().upper()
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return canon(value.get("#text"))
    return str(value)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def filetime(qword: int) -> datetime | None:
    """FILETIME -> aware UTC datetime, truncated to the microsecond like pyevtx-rs."""
    if qword <= 0:
        return None
    try:
        return _EPOCH_1601 + timedelta(microseconds=qword // 10)
    except OverflowError:
        return None


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# File and chunk layer


@dataclass(slots=True)
class FileHeader:
    valid: bool
    chunk_count: int = 0
    dirty: bool = False
    full: bool = False
    next_record: int = 0
    version: str = ""
    checksum_ok: bool = True


def parse_file_header(head: bytes) -> FileHeader:
    if len(head) < 0x80 or head[:8] != FILE_MAGIC:
        return FileHeader(valid=False)
    next_record, = struct.unpack_from("<Q", head, 0x18)
    minor, major, _block, chunk_count = struct.unpack_from("<HHHH", head, 0x24)
    flags, checksum = struct.unpack_from("<II", head, 0x78)
    return FileHeader(
        valid=True, chunk_count=chunk_count, dirty=bool(flags & 1), full=bool(flags & 2),
        next_record=next_record, version=f"{major}.{minor}",
        checksum_ok=(zlib.crc32(head[:0x78]) & 0xFFFFFFFF) == checksum,
    )


@dataclass(slots=True)
class Chunk:
    """One physical 64 KiB chunk slot, with what its header claims."""

    index: int
    offset: int  # in the file
    data: bytes | None  # the 64 KiB (zero-padded when the file ends inside it); None once done
    present: int  # bytes actually in the file
    state: str  # "ok", "empty" (all zero), "bad_magic"
    first: int | None = None  # record numbers the header claims (file numbering)
    last: int | None = None
    free_offset: int = CHUNK_SIZE
    header_crc_ok: bool | None = None
    data_crc_ok: bool | None = None
    beyond_header: bool = False  # past the file header's (possibly stale) chunk count
    # (first, last) when the header's claim is usable (``expected``), else
    # None: set once the header is read, looked up for every record.
    claimed: tuple[int, int] | None = None

    @property
    def expected(self) -> int | None:
        if self.state != "ok" or self.first is None or self.last is None or self.last < self.first:
            return None
        count = self.last - self.first + 1
        # A header claiming more records than a chunk can hold is itself damaged.
        return count if count <= CHUNK_SIZE // _MIN_RECORD else None

    def contains(self, number: int) -> bool:
        claimed = self.claimed
        return claimed is not None and claimed[0] <= number <= claimed[1]

    @property
    def position(self) -> str:
        return f"chunk {self.index} (offset 0x{self.offset:x})"


def read_exact(stream: IO[bytes], size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads (pipes, archive members)."""
    parts = []
    while size > 0:
        data = stream.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def inspect_chunk(index: int, data: bytes, header: FileHeader) -> Chunk:
    present = len(data)
    if present < CHUNK_SIZE:
        data = data + bytes(CHUNK_SIZE - present)
    chunk = Chunk(index=index, offset=FILE_HEADER_SIZE + index * CHUNK_SIZE, data=data,
                  present=present, state="ok", beyond_header=header.valid and index >= header.chunk_count)
    if data[:8] != CHUNK_MAGIC:
        # Unused slots of a preallocated log are all zero: not damage.
        chunk.state = "empty" if data == _ZERO_CHUNK else "bad_magic"
        if chunk.state == "empty":
            chunk.data = None
        return chunk
    first, last, _lf, _ll, _hs, _last_ofs, free, data_crc = struct.unpack_from("<QQQQIIII", data, 8)
    header_crc, = struct.unpack_from("<I", data, 0x7C)
    chunk.first, chunk.last = first, last
    chunk.claimed = (first, last) if chunk.expected is not None else None
    chunk.free_offset = free if CHUNK_HEADER_SIZE <= free <= CHUNK_SIZE else CHUNK_SIZE
    chunk.header_crc_ok = (zlib.crc32(data[:0x78] + data[0x80:CHUNK_HEADER_SIZE]) & 0xFFFFFFFF) == header_crc
    chunk.data_crc_ok = (zlib.crc32(data[CHUNK_HEADER_SIZE:chunk.free_offset]) & 0xFFFFFFFF) == data_crc
    return chunk


class ChunkScanner:
    """Every physical chunk of a stream, in order, one 64 KiB read at a time."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.head = read_exact(stream, FILE_HEADER_SIZE)
        self.header = parse_file_header(self.head)
        self.size = len(self.head)
        self._index = 0

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            data = read_exact(self.stream, CHUNK_SIZE)
            if not data:
                return
            self.size += len(data)
            chunk = inspect_chunk(self._index, data, self.header)
            self._index += 1
            yield chunk


# --------------------------------------------------------------------------
# Cheap pre-filter


class Prefilter:
    """Skip records before paying for decoding.

    ``needles`` are strings at least one of which occurs (case-insensitively)
    in every record that the selection table can accept.  The Rust engine
    tests them on the JSON text, the python engine on the record's bytes
    (UTF-16LE and 8-bit forms) and on the literal text of the template the
    record uses, because classic events carry their provider name in the
    template.

    Speed matters more than elegance here: every record of a multi-GB
    Security log passes through.  A case-insensitive regex alternation costs
    ~300 us on a 1 KiB record (Python's re tries every alternative at every
    position); lower-casing plus ``find`` costs ~8 us, and first looking for
    a few three-letter "gates" shared by the needles (``sql`` covers most)
    ~4 us.  Only when a gate is present are its needles searched.
    """

    def __init__(self, needles: Iterable[str]):
        self.needles = tuple(sorted({n.lower() for n in needles if n}))
        self.active = bool(self.needles)
        self.groups = _gate_groups(self.needles)
        self.byte_groups = tuple(
            (_utf16(gate), tuple((_utf16(n), 2 * k) for n, k in members)) for gate, members in self.groups
        ) + tuple((gate.encode("ascii"), tuple((n.encode("ascii"), k) for n, k in members)) for gate, members in self.groups)

    def text_hit(self, text: str) -> bool:
        if not self.active:
            return True
        low = text.lower()
        # SQL servers are often named after SQL Server (MSSQL01): the
        # Computer value must not make every record of the host a candidate.
        start = low.find('"computer":"')
        end = low.find('"', start + 12) if start >= 0 else -1
        if end < 0:
            return _groups_hit(self.groups, low, 0, len(low))
        return _groups_hit(self.groups, low, 0, start) or _groups_hit(self.groups, low, end, len(low))

    def literal_hit(self, texts: Iterable[str]) -> bool:
        if not self.active:
            return True
        low = "\n".join(texts).lower()
        return _groups_hit(self.groups, low, 0, len(low))

    def bytes_hit(self, buf: bytes, start: int, end: int) -> bool:
        if not self.active:
            return True
        if end <= start:
            return False
        low = buf[start:end].lower()  # ASCII case folding; UTF-16LE high bytes of ASCII are 0
        return _groups_hit(self.byte_groups, low, 0, len(low))


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")[:-1]  # without the last NUL: may end the record


def _gate_groups(needles: tuple[str, ...]) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    """Greedy cover of the needles by three-character substrings ("gates").

    -> ((gate, ((needle, position of the gate in it), ...)), ...)
    """
    uncovered = set(needles)
    groups = []
    while uncovered:
        counts = Counter(g for n in uncovered for g in {n[i:i + 3] for i in range(max(len(n) - 2, 1))})
        gate = max(counts, key=lambda g: (counts[g], g))
        members = sorted(n for n in uncovered if gate in n)
        placed = tuple((n, k) for n in members for k in range(len(n)) if n.startswith(gate, k))
        groups.append((gate, placed))
        uncovered.difference_update(members)
    return tuple(groups)


def _groups_hit(groups, low, start: int, end: int) -> bool:
    """Is a needle in low[start:end]?  Needles are only tried where their gate occurs."""
    for gate, members in groups:
        i = low.find(gate, start, end)
        while i >= 0:
            for needle, k in members:
                j = i - k
                if j >= start and low.startswith(needle, j, end):
                    return True
            i = low.find(gate, i + 1, end)
    return False


NO_PREFILTER = Prefilter(())


class SelectionRule(NamedTuple):
    """What one selection needs of a record, for :class:`SelectionPrefilter`."""

    channels: frozenset[str]  # lower case
    event_ids: frozenset[int] | None  # None: any
    needles: tuple[str, ...]
    fields: tuple[str, ...]  # EventData/UserData names whose values must hold a needle; () = anywhere


class SelectionPrefilter(Prefilter):
    """The Rust engine's pre-filter, told by the selections themselves.

    On the record's JSON text: its channel and event id first (most records
    of a Security or System log are of no selection), then the needles only
    in the values of the fields a selection tests (``NewProcessName`` of a
    4688, not the whole record with its command line), and anywhere in the
    text for a selection with no field condition.  Whatever does not look as
    expected (no channel, a field that is not a plain string) is searched
    as :class:`Prefilter` does, on the whole text: a record is never skipped
    on a guess.  On the benchmark's Security log this costs a third of
    Prefilter's whole-text search.  The python engine's byte tests are
    Prefilter's.
    """

    def __init__(self, rules: Iterable[SelectionRule]):
        rules = tuple(rules)
        super().__init__(n for r in rules for n in r.needles)
        self.by_channel: dict[str, list[tuple[frozenset[int] | None, Prefilter, tuple[str, ...]]]] = {}
        for rule in rules:
            # Field names as the selection writes them: it looks them up
            # case-sensitively, so the JSON key is exactly that.
            entry = (rule.event_ids, Prefilter(rule.needles), tuple(f'"{f}":' for f in rule.fields))
            for channel in rule.channels:
                self.by_channel.setdefault(channel, []).append(entry)

    def text_hit(self, text: str) -> bool:
        # Only the few values looked at are lower-cased, not the whole text.
        # A channel of the tables holds no quote: the first one ends it.
        at = text.find('"Channel":"')
        end = text.find('"', at + 11) if at >= 0 else -1
        if end < 0:
            return super().text_hit(text)
        candidates = self.by_channel.get(text[at + 11:end].lower())
        if not candidates:
            return False
        event_id = _json_event_id(text)
        for event_ids, prefilter, keys in candidates:
            if event_ids is not None and event_id is not None and event_id not in event_ids:
                continue
            values = _json_values(text, keys) if keys else None
            if values is None:  # no field condition, or fields not as expected
                if prefilter.text_hit(text):
                    return True
            else:
                for value in values:
                    value = value.lower()
                    for needle in prefilter.needles:
                        if needle in value:
                            return True
        return False


_EVENT_ID = re.compile(r'"EventID":(?:(\d+)|\{[^{}]*(?:\{[^{}]*\}[^{}]*)?"#text":(\d+))')


def _json_event_id(text: str) -> int | None:
    at = text.find('"EventID":')  # a find, then a match there: twice as fast as a search
    m = _EVENT_ID.match(text, at) if at >= 0 else None
    if m is None:
        return None
    return int(m.group(1) or m.group(2))


def _json_values(text: str, keys: tuple[str, ...]) -> list[str] | None:
    """Every value of the keys (all occurrences: UserData may nest a name
    twice), or None when one is not a plain string or null, or none occurs."""
    values: list[str] = []
    seen = False
    for key in keys:
        at = text.find(key)
        while at >= 0:
            seen = True
            start = at + len(key)
            if text.startswith('"', start):
                end = _string_end(text, start + 1)
                if end < 0:
                    return None
                values.append(text[start + 1:end])
            elif not text.startswith("null", start):
                return None
            else:
                end = start
            at = text.find(key, end)
    return values if seen else None


def _string_end(text: str, start: int) -> int:
    """Index of the quote that ends the JSON string whose text starts at
    ``start`` (an escaped quote, as in a quoted ImagePath, does not)."""
    end = text.find('"', start)
    while end > 0:
        slashes = 0
        while end - 1 - slashes >= start and text[end - 1 - slashes] == "\\":
            slashes += 1
        if not slashes % 2:
            return end
        end = text.find('"', end + 1)
    return -1


# --------------------------------------------------------------------------
# Per-chunk accounting shared by both engines


@dataclass(slots=True)
class Tally:
    chunk: Chunk
    seen: set[int] = field(default_factory=set)  # header numbers read (selected or not)
    problems: list[str] = field(default_factory=list)
    salvaged: int = 0
    complete: set[int] | None = None  # truncated chunk: records wholly inside the file


@dataclass(slots=True)
class ChunkDamage:
    """What went wrong in one chunk: the parser turns it into a ParseWarning."""

    position: str
    message: str
    lost: int
    damaged: bool


@dataclass(slots=True)
class ReadStats:
    engine: str
    records_read: int = 0
    prefilter_skipped: int = 0
    records_lost: int = 0
    records_recovered: int = 0  # in chunks beyond the header's chunk count
    records_salvaged: int = 0  # read by the python walker after the Rust engine failed
    chunks: int = 0
    chunks_empty: int = 0
    chunks_damaged: int = 0
    chunks_recovered: int = 0
    engine_errors: int = 0
    file_dirty: bool = False
    header_chunk_count: int = 0
    # Continuity across chunks (see finish_chunk): the last record number of
    # the last chunk that had a usable header, and the chunks without one since.
    last_number: int | None = None
    between: list[Tally] = field(default_factory=list)


def finish_chunk(tally: Tally, stats: ReadStats, file_dirty: bool) -> list[ChunkDamage]:
    """Account for one chunk once nothing more will be read from it.

    Chunks are finished in file order.  Besides the chunk's own damage this
    notices records missing *between* chunks: an all-zero (wiped) or
    unreadable chunk followed by a chunk whose numbering jumps ahead.  (The
    gap is only counted when numbers go up: in a log that has wrapped, the
    oldest chunk follows the newest and the numbers drop.)
    """
    chunk = tally.chunk
    stats.chunks += 1
    out = []
    if chunk.expected is None:
        if chunk.state == "empty":
            stats.chunks_empty += 1
        if stats.last_number is not None:
            stats.between.append(tally)
    else:
        gap = _gap(chunk, stats)
        if gap is not None:
            out.append(gap)
        stats.last_number = chunk.last
        stats.between = []
    own = _chunk_damage(tally, stats, file_dirty)
    if own is not None:
        out.insert(0, own)
    return out


def _gap(chunk: Chunk, stats: ReadStats) -> ChunkDamage | None:
    if not stats.between or stats.last_number is None or chunk.first is None:
        return None
    missing = chunk.first - stats.last_number - 1 - sum(len(t.seen) for t in stats.between)
    if missing <= 0:
        return None
    first, last = stats.between[0].chunk, stats.between[-1].chunk
    where = first.position if first is last else f"chunks {first.index}-{last.index} (offset 0x{first.offset:x})"
    empty = all(t.chunk.state == "empty" for t in stats.between)
    what = "all zeros (wiped or never flushed)" if empty else "unreadable"
    stats.records_lost += missing
    stats.chunks_damaged += empty  # unreadable ones were counted already
    return ChunkDamage(where, f"{'this chunk is' if first is last else 'these chunks are'} {what}, yet the records "
                              f"before ({stats.last_number}) and after ({chunk.first}) leave a gap: "
                              f"{missing} records missing", missing, True)


def _chunk_damage(tally: Tally, stats: ReadStats, file_dirty: bool) -> ChunkDamage | None:
    chunk = tally.chunk
    if chunk.state == "empty":
        return None
    got = len(tally.seen)
    if chunk.beyond_header and got:
        stats.records_recovered += got
        stats.chunks_recovered += 1
    notes = list(tally.problems)
    expected = chunk.expected
    lost = max(expected - got, 0) if expected is not None else 0
    if chunk.state == "bad_magic":
        notes.insert(0, f"bad chunk magic {chunk.data[:8]!r}" if chunk.data else "bad chunk magic")
    if chunk.present < CHUNK_SIZE:
        notes.insert(0, f"the file ends {chunk.present} bytes into this chunk (truncated)")
    crc_notes = []
    if chunk.header_crc_ok is False:
        crc_notes.append("header checksum mismatch")
    if chunk.data_crc_ok is False:
        crc_notes.append("data checksum mismatch")
    if not notes and not lost and not crc_notes:
        return None
    if expected is not None:
        counts = f"{got} of {expected} records read"
    else:
        counts = f"{got} records read (the chunk header gives no usable count)"
    if tally.salvaged:
        counts += f", {tally.salvaged} of them salvaged with python-evtx"
    if lost:
        counts += f", {lost} lost"
    text = "; ".join(notes + crc_notes) + f"; {counts}"
    # A checksum mismatch alone costs no record; on a dirty (live) log the
    # chunk being written routinely has a stale checksum.
    damaged = bool(notes) or lost > 0 or (bool(crc_notes) and not file_dirty)
    if damaged:
        stats.chunks_damaged += 1
    stats.records_lost += lost
    return ChunkDamage(chunk.position, text, lost, damaged)


# --------------------------------------------------------------------------
# The python engine (python-evtx nodes, our chunk and record walker)


def python_available() -> bool:
    try:
        import Evtx.Nodes  # noqa: F401
    except ImportError:
        return False
    return True


def rust_available() -> bool:
    try:
        import evtx  # noqa: F401
    except ImportError:
        return False
    return hasattr(evtx, "PyEvtxParser")


def walk_records(chunk: Chunk, problems: list[str]) -> Iterator[tuple[int, int, int]]:
    """(offset in chunk, size, header record number) of every readable record.

    A record whose magic, size or trailing size copy is wrong is skipped by
    searching for the next record magic, so one bad record costs one record.
    """
    data = chunk.data
    if data is None:
        return
    trusted_end = chunk.state == "ok" and chunk.free_offset > CHUNK_HEADER_SIZE
    end = chunk.free_offset if trusted_end else CHUNK_SIZE
    pos = CHUNK_HEADER_SIZE
    while pos + _MIN_RECORD <= end:
        magic, size, number = _RECORD_HEADER.unpack_from(data, pos)
        if (magic == 0x2A2A and _MIN_RECORD <= size <= end - pos
                and int.from_bytes(data[pos + size - 4:pos + size], "little") == size):
            yield pos, size, number
            pos += size
            continue
        nxt = data.find(RECORD_MAGIC, pos + 4, end)
        if trusted_end or nxt >= 0:
            where = f"offset 0x{chunk.offset + pos:x}"
            if nxt < 0:
                problems.append(f"unreadable record data at {where} up to the end of the chunk's records")
            else:
                problems.append(f"unreadable record at {where} (magic {magic:#x}, size {size}); resumed at 0x{chunk.offset + nxt:x}")
        if nxt < 0:
            return
        pos = nxt


class _PythonChunkReader:
    """python-evtx node classes over one chunk's bytes.

    python-evtx looks names and templates up in tables built from the chunk
    header.  We give it dictionaries that build the node at the requested
    offset instead: names and templates sit at those offsets whatever the
    header says, so records stay readable when the header is damaged or when
    the record that first defined a template was skipped.
    """

    def __init__(self, data: bytes):
        self.data = data
        self.chunk = _chunk_class()(data, 0)
        self.trees: dict[int, list] = {}
        self.template_hits: dict[int, bool] = {}
        self._nodes = _node_types()

    def template_offset(self, record_pos: int) -> int | None:
        root = record_pos + 0x18
        ofs = root + 4 if self.data[root] & 0x0F == 0x0F else root
        if self.data[ofs] & 0x0F != 0x0C or ofs + 10 > len(self.data):
            return None
        return int.from_bytes(self.data[ofs + 6:ofs + 10], "little")

    def template_span(self, offset: int) -> tuple[int, int]:
        """Where the template definition at ``offset`` lies in the chunk."""
        if offset + 0x18 > len(self.data):
            return offset, offset
        length = int.from_bytes(self.data[offset + 0x14:offset + 0x18], "little")
        return offset, min(offset + 0x18 + length, len(self.data))

    def template_hit(self, offset: int, prefilter: Prefilter) -> bool:
        """Does a needle occur in the template's literal text (Computer excepted)?

        Classic events and many others carry Provider, Channel and Computer
        as literals in the template rather than as values in the record.
        """
        hit = self.template_hits.get(offset)
        if hit is None:
            try:
                tree = self._tree(offset)
            except Exception:  # noqa: BLE001 - undecodable template: let the record be decoded (and fail there)
                hit = True
            else:
                hit = prefilter.literal_hit(_literals(tree))
            self.template_hits[offset] = hit
        return hit

    def prefilter_hit(self, pos: int, size: int, prefilter: Prefilter) -> bool:
        offset = self.template_offset(pos)
        if offset is None:
            return prefilter.bytes_hit(self.data, pos, pos + size)
        start, end = self.template_span(offset)
        if pos <= start < pos + size:
            # The template is defined inside this record: its literals are
            # judged by template_hit, not as raw bytes (the Computer name).
            hit = prefilter.bytes_hit(self.data, pos, start) or prefilter.bytes_hit(self.data, end, pos + size)
        else:
            hit = prefilter.bytes_hit(self.data, pos, pos + size)
        return hit or self.template_hit(offset, prefilter)

    def record(self, pos: int) -> EvtxRecord:
        return record_from_tree(self._render(pos + 0x18, 0))

    # -- rendering to a minimal element tree -------------------------------
    #
    # python-evtx parses each template's structure (once per template and
    # chunk, cached as a light tree); the substitution values of each record
    # are read here with struct.  Going through python-evtx's node objects
    # for every value cost ~80% of the time (one Python object with lazily
    # declared fields per value).

    def _render(self, pos: int, depth: int) -> list:
        """Elements of the binary XML fragment at chunk offset ``pos``."""
        if depth > 8:
            raise ValueError("binary XML nested too deeply")
        data = self.data
        if data[pos] & 0x0F == 0x0F:  # StreamStart token (4 bytes)
            pos += 4
        if data[pos] & 0x0F != 0x0C:
            raise ValueError(f"no template instance at 0x{pos:x} (token {data[pos]:#x})")
        offset = int.from_bytes(data[pos + 6:pos + 10], "little")
        pos += 10
        if offset > pos - 10:  # template defined right here (resident)
            pos = offset + 0x18 + int.from_bytes(data[offset + 0x14:offset + 0x18], "little")
        tree = self._tree(offset)
        return self._instantiate(tree, self._substitutions(pos, depth), depth)

    def _substitutions(self, pos: int, depth: int) -> list:
        data = self.data
        count = int.from_bytes(data[pos:pos + 4], "little")
        if count > 4096 or pos + 4 + 4 * count > len(data):
            raise ValueError(f"implausible substitution count {count} at 0x{pos:x}")
        decls = struct.unpack_from("<" + "HBx" * count, data, pos + 4)
        pos += 4 + 4 * count
        values = []
        for i in range(count):
            size, kind = decls[2 * i], decls[2 * i + 1]
            if pos + size > len(data):
                raise ValueError(f"substitution {i} runs past the chunk")
            values.append(self._decode_value(kind, pos, size, depth))
            pos += size
        return values

    def _decode_value(self, kind: int, pos: int, size: int, depth: int) -> Any:
        data = self.data
        raw = data[pos:pos + size]
        if kind == 0x00 or (size == 0 and kind not in (0x01, 0x02, 0x0E)):
            return None
        if kind == 0x01:
            return raw.decode("utf-16-le", errors="replace").rstrip("\x00")
        if kind == 0x02:
            return raw.decode("cp1252", errors="replace").rstrip("\x00")
        if kind in _INT_FORMATS:
            return struct.unpack_from(_INT_FORMATS[kind], raw)[0]
        if kind == 0x0B:
            return struct.unpack_from("<f", raw)[0]
        if kind == 0x0C:
            return struct.unpack_from("<d", raw)[0]
        if kind == 0x0D:
            return int.from_bytes(raw, "little") != 0
        if kind == 0x0E:
            return bytes(raw)
        if kind == 0x0F:
            return str(uuid.UUID(bytes_le=bytes(raw))).upper()
        if kind in (0x10, 0x14, 0x15):  # SizeT, HexInt32, HexInt64
            return f"0x{int.from_bytes(raw, 'little'):x}"
        if kind == 0x11:
            return filetime(int.from_bytes(raw, "little"))
        if kind == 0x12:
            year, month, _dow, day, hour, minute, second, ms = struct.unpack_from("<8H", raw)
            return datetime(year, month, day, hour, minute, second, ms * 1000, tzinfo=UTC)
        if kind == 0x13:
            return _sid(raw)
        if kind == 0x21:
            return self._render(pos, depth + 1)
        if kind == 0x81:
            return split_string_array(raw)
        if kind & 0x80 and (kind & 0x7F) in _INT_FORMATS:
            fmt = _INT_FORMATS[kind & 0x7F]
            width = struct.calcsize(fmt)
            return [struct.unpack_from(fmt, raw, i)[0] for i in range(0, size - width + 1, width)]
        return bytes(raw).hex().upper()

    def _tree(self, offset: int) -> list:
        tree = self.trees.get(offset)
        if tree is None:
            tree = self._light(self.chunk.templates()[offset].children())
            self.trees[offset] = tree
        return tree

    def _light(self, nodes) -> list:
        """Template nodes -> ('E', name, attrs, content) / ('T', text) / ('S', index)."""
        n = self._nodes
        out: list = []
        for node in nodes:
            if isinstance(node, n.OpenStartElementNode):
                attrs, content = [], []
                for child in node.children():
                    if isinstance(child, n.AttributeNode):
                        attrs.append((child.attribute_name().string(), self._light([child.attribute_value()])))
                    elif not isinstance(child, n.closers):
                        content.append(child)
                out.append(("E", node.tag_name(), attrs, self._light(content)))
            elif isinstance(node, n.ValueNode):
                out.append(("T", node.children()[0].string()))
            elif isinstance(node, n.substitutions):
                out.append(("S", node.index()))
            elif isinstance(node, n.CDataSectionNode):
                out.append(("T", node.cdata()))
            elif isinstance(node, n.CharacterReferenceNode):
                out.append(("T", chr(node.entity())))
            elif isinstance(node, n.EntityReferenceNode):
                name = node.entity_reference()[1:-1]
                out.append(("T", _ENTITIES.get(name, f"&{name};")))
        return out

    def _instantiate(self, tree: list, subs: list, depth: int) -> list:
        out: list = []
        for item in tree:
            kind = item[0]
            if kind == "E":
                attrs = {}
                for name, parts in item[2]:
                    values = self._instantiate(parts, subs, depth)
                    if values:
                        attrs[name] = values[0] if len(values) == 1 else "".join(map(str, values))
                out.append(Element(item[1], attrs, self._instantiate(item[3], subs, depth)))
            elif kind == "T":
                out.append(item[1])
            elif item[1] < len(subs):
                value = subs[item[1]]
                if isinstance(value, list) and value and isinstance(value[0], Element):
                    out.extend(value)
                elif value is not None:
                    out.append(value)
        return out


_INT_FORMATS = {0x03: "<b", 0x04: "<B", 0x05: "<h", 0x06: "<H", 0x07: "<i", 0x08: "<I", 0x09: "<q", 0x0A: "<Q"}


def _sid(raw: bytes) -> str:
    if len(raw) < 8:
        return bytes(raw).hex().upper()
    revision, count = raw[0], raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack_from(f"<{min(count, (len(raw) - 8) // 4)}I", raw, 8)
    return "-".join(["S", str(revision), str(authority), *map(str, subs)])


class _Lazy(dict):
    """offset -> node, building the node on first use."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, offset):
        node = self.make(offset)
        self[offset] = node
        return node


@cache
def _chunk_class():
    from Evtx.Evtx import ChunkHeader
    from Evtx.Nodes import NameStringNode, TemplateNode

    class _Chunk(ChunkHeader):
        def __init__(self, buf, offset):
            super().__init__(buf, offset)
            # Never read the header's string/template tables (see _PythonChunkReader).
            self._strings = _Lazy(lambda o: NameStringNode(buf, o, self, self))
            self._templates = _Lazy(lambda o: TemplateNode(buf, o, self, self))

        def _load_strings(self):
            pass

        def _load_templates(self):
            pass

    return _Chunk


def _literals(tree: list, skip: str = "Computer") -> Iterator[str]:
    """Literal texts of a light template tree (names and values), except one element's."""
    for item in tree:
        if item[0] == "T":
            yield item[1]
        elif item[0] == "E" and item[1] != skip:
            yield item[1]
            for name, parts in item[2]:
                yield name
                yield from _literals(parts, skip)
            yield from _literals(item[3], skip)


_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


@cache
def _node_types():
    from Evtx import Nodes as n

    class Types:
        pass

    t = Types()
    for name in dir(n):
        if name.endswith("Node"):
            setattr(t, name, getattr(n, name))
    t.closers = (n.CloseStartElementNode, n.CloseEmptyElementNode, n.CloseElementNode)
    t.substitutions = (n.NormalSubstitutionNode, n.ConditionalSubstitutionNode)
    return t


def split_string_array(raw: bytes) -> list[str]:
    """A UTF-16LE NUL-separated string array -> its strings (empty ones kept)."""
    text = bytes(raw).decode("utf-16-le", errors="replace")
    if text.endswith("\x00"):
        text = text[:-1]
    return text.split("\x00") if text else []


@dataclass(slots=True)
class Element:
    name: str
    attrs: dict[str, Any]
    children: list

    def value(self) -> Any:
        """The element's text: one typed value, or the parts joined."""
        parts = [c for c in self.children if not isinstance(c, Element)]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return "".join(canon(p) if not isinstance(p, str) else p for p in parts)

    def elements(self) -> Iterator[Element]:
        return (c for c in self.children if isinstance(c, Element))


def record_from_tree(elements: list) -> EvtxRecord:
    rec = EvtxRecord()
    event = next((e for e in elements if isinstance(e, Element) and e.name == "Event"), None)
    if event is None:
        raise ValueError("record has no <Event> element")
    for part in event.elements():
        if part.name == "System":
            for el in part.elements():
                _system_field(rec, el.name, el.attrs, el.value())
        elif part.name == "EventData":
            for el in part.elements():
                if el.name == "Binary":
                    value = el.value()
                    rec.binary = value if isinstance(value, bytes) else _hex_bytes(value)
                elif el.name == "Data" and "Name" in el.attrs:
                    rec.data[str(el.attrs["Name"])] = canon(el.value())
                elif el.name == "Data":
                    value = el.value()
                    if isinstance(value, list):
                        rec.strings.extend(canon(value))
                    elif value is not None:
                        rec.strings.append(canon(value))
                else:
                    rec.data[el.name] = canon(el.value())
        elif part.name == "UserData":
            _flatten_tree(part, rec.data)
    return rec


def _flatten_tree(element: Element, out: dict[str, Any]) -> None:
    for el in element.elements():
        if any(True for _ in el.elements()):
            _flatten_tree(el, out)
        else:
            out[el.name] = canon(el.value())


def _system_field(rec: EvtxRecord, name: str, attrs: dict[str, Any], value: Any) -> None:
    if name == "Provider":
        rec.provider = str(attrs.get("Name") or attrs.get("EventSourceName") or "")
    elif name == "EventID":
        rec.event_id = _as_int(value)
        rec.qualifiers = _as_int(attrs.get("Qualifiers"))
    elif name in ("Version", "Level", "Task", "Opcode"):
        setattr(rec, name.lower(), _as_int(value))
    elif name == "Keywords":
        rec.keywords = canon(value) if value is not None else None
    elif name == "TimeCreated":
        rec.time_created = _as_time(attrs.get("SystemTime"))
    elif name == "EventRecordID":
        rec.record_id = _as_int(value)
    elif name == "Execution":
        rec.process_id = _as_int(attrs.get("ProcessID"))
        rec.thread_id = _as_int(attrs.get("ThreadID"))
    elif name == "Channel":
        rec.channel = canon(value)
    elif name == "Computer":
        rec.computer = canon(value)
    elif name == "Security":
        sid = attrs.get("UserID")
        rec.user_sid = canon(sid) if sid else None


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace(" ", "T"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _hex_bytes(value: Any) -> bytes | None:
    if not value:
        return None
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Rust JSON -> EvtxRecord


def record_from_json(obj: dict) -> EvtxRecord:
    rec = EvtxRecord()
    event = obj.get("Event") or {}
    system = event.get("System") or {}
    for name, node in system.items():
        attrs, value = _json_parts(node)
        _system_field(rec, name, attrs, value)
    data = event.get("EventData")
    if isinstance(data, dict):
        for name, node in data.items():
            if name == "#attributes":
                continue
            if name == "Binary":
                rec.binary = _hex_bytes(_json_parts(node)[1])
            elif name == "Data":
                rec.strings.extend(_json_strings(node))
            else:
                rec.data[name] = canon(_json_parts(node)[1])
    user = event.get("UserData")
    if isinstance(user, dict):
        _flatten_json(user, rec.data)
    return rec


def utc_from_match(m: re.Match[str]) -> datetime | None:
    """Groups 1-6 date and time, 7 the fraction (any number of digits, cut to
    microseconds) -> an aware UTC datetime, or None when impossible."""
    micro = int(((m.group(7) or "") + "000000")[:6])
    try:
        return datetime(*(int(m.group(i)) for i in range(1, 7)), micro, tzinfo=UTC)
    except ValueError:
        return None


def _rust_header_time(value: Any) -> datetime | None:
    """pyevtx-rs's record-header time, ``2019-11-04T09:27:25.9866222Z UTC`` (7 digits)."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?", str(value or ""))
    if not m or m.group(1) == "1601":
        return None
    return utc_from_match(m)


def _json_parts(node: Any) -> tuple[dict[str, Any], Any]:
    if isinstance(node, dict):
        return node.get("#attributes") or {}, node.get("#text")
    return {}, node


def _json_strings(node: Any) -> list[str]:
    if node is None:
        return []
    if isinstance(node, list):
        out: list[str] = []
        for item in node:
            out.extend(_json_strings(item))
        return out
    _attrs, text = _json_parts(node)
    if isinstance(text, list):
        return [canon(t) for t in text]
    return [] if text is None else [canon(text)]


def _flatten_json(node: dict, out: dict[str, Any]) -> None:
    for name, value in node.items():
        if name.startswith("#"):
            continue
        if isinstance(value, dict) and any(not k.startswith("#") for k in value):
            _flatten_json(value, out)
        else:
            out[name] = canon(_json_parts(value)[1])


# --------------------------------------------------------------------------
# Engines

RecordOrDamage = EvtxRecord | ChunkDamage


def read_python(scanner: ChunkScanner, prefilter: Prefilter, stats: ReadStats) -> Iterator[RecordOrDamage]:
    """The python engine: every physical chunk, every readable record."""
    for chunk in scanner:
        tally = Tally(chunk)
        yield from python_chunk_records(tally, prefilter, stats, skip=None)
        yield from finish_chunk(tally, stats, scanner.header.dirty)
        chunk.data = None


def python_chunk_records(tally: Tally, prefilter: Prefilter, stats: ReadStats,
                         skip: set[int] | None) -> Iterator[EvtxRecord]:
    """Records of one chunk; ``skip``: header numbers already read elsewhere."""
    chunk = tally.chunk
    if chunk.data is None or chunk.state == "empty":
        return
    try:
        reader = _PythonChunkReader(chunk.data)
    except Exception as exc:  # noqa: BLE001 - python-evtx raises many kinds on garbage
        tally.problems.append(f"python-evtx cannot read the chunk: {_short(exc)}")
        return
    for pos, size, number in walk_records(chunk, tally.problems):
        if skip is not None and number in skip:
            continue
        if number in tally.seen:
            tally.problems.append(f"record number {number} appears twice; second copy at offset 0x{chunk.offset + pos:x} ignored")
            continue
        rec = None
        if not prefilter.active or reader.prefilter_hit(pos, size, prefilter):
            try:
                rec = reader.record(pos)
            except Exception as exc:  # noqa: BLE001 - one bad record never ends the chunk
                tally.problems.append(f"record {number} at offset 0x{chunk.offset + pos:x} could not be decoded: {_short(exc)}")
                continue
        else:
            stats.prefilter_skipped += 1
        tally.seen.add(number)
        stats.records_read += 1
        if skip is not None:
            tally.salvaged += 1
            stats.records_salvaged += 1
        if rec is not None:
            rec.header_record = number
            rec.header_time = filetime(int.from_bytes(chunk.data[pos + 16:pos + 24], "little"))
            rec.chunk = chunk.index
            rec.salvaged = skip is not None
            yield rec


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


_RUST_CHUNK = re.compile(r"chunk number (\d+)")
_RUST_RECORD = re.compile(r"record number (\d+)")
# Header numbers of records that could not be placed in a chunk are kept so
# that salvage never duplicates them; past this many, salvage is switched off.
_MAX_UNPLACED = 100_000


class RustReader:
    """The Rust engine, with per-chunk accounting and python salvage.

    pyevtx-rs reads the file itself (by path, or through a seekable file
    object); alongside, we stream the same bytes through :class:`ChunkScanner`
    a little ahead of it, so the operating system's cache serves the second
    read.  Records are placed in chunks by their header record number (Rust
    reads chunks in file order).  A chunk is finished once Rust has delivered
    a record from a later chunk, or at the end; a finished chunk that is
    short of the records its header promises is walked by the python engine,
    which delivers the missing ones.
    """

    def __init__(self, target: Any, scanner: ChunkScanner, prefilter: Prefilter, stats: ReadStats,
                 threads: int = 0, salvage: bool = True):
        self.target = target
        self.chunks = iter(scanner)
        self.dirty = scanner.header.dirty
        self.prefilter = prefilter
        self.stats = stats
        self.threads = threads
        self.salvage = salvage and python_available()
        self.window: deque[Tally] = deque()  # scanned, unfinished chunks; window[0] is Rust's current one
        self.errors_by_chunk: dict[int, list[str]] = {}
        self.file_problems: list[str] = []  # not attributable to a chunk
        self.unplaced: set[int] = set()

    def __iter__(self) -> Iterator[RecordOrDamage]:
        for item in self._rust_items():
            number = item.get("event_record_id")
            tally, passed = self._locate(number if isinstance(number, int) else None)
            for done in passed:
                yield from self._finish(done)
            rec = self._decode(item, number, tally)
            if rec is not None:
                yield rec
        # Whatever Rust did not deliver: finish (and salvage) every chunk left.
        while self.window:
            yield from self._finish(self.window.popleft())
        for chunk in self.chunks:
            yield from self._finish(Tally(chunk))

    def _rust_items(self) -> Iterator[dict]:
        import evtx

        try:
            records = evtx.PyEvtxParser(self.target, number_of_threads=self.threads).records_json()
        except Exception as exc:  # noqa: BLE001 - unreadable for Rust: the python walker reads it all
            self.stats.engine_errors += 1
            self.file_problems.append(f"pyevtx-rs could not open the file ({_short(exc)}); chunks read with python-evtx")
            return
        consecutive = 0
        while True:
            try:
                item = next(records)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - RuntimeError per bad chunk/record; iteration resumes
                consecutive += 1
                self.stats.engine_errors += 1
                self._note_error(str(exc))
                if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                    self.file_problems.append("pyevtx-rs kept failing; the rest was read with python-evtx")
                    return
                continue
            except BaseException as exc:  # pyo3's PanicException derives from BaseException
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                self.stats.engine_errors += 1
                self.file_problems.append(f"pyevtx-rs aborted ({_short(exc)}); the rest was read with python-evtx")
                return
            consecutive = 0
            yield item

    def _decode(self, item: dict, number: Any, tally: Tally | None) -> EvtxRecord | None:
        if tally is not None and tally.chunk.present < CHUNK_SIZE:
            # pyevtx-rs renders a record cut by the end of the file from the
            # zero padding; the python walker rejects it (its trailing size
            # copy is missing).  Drop it here too: its tail is not evidence.
            if tally.complete is None:
                tally.complete = {n for _pos, _size, n in walk_records(tally.chunk, [])}
            if number not in tally.complete:
                tally.problems.append(f"record {number} is cut off by the end of the file; dropped")
                return None
        if tally is not None:
            tally.seen.add(number)
        elif isinstance(number, int) and len(self.unplaced) < _MAX_UNPLACED:
            self.unplaced.add(number)
        else:
            self.salvage = False  # too much we cannot place: salvage could duplicate records
        self.stats.records_read += 1
        text = item.get("data") or ""
        if not self.prefilter.text_hit(text):
            self.stats.prefilter_skipped += 1
            return None
        try:
            rec = record_from_json(json.loads(text))
        except (ValueError, TypeError, AttributeError) as exc:
            (tally.problems if tally is not None else self.file_problems).append(
                f"record {number}: undecodable JSON from pyevtx-rs ({_short(exc)})")
            return None
        rec.header_record = number if isinstance(number, int) else None
        rec.header_time = _rust_header_time(item.get("timestamp"))
        rec.chunk = tally.chunk.index if tally is not None else None
        return rec

    def _locate(self, number: int | None) -> tuple[Tally | None, list[Tally]]:
        """(chunk holding header record ``number``, chunks Rust has moved past)."""
        if number is None:
            return None, []
        for i, tally in enumerate(self.window):
            if tally.chunk.contains(number) and number not in tally.seen:
                return tally, [self.window.popleft() for _ in range(i)]
        while len(self.window) < _LOOKAHEAD:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            tally = Tally(chunk)
            self.window.append(tally)
            if chunk.contains(number):
                passed = []
                while self.window[0] is not tally:
                    passed.append(self.window.popleft())
                return tally, passed
        return None, []

    def _finish(self, tally: Tally) -> Iterator[RecordOrDamage]:
        chunk = tally.chunk
        tally.problems.extend(self.errors_by_chunk.pop(chunk.index, ()))
        short = chunk.expected is not None and len(tally.seen) < chunk.expected
        if self.salvage and chunk.data is not None and (short or chunk.state == "bad_magic"):
            yield from python_chunk_records(tally, self.prefilter, self.stats, skip=tally.seen | self.unplaced)
        yield from finish_chunk(tally, self.stats, self.dirty)
        chunk.data = None

    def _note_error(self, message: str) -> None:
        text = f"pyevtx-rs: {message}"
        m = _RUST_CHUNK.search(message)
        if m:
            self.errors_by_chunk.setdefault(int(m.group(1)), []).append(text)
            return
        m = _RUST_RECORD.search(message)
        if m:
            number = int(m.group(1))
            for tally in self.window:
                if tally.chunk.contains(number):
                    tally.problems.append(text)
                    return
        if self.window:
            self.window[0].problems.append(text)
        else:
            self.file_problems.append(text)


# --------------------------------------------------------------------------
# Giving pyevtx-rs something it can read


class _PaddedReader:
    """A seekable view of a file that pads a truncated last chunk with zeros.

    pyevtx-rs silently ignores a partial last chunk; padded, the records
    before the cut are read.  Only used for truncated files.
    """

    def __init__(self, stream: BinaryIO, size: int, padded: int):
        self.stream, self.size, self.padded, self.pos = stream, size, padded, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.padded - self.pos
        n = max(0, min(n, self.padded - self.pos))
        data = b""
        if self.pos < self.size:
            self.stream.seek(self.pos)
            data = self.stream.read(min(n, self.size - self.pos))
        data += bytes(n - len(data))
        self.pos += n
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.padded}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


@contextlib.contextmanager
def rust_target(opener: Callable[[], BinaryIO], size_hint: int | None) -> Iterator[Any]:
    """A path or seekable file object for pyevtx-rs, made from a Source opener.

    A plain file is handed over by path (fastest).  A seekable stream is
    handed over as is.  Anything else is copied to a temporary file (deleted
    afterwards).  A file that ends inside a chunk is padded on the fly.
    """
    stream = opener()
    spooled: IO[bytes] | None = None
    try:
        path = _real_path(stream)
        seekable = _seekable(stream)
        if not seekable and path is None:
            spooled = tempfile.NamedTemporaryFile(prefix="evtx-", suffix=".evtx", delete=False)
            copied = 0
            while copied <= SPOOL_LIMIT:
                block = stream.read(1 << 20)
                if not block:
                    break
                spooled.write(block)
                copied += len(block)
            spooled.flush()
            spooled.seek(0)
            path = spooled.name
            stream.close()
            stream = open(path, "rb")  # noqa: SIM115 - closed in finally
        size = os.fstat(stream.fileno()).st_size if path else _stream_size(stream, size_hint)
        tail = (size - FILE_HEADER_SIZE) % CHUNK_SIZE if size > FILE_HEADER_SIZE else 0
        if tail:
            yield _PaddedReader(stream, size, size + CHUNK_SIZE - tail)
        elif path is not None:
            yield path
        else:
            stream.seek(0)
            yield stream
    finally:
        stream.close()
        if spooled is not None:
            spooled.close()
            with contextlib.suppress(OSError):
                os.unlink(spooled.name)


def _real_path(stream: Any) -> str | None:
    name = getattr(stream, "name", None)
    if not isinstance(name, str) or not hasattr(stream, "fileno"):
        return None
    try:
        if os.path.isfile(name) and os.path.samestat(os.fstat(stream.fileno()), os.stat(name)):
            return name
    except (OSError, ValueError):
        return None
    return None


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _stream_size(stream: Any, size_hint: int | None) -> int:
    try:
        end = stream.seek(0, 2)
        stream.seek(0)
        return end
    except (OSError, ValueError):
        return size_hint or 0


__all__ = [
    "CHUNK_SIZE", "FILE_HEADER_SIZE", "FILE_MAGIC", "CHUNK_MAGIC", "Chunk", "ChunkDamage", "ChunkScanner",
    "EvtxRecord", "FileHeader", "Prefilter", "NO_PREFILTER", "ReadStats", "RustReader", "canon",
    "read_python", "python_available", "rust_available", "rust_target",
]

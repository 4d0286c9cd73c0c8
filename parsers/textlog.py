"""Streamed reading of timestamped multi-line text logs.

ERRORLOG and SQLAGENT.OUT share a shape: a record starts with a timestamp at
the beginning of a line, and every other line (tab-led, blank) continues the
record before it.  This module finds the records with one compiled pattern
over each decoded chunk (no Python loop per line) and reports damage:
undecodable bytes, a truncated UTF-16 file, text before the first record, a
record too long to be real.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, count, repeat

from forensic.model import ParseWarning
from parsers.base import Source
from parsers.textio import DecodeReport, Span, detect_encoding, iter_decoded

# No real log record is this long (banners and audit text are a few KiB).  A
# longer one keeps its first MAX_RECORD_CHARS characters and the rest is
# counted, not kept: a row never holds more, so memory stays bounded whatever
# the input (a log followed by gigabytes without a line break, say).
MAX_RECORD_CHARS = 1 << 18


@dataclass(slots=True)
class TextRecord:
    line: int  # 1-based number of the record's first line
    text: str  # the record, newlines normalised to \n, trailing whitespace removed


@dataclass(slots=True)
class RecordBlock:
    """The records of one decoded chunk, column-wise: record ``i`` starts on
    line ``lines[i]`` and ``columns[k][i]`` is its ``k``-th pattern group (the
    message last); ``end_line`` is the number of the line after the chunk;
    ``multiline`` the records whose message holds a newline other than the
    chunk's last one."""

    lines: Sequence[int]
    columns: list[list[str]]
    end_line: int
    multiline: list[int]

    def __len__(self) -> int:
        return len(self.lines)


def iter_records(src: Source, record_start: re.Pattern[str],
                 what: str = "record") -> Iterator[TextRecord | ParseWarning]:
    """Yield the records of ``src`` (and warnings) in file order.

    ``record_start`` must match at the start of a record's first line and be
    compiled with re.MULTILINE.
    """
    for item in iter_record_batches(src, record_start, what):
        if isinstance(item, ParseWarning):
            yield item
        else:
            for line, text in item:
                yield TextRecord(line, text)


def iter_record_batches(src: Source, record_start: re.Pattern[str], what: str = "record",
                        head_re: re.Pattern[str] | None = None, span: Span | None = None,
                        ) -> Iterator[list[tuple] | RecordBlock | ParseWarning]:
    """Like :func:`iter_records`, but one batch per decoded chunk: hot loops
    iterate plain tuples instead of one object per record.

    Without ``head_re`` a batch is a list of ``(line, text)`` tuples.  With
    it, a batch is a :class:`RecordBlock` cut by a single ``re.split`` over
    the chunk: ``head_re`` matches a newline and the head of the record after
    it, with groups (the time, the source column...), exactly where
    ``record_start`` matches after a newline; each record's message is the
    text up to the next head, continuation lines included, and is its last
    column.  One C-level pass cuts records and fields, and line numbers follow
    from the newlines inside messages (``tests/test_textlog.py`` checks the
    ERRORLOG patterns against a slow split).  Lines end at ``\n`` only: the
    ``\r`` of a CRLF stays at the end of its line for the parser to strip (no
    copy of every chunk to remove it), and a lone ``\r``, which SQL Server
    never writes as a line end, starts no line, so text inside a message
    cannot forge a record with one.

    ``span``: only that part of the input, which must start at a record's
    first line (line numbers and byte positions stay those of the whole
    input).
    """
    report = DecodeReport()
    with src.open() as stream:
        head = stream.read(4096)
        encoding = detect_encoding(head)
        buf = ""
        buf_line = 1 if span is None else span.line  # line number of buf[0]
        seen_record = False
        pending_cr = False
        nul_chars = 0  # NULs removed: zero-filled regions (unwritten pages, preallocated files)
        nul_line: int | None = None
        dropped_chars = 0  # tails of overlong records
        overlong_from: int | None = None  # in an overlong record: where the next may start in buf
        for chunk in iter_decoded(stream, encoding, report, span=span):
            if "\x00" in chunk:
                if nul_line is None:
                    nul_line = buf_line + buf.count("\n") + chunk.count("\n", 0, chunk.index("\x00"))
                before = len(chunk)
                chunk = chunk.replace("\x00", "")
                nul_chars += before - len(chunk)
            if head_re is None:
                if pending_cr:
                    chunk = "\r" + chunk
                    pending_cr = False
                if chunk.endswith("\r"):
                    chunk, pending_cr = chunk[:-1], True
                if "\r" in chunk:
                    chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
            buf += chunk
            if not seen_record:
                m = record_start.search(buf)
                if m is None:
                    if len(buf) > MAX_RECORD_CHARS:
                        yield _orphans(buf, buf_line, what)
                        buf_line += buf.count("\n")
                        buf = ""
                    continue
                first = m.start()
                if first > 0:
                    if buf[:first].strip():
                        yield _orphans(buf[:first], buf_line, what)
                    buf_line += buf.count("\n", 0, first)
                    buf = buf[first:]
                seen_record = True
            if overlong_from is not None:
                # The rest of a record too long to keep runs to the next
                # record start (search from 1: ^ also matches at the search
                # position, which is mid-line unless the record ended a chunk).
                m = record_start.search(buf, overlong_from)
                cut = len(buf) if m is None else m.start()
                dropped_chars += cut
                buf_line += buf.count("\n", 0, cut)
                overlong_from = (0 if buf.endswith("\n") else 1) if m is None else None
                buf = buf[cut:]
                if not buf:
                    continue
            # Everything before the last record start is complete; the last
            # record may continue in the next chunk.
            last = _last_start(buf, record_start)
            if last > 0:
                complete = buf[:last]
                batch = _split(complete, buf_line, record_start, head_re)
                yield batch
                buf_line = batch.end_line if isinstance(batch, RecordBlock) else buf_line + complete.count("\n")
                buf = buf[last:]
            if len(buf) > MAX_RECORD_CHARS:
                # buf starts with a record (the last one): keep its head.
                yield ParseWarning(f"{what} at line {buf_line} is longer than {MAX_RECORD_CHARS} characters; "
                                   "only its beginning is kept", f"line {buf_line}", 0, True)
                yield _split(buf[:MAX_RECORD_CHARS].rstrip(), buf_line, record_start, head_re)
                dropped_chars += len(buf) - MAX_RECORD_CHARS
                buf_line += buf.count("\n")
                overlong_from = 0 if buf.endswith("\n") else 1
                buf = ""
        if buf.strip():
            if seen_record:
                yield _split(buf, buf_line, record_start, head_re)
            else:
                yield _orphans(buf, buf_line, what)
    if dropped_chars:
        yield ParseWarning(f"{dropped_chars} characters of overlong {what}s were not kept", None, 0, True)
    if nul_chars:
        yield ParseWarning(f"{nul_chars} NUL characters removed (zero-filled region: unwritten pages or a "
                           "preallocated file)", f"line {nul_line}", 0, True)
    if report.bad_sequences:
        where = f"offset {report.first_bad_offset}" if report.first_bad_offset is not None else None
        note = f"; decoded as {report.fallback_codec} from there" if report.fallback_codec else ""
        yield ParseWarning(
            f"{report.bad_sequences} undecodable byte sequence(s) in {encoding.codec} text, "
            f"replaced with U+FFFD (first at {where}){note}", where, 0, True)
    if report.odd_trailing_byte:
        yield ParseWarning("UTF-16 file has an odd number of bytes: truncated mid-character "
                           "(file copied while being written?)", "end of file", 0, True)


def _last_start(buf: str, record_start: re.Pattern[str]) -> int:
    """Offset of the last line of ``buf`` that starts a record (0 if none)."""
    pos = len(buf)
    while True:
        nl = buf.rfind("\n", 0, pos)
        if nl == -1:
            return 0
        if record_start.match(buf, nl + 1):
            return nl + 1
        pos = nl


def _split(text: str, line: int, record_start: re.Pattern[str],
           head_re: re.Pattern[str] | None) -> list[tuple] | RecordBlock:
    """The records of ``text`` (which starts with one) with their line numbers."""
    if head_re is not None:
        return _split_columns(text, line, head_re)
    starts = [m.start() for m in record_start.finditer(text)] + [len(text)]
    out: list[tuple] = []
    for begin, end in zip(starts, starts[1:], strict=False):
        out.append((line, text[begin:end].rstrip()))
        line += text.count("\n", begin, end)
    return out


def _split_columns(text: str, line: int, head_re: re.Pattern[str]) -> RecordBlock:
    # "\n" first: the first record's head is found like every other one.
    parts = head_re.split("\n" + text)
    width = head_re.groups + 1
    columns = [parts[k::width] for k in range(1, width + 1)]
    if parts[0]:
        # Text before the first head (cannot be: text starts with a record):
        # kept as a record with empty head fields, never dropped.
        columns = [["", *column] for column in columns[:-1]] + [[parts[0], *columns[-1]]]
    messages = columns[-1]
    n = len(messages)
    if not n:
        return RecordBlock([], columns, line + text.count("\n"), [])
    # A record spans its first line plus one per newline in its message.
    multi = list(compress(count(), map(operator.contains, messages, repeat("\n"))))
    if not multi or multi == [n - 1]:
        lines: Sequence[int] = range(line, line + n)
    else:
        steps = [1] * n
        for i in multi:
            steps[i] += messages[i].count("\n")
        lines = list(accumulate([line, *steps[:-1]]))
    return RecordBlock(lines, columns, lines[-1] + messages[-1].count("\n"), multi)


def _orphans(text: str, line: int, what: str) -> ParseWarning:
    lines = text.strip("\r\n").count("\n") + 1
    return ParseWarning(
        f"{lines} line(s) without a timestamp before the first {what} were not part of any {what} "
        f"(log cut at the start?)", f"line {line}", 1, True)

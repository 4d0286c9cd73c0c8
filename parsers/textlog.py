"""Streamed reading of timestamped multi-line text logs.

ERRORLOG and SQLAGENT.OUT share a shape: a record starts with a timestamp at
the beginning of a line, and every other line (tab-led, blank) continues the
record before it.  This module finds the records with one compiled pattern
over each decoded chunk (no Python loop per line) and reports damage:
undecodable bytes, a truncated UTF-16 file, text before the first record, a
record too long to be real.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from forensic.model import ParseWarning
from parsers.base import Source
from parsers.textio import DecodeReport, detect_encoding, iter_decoded

# No real log record is this long (banners and audit text are a few KiB).  A
# longer one keeps its first MAX_RECORD_CHARS characters and the rest is
# counted, not kept: a row never holds more, so memory stays bounded whatever
# the input (a log followed by gigabytes without a line break, say).
MAX_RECORD_CHARS = 1 << 18


@dataclass(slots=True)
class TextRecord:
    line: int  # 1-based number of the record's first line
    text: str  # the record, newlines normalised to \n, trailing whitespace removed


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
                        record_re: re.Pattern[str] | None = None) -> Iterator[list[tuple] | ParseWarning]:
    """Like :func:`iter_records`, but one list per decoded chunk: hot loops
    iterate plain tuples instead of one object per record.

    Without ``record_re`` the tuples are ``(line, text)``.  With it (a pattern
    that matches one whole record from its start, continuation lines
    included, with groups), they are ``(line, *groups)``, found by a single
    ``findall`` over the chunk: the record split and the field split in one
    pass of the regex engine.
    """
    report = DecodeReport()
    with src.open() as stream:
        head = stream.read(4096)
        encoding = detect_encoding(head)
        buf = ""
        buf_line = 1  # line number of buf[0]
        seen_record = False
        pending_cr = False
        nul_chars = 0  # NULs removed: zero-filled regions (unwritten pages, preallocated files)
        nul_line: int | None = None
        dropped_chars = 0  # tails of overlong records
        for chunk in iter_decoded(stream, encoding, report):
            if "\x00" in chunk:
                if nul_line is None:
                    nul_line = buf_line + buf.count("\n") + chunk.count("\n", 0, chunk.index("\x00"))
                before = len(chunk)
                chunk = chunk.replace("\x00", "")
                nul_chars += before - len(chunk)
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
            # Everything before the last record start is complete; the last
            # record may continue in the next chunk.
            last = _last_start(buf, record_start)
            if last > 0:
                complete = buf[:last]
                yield _split(complete, buf_line, record_start, record_re)
                buf_line += complete.count("\n")
                buf = buf[last:]
            if len(buf) > MAX_RECORD_CHARS:
                if record_start.match(buf):  # a record begins here: keep its head
                    yield ParseWarning(f"{what} at line {buf_line} is longer than {MAX_RECORD_CHARS} characters; "
                                       "only its beginning is kept", f"line {buf_line}", 0, True)
                    yield _split(buf[:MAX_RECORD_CHARS].rstrip(), buf_line, record_start, record_re)
                    dropped_chars += len(buf) - MAX_RECORD_CHARS
                else:  # more of the same overlong record
                    dropped_chars += len(buf)
                buf_line += buf.count("\n")
                buf = ""
        if buf.strip():
            if seen_record:
                yield _split(buf, buf_line, record_start, record_re)
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


def _split(text: str, line: int, record_start: re.Pattern[str], record_re: re.Pattern[str] | None) -> list[tuple]:
    """The records of ``text`` (which starts with one) with their line numbers."""
    out: list[tuple] = []
    if record_re is not None:
        groups = record_re.findall(text)
        # A record spans its first line plus one per newline in it (only the
        # last group, the message, can hold newlines).
        spans = [g[-1].count("\n") + 1 for g in groups]
        if sum(spans) == text.count("\n") + 1:
            return list(zip(accumulate([line, *spans[:-1]]), groups, strict=True))
        # record_re skipped something record_start sees: split the slow way.
    starts = [m.start() for m in record_start.finditer(text)] + [len(text)]
    for begin, end in zip(starts, starts[1:], strict=False):
        if record_re is None:
            out.append((line, text[begin:end].rstrip()))
        else:
            m = record_re.match(text, begin, end)
            out.append((line, m.groups() if m else (text[begin:begin + 22], "", text[begin + 23:end])))
        line += text.count("\n", begin, end)
    return out


def _orphans(text: str, line: int, what: str) -> ParseWarning:
    lines = text.strip("\n").count("\n") + 1
    return ParseWarning(
        f"{lines} line(s) without a timestamp before the first {what} were not part of any {what} "
        f"(log cut at the start?)", f"line {line}", 1, True)

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

from forensic.model import ParseWarning
from parsers.base import Source
from parsers.textio import DecodeReport, detect_encoding, iter_decoded

MAX_RECORD_CHARS = 1 << 24  # 16 Mi characters: no real log record is this long


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


def iter_record_batches(src: Source, record_start: re.Pattern[str],
                        what: str = "record") -> Iterator[list[tuple[int, str]] | ParseWarning]:
    """Like :func:`iter_records`, but one list of ``(line, text)`` per decoded
    chunk: hot loops iterate plain tuples instead of one object per record."""
    report = DecodeReport()
    with src.open() as stream:
        head = stream.read(4096)
        encoding = detect_encoding(head)
        buf = ""
        buf_line = 1  # line number of buf[0]
        seen_record = False
        pending_cr = False
        for chunk in iter_decoded(stream, encoding, report):
            if pending_cr:
                chunk = "\r" + chunk
                pending_cr = False
            if chunk.endswith("\r"):
                chunk, pending_cr = chunk[:-1], True
            if "\r" in chunk:
                chunk = chunk.replace("\r\n", "\n").replace("\r", "\n")
            buf += chunk
            starts = [m.start() for m in record_start.finditer(buf)]
            if not seen_record:
                first = starts[0] if starts else None
                if first is None:
                    if len(buf) > MAX_RECORD_CHARS:
                        yield _orphans(buf, buf_line, what)
                        buf_line += buf.count("\n")
                        buf = ""
                    continue
                if first > 0:
                    if buf[:first].strip():
                        yield _orphans(buf[:first], buf_line, what)
                    buf_line += buf.count("\n", 0, first)
                    buf = buf[first:]
                    starts = [s - first for s in starts]
                seen_record = True
            # Every start but the last closes the record before it; the last
            # record may continue in the next chunk.
            batch: list[tuple[int, str]] = []
            for begin, end in zip(starts, starts[1:], strict=False):
                batch.append((buf_line, buf[begin:end].rstrip()))
                buf_line += buf.count("\n", begin, end)
            if batch:
                yield batch
            last = starts[-1] if starts else 0
            buf = buf[last:]
            if len(buf) > MAX_RECORD_CHARS:
                yield ParseWarning(f"{what} at line {buf_line} is longer than {MAX_RECORD_CHARS} characters; "
                                   "split there", f"line {buf_line}", 0, True)
                yield [(buf_line, buf.rstrip())]
                buf_line += buf.count("\n")
                buf = ""
        if buf.strip():
            if seen_record:
                yield [(buf_line, buf.rstrip())]
            else:
                yield _orphans(buf, buf_line, what)
    if report.bad_sequences:
        where = f"offset {report.first_bad_offset}" if report.first_bad_offset is not None else None
        note = f"; decoded as {report.fallback_codec} from there" if report.fallback_codec else ""
        yield ParseWarning(
            f"{report.bad_sequences} undecodable byte sequence(s) in {encoding.codec} text, "
            f"replaced with U+FFFD (first at {where}){note}", where, 0, True)
    if report.odd_trailing_byte:
        yield ParseWarning("UTF-16 file has an odd number of bytes: truncated mid-character "
                           "(file copied while being written?)", "end of file", 0, True)


def _orphans(text: str, line: int, what: str) -> ParseWarning:
    lines = text.strip("\n").count("\n") + 1
    return ParseWarning(
        f"{lines} line(s) without a timestamp before the first {what} were not part of any {what} "
        f"(log cut at the start?)", f"line {line}", 1, True)

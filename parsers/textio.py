"""Shared text handling: encoding detection and streamed decoding.

SQL Server writes its logs as UTF-16LE with a BOM on Windows and as 8-bit
ASCII/UTF-8 on Linux; exports arrive in any of UTF-8 (with or without BOM),
UTF-16 (either order, with or without BOM) and Windows-1252.  Detect, never
assume: BOM first, then NUL-byte statistics, then UTF-8.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_BYTES = 1 << 22  # 4 MiB of input per decoded chunk


@dataclass(frozen=True, slots=True)
class Encoding:
    codec: str  # python codec name
    bom: int  # BOM length in bytes

    @property
    def unit(self) -> int:
        """Bytes per code unit: 2 for UTF-16, 1 otherwise."""
        return 2 if self.codec.startswith("utf-16") else 1


def detect_encoding(head: bytes) -> Encoding:
    if head.startswith(codecs.BOM_UTF8):
        return Encoding("utf-8", 3)
    if head.startswith(codecs.BOM_UTF16_LE):
        return Encoding("utf-16-le", 2)
    if head.startswith(codecs.BOM_UTF16_BE):
        return Encoding("utf-16-be", 2)
    sample = head[:4096]
    if len(sample) >= 4:
        even_nul = sample[0::2].count(0)
        odd_nul = sample[1::2].count(0)
        half = len(sample) // 2
        # Mostly-ASCII UTF-16 text has a NUL in every other byte.
        if odd_nul > 0.3 * half and odd_nul > 4 * even_nul:
            return Encoding("utf-16-le", 0)
        if even_nul > 0.3 * half and even_nul > 4 * odd_nul:
            return Encoding("utf-16-be", 0)
    return Encoding("utf-8", 0)


def decode_head(head: bytes) -> str:
    """Best-effort text of a file's first bytes, for sniffing."""
    enc = detect_encoding(head)
    data = head[enc.bom:]
    if enc.unit == 2 and len(data) % 2:
        data = data[:-1]
    return data.decode(enc.codec, errors="replace")


@dataclass(slots=True)
class DecodeReport:
    """What went wrong while decoding, in input byte positions."""

    bad_sequences: int = 0
    first_bad_offset: int | None = None
    odd_trailing_byte: bool = False
    fallback_codec: str | None = None


class _Counter:
    """A codecs error handler that replaces and counts undecodable bytes."""

    def __init__(self, report: DecodeReport, base: list[int]):
        self.report = report
        self.base = base  # [byte offset of the current chunk]

    def __call__(self, exc: UnicodeDecodeError):
        self.report.bad_sequences += 1
        if self.report.first_bad_offset is None:
            self.report.first_bad_offset = self.base[0] + exc.start
        return "\ufffd", exc.end


_handler_seq = 0


@dataclass(frozen=True, slots=True)
class Span:
    """A part of a text input that starts at a line's first byte: ``start``
    and ``end`` are byte offsets (``end`` None: to the end of the input) and
    ``line`` is the 1-based number of the line at ``start``.  A big log is
    parsed in spans by several workers at once (``forensic.pieces``)."""

    start: int
    end: int | None
    line: int


def iter_decoded(stream: BinaryIO, encoding: Encoding, report: DecodeReport,
                 chunk_bytes: int = CHUNK_BYTES, span: Span | None = None,
                 positions: list[int] | None = None) -> Iterator[str]:
    """Decode ``stream`` chunk by chunk; bad bytes become U+FFFD and are counted.

    UTF-8 input with many invalid sequences (a Windows-1252 file, say) is
    re-decoded as cp1252 from the start of the next chunk on, and the report
    says so: that keeps text readable without guessing per line.

    ``span``: decode only those bytes (positions in the report stay those of
    the whole input).  ``positions``: gets, for each text yielded, the byte
    offset of its first character.
    """
    global _handler_seq
    _handler_seq += 1
    name = f"mssqlforensic-count-{_handler_seq}"
    base = [0]
    codecs.register_error(name, _Counter(report, base))
    codec = encoding.codec
    decoder = codecs.getincrementaldecoder(codec)(errors=name)
    if span is not None and span.start > 0:
        stream.seek(span.start)
        skip, offset = 0, span.start
    else:
        stream.seek(0)
        skip, offset = encoding.bom, 0
    left = None if span is None or span.end is None else span.end - offset
    while True:
        chunk = stream.read(chunk_bytes if left is None else min(chunk_bytes, left))
        if left is not None:
            left -= len(chunk)
        if skip:
            chunk, skip = chunk[skip:], 0
            offset += encoding.bom
        if not chunk:
            break
        base[0] = offset
        before = report.bad_sequences
        # Bytes the decoder still holds from the last chunk (a character cut
        # in two) belong to this text's first character.
        held = len(decoder.getstate()[0])
        text = decoder.decode(chunk)
        if codec == "utf-8" and report.bad_sequences - before > 16 and report.fallback_codec is None:
            report.fallback_codec = "cp1252"
            codec = "cp1252"
            decoder = codecs.getincrementaldecoder(codec)(errors=name)
            text = chunk.decode("cp1252", errors=name)
            held = 0
        if positions is not None:
            positions.append(offset - held)
        offset += len(chunk)
        yield text
    if encoding.unit == 2 and (offset - encoding.bom) % 2:
        report.odd_trailing_byte = True
    base[0] = offset
    held = len(decoder.getstate()[0])
    tail = decoder.decode(b"", final=True)
    if tail:
        if positions is not None:
            positions.append(offset - held)
        yield tail

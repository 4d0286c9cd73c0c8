"""The shapes master-database query results arrive in, read as rows of dicts.

Reference: ``../shared/reference/master-exports.md`` sections 2 and 5.  Each
reader streams one input and yields :class:`Row` objects (a mapping of column
name to value, as written) and :class:`~forensic.model.ParseWarning` objects.
What the columns mean is :mod:`parsers.catalog_views`' business; what the file
looks like is this module's.

Shapes:

``delimited``  CSV/TSV with a header line: SSMS/Azure Data Studio with
               headers, PowerShell ``Export-Csv`` (5.1 ``#TYPE`` line, 7 without),
               sqlcmd ``-s,`` without dashes.  Unquoted values with commas or
               line breaks (SSMS's default) are folded back into the free-text
               column.
``headerless`` CSV/TSV without a header (SSMS's default "Save Results As", bcp
               ``-c``): the column layout is recognised from the first row's
               value shapes against the known ``SELECT *`` layouts.
``sqlcmd``     sqlcmd / SSMS "Results to Text": header, dashes line, fixed
               widths or ``-s`` separators, ``(N rows affected)``.
``json``       FOR JSON arrays (also sqlcmd/SSMS output split into 2,033-character
               rows, ROOT and WITHOUT_ARRAY_WRAPPER forms).
``xml``        FOR XML RAW/AUTO/PATH, attributes or ELEMENTS [XSINIL], fragments
               or ROOT, and the collection script's output (``<mssqlf_collect>``).
``clixml``     PowerShell Export-Clixml.
``dbatools``   dbatools Export-DbaScript ``.sql`` files (read by
               :mod:`parsers.export_scripts`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from lxml import etree

from forensic.model import ParseWarning
from parsers.catalog_views import HEADERLESS_LAYOUTS, header_recognised, known_column_count, match_layout
from parsers.textio import detect_encoding

# Marker element/keys written by forensic/collect/collect_master.sql.
COLLECT_MARKER = "mssqlf_collect"
# Column name SQL Server gives unnamed FOR JSON / FOR XML results (sqlcmd and
# SSMS text output print it as a header).
_FOR_HEADER = re.compile(r"^\s*(JSON|XML)_F52E2B61-18A1-11d1-B105-00805F49916B\s*$", re.IGNORECASE)
# SQL Server returns FOR JSON / FOR XML text in rows of this many characters;
# sqlcmd and SSMS print each row on its own line (reference section 2.9).
FOR_SPLIT = 2033
_ROWS_AFFECTED = re.compile(r"^\s*\(([0-9]{1,18}) rows? affected\)\s*$", re.IGNORECASE)
_DASHES = re.compile(r"^-+(?:([^-\r\n])-+)*\s*$")
_SQLCMD_MSG = re.compile(r"^Msg \d+, Level \d+, State \d+")
_ERRORLOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{2} ")
_DBATOOLS = re.compile(r"using dbatools Export-DbaScript", re.IGNORECASE)
_SMO_OBJECT_HEADER = re.compile(r"^/\*{6} Object:\s+(StoredProcedure|SqlAssembly|DdlTrigger|ServerDdlTrigger|Login|"
                                r"ExtendedStoredProcedure|Database)\s+.+Script Date:.+\*{6}/\s*$", re.MULTILINE)
_TYPE_LINE = re.compile(r"^#TYPE [\w.+`\[\], ]+$")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.DOTALL)
# Character references to characters XML 1.0 forbids.  FOR XML writes them
# for control characters in data (e.g. &#x1;); libxml2 rejects them.
_BAD_CHARREF = re.compile(r"&#(?:x0*(?:[0-8bBcCeE]|1[0-9a-fA-F])|0*(?:[0-8]|1[1-24-9]|2[0-9]|3[01]));")
_CSV_FIELD_LIMIT = 1 << 28  # 256 MiB: base64/hex DLLs are long fields

# XML limits.  libxml2 without huge_tree caps one text node at 10,000,000
# bytes and nesting at 256 levels; on top, a whole XML input is read up to
# this many bytes (a master export is megabytes; gigabytes of XML are an
# attack or a mistake, and iterparse keeps at most one row in memory anyway).
XML_SIZE_LIMIT = 1 << 31


@dataclass(slots=True)
class Row:
    """One result row as the file wrote it."""

    values: dict[str, Any]
    number: int  # 1-based row number in the file (all tables): source_record
    position: str  # human-readable position ("line 12", "JSON value 3")
    table: int = 0  # index of the result set in the file
    hint: str | None = None  # view named by the file (marker, element, type name)
    context: dict[str, Any] = field(default_factory=dict)  # host/instance from markers


@dataclass(frozen=True, slots=True)
class Shape:
    kind: str  # delimited, headerless, sqlcmd, json, xml, clixml, dbatools
    delimiter: str = ","
    layout: str | None = None  # headerless: name of the recognised layout


# --------------------------------------------------------------------------
# Decoding


def choose_codec(head: bytes) -> str:
    """Python codec for the whole file; UTF-8 BOM/UTF-16 BOM handled by the codec."""
    enc = detect_encoding(head)
    if enc.codec == "utf-8":
        if enc.bom:
            return "utf-8-sig"
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            # Not UTF-8: Windows PowerShell/SSMS "ANSI" output.
            return "cp1252"
        return "utf-8"
    return "utf-16" if enc.bom else enc.codec


def head_text(head: bytes) -> str:
    codec = choose_codec(head)
    data = head
    if codec.startswith("utf-16") and len(data) % 2:
        data = data[:-1]
    return codecs.getincrementaldecoder(codec)(errors="replace").decode(data, final=False)


def open_text(stream: BinaryIO, head: bytes) -> TextIO:
    """A streaming text view of ``stream``; ``newline=""`` keeps CR/LF for csv."""
    return io.TextIOWrapper(stream, encoding=choose_codec(head), errors="replace", newline="")


# --------------------------------------------------------------------------
# Shape detection (cheap: works on the first bytes only)


def _lines(text: str, limit: int = 40) -> list[str]:
    return text.splitlines()[:limit]


def detect_shape(text: str) -> Shape | None:
    """Which shape the decoded first bytes have, or None if no export."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        return None
    first_line = stripped.split("\n", 1)[0].rstrip("\r")
    if _ERRORLOG_LINE.match(first_line):
        return None  # an ERRORLOG, never ours
    body = stripped
    if body.startswith("#< CLIXML"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
    body = _XML_DECL.sub("", body, count=1).lstrip()
    if body.startswith("<Objs ") or body.startswith("<Objs>"):
        # Any PowerShell object can be a CLIXML file (a PSCredential, a
        # process list): claim it only when it holds SQL Server catalog data.
        members = re.findall(r'\sN="([^"]{1,128})"', body)
        if "Microsoft.SqlServer.Management.Smo." in body or known_column_count(members) >= 2:
            return Shape("clixml")
        return None
    if body.startswith("/*") and _DBATOOLS.search(body[:2000]):
        return Shape("dbatools")
    if _SMO_OBJECT_HEADER.search(body):
        # SMO scripting with headers (Export-DbaScript -NoPrefix, SSMS
        # "Generate Scripts"): the same statements, read the same way.
        return Shape("dbatools")
    lines = _lines(stripped)
    # sqlcmd/SSMS text header of an unnamed FOR JSON/XML result.
    if _FOR_HEADER.match(lines[0]):
        rest = "".join(ln for ln in lines[1:] if not _DASHES.match(ln.strip() or "x"))
        return _markup_shape(rest.lstrip())
    markup = _markup_shape(body)
    if markup:
        return markup
    if _TYPE_LINE.match(first_line):
        lines = lines[1:]
        if lines and _header_fields(lines[0]):
            return Shape("delimited", _delimiter(lines[0]))
        return None
    if len(lines) >= 2 and _DASHES.match(lines[1].rstrip()) and "-" in lines[1]:
        if header_recognised(_sqlcmd_header(lines[0], lines[1])):
            return Shape("sqlcmd")
        return None
    if _header_fields(lines[0]):
        return Shape("delimited", _delimiter(lines[0]))
    # Headerless: the first complete row must fit a known layout.
    candidates = lines[:-1] if len(lines) > 1 else lines
    for line in candidates[:1]:
        for delim in ("\t", ",", ";", "|"):
            if delim in line:
                fields = next(csv.reader([line], delimiter=delim), [])
                layout = match_layout(fields)
                if layout:
                    return Shape("headerless", delim, layout)
    return None


def _markup_shape(body: str) -> Shape | None:
    if body.startswith("[") or body.startswith("{"):
        keys = re.findall(r'"((?:[^"\\]|\\.){1,128})"\s*:', body[:4096])
        if any(k == COLLECT_MARKER for k in keys) or known_column_count(keys) >= 2:
            return Shape("json")
        return None
    if body.startswith("<"):
        if body.startswith("<" + COLLECT_MARKER):
            return Shape("xml")
        if body.startswith("<!DOCTYPE") or body.startswith("<html") or body.startswith("<HTML"):
            return None
        names = re.findall(r"<([A-Za-z_][\w.\-]*)[\s/>]", body[:4096])
        names += re.findall(r"\s([A-Za-z_][\w.\-]*)=\"", body[:4096])
        if known_column_count(names) >= 2:
            return Shape("xml")
    return None


def _delimiter(line: str) -> str:
    counts = {d: _count_outside_quotes(line, d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _count_outside_quotes(line: str, ch: str) -> int:
    n, quoted = 0, False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif c == ch and not quoted:
            n += 1
    return n


def _header_fields(line: str) -> list[str] | None:
    """The header's names if ``line`` is a header naming catalog columns."""
    delim = _delimiter(line)
    fields = next(csv.reader([line], delimiter=delim), [])
    if len(fields) < 2:
        return None
    return fields if header_recognised([f.strip() for f in fields]) else None


def _sqlcmd_header(header: str, dashes: str) -> list[str]:
    spans, sep = dash_spans(dashes)
    if sep != " ":
        return [h.strip() for h in header.split(sep)]
    return [header[a:b].strip() for a, b in spans]


def dash_spans(dashes: str) -> tuple[list[tuple[int, int]], str]:
    """Column spans from a dashes line and the separator between them."""
    dashes = dashes.rstrip("\r\n")
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", dashes)]
    sep = dashes[spans[0][1]] if len(spans) > 1 else " "
    return spans, sep


# --------------------------------------------------------------------------
# Free-text folding: unquoted exports split values that contain the separator


def fold(fields: list[str], width: int, text_index: int | None, joiner: str) -> list[str] | None:
    """Rejoin ``fields`` to ``width`` by merging extras into ``text_index``.

    Columns left of the free-text column are taken from the left, columns
    right of it from the right; the middle is the free text.  None when
    there is no free-text column to absorb the extras.
    """
    if len(fields) <= width:
        return fields
    if text_index is None:
        return None
    right = width - text_index - 1
    middle = fields[text_index:len(fields) - right]
    return [*fields[:text_index], joiner.join(middle), *fields[len(fields) - right:]]


# --------------------------------------------------------------------------
# Delimited (CSV/TSV, with or without header)


class _Lines:
    """Iterate a text stream's lines, counting them (csv reads through this)."""

    def __init__(self, stream: Iterable[str]):
        self._it = iter(stream)
        self.line = 0
        self.last = ""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        value = next(self._it)
        self.line += 1
        self.last = value
        return value


def _records(reader: Any, lines: _Lines) -> Iterator[tuple[int, list[str]] | ParseWarning]:
    while True:
        start = lines.line + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParseWarning(f"CSV syntax error: {exc}", f"line {start}", lost_records=1)
            continue
        yield start, fields


def read_delimited(text: TextIO, shape: Shape, text_column: Any, row_start: Any) -> Iterator[Row | ParseWarning]:
    """CSV/TSV rows.

    ``text_column(names)`` gives the free-text column's index;
    ``row_start(names, fields)`` says whether a physical record can begin a
    row (its typed columns hold values of their type).  Records that cannot
    are continuation lines of an unquoted multi-line value (SSMS with
    "Retain CR/LF", no quoting) and are joined to the row before; surplus
    fields from unquoted separators are folded into the free-text column.
    """
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=shape.delimiter, quotechar='"', doublequote=True, strict=False)
    header: list[str] | None = None
    if shape.kind == "headerless":
        header = list(HEADERLESS_LAYOUTS[shape.layout or ""].columns)
    text_idx: int | None = text_column(header) if header else None
    number = 0
    pending: tuple[int, list[str]] | None = None
    # Quoted CSV (PowerShell, Azure Data Studio) keeps line breaks inside
    # quotes; only unquoted exports (SSMS defaults) need continuation joining.
    quoted: bool | None = None

    def emit(start: int, fields: list[str]) -> Iterator[Row | ParseWarning]:
        nonlocal number
        assert header is not None
        width = len(header)
        if len(fields) > width:
            folded = fold(fields, width, text_idx, shape.delimiter)
            if folded is None:
                yield ParseWarning(f"row has {len(fields)} fields, header has {width}; extra fields kept "
                                   "as 'extra_fields'", f"line {start}", damaged=False)
                values: dict[str, Any] = dict(zip(header, fields[:width], strict=True))
                values["extra_fields"] = fields[width:]
            else:
                yield ParseWarning(f"unquoted separators: {len(fields) - width} extra field(s) folded into "
                                   f"column {header[text_idx]!r}", f"line {start}", damaged=False)
                values = dict(zip(header, folded, strict=True))
        elif len(fields) < width:
            yield ParseWarning(f"row has {len(fields)} fields, header has {width} (row cut off?)",
                               f"line {start}", damaged=True)
            values = dict(zip(header, fields + [None] * (width - len(fields)), strict=True))
        else:
            values = dict(zip(header, fields, strict=True))
        number += 1
        yield Row(values, number, f"line {start}", hint=shape.layout)

    for item in _records(reader, lines):
        if isinstance(item, ParseWarning):
            yield item
            continue
        start, fields = item
        if header is None:
            if fields and fields[0].startswith("#TYPE "):
                continue  # PowerShell 5.1 type line; Import-Csv skips it too
            if not fields or not any(f.strip() for f in fields):
                continue
            header = [f.strip() for f in fields]
            text_idx = text_column(header)
            quoted = '"' in lines.last
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()) or _ROWS_AFFECTED.match(",".join(fields)):
            continue  # blank line; sqlcmd -s"," output ends with "(N rows affected)"
        if quoted is None:
            quoted = '"' in lines.last
        if pending is not None and not quoted and text_idx is not None and not row_start(header, fields):
            # A line break inside an unquoted value: this record continues it.
            before = pending[1]
            pending = (pending[0], [*before[:-1], before[-1] + "\n" + fields[0], *fields[1:]])
            continue
        if pending is not None:
            yield from emit(*pending)
        pending = (start, fields)
    if pending is not None:
        yield from emit(*pending)


# --------------------------------------------------------------------------
# sqlcmd / SSMS text results


def read_sqlcmd(text: TextIO, text_column: Any) -> Iterator[Row | ParseWarning]:
    """sqlcmd text: one or more result sets, each header + dashes + rows."""
    lines = _Lines(text)
    prev: str | None = None
    table = -1
    number = 0
    state = "seek"  # seek header, or in rows
    header: list[str] = []
    spans: list[tuple[int, int]] = []
    sep = " "
    fixed = True
    text_idx: int | None = None
    table_rows = 0
    current: tuple[list[str], int] | None = None  # row being assembled, its line

    def flush() -> Iterator[Row]:
        nonlocal current, number, table_rows
        if current is not None:
            fields, line_no = current
            current = None
            number += 1
            table_rows += 1
            values = {h: (None if v == "NULL" else v) for h, v in zip(header, fields, strict=False)}
            yield Row(values, number, f"line {line_no}", table=table)

    for raw in lines:
        line = raw.rstrip("\r\n")
        if state == "rows":
            m = _ROWS_AFFECTED.match(line)
            if m or not line.strip():
                yield from flush()
                if m and int(m.group(1)) != table_rows:
                    yield ParseWarning(f"sqlcmd reports {m.group(1)} rows, {table_rows} were readable",
                                       f"line {lines.line}", lost_records=max(0, int(m.group(1)) - table_rows))
                if m or not line.strip():
                    state = "seek" if m else state
                if m:
                    prev = None
                continue
            if _DASHES.match(line) and prev is not None and current is not None and current[1] == lines.line - 1:
                # A new result set's dashes right under what looked like a row:
                # that "row" was the next header (no blank line between sets).
                current = None
                state = "seek"
            else:
                cells = _split_sqlcmd(line, spans, sep, fixed, len(header), text_idx)
                if cells is None and current is not None:
                    # Continuation of a multi-line value (raw line breaks).
                    fields, line_no = current
                    idx = text_idx if text_idx is not None else len(fields) - 1
                    fields[idx] = fields[idx] + "\n" + line.rstrip()
                    continue
                yield from flush()
                if cells is None:
                    yield ParseWarning("line does not fit the column layout", f"line {lines.line}",
                                       lost_records=1)
                    prev = line
                    continue
                current = (cells, lines.line)
                prev = line
                continue
        if state == "seek":
            if _SQLCMD_MSG.match(line):
                yield ParseWarning(f"the export holds a SQL error instead of rows: {line.strip()}",
                                   f"line {lines.line}", damaged=False)
                prev = None
                continue
            if prev is not None and line.strip() and _DASHES.match(line) and "-" in line:
                spans, sep = dash_spans(line)
                header = _sqlcmd_header(prev, line)
                fixed = sep == " "
                if fixed:
                    # -W output: columns are not padded, the dashes only cover
                    # the header names; split on single spaces then fold.
                    trimmed = all(b - a == len(h) for (a, b), h in zip(spans, header, strict=False))
                    fixed = not (trimmed and len(prev.rstrip()) == spans[-1][1])
                    if not fixed:
                        sep = " "
                text_idx = text_column(header)
                table += 1
                table_rows = 0
                state = "rows"
                prev = None
                continue
            prev = line if line.strip() else None
    yield from flush()


def _split_sqlcmd(line: str, spans: list[tuple[int, int]], sep: str, fixed: bool, width: int,
                  text_idx: int | None) -> list[str] | None:
    """Cells of one row line, or None when it cannot start a row."""
    if not fixed:
        # -s separator, or -W (single spaces, no padding): split, then fold
        # separators inside the free-text value back.  Fewer cells than
        # columns means a line break inside a value.
        cells = line.split(sep)
        if len(cells) < width:
            return None
        folded = fold(cells, width, text_idx, sep)
        return [c.strip() for c in folded] if folded is not None else None
    if len(spans) > 1 and len(line.rstrip()) <= spans[-1][0] - 1:
        return None
    for (_a, b) in spans[:-1]:
        if b < len(line) and line[b] != " ":
            return None
    cells = [line[a:b].strip() for a, b in spans[:-1]]
    cells.append(line[spans[-1][0]:].strip())
    return cells


# --------------------------------------------------------------------------
# Split FOR JSON / FOR XML text: undo the 2,033-character row split


def unsplit(text: TextIO, chunk: int = 1 << 20) -> Iterator[str]:
    """Text of a FOR JSON/XML result with sqlcmd/SSMS artefacts removed.

    Header (``JSON_F52E2B61-...``), dashes and ``(N rows affected)`` lines are
    dropped.  A line exactly :data:`FOR_SPLIT` characters long was split by
    the server and is joined to the next without a line break; other line
    breaks are kept (they may be real line breaks inside FOR XML text).
    Long lines are read in pieces so a single-line multi-GB file streams.
    """
    first = True
    while True:
        line = text.readline(chunk)
        if not line:
            return
        body = line.rstrip("\r\n")
        ended = len(body) != len(line)
        if first:
            body = body.lstrip("\ufeff")
        if ended and (_FOR_HEADER.match(body) or _ROWS_AFFECTED.match(body)
                      or (body.strip() and _DASHES.match(body.strip()) and set(body.strip()) == {"-"})):
            first = False
            continue
        first = False
        if not ended:
            yield body  # a piece of a long line: no line break here
        elif len(body) == FOR_SPLIT:
            yield body
        else:
            yield body + "\n"


# --------------------------------------------------------------------------
# FOR JSON


def read_json(text: TextIO) -> Iterator[Row | ParseWarning]:
    """Objects of JSON arrays, streamed one object at a time.

    Top-level values may follow each other (one array per result set); an
    object with the :data:`COLLECT_MARKER` key names the view of the arrays
    that follow it.  ``{"root": [...]}`` (FOR JSON ROOT) names the view by
    its key.
    """
    decoder = json.JSONDecoder()
    pieces = unsplit(text)
    buf = ""
    pos = 0
    eof = False
    number = 0
    table = -1
    hint: str | None = None
    context: dict[str, Any] = {}
    in_array = False
    want = 1 << 16

    def more(n: int) -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        got = []
        size = 0
        for piece in pieces:
            got.append(piece)
            size += len(piece)
            if size >= n:
                break
        else:
            eof = True
        buf = buf[pos:] + "".join(got)
        pos = 0
        return bool(got)

    while True:
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos < len(buf) or not more(want):
                break
        if pos >= len(buf):
            break
        ch = buf[pos]
        if ch == "[":
            in_array = True
            table += 1
            pos += 1
            continue
        if ch == "]":
            in_array = False
            pos += 1
            continue
        if ch != "{":
            # Junk between values (a sqlcmd message, a cut): skip to the next object.
            nxt = buf.find("{", pos)
            junk = buf[pos:nxt if nxt >= 0 else len(buf)]
            if junk.strip():
                yield ParseWarning(f"text that is no JSON skipped: {junk.strip()[:60]!r}",
                                   f"JSON value {number + 1}", damaged=True)
            if nxt < 0:
                pos = len(buf)
                if not more(want):
                    break
                continue
            pos = nxt
            continue
        try:
            obj, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            # Read on only when the object may simply continue past the
            # buffer; a syntax error inside the buffer is damage, and
            # reading to the end of a large file would not repair it.
            cut_by_buffer = exc.pos >= len(buf) - 2 or exc.msg.startswith("Unterminated string")
            if cut_by_buffer and not eof and more(want):
                want = min(want * 2, 1 << 30)
                continue
            yield ParseWarning(f"JSON object cut or damaged: {exc.msg}", f"JSON value {number + 1}",
                               lost_records=1)
            nxt = buf.find("{", pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        pos = end
        want = 1 << 16
        if not isinstance(obj, dict):
            continue
        if COLLECT_MARKER in obj:
            hint = str(obj.get("view") or "") or None
            context = {k: v for k, v in obj.items() if k != COLLECT_MARKER}
            continue
        if not in_array and len(obj) == 1:
            ((key, value),) = obj.items()
            if isinstance(value, list):
                table += 1
                for item in value:
                    if isinstance(item, dict):
                        number += 1
                        yield Row(_flatten(item), number, f"JSON value {number}", table, key, context)
                continue
        number += 1
        yield Row(_flatten(obj), number, f"JSON value {number}", max(table, 0), hint, context)


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """FOR JSON PATH nests dotted aliases; flatten them back."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------
# XML (FOR XML, collection output, CLIXML): safe streaming parse


class _XmlFeed(io.RawIOBase):
    """UTF-8 bytes of a decoded XML text, declaration dropped, optionally wrapped.

    Decoding first (UTF-16, BOM) and re-encoding as UTF-8 lets one code path
    handle every encoding; dropping the ``<?xml ... encoding=...?>``
    declaration keeps libxml2 from decoding a second time.  FOR XML without
    ROOT is a fragment (many top-level elements): ``wrap`` adds a synthetic
    root.  Character references to XML-1.0-illegal characters become U+FFFD.
    """

    def __init__(self, pieces: Iterator[str], wrap: str | None):
        super().__init__()
        self._pieces = pieces
        self._buf = b""
        self._started = False
        self._wrap = wrap
        self._done = False
        self._carry = ""
        self.bad_charrefs = 0
        self.fed = 0
        self.over_limit = False

    def readable(self) -> bool:
        return True

    def _next_text(self) -> str | None:
        for piece in self._pieces:
            text = self._carry + piece
            self._carry = ""
            if not self._started:
                if not text.strip():
                    continue
                text = text.lstrip("\ufeff \t\r\n")
                if text.startswith("#< CLIXML"):
                    text = text.split("\n", 1)[1] if "\n" in text else ""
                m = _XML_DECL.match(text)
                if m is None and len(text) < 64 and text.lstrip().startswith("<?"):
                    self._carry = text
                    continue
                if m:
                    text = text[m.end():]
                self._started = True
                if self._wrap:
                    text = f"<{self._wrap}>" + text
            # Keep a possible partial character reference for the next piece.
            amp = text.rfind("&", max(0, len(text) - 12))
            if amp >= 0 and ";" not in text[amp:]:
                self._carry = text[amp:]
                text = text[:amp]
            text, n = _BAD_CHARREF.subn("\ufffd", text)
            self.bad_charrefs += n
            return text
        if self._done:
            return None
        self._done = True
        tail = self._carry
        self._carry = ""
        return tail + (f"</{self._wrap}>" if self._wrap and self._started else "")

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self.fed >= XML_SIZE_LIMIT:
                self.over_limit = True
                return 0
            text = self._next_text()
            if text is None:
                return 0
            self._buf = text.encode("utf-8")
            self.fed += len(self._buf)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def safe_iterparse(feed: _XmlFeed, events: tuple[str, ...] = ("start", "end")) -> Any:
    """lxml iterparse with entities, DTDs, network and huge trees off."""
    return etree.iterparse(
        io.BufferedReader(feed, buffer_size=1 << 16), events=events, resolve_entities=False,
        no_network=True, huge_tree=False, load_dtd=False, remove_comments=True, remove_pis=True,
        dtd_validation=False, attribute_defaults=False,
    )


def _local(tag: Any) -> str:
    """``{namespace}name`` -> ``name``; comments and PIs have no name."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _plain_attrs(el: Any) -> dict[str, str]:
    return {_local(k): v for k, v in el.attrib.items() if not k.startswith("{")}


def _is_leaf(el: Any) -> bool:
    return len(el) == 0 and not _plain_attrs(el)


def _xml_row_values(el: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(_plain_attrs(el))
    for child in el:
        if not isinstance(child.tag, str):
            continue
        name = _local(child.tag)
        if child.get(_XSI_NIL) in ("true", "1"):
            values[name] = None
        elif len(child):
            # AUTO with joins nests the joined table's element: merge it.
            values.update(_plain_attrs(child))
            for sub in child:
                if isinstance(sub.tag, str) and len(sub) == 0:
                    values[_local(sub.tag)] = sub.text or ""
        else:
            values.update({f"{name}.{k}": v for k, v in _plain_attrs(child).items()})
            values[name] = child.text or ""
    return values


def _doctype_guard(event: str, el: Any) -> bool:
    if event == "start":
        info = el.getroottree().docinfo
        return bool(info.doctype or info.internalDTD is not None)
    return False


def read_xml(text: TextIO) -> Iterator[Row | ParseWarning]:
    """FOR XML output and the collection script's output, as rows.

    Rows are elements that carry column attributes (RAW/AUTO) or column
    child elements (PATH, ELEMENTS), directly under the synthetic root or
    one level deeper (under ROOT('x') or the collection's ``<result>``).
    """
    feed = _XmlFeed(unsplit(text), wrap="mssqlf_fragment")
    number = 0
    table = -1
    marker: dict[str, Any] = {}
    ended = False
    depth = 0
    # top-level container element -> (hint, context for its rows).  Keeping
    # the element as key keeps lxml's proxy (and so its identity) alive.
    containers: dict[Any, tuple[str | None, dict[str, Any]]] = {}
    first = True
    try:
        for event, el in safe_iterparse(feed):
            if first:
                first = False
                if _doctype_guard(event, el):
                    yield ParseWarning("XML with a DTD refused (exports never carry one)", "line 1")
                    return
            if event == "start":
                depth += 1
                if depth == 2:
                    tag = _local(el.tag)
                    if tag == COLLECT_MARKER:
                        marker = _plain_attrs(el)
                    elif tag == "mssqlf_end":
                        ended = True
                    elif tag == "result" and el.get("view"):
                        attrs = _plain_attrs(el)
                        containers[el] = (attrs.pop("view"), {**marker, **attrs})
                        table += 1
                continue
            depth -= 1
            if depth == 2:  # an element two levels down: a row inside a container
                parent = el.getparent()
                if _is_leaf(el) or parent is None or _local(parent.tag) in (COLLECT_MARKER, "mssqlf_end"):
                    continue
                if parent not in containers:
                    containers[parent] = (_local(parent.tag), dict(marker))
                    table += 1
                hint, context = containers[parent]
                number += 1
                yield Row(_xml_row_values(el), number, f"row {number} (element <{_local(el.tag)}>)",
                          table, hint or _local(el.tag), context)
                _release(el)
            elif depth == 1:  # a top-level element: a row itself, unless a container
                tag = _local(el.tag)
                if el in containers:
                    del containers[el]
                elif tag not in (COLLECT_MARKER, "mssqlf_end") and not _is_leaf(el):
                    table = max(table, 0)
                    number += 1
                    yield Row(_xml_row_values(el), number, f"row {number} (element <{tag}>)", table, tag,
                              dict(marker))
                _release(el)
    except etree.XMLSyntaxError as exc:
        yield ParseWarning(_xml_error(exc, feed), f"row {number + 1}", lost_records=1)
    if marker and not ended:
        yield ParseWarning("collection output has no <mssqlf_end/>: the file was cut or the collection "
                           "stopped early", f"row {number}", damaged=True)
    if feed.bad_charrefs:
        yield ParseWarning(f"{feed.bad_charrefs} reference(s) to characters XML forbids replaced by U+FFFD",
                           None, damaged=False)


def _xml_error(exc: Exception, feed: _XmlFeed) -> str:
    if feed.over_limit:
        return f"XML input larger than {XML_SIZE_LIMIT} bytes: read up to the limit only"
    if "huge" in str(exc).lower() or "too long" in str(exc).lower():
        return f"XML value over libxml2's safe size limit (10 MB) not read: {exc}"
    return f"XML damaged or cut: {exc}"


def _release(el: Any) -> None:
    """Free a processed element and its already-processed siblings."""
    el.clear()
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


# --------------------------------------------------------------------------
# PowerShell CLIXML

_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def clixml_unescape(text: str) -> str:
    """``_xHHHH_`` escapes (control characters, surrogate halves) to text."""
    if "_x" not in text:
        return text
    out = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    # Surrogate pairs were escaped half by half: recombine them.
    return out.encode("utf-16", "surrogatepass").decode("utf-16", errors="replace")


_INT_TAGS = {"I16", "I32", "I64", "U16", "U32", "U64", "By", "SB"}
_FLOAT_TAGS = {"Db", "Sg", "D"}


def _clixml_value(el: Any, types: dict[str, list[str]]) -> Any:
    tag = _local(el.tag)
    text = el.text or ""
    if tag == "Nil":
        return None
    if tag == "S":
        return clixml_unescape(text)
    if tag == "B":
        return text.strip().lower() == "true"
    if tag in _INT_TAGS:
        try:
            return int(text)
        except ValueError:
            return text
    if tag in _FLOAT_TAGS:
        try:
            return float(text)
        except ValueError:
            return text
    if tag == "BA":
        import base64
        import binascii
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            return text  # left for the binary decoder to report
    if tag == "C":
        try:
            return chr(int(text))
        except ValueError:
            return text
    if tag == "Obj":
        names = _type_names(el, types)
        if any(n.endswith("System.DBNull") for n in names):
            return None
        for child in el:
            if _local(child.tag) == "ToString":
                return clixml_unescape(child.text or "")
        return None
    return clixml_unescape(text)


def _type_names(obj: Any, types: dict[str, list[str]]) -> list[str]:
    for child in obj:
        name = _local(child.tag)
        if name == "TN":
            names = [clixml_unescape(t.text or "") for t in child if _local(t.tag) == "T"]
            types[child.get("RefId", "")] = names
            return names
        if name == "TNRef":
            return types.get(child.get("RefId", ""), [])
    return []


def read_clixml(text: TextIO) -> Iterator[Row | ParseWarning]:
    """Top-level ``<Obj>`` elements as rows: ``<Props>`` then ``<MS>`` members."""
    feed = _XmlFeed(_chunks(text), wrap=None)
    types: dict[str, list[str]] = {}
    number = 0
    depth = 0
    first = True
    try:
        for event, el in safe_iterparse(feed):
            if first:
                first = False
                if _doctype_guard(event, el):
                    yield ParseWarning("XML with a DTD refused (CLIXML never carries one)", "line 1")
                    return
            if event == "start":
                depth += 1
                if depth == 2:
                    # Type names come first inside an Obj; record them early
                    # so later TNRef lookups work even for nested objects.
                    pass
                continue
            depth -= 1
            if depth != 1 or _local(el.tag) != "Obj":
                continue
            names = _type_names(el, types)
            values: dict[str, Any] = {}
            for container in el:
                if _local(container.tag) not in ("Props", "MS"):
                    continue
                for member in container:
                    if isinstance(member.tag, str) and member.get("N") is not None:
                        values[clixml_unescape(member.get("N"))] = _clixml_value(member, types)
            if not values:
                for child in el:
                    if _local(child.tag) == "ToString":
                        values["ToString"] = clixml_unescape(child.text or "")
            number += 1
            hint = names[0] if names else None
            yield Row(values, number, f"object {number} (RefId {el.get('RefId')})", 0, hint)
            _release(el)
    except etree.XMLSyntaxError as exc:
        yield ParseWarning(_xml_error(exc, feed), f"object {number + 1}", lost_records=1)


def _chunks(text: TextIO, size: int = 1 << 20) -> Iterator[str]:
    while True:
        piece = text.read(size)
        if not piece:
            return
        yield piece

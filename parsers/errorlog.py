"""SQL Server ERRORLOG (Windows UTF-16LE and Linux ASCII/UTF-8).

Layout (``../shared/reference/errorlog.md``)::

    2025-06-01 09:22:44.70 Server      Server process ID is 7676.
    |---- 22 chars ------| |- 12 ----||- message ...

One event per timestamped record; tab-led and blank lines continue the
record before them (the banner is one record).  An ``Error: N, Severity: S,
State: X.`` record merges with the message record that follows it with the
same time and source column.  Times are server-local with no offset: the
parser returns naive local times and, in :meth:`ErrorlogParser.prescan`, the
evidence of the offset (banner ``UTC adjustment`` and the 17176/17177 local/UTC
pairs) so the engine can convert them.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import datetime
from itertools import compress, count
from typing import Any, NamedTuple

from forensic.model import (
    TZ_ERRORLOG_ADJUSTMENT,
    TZ_ERRORLOG_PAIR,
    EventColumns,
    InputEvidence,
    ParseWarning,
    TimeAnchor,
)
from forensic.schema import attributes_json
from forensic.timezones import pair_offset, parse_offset, parse_pair_time
from parsers.base import Source
from parsers.sqlmessages import classify, dispatch_leads
from parsers.textio import DecodeReport, Encoding, Span, decode_head, detect_encoding, iter_decoded
from parsers.textlog import RecordBlock, iter_record_batches

SOURCE = "errorlog"
_TS = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{2}"
RECORD_START = re.compile(rf"^{_TS} ", re.MULTILINE)
# The head of a record after the newline before it: timestamp, source column
# and (looked at, not consumed) the message's first word, up to 14 characters:
# longer than any word a message template starts with.  The message is the
# text up to the next head, continuation lines (every following line that does
# not start with a timestamp) included.
FIRST_WORD_CHARS = 14
RECORD_HEAD = re.compile(rf"\n({_TS}) +(\S*) *(?=(\S{{0,{FIRST_WORD_CHARS}}}))")
_SNIFF_LINE = re.compile(rf"^{_TS} +\S+ +\S", re.MULTILINE)
# ASCII digits of a bounded length: message numbers are int32, and int() refuses
# other scripts' digits and more than 4300 of them (damaged or forged lines).
ERROR_LINE = re.compile(r"^Error: ([0-9]{1,10}), Severity: (-?[0-9]{1,10}), State: (-?[0-9]{1,10})\.?\s*$")
_SPID = re.compile(r"^spid([0-9]{1,9})(s?)$", re.IGNORECASE)
# The instance folder in paths: MSSQL16.MSSQLSERVER, MSSQL10_50.SQLEXPRESS
_INSTANCE_DIR = re.compile(r"MSSQL\d{2}(?:_\d+)?\.([^\\/'\"\s]+)[\\/]", re.IGNORECASE)
_PARAM_S = re.compile(r"^\s*-s\s*\"?([^\"\s]+)\"?\s*$", re.MULTILINE)


def parse_local(ts: str) -> datetime | None:
    """``2025-06-01 09:22:44.70`` -> naive datetime (centiseconds kept)."""
    try:
        return datetime(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]),
                        int(ts[14:16]), int(ts[17:19]), int(ts[20:22]) * 10_000)
    except ValueError:
        return None


def split_record(text: str) -> tuple[str, str, str]:
    """-> (timestamp text, source column, message).

    The source column is 12 characters wide, but a value of 12 or more
    characters would shift the message, so split on whitespace instead.
    """
    parts = text[23:].split(None, 1)
    if not parts:
        return text[:22], "", ""
    return text[:22], parts[0], parts[1] if len(parts) > 1 else ""


def _clean_message(message: str) -> str:
    if "\n" not in message:
        return message.rstrip()
    return "\n".join(line.rstrip() for line in message.split("\n")).strip("\n")


def source_attributes(process: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"process": process}
    m = _SPID.match(process)
    if m:
        attrs["spid"] = int(m.group(1))
        attrs["system_session"] = bool(m.group(2))
    return attrs


def startup_parameter_attributes(message: str) -> dict[str, Any]:
    """``parameters`` (one per continuation line) and ``trace_flags`` (-T...)
    of a 17110/17115 start-up parameters message (ERRORLOG or event log)."""
    params = [line.strip() for line in message.split("\n")[1:] if line.strip()]
    attrs: dict[str, Any] = {"parameters": params}
    flags = [p for p in params if p.upper().startswith("-T")]
    if flags:
        attrs["trace_flags"] = flags
    return attrs


class MessagePart(NamedTuple):
    """What a record's message (and its ``Error:`` line) says, whoever wrote
    it: the same text gives the same part, so it can be cached."""

    event_type: str
    event_id: int | None
    message: str
    user: str | None
    database: str | None
    object_name: str | None
    object_type: str | None
    attributes: dict[str, Any]
    plain: bool  # says nothing a plain record does not: no template, no Error: line


def message_part(message: str, error: tuple[int, int, int] | None = None, banner_position: bool = False
                 ) -> MessagePart:
    """Classify one record's message (``error``: its merged ``Error:`` line;
    ``banner_position``: the record is among the file's first lines)."""
    message = _clean_message(message)
    first_line = message.split("\n", 1)[0]
    attrs: dict[str, Any] = {}
    event_id = None
    if error is not None:
        event_id, attrs["severity"], attrs["state"] = error
    match = classify(first_line, event_id)
    event_type = "log_message"
    user = database = object_name = object_type = None
    if match is not None:
        event_type = match.event_type
        event_id = match.event_id if event_id is None else event_id
        object_name, object_type = match.object_name, match.object_type
        user, database = match.user, match.database
        attrs.update(match.attributes)
    elif error is not None:
        event_type = "error_reported"
    if banner_position and first_line.startswith("Microsoft SQL Server"):
        event_type = "server_banner"
        attrs["version"] = first_line.strip()
    elif event_type == "startup_parameters":
        attrs.update(startup_parameter_attributes(message))
    plain = event_type == "log_message" and event_id is None and not attrs
    return MessagePart(event_type, event_id, message, user, database, object_name, object_type, attrs, plain)


_PLAIN_ATTRS: dict[str, str] = {}


def _plain_attributes(processes: tuple[str, ...]) -> list[str]:
    """The attributes JSON of plain records: it depends only on the source
    column, so it is encoded once per distinct value."""
    cache = _PLAIN_ATTRS
    if len(cache) > 100_000:  # hostile input: every source column different
        cache.clear()
    for process in set(processes).difference(cache):
        cache[process] = attributes_json(source_attributes(process))
    return list(map(cache.__getitem__, processes))


# One row in EventColumns column order: event_type, event_id, message,
# local_text, source_record, user, database, object_name, object_type, attributes.
_Row = tuple


class _PendingError(NamedTuple):
    """An ``Error: N, Severity: S, State: X.`` record waiting for its message."""

    line: int
    ts: str
    process: str
    error: tuple[int, int, int]
    message: str


# A stand-in for the error line in an attributes template: the JSON of a
# merged pair differs between occurrences only by that number.  As a key it
# is written `"error_line":<n>` and quotes inside JSON strings are escaped,
# so the text cannot occur anywhere else in the JSON.
_LINE_MARK = 987_654_321_987_654_321
_LINE_NEEDLE = f'"error_line":{_LINE_MARK}'


class _Classified:
    """Rows of records that need more than the plain path.  The message part
    is cached by text: a brute force writes one failed-login pair thousands
    of times, a busy server the same DBCC or backup line all day.  So is its
    attributes JSON, per source column, as a template around the error line."""

    MAX = 20_000

    def __init__(self):
        # (message, error) -> (part, {(process, paired): JSON or (before, after)})
        self.parts: dict[tuple, tuple[MessagePart, dict]] = {}

    def row(self, line: int, ts: str, process: str, message: str,
            error: tuple[int, int, int] | None = None, error_line: int | None = None) -> _Row | None:
        """The record's row, or None when it is a plain one after all (a
        one-line message that matched no template)."""
        if line <= 3:  # the banner is told by its position: never cached
            part, texts = message_part(message, error, True), None
        else:
            part, texts = self.entry(message, error)
        if part.plain and "\n" not in message:
            return None
        if texts is None:
            attrs = attributes_json(self.attributes(part, process, error_line))
        else:
            paired = error_line is not None
            text = texts.get((process, paired))
            if text is None:
                text = texts[(process, paired)] = self.template(part, process, paired)
            attrs = text if type(text) is str else f"{text[0]}{error_line}{text[1]}"
        return (part.event_type, part.event_id, part.message, ts, line, part.user, part.database,
                part.object_name, part.object_type, attrs)

    def entry(self, message: str, error: tuple[int, int, int] | None) -> tuple[MessagePart, dict]:
        key = (message, error)
        entry = self.parts.get(key)
        if entry is None:
            if len(self.parts) >= self.MAX:
                self.parts.clear()
            entry = self.parts[key] = (message_part(message, error), {})
        return entry

    @staticmethod
    def attributes(part: MessagePart, process: str, error_line: int | None) -> dict[str, Any]:
        attrs = source_attributes(process)
        if error_line is not None:
            attrs["error_line"] = error_line
        attrs.update(part.attributes)  # what the message says wins
        return attrs

    def template(self, part: MessagePart, process: str, paired: bool) -> str | tuple[str, str]:
        """The attributes JSON, or for a merged pair the text before and
        after its error line."""
        text = attributes_json(self.attributes(part, process, _LINE_MARK if paired else None))
        if paired:
            before, found, after = text.partition(_LINE_NEEDLE)
            if found:
                return before + '"error_line":', after
        return text

    def lone_error(self, line: int, ts: str, process: str, error: tuple[int, int, int], message: str) -> _Row:
        """An Error: line with no message after it (log cut, or interleaved)."""
        part = self.entry(message, error)[0]
        attrs = self.attributes(part, process, None)
        attrs["unpaired"] = True
        return (part.event_type, part.event_id, part.message, ts, line, part.user,
                part.database, part.object_name, part.object_type, attributes_json(attrs))


def _scatter(columns: list[list], rows: dict[int, _Row]) -> None:
    """Put ``rows`` (index -> row) into ``columns``, one C-level pass per column."""
    if rows:
        for column, values in zip(columns, zip(*rows.values(), strict=True), strict=True):
            deque(map(column.__setitem__, rows, values), maxlen=0)


def _columns(source: str, rows: list[_Row]) -> EventColumns:
    return EventColumns(source, "Event Logged", *(list(c) for c in zip(*rows, strict=True)),
                        attributes_encoded=True, local_text_shaped=True)


class _BlockRows:
    """Turns the record blocks of one ERRORLOG, in file order, into event
    columns; an ``Error:`` line that ends a block waits for the next one."""

    def __init__(self, source: str):
        self.source = source
        self.classified = _Classified()
        self.pending: _PendingError | None = None
        # "error:" is the first word of an Error: N, Severity: S, State: X. line.
        self.leads: dict[str, tuple[str, ...] | None] = {**dispatch_leads(), "error:": None}
        if max(map(len, self.leads)) >= FIRST_WORD_CHARS:
            raise ValueError("a message template's first word is longer than RECORD_HEAD looks")
        # First word as written -> False (no template starts so), True (any
        # message may match) or the literal texts its templates start with.
        self.first_words: dict[str, bool | tuple[str, ...]] = {}
        self.error_numbers: dict[str, tuple[int, int, int] | tuple[()]] = {}

    def _error_lines(self, block: RecordBlock, messages: list[str]) -> dict[int, tuple[int, int, int]]:
        """The block's ``Error: N, Severity: S, State: X.`` lines (row -> the
        numbers), in row order.  Such a line's first word is ``Error:``; its
        numbers are cached by text (a brute force repeats one line)."""
        cache = self.error_numbers
        if len(cache) > 100_000:  # hostile input: every Error: line different
            cache.clear()
        found = {}
        for i in compress(count(), map("Error:".__eq__, block.columns[2])):
            text = messages[i]
            numbers = cache.get(text)
            if numbers is None:
                m = ERROR_LINE.match(text)
                numbers = cache[text] = (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else ()
            if numbers:
                found[i] = numbers
        return found

    def _to_build(self, block: RecordBlock, errors: dict[int, tuple[int, int, int]]) -> list[int]:
        """Rows other than Error: lines that may be more than plain records,
        in order: the message starts as some template does, or it goes on
        over more lines, or the record is among the file's first.  (A record
        after an Error: line needs no place here: ``of`` pairs it.)"""
        firsts, lines, n = block.columns[2], block.lines, len(block)
        distinct, known = set(firsts), self.first_words
        if len(known) + len(distinct) > 100_000:  # hostile input: every first word different
            known.clear()
        for word in distinct.difference(known):
            lower = word.lower()
            known[word] = (self.leads[lower] or True) if lower in self.leads else False
        hits = {word for word in distinct if known[word]}
        special = list(compress(count(), map(hits.__contains__, firsts)))
        led = {word: known[word] for word in hits if known[word] is not True}
        if led:
            # Only the first word is shared with a template: most such rows
            # (backups, DBCC runs) are plain, told by a prefix test.
            raw = block.columns[3]
            special = [i for i in special if firsts[i] not in led or raw[i].startswith(led[firsts[i]])]
        extra = [*block.multiline, *(i for i in range(min(n, 3)) if lines[i] <= 3)]
        return sorted({*special, *extra}.difference(errors))

    def of(self, block: RecordBlock) -> Iterator[EventColumns]:
        classified = self.classified
        ts_col, proc_col, _first_words, raw_messages = block.columns
        lines = block.lines
        messages = list(map(str.rstrip, raw_messages))
        n = len(messages)
        columns: list[list] = [["log_message"] * n, [None] * n, messages, ts_col, list(lines),
                               [None] * n, [None] * n, [None] * n, [None] * n, _plain_attributes(proc_col)]
        before: list[_Row] = []  # rows of a record held back from the previous block
        built: dict[int, _Row] = {}  # rows that replace plain ones
        merged: list[int] = []  # message rows merged into the Error: line before them
        errors = self._error_lines(block, messages)
        todo = self._to_build(block, errors)
        # An Error: line and the next record, written at the same time by the
        # same process, are one event (unless that record is an Error: line
        # too).  Rows: the pair's row replaces the Error: line's; a lone
        # Error: line keeps its own, marked unpaired.
        pending, self.pending = self.pending, None
        if pending is not None:  # the previous block ended with an Error: line
            if 0 not in errors and ts_col[0] == pending.ts and proc_col[0] == pending.process:
                # Never None: a merged pair has the Error: line's number.
                built[0] = classified.row(pending.line, ts_col[0], proc_col[0], messages[0], pending.error, lines[0])
                todo = todo[1:] if todo and todo[0] == 0 else todo
            else:
                before.append(classified.lone_error(*pending))
        for j, error in errors.items():
            i = j + 1
            if i == n:  # the block ends here: the next one decides
                self.pending = _PendingError(lines[j], ts_col[j], proc_col[j], error, messages[j])
            elif i not in errors and ts_col[i] == ts_col[j] and proc_col[i] == proc_col[j]:
                built[j] = classified.row(lines[j], ts_col[i], proc_col[i], messages[i], error, lines[i])
                merged.append(i)
            else:
                built[j] = classified.lone_error(lines[j], ts_col[j], proc_col[j], error, messages[j])
        if merged:
            todo = sorted(set(todo).difference(merged))
        row_of = classified.row
        for i in todo:
            row = row_of(lines[i], ts_col[i], proc_col[i], messages[i])
            if row is not None:
                built[i] = row
        _scatter(columns, built)
        if self.pending is not None:
            merged.append(n - 1)  # held back for the next block
        if before:
            yield _columns(self.source, before)
        if merged:
            keep = [True] * n
            for i in merged:
                keep[i] = False
            columns = [list(compress(column, keep)) for column in columns]
        if columns[0]:
            # Attributes are JSON text (plain rows' per source column, built
            # rows' templates), times the record head's.
            yield EventColumns(self.source, "Event Logged", *columns, attributes_encoded=True, local_text_shaped=True)

    def end(self) -> Iterator[EventColumns]:
        if self.pending is not None:
            yield _columns(self.source, [self.classified.lone_error(*self.pending)])
            self.pending = None


class ErrorlogParser:
    name = "errorlog"
    artifact_type = "errorlog"
    source = SOURCE
    cuttable = True  # parse(options={"span": ...}) and prescan(cuts=True)

    def sniff(self, head: bytes, name: str) -> bool:
        text = decode_head(head)
        lines = [ln for ln in text.replace("\r", "").split("\n")[:40] if ln.strip()]
        if not lines:
            return False
        hits = sum(1 for ln in lines if _SNIFF_LINE.match(ln))
        return bool(_SNIFF_LINE.match(lines[0])) or hits >= 2

    # -- full parse --------------------------------------------------------
    def parse(self, src: Source, options: Mapping[str, Any] | None = None) -> Iterator[EventColumns | ParseWarning]:
        """Records as :class:`EventColumns` blocks, one per decoded chunk.

        Column-wise: every record first becomes a plain row (no known
        template, pre-encoded attributes); only the records that may be more
        (a first word some template starts with, ``Error:`` lines and the
        record after them, continuation lines, the first lines) go through
        :func:`message_part` and replace their row.  ``forensic.model.expand``
        turns the blocks into events for consumers that want objects.
        """
        rows = _BlockRows(self.source)
        span: Span | None = (options or {}).get("span")  # a piece of a big log (prescan's cuts)
        for block in iter_record_batches(src, RECORD_START, head_re=RECORD_HEAD, span=span):
            if isinstance(block, ParseWarning):
                yield block
            elif block:
                yield from rows.of(block)
        yield from rows.end()

    # -- cheap first pass ---------------------------------------------------
    def prescan(self, src: Source, cuts: bool = False) -> InputEvidence:
        return prescan_errorlog(src, cuts)


_P_ADJ = re.compile(rf"^({_TS}) +\S+ +UTC adjustment: ([+-]?\d{{1,2}}:\d{{2}})", re.MULTILINE)
_P_PAIR = re.compile(
    rf"^({_TS}) +\S+ +This instance of SQL Server (last reported|has been) using a process ID of \d+ "
    r"(?:at|since) (.+?) \(local\) (.+?) \(UTC\)", re.MULTILINE)
_P_SERVER = re.compile(rf"^({_TS}) +\S+ +Server name is '([^']+)'", re.MULTILINE)
_P_CYCLE = re.compile(rf"^({_TS}) +\S+ +(Attempting to cycle error log|The error log has been reinitialized)",
                      re.MULTILINE)
_P_BANNER = re.compile(rf"^({_TS}) +\S+ +(Microsoft SQL Server \d{{4}}[^\r\n]*)", re.MULTILINE)


_PRESCAN_MAX_LINE = 1 << 16
# A place to cut the log for a parse in pieces, about every CUT_SPACING bytes:
# the first line of a record whose previous line is a one-line record other
# than an Error: line (whose message would be on the other side of the cut).
CUT_SPACING = 1 << 20
_CUT = re.compile(rf"\n(?={_TS} )")
_CUT_TRIES = 64


def prescan_errorlog(src: Source, cuts: bool = False) -> InputEvidence:
    """Instance names and time-zone anchors, by a few patterns over the text;
    with ``cuts``, places where a parse in pieces may start."""
    ev = InputEvidence()
    instances_from_params: list[str] = []
    instance_dirs: list[str] = []
    cycles: list[list[str]] = []
    report = DecodeReport()
    m = _INSTANCE_DIR.search(src.display_path + "/")
    if m:
        instance_dirs.append(m.group(1))
    found: list[tuple[int, int]] = []
    positions: list[int] = []  # byte offset of each decoded chunk
    newlines = 0  # before the current chunk
    cuttable = cuts  # and no NULs: a piece's own warnings would then split one count
    with src.open() as stream:
        encoding = detect_encoding(stream.read(4096))
        carry = ""
        for chunk in iter_decoded(stream, encoding, report, positions=positions):
            if cuttable:
                if "\x00" in chunk:
                    cuttable = False
                else:
                    more, newlines = _cuts_in(chunk, positions[-1], newlines, encoding, found[-1][0] if found else 0)
                    found.extend(more)
            text = carry + chunk.replace("\r", "")
            cut = text.rfind("\n")
            if cut == -1:
                # No line break yet.  The lines prescan looks for are short: a
                # longer one is not kept (no quadratic growth on a file of
                # gigabytes without a line break, e.g. zero-filled).
                carry = text if len(text) <= _PRESCAN_MAX_LINE else ""
                continue
            text, carry = text[:cut + 1], text[cut + 1:]
            _prescan_text(text, src, ev, instances_from_params, instance_dirs, cycles)
        if carry:
            _prescan_text(carry, src, ev, instances_from_params, instance_dirs, cycles)
    server_name = ev.facts.get("server_name")
    if server_name:
        host, _, inst = server_name.partition("\\")
        ev.host = host or None
        ev.instance = inst or None
    if ev.instance is None and instances_from_params:
        ev.instance = instances_from_params[0]
    if ev.instance is None and instance_dirs:
        ev.instance = instance_dirs[0]
    if ev.instance is None and (server_name or ev.facts.get("platform") == "linux"):
        ev.instance = "MSSQLSERVER"  # a server name without \INSTANCE is the default instance
    if cycles:
        ev.facts["cycle_times"] = cycles
    # Byte offsets of cuts come from the decoded text: exact only when no byte
    # was replaced (and no fall-back codec took over).
    if cuttable and not report.bad_sequences:
        ev.cuts = found
    return ev


def _cuts_in(chunk: str, start: int, newlines: int, encoding: Encoding, last: int
             ) -> tuple[list[tuple[int, int]], int]:
    """Places in the decoded ``chunk`` (its first character at byte ``start``,
    after ``newlines`` line breaks) where a parse in pieces may start, about
    CUT_SPACING bytes apart after the last one (at byte ``last``), as
    (byte offset, line number); and the line breaks up to the chunk's end
    (one pass over the text counts them)."""
    out: list[tuple[int, int]] = []
    ascii_only = chunk.isascii()  # then every character is one code unit
    pos, byte = 0, start
    while True:
        ahead = (out[-1][0] if out else last) + CUT_SPACING - byte
        at = _cut_at(chunk, pos + max(0, ahead) // encoding.unit)
        if at is None:
            return out, newlines + chunk.count("\n", pos)
        part = chunk[pos:at]
        byte += len(part) * encoding.unit if ascii_only else len(part.encode(encoding.codec))
        newlines += part.count("\n")
        pos = at
        out.append((byte, 1 + newlines))


def _cut_at(chunk: str, begin: int) -> int | None:
    """The first place at or after ``begin`` where a parse may start, or None."""
    for tries, m in enumerate(_CUT.finditer(chunk, begin)):
        if tries == _CUT_TRIES:
            break
        end = m.start()
        line_start = chunk.rfind("\n", 0, end) + 1
        if line_start == 0:
            continue  # the line before began in the previous chunk
        if RECORD_START.match(chunk, line_start) and "Error:" not in chunk[line_start:end]:
            return end + 1
    return None


# Literal needles first, the anchored pattern only on the lines they hit:
# these lines are rare, so the text is scanned at str.find speed.
_PRESCAN_NEEDLES = (
    ("UTC adjustment:", "adj"), ("(UTC)", "pair"), ("Server name is", "server"),
    ("cycle error log", "cycle"), ("error log has been reinitialized", "cycle"),
    ("Microsoft SQL Server", "banner"), ("-s", "param"), ("MSSQL", "dir"), ("/var/opt/mssql", "linux"),
    ("SqlSetup", "setup"),
)


def _record_time_before(text: str, pos: int) -> str | None:
    """Timestamp of the record that the line at ``pos`` belongs to."""
    for _ in range(50):
        start = text.rfind("\n", 0, max(pos - 1, 0)) + 1
        if RECORD_START.match(text, start):
            return text[start:start + 22]
        if start == 0:
            return None
        pos = start
    return None


def _lines_with(text: str, needle: str):
    pos = text.find(needle)
    while pos != -1:
        start = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        end = len(text) if end == -1 else end
        yield text[start:end]
        pos = text.find(needle, end)


def _prescan_text(text: str, src: Source, ev: InputEvidence, params: list[str], dirs: list[str],
                  cycles: list[list[str]]) -> None:
    for needle, kind in _PRESCAN_NEEDLES:
        for line in _lines_with(text, needle):
            if kind == "adj":
                m = _P_ADJ.match(line)
                if m:
                    local, offset = parse_local(m.group(1)), parse_offset(m.group(2))
                    if local is not None and offset is not None:
                        ev.anchors.append(TimeAnchor(local, offset, TZ_ERRORLOG_ADJUSTMENT, src.display_path))
            elif kind == "pair":
                m = _P_PAIR.match(line)
                if m:
                    _pair_anchor(m, src, ev)
            elif kind == "server":
                m = _P_SERVER.match(line)
                if m:
                    ev.facts.setdefault("server_name", m.group(2))
            elif kind == "cycle":
                m = _P_CYCLE.match(line)
                if m:
                    cycles.append([m.group(1), "cycle" if m.group(2).startswith("Attempting") else "reinit"])
            elif kind == "banner":
                m = _P_BANNER.match(line)
                if m:
                    ev.facts.setdefault("version", m.group(2).strip())
                    ev.facts.setdefault("run_starts", []).append(m.group(1))
            elif kind == "param":
                m = _PARAM_S.match(line)
                if m:
                    params.append(m.group(1))
            elif kind == "dir":
                dirs.extend(m.group(1) for m in _INSTANCE_DIR.finditer(line))
            elif kind == "setup":
                # -m"SqlSetup": the server runs for SQL Server setup; its own
                # configuration changes then are not an attacker's.
                if re.search(r"-m\s*\"?SqlSetup", line, re.IGNORECASE):
                    ts = _record_time_before(text, text.find(line))
                    if ts and ts not in ev.facts.get("setup_runs", []):
                        ev.facts.setdefault("setup_runs", []).append(ts)
            elif kind == "linux":
                ev.facts["platform"] = "linux"
                break  # one hit is enough


def _pair_anchor(m: re.Match[str], src: Source, ev: InputEvidence) -> None:
    offset = pair_offset(m.group(3), m.group(4))
    if offset is None:
        return
    if m.group(2) == "last reported":
        # 17176 describes the previous run's last heartbeat: anchor there.
        local = parse_pair_time(m.group(3))
    else:
        # 17177 is written periodically; it tells the offset when written.
        local = parse_local(m.group(1))
    if local is not None:
        ev.anchors.append(TimeAnchor(local, offset, TZ_ERRORLOG_PAIR, src.display_path))


PARSER = ErrorlogParser()

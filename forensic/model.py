"""The event model shared by every parser and the engine.

Parsers yield :class:`Event` and :class:`ParseWarning` objects.  They fill what
the artifact says; the engine fills provenance (``source_file``,
``source_sha256``), resolves local times to UTC (``timestamp``, ``tz_source``),
attributes ``host``/``instance`` where the artifact names neither, and applies
the detection rules (``flags``).  The Arrow schema in :mod:`forensic.schema`
mirrors these fields; it is the single source of truth for column types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# How a UTC timestamp was obtained (contract "Time" section).
TZ_UTC = "utc"
TZ_ERRORLOG_ADJUSTMENT = "errorlog_utc_adjustment"
TZ_ERRORLOG_PAIR = "errorlog_local_utc_pair"
TZ_REGISTRY = "registry"
# The live server's own offset, recorded by the bundled collection script
# (SYSDATETIMEOFFSET at collection time).
TZ_COLLECTION = "collection_utc_offset"
TZ_CLI = "cli"
TZ_ASSUMED_UTC = "assumed_utc"


@dataclass(slots=True)
class Event:
    """One timeline row as a parser sees it.

    Exactly one of ``timestamp`` (timezone-aware UTC, for sources that store
    UTC) or ``local_time`` (naive, server local time) is normally set; state
    rows with no time leave both ``None``.  ``local_text`` keeps the time
    exactly as the artifact wrote it.
    """

    source: str
    event_type: str
    message: str
    timestamp_desc: str = "Event Logged"
    timestamp: datetime | None = None
    local_time: datetime | None = None
    local_text: str | None = None
    event_id: int | None = None
    host: str | None = None
    instance: str | None = None
    user: str | None = None
    database: str | None = None
    object_name: str | None = None
    object_type: str | None = None
    flags: list[str] = field(default_factory=list)
    source_record: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Filled by the engine (a parser may set tz_source when it knows better,
    # e.g. "utc" for EVTX).
    tz_source: str | None = None


@dataclass(slots=True)
class ParseWarning:
    """Something wrong with the evidence, with where it is.

    ``position`` is human readable: ``line 12``, ``offset 0x1f40``,
    ``record 7``.  ``lost_records`` counts records that could not be kept
    because of this problem (0 for a cosmetic warning), so that every dropped
    record is accounted for in the manifest.  ``damaged`` marks the input as
    only partly readable (exit status 1).
    """

    message: str
    position: str | None = None
    lost_records: int = 0
    damaged: bool = True


@dataclass(frozen=True, slots=True)
class TimeAnchor:
    """Evidence of the server's UTC offset at one local time.

    ``local`` is the naive local time from which the offset is known to hold
    (the line that said it), ``offset_minutes`` is local minus UTC.
    """

    local: datetime
    offset_minutes: int
    kind: str  # TZ_ERRORLOG_ADJUSTMENT, TZ_ERRORLOG_PAIR, TZ_REGISTRY
    source_file: str = ""
    source_record: int | None = None


@dataclass(slots=True)
class InputEvidence:
    """What a cheap first pass over one input says about its instance.

    Used before the full parse to attribute inputs to instances and to build
    each instance's time context.  Every field is optional.
    """

    host: str | None = None
    instance: str | None = None
    anchors: list[TimeAnchor] = field(default_factory=list)
    # Free-form facts for the manifest (e.g. trace options, version banner).
    facts: dict[str, Any] = field(default_factory=dict)
    # Where a parse may start inside the input, as (byte offset, line number)
    # of a record's first line, in file order: a big log can then be parsed
    # in pieces by several workers (forensic.pieces).  Empty: whole only.
    cuts: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class EventColumns:
    """A block of events from a text log, one list per column.

    Hot paths (an ERRORLOG has millions of records) yield these instead of one
    :class:`Event` per record; the engine finishes them column-wise and makes
    per-row objects only for the rows that detection rules can touch.
    ``local_text`` is the time as written, ``YYYY-MM-DD hh:mm:ss`` optionally
    followed by ``.`` and a fraction of a second; every row is local time.
    ``attributes`` holds a dict or, for the common plain rows, the already
    encoded JSON text.
    """

    source: str
    timestamp_desc: str = "Event Logged"
    event_type: list[str] = field(default_factory=list)
    event_id: list[int | None] = field(default_factory=list)
    message: list[str] = field(default_factory=list)
    local_text: list[str] = field(default_factory=list)
    source_record: list[int] = field(default_factory=list)
    user: list[str | None] = field(default_factory=list)
    database: list[str | None] = field(default_factory=list)
    object_name: list[str | None] = field(default_factory=list)
    object_type: list[str | None] = field(default_factory=list)
    attributes: list[dict[str, Any] | str] = field(default_factory=list)
    # What the parser vouches for, so that the engine need not check it row
    # by row: every ``attributes`` entry is JSON text already; every
    # ``local_text`` is ``YYYY-MM-DD hh:mm:ss.ff`` (its digits perhaps of
    # other scripts, which the engine still tells apart).
    attributes_encoded: bool = False
    local_text_shaped: bool = False
    # When set: no ``attributes`` entry that is JSON text holds a key outside
    # this set (a superset is fine), so a rule on another attribute need not
    # look into JSON rows.
    encoded_keys: frozenset[str] | None = None

    def __len__(self) -> int:
        return len(self.message)

    def append(self, ev: Event) -> None:
        """Add a finished-by-the-parser event (local time only)."""
        self.event_type.append(ev.event_type)
        self.event_id.append(ev.event_id)
        self.message.append(ev.message)
        self.local_text.append(ev.local_text or "")
        self.source_record.append(ev.source_record)  # type: ignore[arg-type]
        self.user.append(ev.user)
        self.database.append(ev.database)
        self.object_name.append(ev.object_name)
        self.object_type.append(ev.object_type)
        self.attributes.append(ev.attributes)

    def event(self, i: int, local_time: datetime | None) -> Event:
        """Row ``i`` as an :class:`Event` (attributes decoded)."""
        import json
        attrs = self.attributes[i]
        return Event(source=self.source, event_type=self.event_type[i], message=self.message[i],
                     timestamp_desc=self.timestamp_desc, local_time=local_time, local_text=self.local_text[i],
                     event_id=self.event_id[i], user=self.user[i], database=self.database[i],
                     object_name=self.object_name[i], object_type=self.object_type[i],
                     source_record=self.source_record[i],
                     attributes=json.loads(attrs) if isinstance(attrs, str) else dict(attrs))


def parse_local_text(text: str) -> datetime | None:
    """``2025-06-01 09:22:44.70`` / ``2025-06-01 09:22:44`` -> naive datetime."""
    try:
        frac = text[20:26] if len(text) > 20 and text[19] == "." else ""
        micro = int(frac.ljust(6, "0")) if frac else 0
        return datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                        int(text[14:16]), int(text[17:19]), micro)
    except (ValueError, IndexError):
        return None


def expand(items):
    """Parser output with every :class:`EventColumns` block expanded into
    :class:`Event` objects (for tests and simple consumers)."""
    for item in items:
        if isinstance(item, EventColumns):
            for i in range(len(item)):
                yield item.event(i, parse_local_text(item.local_text[i]))
        else:
            yield item

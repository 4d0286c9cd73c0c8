"""Turning server-local times into UTC, per instance, from the evidence.

Rules (contract, "Time"):

1. The evidence first: offsets an instance's own ERRORLOG states
   (``UTC adjustment: -5:00`` in the banner, the ``(local) ... (UTC)`` pairs
   of messages 17176/17177), later the registry of a disk image.
2. ``--tz`` where the instance has no such evidence.
3. Otherwise the time is taken as UTC (``assumed_utc``) and the run warns.

Evidence is a list of :class:`~forensic.model.TimeAnchor`: "from this local
time on, local minus UTC was N minutes".  An instance whose server ran across
a daylight-saving change shows two offsets.  Between two anchors that
disagree, the change happened somewhere in between; when every IANA zone that
agrees with *all* the anchors puts that change at the same instant, we switch
there (so a log spanning a DST change comes out right to the minute);
otherwise we switch at the later anchor.  No zone rule is ever applied that
the evidence does not support.
"""

from __future__ import annotations

import bisect
import re
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache, lru_cache

from forensic.model import (
    TZ_ASSUMED_UTC,
    TZ_CLI,
    TZ_COLLECTION,
    TZ_ERRORLOG_ADJUSTMENT,
    TZ_ERRORLOG_PAIR,
    TZ_REGISTRY,
    TimeAnchor,
)

_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-]?)(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


def parse_offset(text: str) -> int | None:
    """``-5:00``, ``4:00``, ``+05:30``, ``0530``, ``UTC-3`` -> minutes, or None."""
    m = _OFFSET.match(text.strip())
    if not m:
        return None
    sign, hours, minutes = m.group(1), int(m.group(2)), int(m.group(3) or 0)
    if hours > 14 or minutes >= 60:
        return None
    total = hours * 60 + minutes
    return -total if sign == "-" else total


def format_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_cli_zone(text: str) -> tzinfo:
    """An IANA name or a fixed offset; ValueError when it is neither."""
    offset = parse_offset(text) if any(ch.isdigit() for ch in text) else None
    if offset is not None:
        return timezone(timedelta(minutes=offset))
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError, OSError) as exc:
        raise ValueError(f"unknown time zone {text!r} (use an IANA name such as Europe/Berlin or an offset such as -05:00)") from exc


def zone_label(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


_PAIR_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
)


@lru_cache(maxsize=4096)
def parse_pair_time(text: str) -> datetime | None:
    """Times inside 17176/17177 messages (US format seen; others tried)."""
    text = " ".join(text.split())
    text = re.sub(r"\.\d+", "", text)
    for fmt in _PAIR_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def pair_offset(local_text: str, utc_text: str) -> int | None:
    """Offset in minutes from a ``(local) ... (UTC)`` pair, when plausible."""
    local, utc = parse_pair_time(local_text), parse_pair_time(utc_text)
    if local is None or utc is None:
        return None
    minutes = round((local - utc).total_seconds() / 60)
    # Real offsets are whole quarter hours within +-14 h.
    if abs(minutes) > 14 * 60 or minutes % 15:
        return None
    return minutes


# The range of Python datetimes, in microseconds since the epoch: Arrow holds
# more, but a timeline row must be readable as a datetime.
_MIN_US = -62135596800 * 1_000_000
_MAX_US = 253402300799 * 1_000_000 + 999_999


@cache
def _all_zones() -> tuple[zoneinfo.ZoneInfo, ...]:
    zones = []
    for key in sorted(zoneinfo.available_timezones()):
        if key.startswith(("Etc/", "SystemV/", "posix/", "right/")) or "/" not in key:
            continue
        try:
            zones.append(zoneinfo.ZoneInfo(key))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return tuple(zones)


def _zone_offset_minutes(zone: tzinfo, local: datetime) -> int:
    offset = local.replace(tzinfo=zone).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _zone_agrees(zone: tzinfo, anchors: list[TimeAnchor]) -> bool:
    return all(_zone_offset_minutes(zone, a.local) == a.offset_minutes for a in anchors)


def _transition(zone: tzinfo, start: datetime, end: datetime, after: int) -> datetime | None:
    """First local minute in (start, end] at which ``zone`` uses offset ``after``.

    Found by bisection on the offset, to the minute.
    """
    if _zone_offset_minutes(zone, end) != after:
        return None
    return first_minute_with(lambda t: _zone_offset_minutes(zone, t), start, end, after)


def first_minute_with(offset_at: Callable[[datetime], int], start: datetime, end: datetime,
                      after: int) -> datetime:
    """First minute in (start, end] at which ``offset_at`` gives ``after``,
    by bisection (``offset_at(end)`` must be ``after``)."""
    lo, hi = start, end
    while hi - lo > timedelta(minutes=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(second=0, microsecond=0)
        if mid <= lo:
            break
        if offset_at(mid) == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(second=0, microsecond=0)


# Which evidence names a stretch of one offset when several say the same.
_KIND_PREFERENCE = (TZ_ERRORLOG_ADJUSTMENT, TZ_ERRORLOG_PAIR, TZ_REGISTRY, TZ_COLLECTION)


@dataclass(slots=True)
class Segment:
    start: datetime  # naive local, inclusive
    offset_minutes: int
    tz_source: str


@dataclass
class TimeContext:
    """How local times of one instance (or one PATH group) become UTC."""

    anchors: list[TimeAnchor] = field(default_factory=list)
    cli_zone: tzinfo | None = None
    segments: list[Segment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    zone_hint: str | None = None

    @classmethod
    def build(cls, anchors: list[TimeAnchor], cli_zone: tzinfo | None) -> TimeContext:
        ctx = cls(anchors=sorted(anchors, key=lambda a: (a.local, a.kind)), cli_zone=cli_zone)
        ctx._build_segments()
        return ctx

    # -- construction -------------------------------------------------------
    def _build_segments(self) -> None:
        anchors = self._registry_checked(self._dedupe(self.anchors))
        self.anchors = anchors
        if not anchors:
            return
        if self.cli_zone is not None and not _zone_agrees(self.cli_zone, anchors):
            a = next(a for a in anchors if _zone_offset_minutes(self.cli_zone, a.local) != a.offset_minutes)
            self.notes.append(
                f"--tz {zone_label(self.cli_zone)} disagrees with the evidence "
                f"({a.kind} {format_offset(a.offset_minutes)} at {a.local:%Y-%m-%d %H:%M}); the evidence wins")
        distinct = {a.offset_minutes for a in anchors}
        candidates: list[tzinfo] = []
        if len(distinct) > 1:
            if self.cli_zone is not None and _zone_agrees(self.cli_zone, anchors):
                candidates = [self.cli_zone]
            else:
                candidates = [z for z in _all_zones() if _zone_agrees(z, anchors)]
            if candidates:
                self.zone_hint = zone_label(candidates[0]) if len(candidates) == 1 else (
                    f"{len(candidates)} zones agree, e.g. {zone_label(candidates[0])}")
        segments = [Segment(datetime.min, anchors[0].offset_minutes, anchors[0].kind)]
        for prev, nxt in zip(anchors, anchors[1:], strict=False):
            if nxt.offset_minutes == prev.offset_minutes:
                continue
            switch = nxt.local
            instants = Counter(_transition(z, prev.local, nxt.local, nxt.offset_minutes) for z in candidates)
            instants.pop(None, None)
            if instants:
                (switch, votes), = instants.most_common(1)
                if votes != len(candidates):
                    self.notes.append(
                        f"offset changed from {format_offset(prev.offset_minutes)} to "
                        f"{format_offset(nxt.offset_minutes)} between {prev.local:%Y-%m-%d %H:%M} and "
                        f"{nxt.local:%Y-%m-%d %H:%M}; switch placed at {switch:%Y-%m-%d %H:%M} local, where "
                        f"{votes} of {len(candidates)} zones agreeing with the evidence change")
            else:
                self.notes.append(
                    f"offset changed from {format_offset(prev.offset_minutes)} to "
                    f"{format_offset(nxt.offset_minutes)} between {prev.local:%Y-%m-%d %H:%M} and "
                    f"{nxt.local:%Y-%m-%d %H:%M}; no known zone explains it, switch taken at the later anchor")
            segments.append(Segment(switch, nxt.offset_minutes, nxt.kind))
        # Label each stretch of one offset by its best evidence: the banner's
        # UTC adjustment when one inside the stretch states that offset,
        # otherwise the local/UTC pairs.
        for i, seg in enumerate(segments):
            end = segments[i + 1].start if i + 1 < len(segments) else datetime.max
            kinds = {a.kind for a in anchors
                     if a.offset_minutes == seg.offset_minutes and (i == 0 or a.local >= seg.start) and a.local < end}
            for kind in _KIND_PREFERENCE:
                if kind in kinds:
                    seg.tz_source = kind
                    break
            else:
                if kinds:
                    seg.tz_source = sorted(kinds)[0]
        self.segments = segments

    def _registry_checked(self, anchors: list[TimeAnchor]) -> list[TimeAnchor]:
        """Registry anchors (a disk image's SYSTEM hive: the zone the machine
        was set to) are used only where they agree with the instance's own
        evidence (ERRORLOG UTC adjustment, local/UTC pairs); when they
        disagree, the evidence wins and the registry is dropped, with a note."""
        registry = [a for a in anchors if a.kind == TZ_REGISTRY]
        evidence = [a for a in anchors if a.kind != TZ_REGISTRY]
        if not registry or not evidence:
            return anchors
        starts = [a.local for a in registry]
        for a in evidence:
            i = bisect.bisect_right(starts, a.local) - 1
            allowed = {registry[max(i, 0)].offset_minutes}
            if i > 0 and a.local - registry[i].local < timedelta(hours=1):
                allowed.add(registry[i - 1].offset_minutes)  # the repeated hour after a fall-back
            if a.offset_minutes not in allowed:
                self.notes.append(
                    f"the registry's time zone ({registry[0].source_file}) gives "
                    f"{format_offset(min(allowed))} at {a.local:%Y-%m-%d %H:%M}, but {a.kind} says "
                    f"{format_offset(a.offset_minutes)}: the ERRORLOG's evidence wins; the registry is not used")
                return evidence
        return anchors

    @staticmethod
    def _dedupe(anchors: list[TimeAnchor]) -> list[TimeAnchor]:
        out: list[TimeAnchor] = []
        seen = set()
        for a in sorted(anchors, key=lambda a: (a.local, a.kind)):
            key = (a.local, a.offset_minutes)
            if key in seen:
                continue
            seen.add(key)
            out.append(a)
        return out

    # -- use -----------------------------------------------------------------
    @property
    def has_evidence(self) -> bool:
        return bool(self.segments)

    def resolve(self, local: datetime) -> tuple[datetime | None, str]:
        """UTC (aware) and tz_source for one naive local time.  None for a
        time that has no UTC datetime (a damaged year 0001 or 9999 shifted
        past the range): the row keeps its written time in ``local_time``."""
        try:
            if self.segments:
                if len(self.segments) == 1:
                    seg = self.segments[0]
                else:
                    starts = [s.start for s in self.segments]
                    seg = self.segments[max(bisect.bisect_right(starts, local) - 1, 0)]
                return (local - timedelta(minutes=seg.offset_minutes)).replace(tzinfo=UTC), seg.tz_source
            if self.cli_zone is not None:
                return local.replace(tzinfo=self.cli_zone).astimezone(UTC), TZ_CLI
        except OverflowError:
            return None, self.resolve_method()
        return local.replace(tzinfo=UTC), TZ_ASSUMED_UTC

    def resolve_array(self, local):
        """Column-wise :meth:`resolve`: naive timestamp[us] array ->
        (timestamp[us, UTC] array, tz_source string array); times outside
        what a datetime holds become null, as in :meth:`resolve`."""
        import pyarrow.compute as pc
        utc, sources = self._resolve_array(local)
        if len(utc) and utc.null_count < len(utc):
            lo_hi = pc.min_max(pc.cast(utc, "int64"))
            if lo_hi["min"].as_py() < _MIN_US or lo_hi["max"].as_py() > _MAX_US:
                ints = pc.cast(utc, "int64")
                ok = pc.and_(pc.greater_equal(ints, _MIN_US), pc.less_equal(ints, _MAX_US))
                utc = pc.if_else(ok, utc, None)
        return utc, sources

    def _resolve_array(self, local):
        import pyarrow as pa
        import pyarrow.compute as pc
        n = len(local)
        utc_type = pa.timestamp("us", tz="UTC")
        if self.segments:
            offsets = pa.array([self.segments[0].offset_minutes] * n, type=pa.int64())
            sources = pa.array([self.segments[0].tz_source] * n, type=pa.string())
            for seg in self.segments[1:]:
                later = pc.fill_null(pc.greater_equal(local, pa.scalar(seg.start, pa.timestamp("us"))), False)
                offsets = pc.if_else(later, seg.offset_minutes, offsets)
                sources = pc.if_else(later, seg.tz_source, sources)
            shift = pc.cast(pc.multiply(offsets, 60_000_000), pa.duration("us"))
            return pc.cast(pc.subtract(local, shift), utc_type), sources
        if self.cli_zone is not None:
            sources = pa.array([TZ_CLI] * n, type=pa.string())
            fixed = self.cli_zone.utcoffset(None) if not hasattr(self.cli_zone, "key") else None
            if fixed is not None:
                shift = pa.scalar(int(fixed.total_seconds() * 1_000_000), pa.duration("us"))
                return pc.cast(pc.subtract(local, shift), utc_type), sources
            # An IANA zone: DST rules per row, done by zoneinfo like resolve().
            values = [None if t is None else self.resolve(t)[0] for t in local.to_pylist()]
            return pa.array(values, type=utc_type), sources
        return pc.cast(local, utc_type), pa.array([TZ_ASSUMED_UTC] * n, type=pa.string())

    def resolve_method(self) -> str:
        """The tz_source this context gives, for rows that carry no time."""
        if self.segments:
            return self.segments[-1].tz_source
        return TZ_CLI if self.cli_zone is not None else TZ_ASSUMED_UTC

    def describe(self) -> dict:
        """The decision, for the manifest."""
        if self.segments:
            return {
                "method": self.segments[0].tz_source if len(self.segments) == 1 else "evidence",
                "offsets": [
                    {"from_local": None if s.start == datetime.min else s.start.isoformat(),
                     "offset": format_offset(s.offset_minutes), "tz_source": s.tz_source}
                    for s in self.segments
                ],
                "anchors": len(self.anchors),
                "zone_hint": self.zone_hint,
                "notes": list(self.notes),
            }
        if self.cli_zone is not None:
            return {"method": TZ_CLI, "zone": zone_label(self.cli_zone), "notes": list(self.notes)}
        return {"method": TZ_ASSUMED_UTC, "notes": ["no time-zone evidence and no --tz: local times taken as UTC"]}

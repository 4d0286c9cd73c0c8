"""Build SQL Trace files for tests from the declared layout (parsers.trc_layout).

Everything here goes through the construct structures' ``build()`` so that a
fixture has exactly the bytes the parser is specified to read.  The helpers
mimic what a server writes for the default trace: trace-start record with
the event/column lists, events with columns in ascending id order, 0xFFF3
repeated-data tokens for columns equal to the previous event of the same
SPID, a trace-stop record and zero padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from parsers import trc_layout as L
from parsers.base import Source

# The default trace's column lists for the events used in the tests
# (trc-format.md section 9.2).
DEFAULT_EVENTS: dict[int, list[int]] = {
    18: [6, 7, 8, 9, 10, 11, 12, 14, 21, 23, 41, 49, 51, 60, 64, 26],
    20: [1, 3, 6, 7, 8, 9, 10, 11, 12, 14, 21, 23, 30, 31, 35, 49, 51, 57, 60, 64],
    22: [1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 20, 30, 31, 35, 41, 49, 51, 60, 64],
    46: [3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 21, 22, 24, 25, 28, 34, 35, 41, 49, 50, 51, 52, 56, 60, 64, 66],
    47: [3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 21, 22, 24, 25, 28, 34, 35, 41, 49, 50, 51, 52, 56, 60, 64, 66],
    108: [1, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 21, 23, 28, 29, 34, 35, 37, 38, 40, 41, 42, 43, 49, 50, 51, 60, 64],
    117: [1, 3, 5, 6, 7, 8, 9, 10, 11, 12, 14, 21, 23, 29, 35, 37, 40, 41, 44, 49, 50, 51, 60, 64],
    164: [3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 21, 22, 24, 25, 28, 34, 35, 41, 49, 50, 51, 52, 56, 60, 64, 66],
    175: [1, 3, 4, 6, 7, 8, 10, 11, 12, 14, 23, 28, 29, 34, 35, 37, 40, 41, 49, 50, 51, 60, 64],
}

T0 = datetime(2024, 3, 5, 14, 2, 11, 123000)
OBJECT_TYPES = {"U": 8277, "P": 8272, "X": 8280, "S": 8275, "ST": 21587, "AS": 21313, "PC": 17232,
                "FS": 21318, "FT": 21574, "TA": 16724, "AF": 17985}


class ServerTrace:
    """Accumulates records like the server does (including 0xFFF3 repeats)."""

    def __init__(self, server_name: str = "WS01\\SQL2019", *, start: datetime = T0,
                 events: Mapping[int, Iterable[int]] | None = None, repeat: bool = True):
        self.server_name = server_name
        self.start = start
        self.repeat = repeat
        self.records = [L.build_start_record(start, events if events is not None else DEFAULT_EVENTS)]
        self.sequence = 0
        self._last: dict[int, dict[int, object]] = {}

    def event(self, event_class: int, columns: Mapping[int, object], *, seconds: float = 1.0,
              repeatable: Iterable[int] = (6, 7, 8, 9, 10, 11, 41, 60)) -> bytes:
        """Add an event; columns equal to the SPID's previous event become 0xFFF3."""
        self.sequence += 1
        cols: dict[int, object] = {14: self.start + timedelta(seconds=seconds), 51: self.sequence, **columns}
        spid = cols.get(12)
        previous = self._last.get(spid, {}) if spid is not None else {}
        repeated = sorted(c for c in repeatable
                          if self.repeat and c in cols and c in previous and previous[c] == cols[c])
        explicit = {c: v for c, v in cols.items() if c not in repeated}
        if spid is not None:
            self._last.setdefault(spid, {}).update(cols)
        tokens = L.build_columns(explicit)
        if repeated:
            tokens.append(L.build_repeated(repeated))
        record = L.build_record(event_class, tokens)
        self.records.append(record)
        return record

    def stop(self, seconds: float = 60.0) -> None:
        self.records.append(L.build_stop_record(self.start + timedelta(seconds=seconds)))

    def data(self) -> bytes:
        """Header and records, without padding."""
        return L.build_header(self.server_name) + b"".join(self.records)

    def file(self, padded_to: int | None = 4096) -> bytes:
        data = self.data()
        if padded_to:
            data += bytes(-len(data) % padded_to)
        return data


def session(login: str = "sa", host: str = "WS01", app: str = "SSMS", spid: int = 57,
            pid: int = 4242, nt_user: str | None = None, nt_domain: str | None = None) -> dict[int, object]:
    cols: dict[int, object] = {8: host, 9: pid, 10: app, 11: login, 12: spid, 41: b"\x01", 60: 0, 64: login}
    if nt_user:
        cols[6] = nt_user
    if nt_domain:
        cols[7] = nt_domain
    return cols


def object_event(kind: str, name: str, database: str, subclass: int, **who) -> dict[int, object]:
    return {**session(**who), 3: 5, 21: subclass, 22: 1977058079, 28: OBJECT_TYPES[kind], 34: name, 35: database}


def source(data: bytes, name: str = "log.trc") -> Source:
    return Source.from_bytes(data, display_path=f"/evidence/Log/{name}")

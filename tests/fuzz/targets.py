"""What every parser must survive, shared by the suite and the long fuzz runs.

:func:`check_input` runs one byte string through every registered parser's
``sniff``, ``prescan`` and ``parse`` (and the engine's event completion into
an Arrow batch) and raises :class:`Violation` when a contract is broken:

- no exception escapes ``sniff``, ``prescan`` or ``parse``;
- ``parse`` yields only :class:`Event` and :class:`ParseWarning` objects, and
  not more of them than the input has bytes (a loop that does not advance
  would break that bound);
- every event fits the timeline schema (JSON attributes, int64 numbers,
  encodable strings), so the engine never loses a whole batch on one row;
- warnings count lost records as a non-negative int.

:func:`seeds` are the real samples (bundled evidence, test fixtures and the
public EVTX/trace samples); :func:`mutate` makes damaged copies of them
(truncations, bit flips, overwritten/inserted/deleted/duplicated ranges).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from pathlib import Path

from forensic import model as _model
from forensic.model import Event, InputEvidence, ParseWarning
from forensic.schema import BatchBuilder
from parsers import registered_parsers
from parsers.base import SNIFF_BYTES, Source

REPO = Path(__file__).resolve().parents[2]
PUBLIC = REPO.parent / "shared" / "fixtures-public"
SEED_DIRS = (REPO / "fixtures" / "evidence", REPO / "tests" / "fixtures", PUBLIC / "evtx", PUBLIC / "trc")
INT64 = range(-(2**63), 2**63)
# Columnar blocks of events (text logs, when the engine supports them).
EventColumns = getattr(_model, "EventColumns", None)
_COLUMN_LISTS = ("event_type", "event_id", "message", "local_text", "source_record", "user", "database",
                 "object_name", "object_type", "attributes")
# Text seeds that reach corners the samples do not (numbers, odd digits, odd bytes).
SYNTHETIC = (
    b"2025-01-01 10:00:00.00 spid51      Error: 18456, Severity: 14, State: 8.\r\n"
    b"2025-01-01 10:00:00.00 spid51      Login failed for user 'sa'. Reason: x [CLIENT: 10.0.0.1]\r\n",
    b"2025-01-01 10:00:00 - ? [100] Microsoft SQLServerAgent version 15.0.4322.2\n"
    b"2025-01-01 10:00:01 - ! [LOG] Step 1 of job 'evil' failed\n\tcontinued\n",
    "2025-01-01 10:00:00.00 Server      UTC adjustment: -5:00\r\n".encode("utf-16-le"),
)


class Violation(AssertionError):
    """A parser broke the robustness contract on some input."""


def seeds() -> dict[str, bytes]:
    """name -> bytes of every real sample (at most 1 MiB of each)."""
    out: dict[str, bytes] = {}
    for folder in SEED_DIRS:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() not in (".md", ".cs"):
                with path.open("rb") as fh:
                    out[str(path.relative_to(folder.parent))] = fh.read(1 << 20)
    for i, data in enumerate(SYNTHETIC):
        out[f"synthetic/{i}"] = data
    return out


_INTERESTING = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80",
                b"\xff\xff\xff\x7f", b"\r\n", b"\n", b"\t", b"\xef\xbb\xbf", b"\xff\xfe", b"\xd8\x00",
                "\u00b2".encode(), "\u0663".encode(), b"9" * 5000, b"-", b"[", b"]", b"'", b'"', b"<", b"&")


def mutate(data: bytes, rng: random.Random, steps: int | None = None) -> bytes:
    """A damaged copy of ``data``: a few random edits of the kinds real damage makes."""
    buf = bytearray(data)
    for _ in range(steps if steps is not None else rng.randint(1, 6)):
        n = len(buf)
        op = rng.randrange(8)
        at = rng.randrange(n + 1) if n else 0
        if op == 0 and n:  # truncate
            del buf[rng.randrange(n):]
        elif op == 1 and n:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(n)
                buf[i] ^= 1 << rng.randrange(8)
        elif op == 2:  # overwrite with an interesting value
            val = rng.choice(_INTERESTING)
            buf[at:at + len(val)] = val
        elif op == 3:  # insert random bytes
            buf[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == 4 and n:  # delete a range
            del buf[at:at + rng.randint(1, 512)]
        elif op == 5 and n:  # duplicate a range elsewhere (spliced copies, repeated chunks)
            start = rng.randrange(n)
            piece = bytes(buf[start:start + rng.randint(1, 4096)])
            buf[at:at] = piece
        elif op == 6 and n:  # zero a block (sparse/unwritten pages)
            buf[at:at + rng.choice((16, 512, 4096))] = bytes(min(n - at, rng.choice((16, 512, 4096))))
        elif op == 7:  # insert an interesting value
            buf[at:at] = rng.choice(_INTERESTING)
    return bytes(buf)


def _check_event(ev: Event, where: str) -> None:
    if not isinstance(ev.message, str) or not isinstance(ev.event_type, str) or not isinstance(ev.source, str):
        raise Violation(f"{where}: message/event_type/source must be str: {ev!r:.300}")
    for name in ("event_id", "source_record"):
        value = getattr(ev, name)
        if value is not None and (not isinstance(value, int) or value not in INT64):
            raise Violation(f"{where}: {name} {value!r:.80} is no int64")
    for name in ("message", "event_type", "host", "instance", "user", "database", "object_name",
                 "object_type", "local_text", "timestamp_desc"):
        value = getattr(ev, name)
        if value is not None:
            if not isinstance(value, str):
                raise Violation(f"{where}: {name} is {type(value).__name__}, not str")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise Violation(f"{where}: {name} cannot be written as UTF-8: {exc}") from None
    if not isinstance(ev.attributes, dict):
        raise Violation(f"{where}: attributes is {type(ev.attributes).__name__}")
    json.dumps(ev.attributes, default=str)


def check_parser(parser, data: bytes, options: dict | None = None, name: str = "fuzz.bin",
                 time_limit: float | None = None) -> tuple[int, int]:
    """Run one parser over ``data``; -> (events, warnings).  Raises Violation."""
    src = Source.from_bytes(data, name)
    try:
        verdict = parser.sniff(data[:SNIFF_BYTES], name)
    except Exception as exc:  # noqa: BLE001
        raise Violation(f"{parser.name}.sniff raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(verdict, bool):
        raise Violation(f"{parser.name}.sniff returned {verdict!r}")
    prescan = getattr(parser, "prescan", None)
    if prescan is not None:
        try:
            evidence = prescan(src)
        except Exception as exc:  # noqa: BLE001
            raise Violation(f"{parser.name}.prescan raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(evidence, InputEvidence):
            raise Violation(f"{parser.name}.prescan returned {type(evidence).__name__}")
    builder = BatchBuilder(name, "0" * 64, size=512)
    events = warnings = 0
    started = time.monotonic()
    bound = len(data) + 64
    try:
        for item in parser.parse(src, dict(options or {})):
            if isinstance(item, ParseWarning):
                warnings += 1
                if not isinstance(item.lost_records, int) or item.lost_records < 0:
                    raise Violation(f"{parser.name}: lost_records {item.lost_records!r}")
            elif isinstance(item, Event):
                events += 1
                _check_event(item, f"{parser.name} event {events}")
                if item.tz_source is None:
                    item.tz_source = "assumed_utc"
                builder.add(item)
            elif EventColumns is not None and isinstance(item, EventColumns):
                lengths = {name: len(getattr(item, name)) for name in _COLUMN_LISTS}
                if len(set(lengths.values())) != 1:
                    raise Violation(f"{parser.name}: EventColumns with columns of different lengths {lengths}")
                for ev in _model.expand([item]):
                    events += 1
                    _check_event(ev, f"{parser.name} event {events}")
                    ev.tz_source = "assumed_utc"
                    builder.add(ev)
            else:
                raise Violation(f"{parser.name}.parse yielded {type(item).__name__}")
            if events + warnings > bound:
                raise Violation(f"{parser.name}.parse yielded more items than the input has bytes: "
                                "a loop that does not advance?")
            if time_limit is not None and time.monotonic() - started > time_limit:
                raise Violation(f"{parser.name}.parse ran longer than {time_limit}s on {len(data)} bytes")
        builder.flush()
    except Violation:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Violation(f"{parser.name}.parse raised {type(exc).__name__}: {exc}") from exc
    return events, warnings


def parser_runs(only: Iterable[str] | None = None) -> list[tuple[object, dict]]:
    """(parser, options) pairs to try: every parser, EVTX with both engines."""
    runs = []
    for parser in registered_parsers():
        if only is not None and parser.name not in only:
            continue
        if parser.name == "evtx":
            runs += [(parser, {"evtx_engine": "rust"}), (parser, {"evtx_engine": "python"})]
        else:
            runs.append((parser, {}))
    return runs


def check_input(data: bytes, only: Iterable[str] | None = None, name: str = "fuzz.bin",
                time_limit: float | None = None) -> None:
    """Every parser (forced, whatever sniff says) over ``data``."""
    for parser, options in parser_runs(only):
        check_parser(parser, data, options, name, time_limit)

"""Throughput of the default-trace parser on a large generated trace.

    python bench/trc_bench.py [--mb 200] [--cache /tmp/mssql-forensic-bench]

Builds (once, cached outside the repository) a server-style trace of about
``--mb`` megabytes with the construct structures of :mod:`parsers.trc_layout`:
a trace-start record, then a block of default-trace events (object DDL with
0xFFF3 repeats, ErrorLog lines, auto-grow, login failures, a few long
TextData values in the 0xFF long-length form) repeated to size.  Then it
times, over the same file:

* ``bare walk``: the floor for pure Python, a token loop that only reads id
  and length and skips the data (chunked reads, no records, no decoding);
* ``framing``: :class:`parsers.default_trace.TraceReader`, records framed and
  checked, no decoding (what ``prescan`` does, minus the token walk);
* ``records``: framing plus the token walk of every record;
* ``parser``: ``PARSER.parse`` to timeline rows (``EventColumns`` blocks:
  decoding, names, repeated-data cache, message classification);
* ``engine``: the parser plus the engine's per-input finishing (rules, UTC
  times, Arrow batches), as ``bench/run.py`` measures it.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensic.model import Event, EventColumns  # noqa: E402
from parsers import trc_layout as L  # noqa: E402
from parsers.base import Source  # noqa: E402
from parsers.default_trace import PARSER, TraceReader  # noqa: E402

CHUNK = 1 << 22


def _block(start: datetime) -> bytes:
    """About 1 MB of varied events; repeated to build the big file."""
    records = []
    sessions = [
        {8: "WS01", 9: 4242, 10: "Microsoft SQL Server Management Studio", 11: "CORP\\dba", 12: 57,
         41: bytes.fromhex("010500000000000515000000") + b"\x11" * 16, 60: 0, 64: "CORP\\dba", 6: "dba", 7: "CORP"},
        {11: "sa", 12: 4, 41: b"\x01", 60: 1, 64: "sa"},
    ]
    previous: dict[int, dict[int, object]] = {}
    when = start
    for n in range(3000):
        who = sessions[n % 2]
        when += timedelta(milliseconds=37)
        kind = n % 10
        if kind < 5:
            event, cols = 46 if kind < 3 else 164, {3: 5, 21: n % 2, 22: 1000 + n, 28: 8277, 34: f"table_{n}",
                                                     35: "AppDB", 4: n, 51: n, 66: 1}
        elif kind < 7:
            event, cols = 22, {1: f"{when:%Y-%m-%d %H:%M:%S}.00 spid57      Configuration option 'show advanced"
                                  f" options' changed from 0 to 1. Run the RECONFIGURE statement to install.\r\n",
                               20: 10, 31: 15457, 35: "master", 51: n}
        elif kind < 9:
            event, cols = 93, {3: 2, 13: 37000, 15: when, 25: 31, 35: "tempdb", 36: "templog", 51: n}
        else:
            event, cols = 20, {1: "Login failed for user 'sa'. Reason: Password did not match. [CLIENT: 10.0.0.9]"
                                  + " -- " + "x" * 400, 31: 18456, 51: n}
        cols = {**who, 14: when, **cols}
        spid = cols[12]
        repeated = sorted(c for c in (6, 7, 8, 9, 10, 11, 41, 60)
                          if c in cols and previous.get(spid, {}).get(c) == cols[c])
        previous.setdefault(spid, {}).update(cols)
        tokens = L.build_columns({c: v for c, v in cols.items() if c not in repeated})
        if repeated:
            tokens.append(L.build_repeated(repeated))
        records.append(L.build_record(event, tokens))
    return b"".join(records)


def build(path: Path, megabytes: int) -> None:
    start = datetime(2024, 3, 5, 14, 0, 0)
    block = _block(start)
    target = megabytes << 20
    tmp = path.with_suffix(".partial")
    with tmp.open("wb") as out:
        out.write(L.build_header("BENCH01\\SQL2019"))
        out.write(L.build_start_record(start, {46: [1, 3], 164: [3], 22: [1], 93: [3], 20: [1]}))
        written = 0
        while written < target:
            out.write(block)
            written += len(block)
        out.write(L.build_stop_record(start + timedelta(hours=1)))
        out.write(bytes(-out.tell() % 4096))  # zero padding, as the server leaves it
    tmp.replace(path)


def bare_walk(path: Path) -> int:
    """Token count with nothing but id/length/skip over chunked reads."""
    head, long_len = struct.Struct("<HB").unpack_from, struct.Struct("<I").unpack_from
    count = 0
    with path.open("rb") as f:
        f.seek(L.HEADER_SIZE)
        buf, p = f.read(CHUNK), 0
        while True:
            if len(buf) - p < 7:
                more = f.read(CHUNK)
                if not more:
                    break
                buf, p = buf[p:] + more, 0
            tid, n = head(buf, p)
            if tid == 0:
                break
            if n == 0xFF:
                n = long_len(buf, p + 3)[0]
                p += 7 + n
            else:
                p += 3 + n
            count += 1
            while p > len(buf):  # a value that runs into the next chunk
                more = f.read(CHUNK)
                if not more:
                    return count
                p -= len(buf)
                buf = more
    return count


def _time(label: str, size: int, fn, repeat: int = 1) -> float:
    """Best of ``repeat`` runs (the machine may be shared)."""
    seconds, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        seconds = min(seconds, time.perf_counter() - t0)
    print(f"{label:<12} {size / seconds / 1e6:8.1f} MB/s  {seconds:7.2f} s  ({result})")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/mssql-forensic-bench"))
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs per line")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    path = args.cache / f"trc_{args.mb}mb.trc"
    if not path.exists():
        t0 = time.perf_counter()
        build(path, args.mb)
        print(f"built {path} in {time.perf_counter() - t0:.1f} s")
    size = path.stat().st_size
    print(f"{path}: {size / 1e6:.1f} MB (MB = 10^6 bytes)")
    src = Source(str(path), size, lambda: path.open("rb"))

    def framing(walk_all: bool) -> str:
        with src.open() as stream:
            reader = TraceReader(stream, size, walk_classes=None if walk_all else frozenset())
            reader.read_header()
            n = sum(1 for _ in reader.records())
        return f"{reader.index} records, {n} items, {reader.lost} lost"

    import forensic.pipeline  # noqa: F401 - imported before timing, as in a worker
    import parsers
    parsers.registered_parsers()
    walk = _time("bare walk", size, lambda: f"{bare_walk(path)} tokens", args.repeat)
    _time("framing", size, lambda: framing(False), args.repeat)
    _time("records", size, lambda: framing(True), args.repeat)
    _time("parser", size, lambda: f"{rows(PARSER.parse(src))} events", args.repeat)
    engine = _time("engine", size, lambda: f"{engine_pass(path)} rows", args.repeat)
    print(f"engine / bare walk: {walk / engine:.3f} (bench/run.py's trace_vs_token_walk)")


def rows(items) -> int:
    return sum(len(i) if isinstance(i, EventColumns) else isinstance(i, Event) for i in items)


def engine_pass(path: Path) -> int:
    """Parse and finish one input as a worker does (no spilling)."""
    from forensic.pipeline import InputReport, ParseTask, iter_input_batches
    from forensic.timezones import TimeContext
    task = ParseTask(path=str(path), display_path=str(path), root=str(path.parent), size=path.stat().st_size,
                     sha256="0" * 64, parser_name="default_trace", host="BENCH01", instance="SQL2019",
                     time_context=TimeContext.build([], None))
    report = InputReport(str(path), str(path), "default_trace")
    return sum(b.num_rows for b in iter_input_batches(task, report))


if __name__ == "__main__":
    main()

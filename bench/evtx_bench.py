"""Records per second: raw pyevtx-rs iteration vs our two EVTX engines.

    python bench/evtx_bench.py [FILE.evtx ...] [--chunks N] [--repeat R]

Without FILE, it times the largest public sample and two synthetic logs
built from the samples: EVTX files cannot be concatenated, but chunks are
self-contained, so we copy chunks N times, renumber the records (record
headers, chunk headers, checksums) and write a fresh file header.

``dense``   the Security 4688 chunks (half the records are rows) and the
            SQL Server Application chunk (every record is a row), 4:1:
            a worst case, most records become rows.
``sparse``  the same, one chunk in 20; the other 19 are 4688 chunks with the
            SQL Server names overwritten (same length, so the records stay
            valid), i.e. a busy Security log where ~3% of records are rows.

Each measurement is the best of R runs (the machine is shared; the best run
is the least disturbed).  Printed: records, seconds, records/s.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parsers.base import Source  # noqa: E402
from parsers.eventlog import PARSER  # noqa: E402
from parsers.evtx_engines import CHUNK_SIZE, FILE_HEADER_SIZE  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "fixtures-public" / "evtx"
SECURITY = SAMPLES / "mdec_ID4688_sqlservr_cmd_children_msf.evtx"
APPLICATION = SAMPLES / "sbou_LM_xp_cmdshell_MSSQL_Events.evtx"


def valid_chunks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out = []
    for ofs in range(FILE_HEADER_SIZE, len(data), CHUNK_SIZE):
        chunk = data[ofs:ofs + CHUNK_SIZE]
        if chunk[:8] == b"ElfChnk\x00":
            out.append(chunk)
    return out


def renumber(chunk: bytes, first: int) -> tuple[bytes, int]:
    """Give the chunk's records the numbers first, first+1, ...; fix its checksums."""
    c = bytearray(chunk)
    free, = struct.unpack_from("<I", c, 0x30)
    pos, number = 0x200, first
    while pos < free and c[pos:pos + 4] == b"\x2a\x2a\x00\x00":
        struct.pack_into("<Q", c, pos + 8, number)
        pos += struct.unpack_from("<I", c, pos + 4)[0]
        number += 1
    last = number - 1
    struct.pack_into("<QQQQ", c, 8, first, last, first, last)
    struct.pack_into("<I", c, 0x34, zlib.crc32(bytes(c[0x200:free])))
    struct.pack_into("<I", c, 0x7C, zlib.crc32(bytes(c[:0x78] + c[0x80:0x200])))
    return bytes(c), number


def noise(chunk: bytes) -> bytes:
    """The same records with nothing SQL Server about them."""
    for old, new in (("sqlservr.exe", "notepad1.exe"), ("SQL Server", "XYZ Server"), ("MSSQL", "MSXYZ")):
        chunk = chunk.replace(old.encode("utf-16-le"), new.encode("utf-16-le"))
    return chunk


def build_synthetic(path: Path, chunks: int, sparse: bool = False) -> int:
    security, application = valid_chunks(SECURITY), valid_chunks(APPLICATION)
    pattern = security[:4] + application  # 4:1
    if sparse:
        quiet = [noise(c) for c in security]
        pattern = [c for real in pattern for c in [real] + [quiet[i % len(quiet)] for i in range(19)]]
    header = bytearray(SECURITY.read_bytes()[:FILE_HEADER_SIZE])
    number = 1
    with path.open("wb") as out:
        out.write(bytes(FILE_HEADER_SIZE))
        for i in range(chunks):
            chunk, number = renumber(pattern[i % len(pattern)], number)
            out.write(chunk)
        struct.pack_into("<QQQ", header, 8, 0, chunks - 1, number)
        struct.pack_into("<H", header, 0x2A, min(chunks, 0xFFFF))
        struct.pack_into("<I", header, 0x78, 0)
        struct.pack_into("<I", header, 0x7C, zlib.crc32(bytes(header[:0x78])))
        out.seek(0)
        out.write(bytes(header))
    return number - 1


def best(fn, repeat: int) -> tuple[int, float]:
    times, count = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - start)
    return count, min(times)


def raw_rust(path: Path, threads: int):
    import evtx

    def run():
        n = 0
        for record in evtx.PyEvtxParser(str(path), number_of_threads=threads).records_json():
            json.loads(record["data"])
            n += 1
        return n
    return run


def timeline(path: Path, engine: str, **options):
    src = Source(str(path), path.stat().st_size, lambda: open(path, "rb"))

    def run():
        gen = PARSER.parse(src, {"evtx_engine": engine, **options})
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value["records_read"]
    return run


def measure(path: Path, repeat: int, python_repeat: int) -> None:
    print(f"\n{path.name}: {path.stat().st_size:,} bytes")
    cases = [
        ("raw pyevtx-rs records_json + json.loads, 1 thread", raw_rust(path, 1), repeat),
        ("raw pyevtx-rs records_json + json.loads, auto threads", raw_rust(path, 0), repeat),
        ("rust engine, timeline rows (1 thread)", timeline(path, "rust"), repeat),
        ("rust engine, timeline rows, auto threads", timeline(path, "rust", evtx_threads=0), repeat),
        ("rust engine, no pre-filter (json.loads every record)", timeline(path, "rust", evtx_prefilter=False), repeat),
        ("python engine, timeline rows", timeline(path, "python"), python_repeat),
        ("python engine, no pre-filter (decode every record)", timeline(path, "python", evtx_prefilter=False), python_repeat),
    ]
    for label, fn, r in cases:
        count, seconds = best(fn, r)
        print(f"  {label:58s} {count:>9,} rec {seconds:8.3f} s {count / seconds:>11,.0f} rec/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--chunks", type=int, default=500, help="chunks in the synthetic file (default 500 = 32 MiB)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--python-repeat", type=int, default=2)
    args = ap.parse_args()
    if args.files:
        for path in args.files:
            measure(path, args.repeat, args.python_repeat)
        return
    measure(SECURITY, args.repeat, args.python_repeat)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("dense", "sparse"):
            path = Path(tmp) / f"synthetic-{kind}.evtx"
            records = build_synthetic(path, args.chunks, sparse=kind == "sparse")
            print(f"\nsynthetic {kind} file: {args.chunks} chunks, {records:,} records")
            measure(path, args.repeat, args.python_repeat)


if __name__ == "__main__":
    main()

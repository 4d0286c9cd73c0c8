"""Big logs parsed in pieces by several workers (forensic.pieces): the rows
are those of a parse of the whole log."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pyarrow.parquet as pq
import pytest

import parsers.errorlog as errorlog
import parsers.textio as textio
from forensic.model import EventColumns, ParseWarning
from forensic.pieces import (
    first_pass_tasks,
    join_first_pass,
    join_reports,
    plan_spans,
    split_tasks,
    task_bytes,
)
from forensic.pipeline import InputReport, ParseTask, PrescanResult, PrescanTask, run_prescan_task
from parsers import textlog
from parsers.base import Source
from parsers.textio import Span

MESSAGES = [
    "Login failed for user 'sa'. Reason: Password did not match that for the login provided. [CLIENT: 10.0.0.7]",
    "Configuration option 'xp_cmdshell' changed from 0 to 1. Run the RECONFIGURE statement to install.",
    "Launched startup procedure 'sp_évil'.",
    "BACKUP DATABASE successfully processed 100 pages in 0.1 seconds (7.8 MB/sec).",
    "Log was backed up. Database: db1, creation date(time): 2025/01/01(10:00:00), pages dumped: 3",
    "Registry startup parameters: \n\t -d C:\\master.mdf\n\t -T 4022",
    "Starting up database 'ünïcode'.",
    "Unsafe assembly 'evil, version=0.0.0.0' loaded into appdomain 3 (db.dbo[runtime].2).",
    "a message with an emoji 😀 outside the BMP",
    "multi\nline\n\n\tcontinued",
    "Error: 18456, Severity: 14, State: 8.",
    "Error: 18456, Severity: 14, State: 8.\n",
    "Error: 50000, Severity: 16, State: 1.",
    "",
]
PROCESSES = ["spid51", "spid52", "Server", "Logon", "Backup", "spid9s"]


def generated_log(rng: random.Random, records: int) -> str:
    t = datetime(2025, 3, 30, 0, 59, 0)
    lines = []
    for _ in range(records):
        t += timedelta(milliseconds=rng.choice([0, 10, 370, 2_000]))
        ts = f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 10_000:02d}"
        process = rng.choice(PROCESSES)
        message = rng.choice(MESSAGES)
        lines.append(f"{ts} {process:<12}{message}")
        if message.startswith("Error:") and rng.random() < 0.8:  # its message, same time and process
            lines.append(f"{ts} {process:<12}{rng.choice(MESSAGES)}")
    return "\n".join(lines)


def encoded(text: str, codec: str, newline: str) -> bytes:
    text = text.replace("\n", newline) + newline
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-8": b""}[codec]
    return bom + text.encode(codec)


def rows(src: Source, span: Span | None = None):
    out, warnings = [], []
    for item in errorlog.PARSER.parse(src, {"span": span} if span else None):
        if isinstance(item, ParseWarning):
            warnings.append((item.message, item.position))
        else:
            assert isinstance(item, EventColumns)
            out.extend(zip(item.event_type, item.event_id, item.message, item.local_text, item.source_record,
                           item.user, item.database, item.object_name, item.object_type, item.attributes,
                           strict=True))
    return out, warnings


@pytest.fixture
def small_chunks(monkeypatch):
    """Cuts every few hundred bytes and decoded chunks of a few dozen: cuts
    land near chunk ends, and characters and CRLFs are split between chunks."""
    def use(chunk_bytes: int, spacing: int):
        monkeypatch.setattr(errorlog, "CUT_SPACING", spacing)
        decode = textio.iter_decoded
        monkeypatch.setattr(errorlog, "iter_decoded", lambda s, e, r, **kw: decode(s, e, r, chunk_bytes, **kw))
        monkeypatch.setattr(textlog, "iter_decoded", lambda s, e, r, **kw: decode(s, e, r, chunk_bytes, **kw))
    return use


@pytest.mark.parametrize("seed", range(12))
def test_cuts_are_record_lines_and_pieces_parse_like_the_whole_log(seed, small_chunks):
    rng = random.Random(seed)
    codec = rng.choice(["utf-16-le", "utf-16-be", "utf-8"])
    data = encoded(generated_log(rng, rng.randrange(40, 400)), codec, rng.choice(["\r\n", "\n"]))
    chunk_bytes = rng.choice([37, 301, 997, 4096])
    small_chunks(chunk_bytes, rng.choice([150, 700, 3000]))
    src = Source.from_bytes(data, "ERRORLOG")
    cuts = errorlog.prescan_errorlog(src, cuts=True).cuts
    # A cut needs the whole line before it in the same chunk: none in chunks
    # shorter than a line (real chunks are 4 MiB).
    assert cuts or chunk_bytes < 301
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 2 if codec.startswith("utf-16") else 0
    for offset, line in cuts:
        before, after = data[bom:offset].decode(codec), data[offset:].decode(codec)
        assert before.endswith("\n") and 1 + before.count("\n") == line
        assert errorlog.RECORD_START.match(after)
        # The record before is one line, not an Error: line waiting for its message.
        previous = before[:-1].rsplit("\n", 1)[-1]
        assert errorlog.RECORD_START.match(previous) and "Error:" not in previous
    whole = rows(src)
    for target in (200, 1000, len(data) // 2):
        spans = plan_spans(len(data), cuts, target)
        if spans is None:
            continue
        got, warnings = [], []
        for span in spans:
            r, w = rows(src, span)
            got.extend(r)
            warnings.extend(w)
        assert (got, warnings) == whole


def test_damaged_logs_are_never_cut(small_chunks):
    """Byte offsets come from the decoded text: with replaced bytes or NULs
    (zero-filled pages) they could be wrong, and a piece's warnings would
    split one count."""
    small_chunks(4096, 20_000)
    text = generated_log(random.Random(1), 3000)
    data = encoded(text, "utf-16-le", "\r\n")
    assert errorlog.prescan_errorlog(Source.from_bytes(data, "ERRORLOG"), cuts=True).cuts
    middle = len(data) // 2 & ~1
    for damaged in (data[:middle] + b"\x00\x00" * 40 + data[middle:],   # zero-filled region
                    data[:middle] + b"\x00\xd8" + data[middle:]):       # a lone surrogate
        assert errorlog.prescan_errorlog(Source.from_bytes(damaged, "ERRORLOG"), cuts=True).cuts == []
    utf8 = encoded(text, "utf-8", "\n")
    assert errorlog.prescan_errorlog(Source.from_bytes(utf8[:5000] + b"\xff" + utf8[5000:], "ERRORLOG"), cuts=True).cuts == []


def test_spans_are_near_the_ideal_places_and_cover_the_input():
    cuts = [(o, o // 100) for o in range(1_000, 100_000, 1_000)]
    spans = plan_spans(100_000, cuts, 30_000)
    assert [(s.start, s.end, s.line) for s in spans] == [
        (0, 25_000, 1), (25_000, 50_000, 250), (50_000, 75_000, 500), (75_000, None, 750)]
    assert plan_spans(100_000, cuts, 100_000) is None  # one piece: whole
    assert plan_spans(100_000, [], 10_000) is None  # nowhere to cut
    # Few cuts: never the same one twice, always in order.
    spans = plan_spans(100_000, [(40_000, 9), (41_000, 10)], 10_000)
    assert [(s.start, s.end) for s in spans] == [(0, 40_000), (40_000, 41_000), (41_000, None)]


def _task(path: str, size: int) -> ParseTask:
    return ParseTask(path=path, display_path=path, root="/", size=size, sha256="0" * 64, parser_name="errorlog",
                     host=None, instance=None, time_context=None)


def test_only_big_cuttable_inputs_are_split_and_only_for_several_workers(monkeypatch):
    import forensic.pieces as pieces
    monkeypatch.setattr(pieces, "MIN_PIECE_BYTES", 1_000)
    tasks = [_task("/e/big", 64_000), _task("/e/small", 900), _task("/e/nocuts", 64_000),
             _task("/e/image.E01\0/ERRORLOG", 64_000)]
    cuts = {t.path: [(o, o) for o in range(500, 64_000, 500)] for t in tasks if t.path != "/e/nocuts"}
    assert split_tasks(tasks, cuts, 1) == tasks
    split = split_tasks(tasks, cuts, 2)
    big = [t for t in split if t.path == "/e/big"]
    assert len(big) == 6  # 193 kB over 2 workers x 8 tasks: pieces of 12 kB at most
    assert sum(task_bytes(t) for t in big) == 64_000
    assert all(t.span is None for t in split if t.path != "/e/big")


def test_joined_report_sums_the_pieces():
    def piece(start, events, first, last, runs, warnings=0):
        rep = InputReport("/e/ERRORLOG", "ERRORLOG", "errorlog", events=events, first_timestamp=first,
                          last_timestamp=last, runs=runs)
        rep.event_types.update({"log_message": events})
        for _ in range(warnings):
            rep.add_warning(ParseWarning("bad", f"line {start}", 1, True))
        return Span(start, None, start), rep
    joined = join_reports([piece(200, 5, "2025-01-03", "2025-01-04", ["c"], 1),
                           piece(0, 7, "2025-01-01", "2025-01-02", ["a", "b"]),
                           piece(100, 1, None, None, [], 2)])
    assert (joined.events, joined.pieces, joined.lost_records, joined.warning_count) == (13, 3, 3, 3)
    assert (joined.first_timestamp, joined.last_timestamp) == ("2025-01-01", "2025-01-04")
    assert joined.runs == ["a", "b", "c"] and joined.event_types["log_message"] == 13
    assert [w["position"] for w in joined.warnings] == ["line 100", "line 100", "line 200"]
    assert joined.damaged


def test_timeline_in_pieces_equals_the_timeline_of_whole_logs(tmp_path, monkeypatch):
    import json

    import forensic.pieces as pieces
    from forensic.timeline import RunOptions, run_timeline
    log = tmp_path / "ev" / "MSSQL16.MSSQLSERVER" / "MSSQL" / "Log"
    log.mkdir(parents=True)
    rng = random.Random(7)
    for name in ("ERRORLOG", "ERRORLOG.1"):
        (log / name).write_bytes(encoded("2025-03-30 00:59:00.00 Server      UTC adjustment: 1:00\n"
                                         + generated_log(rng, 6000), "utf-16-le", "\r\n"))
    monkeypatch.setattr(errorlog, "CUT_SPACING", 20_000)
    monkeypatch.setattr(pieces, "MIN_PIECE_BYTES", 50_000)
    out = {}
    for workers in (1, 2):
        path = str(tmp_path / f"w{workers}.parquet")
        result = run_timeline(RunOptions(paths=[str(tmp_path / "ev")], output=path, fmt="parquet",
                                         workers=workers))
        assert result.exit_code == 0
        out[workers] = (pq.read_table(path), json.loads((tmp_path / f"w{workers}.parquet.manifest.json").read_text()))
    assert out[2][0].equals(out[1][0])
    assert [i["pieces"] for i in out[1][1]["inputs"]] == [1, 1]
    assert all(i["pieces"] > 2 for i in out[2][1]["inputs"])
    for one, two in zip(out[1][1]["inputs"], out[2][1]["inputs"], strict=True):
        for key in ("events", "records", "event_types", "flags", "first_timestamp", "last_timestamp", "warnings"):
            assert one[key] == two[key], key


def test_first_pass_of_big_inputs_is_two_tasks_that_join_back(tmp_path, monkeypatch):
    import forensic.pieces as pieces
    monkeypatch.setattr(pieces, "MIN_PIECE_BYTES", 10_000)
    big = tmp_path / "ERRORLOG"
    big.write_bytes(encoded(generated_log(random.Random(3), 400), "utf-16-le", "\r\n"))
    small = tmp_path / "ERRORLOG.1"
    small.write_bytes(encoded(generated_log(random.Random(4), 20), "utf-16-le", "\r\n"))
    tasks = [PrescanTask(str(p), p.name, p.stat().st_size, "errorlog", cuts=True) for p in (small, big)]
    assert first_pass_tasks(tasks, 1) == sorted(tasks, key=lambda t: -t.size)
    split = first_pass_tasks(tasks, 2)
    # Longest first: the big input's scan, then (a third of it) its hash or
    # the small input, whichever is bigger.
    assert [(t.path, t.part) for t in split][0] == (str(big), "scan")
    assert sorted((t.path, t.part) for t in split) == sorted([(str(big), "scan"), (str(big), "hash"), (str(small), "all")])
    results = {t.part: run_prescan_task(t) for t in split if t.path == str(big)}
    assert results["hash"].evidence is None and results["scan"].sha256 is None
    joined = join_first_pass(results["hash"], results["scan"])
    whole = run_prescan_task(tasks[1])
    assert (joined.sha256, joined.evidence, joined.error) == (whole.sha256, whole.evidence, whole.error)
    # An input that cannot be read is unreadable, whichever task found out.
    gone = join_first_pass(PrescanResult(str(big), None, None, "cannot read: gone"),
                           PrescanResult(str(big), None, None, "first pass failed: gone"))
    assert (gone.sha256, gone.evidence, gone.error) == (None, None, "cannot read: gone")

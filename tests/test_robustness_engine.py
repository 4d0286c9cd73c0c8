"""The whole tool on damaged, hostile and interrupted runs (issue 8).

- one ``timeline`` run over truncated and bit-flipped copies of every fixture
  and public sample (a subprocess, as a user runs it);
- record accounting reconciled in the manifest;
- evidence untouched (bytes, size, mtime, atime) and nothing created beside it;
  outputs inside evidence refused;
- XML entities, symlinks out of the tree, FIFOs, devices, huge sparse files,
  spreadsheet formulas, console markup and escape sequences in evidence;
- a killed worker, Ctrl-C and an interrupted write leave no timeline under the
  final name and no debris.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, PUBLIC, REPO, SQLPROD01_LOG, atime_supported, snapshot, write_utf16

TESTS = Path(__file__).resolve().parent
MASTER_FIXTURES = TESTS / "fixtures" / "master_export"


def run_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "forensic", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def manifest_of(out: Path) -> dict:
    return json.loads(Path(str(out) + ".manifest.json").read_text(encoding="utf-8"))


def debris(folder: Path) -> list[str]:
    """Temporary names the tool uses beside its output."""
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.startswith(".mssql-forensic-"))


def sample_files() -> list[Path]:
    out = [p for p in sorted(FIXTURES.rglob("*")) if p.is_file()]
    out += [p for p in sorted(MASTER_FIXTURES.iterdir()) if p.is_file() and p.suffix != ".cs"]
    for kind in ("evtx", "trc"):
        out += [p for p in sorted((PUBLIC / kind).iterdir()) if p.suffix == f".{kind}"]
    return out


# -- one run over damaged copies of everything ---------------------------------------

def _damaged_copies(dest: Path) -> list[Path]:
    rng = random.Random(8)
    made = []
    for i, src in enumerate(sample_files()):
        data = src.read_bytes()
        if not data:
            continue
        cut = rng.randrange(1, len(data)) if len(data) > 1 else 1
        flipped = bytearray(data)
        for _ in range(max(1, len(data) // 2000)):
            pos = rng.randrange(len(flipped))
            flipped[pos] ^= 1 << rng.randrange(8)
        for kind, blob in (("cut", data[:cut]), ("flip", bytes(flipped))):
            path = dest / f"{i:02d}-{kind}" / src.name
            path.parent.mkdir(parents=True)
            path.write_bytes(blob)
            made.append(path)
    return made


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory):
    ev = tmp_path_factory.mktemp("damaged") / "evidence"
    made = _damaged_copies(ev)
    out = tmp_path_factory.mktemp("damaged-out") / "timeline.parquet"
    proc = run_cli("timeline", ev, "-o", out, "--workers", "2")
    return ev, made, out, proc


def test_damaged_corpus_one_run(damaged_run):
    ev, made, out, proc = damaged_run
    assert len(made) > 60
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    manifest = manifest_of(out)
    named = ({i["path"] for i in manifest["inputs"]} | {s["path"] for s in manifest["skipped"]}
             | {p["path"] for p in manifest["problems"]})
    for path in made:
        assert str(path) in named, f"{path} is not named in the manifest"
    for item in manifest["inputs"]:
        assert {"warnings", "warning_details", "errors", "lost_records", "status", "records"} <= set(item)
        # A parser that raised would show as an error: damage must be warnings.
        assert not item["errors"], (item["path"], item["errors"])
        assert item["status"] in ("complete", "damaged")
    # Damage was seen and reported, and events survived it.
    assert any(i["status"] == "damaged" for i in manifest["inputs"])
    assert proc.returncode == (1 if any(i["status"] != "complete" for i in manifest["inputs"]) else 0)
    rows = pq.read_table(out).num_rows
    assert rows == manifest["output"]["rows"] == manifest["totals"]["events"] > 1000
    by_type = {i["artifact_type"] for i in manifest["inputs"] if i["events"]}
    assert by_type >= {"errorlog", "sqlagent_log", "default_trace", "evtx", "master_export"}


def test_damaged_corpus_records_reconcile(damaged_run):
    _ev, _made, out, _proc = damaged_run
    manifest = manifest_of(out)
    written = {}
    for row in pq.read_table(out, columns=["source_file"]).column("source_file").to_pylist():
        written[row] = written.get(row, 0) + 1
    for item in manifest["inputs"]:
        rec = item["records"]
        assert rec["reconciled"], (item["path"], rec)
        assert rec["events"] == item["events"] == rec["written"] == written.get(item["path"], 0)
        assert rec["lost"] == item["lost_records"]
        assert rec["read"] == rec["events"] + rec["skipped"] + (rec["lost"] if item["parser"] != "evtx" else 0)
        stats = item.get("parser_stats") or {}
        if "records_read" in stats:
            assert rec["read"] == stats["records_read"] and rec["lost"] == stats.get("records_lost", 0)
    assert manifest["totals"]["unreconciled_inputs"] == 0


def test_dirty_evtx_records_are_kept_in_the_timeline(tmp_path):
    """A dirty log whose header counts too few chunks: python-evtx would drop the
    newest records, the timeline keeps them and the manifest says so."""
    import struct
    import zlib

    src = PUBLIC / "evtx" / "mdec_ID4688_sqlservr_cmd_children_msf.evtx"
    data = bytearray(src.read_bytes())
    struct.pack_into("<H", data, 0x2A, 1)  # header: 1 chunk (there are more)
    struct.pack_into("<I", data, 0x78, 1)  # dirty flag
    struct.pack_into("<I", data, 0x7C, zlib.crc32(bytes(data[:0x78])))
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "Security.evtx").write_bytes(bytes(data))
    out = tmp_path / "t.parquet"
    assert run_cli("timeline", ev, "-o", out, "--quiet").returncode == 0
    item = manifest_of(out)["inputs"][0]
    assert item["records"]["recovered"] > 0 and item["records"]["lost"] == 0
    from forensic.model import Event
    from parsers.base import Source
    from parsers.eventlog import PARSER
    clean_rows = sum(isinstance(e, Event) for e in PARSER.parse(Source.from_bytes(src.read_bytes(), src.name)))
    assert pq.read_table(out).num_rows == clean_rows == item["events"]


# -- evidence safety -------------------------------------------------------------------

def _age_atimes(folder: Path) -> None:
    """atime a day before mtime: any plain read would now update it (relatime too)."""
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            os.utime(p, ns=(st.st_mtime_ns - 86_400 * 10**9, st.st_mtime_ns))


def test_evidence_untouched_bytes_size_mtime_atime(tmp_path):
    ev = tmp_path / "evidence"
    shutil.copytree(FIXTURES, ev / "bundled")
    for kind in ("evtx", "trc"):
        shutil.copytree(PUBLIC / kind, ev / kind)
    shutil.copytree(MASTER_FIXTURES, ev / "exports")
    _age_atimes(ev)
    with_atime = atime_supported(tmp_path)
    before = snapshot(ev, atime=with_atime)
    dirs_before = sorted(str(p) for p in ev.rglob("*"))
    out_dir = tmp_path / "out"
    for fmt, engine in (("parquet", "rust"), ("csv", "python")):
        proc = run_cli("timeline", ev, "-o", out_dir / f"t.{fmt}", "--workers", "2", "--evtx-engine", engine,
                       "--extract-assemblies", out_dir / "dlls")
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert list((out_dir / "dlls").iterdir()), "the export fixtures hold assemblies: some were extracted"
    assert snapshot(ev, atime=with_atime) == before
    assert sorted(str(p) for p in ev.rglob("*")) == dirs_before, "something was created in the evidence"


def test_atime_check_can_fail(tmp_path):
    """The atime comparison above is meaningful here: a plain read changes atime."""
    if not atime_supported(tmp_path):
        pytest.skip("this filesystem does not update access times")
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    _age_atimes(tmp_path)
    before = snapshot(tmp_path, atime=True)
    p.read_bytes()
    assert snapshot(tmp_path, atime=True) != before
    # ... and open_evidence does not.
    from forensic.discovery import open_evidence, sha256_evidence
    _age_atimes(tmp_path)
    before = snapshot(tmp_path, atime=True)
    with open_evidence(str(p)) as fh:
        fh.read()
    sha256_evidence(str(p))
    assert snapshot(tmp_path, atime=True) == before


def test_open_evidence_is_read_only_and_regular_files_only(tmp_path):
    from forensic.discovery import open_evidence
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    with open_evidence(str(p)) as fh:
        assert fh.read() == b"abc"
        with pytest.raises(OSError):
            os.write(fh.fileno(), b"x")
    os.mkfifo(tmp_path / "fifo")
    started = time.monotonic()
    with pytest.raises(OSError, match="not a regular file"):
        open_evidence(str(tmp_path / "fifo"))  # would block forever without O_NONBLOCK
    assert time.monotonic() - started < 5
    with pytest.raises(OSError, match="not a regular file"):
        open_evidence("/dev/zero")


@pytest.mark.parametrize("where", ["inside", "nested", "symlinked", "evidence_file", "manifest_over_file"])
def test_output_inside_evidence_refused(tmp_path, where):
    ev = tmp_path / "ev"
    ev.mkdir()
    write_utf16(ev / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      hello"])
    paths = [ev]
    if where == "inside":
        out = ev / "t.parquet"
    elif where == "nested":
        out = ev / "sub" / "deeper" / "t.parquet"
    elif where == "symlinked":
        (tmp_path / "link").symlink_to(ev)
        out = tmp_path / "link" / "t.parquet"
    elif where == "evidence_file":
        paths, out = [ev / "ERRORLOG"], ev / "ERRORLOG"
    else:
        (ev / "t.parquet.manifest.json").write_text("evidence\n")
        paths, out = [ev / "ERRORLOG", ev / "t.parquet.manifest.json"], ev / "t.parquet"
    before = snapshot(ev)
    listing = sorted(p.name for p in ev.rglob("*"))
    proc = run_cli("timeline", *paths, "-o", out)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(ev) == before and sorted(p.name for p in ev.rglob("*")) == listing


def test_output_inside_evidence_allowed_with_force_but_never_over_evidence(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    write_utf16(ev / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      hello"])
    original = (ev / "ERRORLOG").read_bytes()
    proc = run_cli("timeline", ev, "-o", ev / "out" / "t.jsonl", "--force", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (ev / "out" / "t.jsonl").exists()
    # --force allows writing into an evidence folder, never replacing evidence.
    proc = run_cli("timeline", ev / "ERRORLOG", "-o", ev / "ERRORLOG", "--force", "--quiet")
    assert proc.returncode == 2
    assert (ev / "ERRORLOG").read_bytes() == original


def test_extract_assemblies_inside_evidence_refused(tmp_path):
    ev = tmp_path / "ev"
    shutil.copytree(MASTER_FIXTURES, ev)
    listing = sorted(str(p) for p in ev.rglob("*"))
    proc = run_cli("timeline", ev, "-o", tmp_path / "out" / "t.parquet", "--extract-assemblies", ev / "dlls")
    assert proc.returncode == 2 and "extract-assemblies" in proc.stderr
    assert sorted(str(p) for p in ev.rglob("*")) == listing
    assert not (tmp_path / "out" / "t.parquet").exists()
    proc = run_cli("timeline", ev, "-o", tmp_path / "out" / "t.parquet", "--extract-assemblies", ev / "dlls",
                   "--force", "--quiet")
    assert proc.returncode in (0, 1) and list((ev / "dlls").iterdir())


# -- hostile input ------------------------------------------------------------------------

class _Listener:
    """A local TCP port that records whether anyone connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def test_xml_entities_never_expanded_or_fetched(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("XXE-SECRET-MARKER-7f3a\n")
    listener = _Listener()
    ev = tmp_path / "ev"
    ev.mkdir()
    row = '<row name="{}" type="P " is_auto_executed="1" create_date="2024-03-01T02:13:55.217"/>'
    xxe_file = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
                f'<r>{row.format("&x;")}</r>')
    xxe_http = (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:{listener.port}/x">'
                f'<!ENTITY % p SYSTEM "http://127.0.0.1:{listener.port}/dtd"> %p;]><r>{row.format("&x;")}</r>')
    xxe_dtd = (f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:{listener.port}/r.dtd">'
               f'<r>{row.format("sp_evil")}</r>')
    laughs = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lollollollollollollollollollol">'
    for i in range(1, 10):
        laughs += f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">'
    laughs += f']><r>{row.format("&l9;")}</r>'
    xinclude = ('<?xml version="1.0"?><r xmlns:xi="http://www.w3.org/2001/XInclude">'
                f'<xi:include href="file://{secret}" parse="text"/>{row.format("sp_evil")}</r>')
    for name, text in (("xxe_file.xml", xxe_file), ("xxe_http.xml", xxe_http), ("xxe_dtd.xml", xxe_dtd),
                       ("laughs.xml", laughs), ("xinclude.xml", xinclude)):
        (ev / name).write_text(text, encoding="utf-8")
    out = tmp_path / "t.jsonl"
    started = time.monotonic()
    try:
        proc = run_cli("timeline", ev, "-o", out, "--workers", "1")
    finally:
        listener.close()
    assert time.monotonic() - started < 60
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
    text = out.read_text(encoding="utf-8") + Path(str(out) + ".manifest.json").read_text(encoding="utf-8")
    assert "XXE-SECRET-MARKER" not in text
    assert "lollollollollollollollollollollollol" not in text  # l1 and beyond never expanded
    assert out.stat().st_size < 200_000
    assert listener.hits == 0, "an external entity or DTD was fetched"


def test_symlinks_fifos_devices(tmp_path):
    outside = tmp_path / "outside"
    write_utf16(outside / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      outside the evidence"])
    ev = tmp_path / "ev"
    write_utf16(ev / "logs" / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      inside"])
    (ev / "to_outside_file").symlink_to(outside / "ERRORLOG")
    (ev / "to_outside_dir").symlink_to(outside)
    (ev / "to_dev_zero").symlink_to("/dev/zero")
    (ev / "to_etc").symlink_to("/etc")
    (ev / "inside_link").symlink_to(ev / "logs" / "ERRORLOG")  # inside: the same file, read once
    os.mkfifo(ev / "pipe")
    out = tmp_path / "out" / "t.jsonl"
    proc = run_cli("timeline", ev, "/dev/null", "-o", out, "--workers", "2", timeout=120)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr
    m = manifest_of(out)
    assert [i["path"] for i in m["inputs"]] == [str(ev / "inside_link")] or \
        [i["path"] for i in m["inputs"]] == [str(ev / "logs" / "ERRORLOG")]
    problems = {Path(p["path"]).name: p["message"] for p in m["problems"]}
    for name in ("to_outside_file", "to_outside_dir", "to_dev_zero", "to_etc"):
        assert "outside the evidence path" in problems[name], problems
    assert "FIFO" in problems["pipe"] and "not a regular file" in problems["null"]
    assert "outside the evidence" not in out.read_text(encoding="utf-8")


def _peak_rss_of(args: list[str]) -> tuple[subprocess.CompletedProcess, int, float]:
    """Run the CLI in a child that reports its descendants' peak RSS (MB)."""
    code = ("import resource, subprocess, sys, time; t = time.monotonic(); "
            "p = subprocess.run([sys.executable, '-m', 'forensic', *sys.argv[1:]]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, time.monotonic() - t); "
            "sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    rss, seconds = proc.stdout.split()[-2:]
    return proc, int(rss), float(seconds)


def test_huge_sparse_files_are_cheap(tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    with open(ev / "zeros.img", "wb") as fh:  # 5 GB of zeros, no artifact
        fh.truncate(5 * 1024**3)
    log = ev / "ERRORLOG"  # a real start, then 256 MB of zeros (a preallocated log)
    write_utf16(log, ["2025-01-01 10:00:00.00 Server      UTC adjustment: -5:00",
                      "2025-01-01 10:00:01.00 spid51      Launched startup procedure 'sp_evil'."])
    with open(log, "r+b") as fh:
        fh.truncate(256 * 1024**2)
    with open(ev / "noeol.txt", "wb") as fh:  # text start, then a line that never ends
        fh.write(b"2025-01-01 10:00:00 - ? [100] agent\n2025-01-01 10:00:01 - ? [101] " + b"A" * (64 * 1024**2))
    out = tmp_path / "out" / "t.jsonl"
    proc, rss_mb, seconds = _peak_rss_of(["timeline", str(ev), "-o", str(out), "--workers", "2"])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert seconds < 120 and rss_mb < 800, (seconds, rss_mb)
    m = manifest_of(out)
    skipped = {Path(s["path"]).name: s for s in m["skipped"]}
    assert skipped["zeros.img"]["sha256"] == "7f06c62352aebd8125b2a1841e2b9e1ffcbed602f381c3dcb3200200e383d1d5"
    inputs = {Path(i["path"]).name: i for i in m["inputs"]}
    assert inputs["ERRORLOG"]["events"] == 2 and inputs["ERRORLOG"]["status"] == "damaged"
    assert any("NUL" in w["message"] for w in inputs["ERRORLOG"]["warning_details"])
    agent = inputs["noeol.txt"]
    assert agent["events"] == 2 and any("longer than" in w["message"] for w in agent["warning_details"])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert max(len(r["message"]) for r in rows) <= 1 << 18


HOSTILE_TEXT = [
    "=cmd|' /C calc'!A0", "+SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)",
    "\t=1+1", "\r=1+1",
]


def test_csv_neutralises_formulas_from_evidence(tmp_path):
    import csv
    ev = tmp_path / "ev"
    lines = ["2025-01-01 10:00:00.00 Server      UTC adjustment: 0:00"]
    for i, text in enumerate(HOSTILE_TEXT):
        lines.append(f"2025-01-01 10:00:{i + 1:02d}.00 spid51      {text}")
    lines.append("2025-01-01 10:01:00.00 Logon       Login failed for user '=HYPERLINK(\"http://evil\")'. "
                 "Reason: x [CLIENT: =1+1]")
    lines.append("2025-01-01 10:01:01.00 spid51      Launched startup procedure '@evil'.")
    write_utf16(ev / "ERRORLOG", lines)
    out = tmp_path / "t.csv"
    proc = run_cli("timeline", ev, "-o", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    cells = [c for r in rows[1:] for c in r]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=cmd|' /C calc'!A0" in cells and "'@evil" in cells
    assert any(c.startswith("'=HYPERLINK") for c in cells)


def test_evidence_text_is_never_markup_or_escape_sequences(tmp_path):
    ev = tmp_path / "ev"
    evil = "[bold red]MARKUP[/] [link=http://evil]x[/link] {0} {x!r} %s%n \x1b[2J\x1b]8;;http://evil\x07"
    write_utf16(ev / "ERRORLOG", [
        "2025-01-01 10:00:00.00 Server      UTC adjustment: 0:00",
        f"2025-01-01 10:00:01.00 spid51      Launched startup procedure '{evil}'.",
        f"2025-01-01 10:00:02.00 spid51      {evil}"])
    name = "ERR[bold]LOG\x1b[31m{0}%s"
    (ev / name).write_bytes((ev / "ERRORLOG").read_bytes()[:-7])  # damaged: named in the summary
    out = tmp_path / "t.parquet"
    proc = run_cli("timeline", ev, "-o", out, "--workers", "1")
    assert proc.returncode == 1, proc.stderr
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout
    assert "Traceback" not in proc.stderr
    assert "ERR[bold]LOG" in proc.stderr  # printed literally, not as markup
    messages = pq.read_table(out).column("message").to_pylist()
    assert any(evil in m for m in messages)  # kept exactly in the timeline
    for args in (["findings", out], ["findings", out, "--json"]):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
        assert "Startup procedure" in proc.stdout


# -- interrupted runs -------------------------------------------------------------------

@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    """The bundled evidence copied, and a normal run over it."""
    ev = tmp_path_factory.mktemp("several") / "ev"
    shutil.copytree(FIXTURES, ev)
    normal = ev.parent / "normal.parquet"
    assert run_cli("timeline", ev, "-o", normal, "--workers", "2", "--quiet").returncode == 0
    return ev, normal


def test_killed_worker_costs_only_its_input(tmp_path, normal_run):
    ev, normal = normal_run
    out = tmp_path / "out" / "t.parquet"
    proc = run_cli("timeline", ev, "-o", out, "--workers", "2",
                   env={"MSSQL_FORENSIC_TEST_KILL_WORKER": "ERRORLOG.3"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    m = manifest_of(out)
    killed = [i for i in m["inputs"] if i["path"].endswith("ERRORLOG.3")]
    assert len(killed) == 1 and killed[0]["status"] == "error"
    assert "worker process died" in " ".join(killed[0]["errors"])
    # Every other input is complete, with the same events as a normal run.
    normal_m = manifest_of(normal)
    expect = {i["path"]: i["events"] for i in normal_m["inputs"]}
    for item in m["inputs"]:
        if item is not killed[0]:
            assert item["status"] == "complete" and item["events"] == expect[item["path"]], item["path"]
    assert pq.read_table(out).num_rows == pq.read_table(normal).num_rows - expect[killed[0]["path"]]
    assert debris(out.parent) == []


def test_worker_killed_once_is_retried(tmp_path, normal_run):
    ev, normal = normal_run
    out = tmp_path / "out" / "t.parquet"
    proc = run_cli("timeline", ev, "-o", out, "--workers", "2", "--quiet",
                   env={"MSSQL_FORENSIC_TEST_KILL_WORKER": "ERRORLOG.4",
                        "MSSQL_FORENSIC_TEST_KILL_WORKER_ONCE": str(tmp_path / "killed-once")})
    assert (tmp_path / "killed-once").exists(), "the hook fired"
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).equals(pq.read_table(normal))


def _big_errorlog(path: Path, lines: int) -> None:
    body = "".join(f"2025-01-01 10:{(i // 6000) % 60:02d}:{(i // 100) % 60:02d}.{i % 100:02d} spid{50 + i % 40:<8}"
                   f"Login failed for user 'u{i}'. Reason: Password did not match. [CLIENT: 10.0.{i % 250}.1]\r\n"
                   for i in range(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xfe" + body.encode("utf-16-le"))


@pytest.mark.parametrize("when", ["reading", "parsed"])
def test_ctrl_c_leaves_no_timeline_and_no_debris(tmp_path, when):
    ev = tmp_path / "ev"
    # Two big logs keep two workers busy; the small one is parsed first by the third.
    for n, lines in enumerate((60_000, 60_000, 500)):
        _big_errorlog(ev / f"s{n}" / "ERRORLOG", lines)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "t.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "forensic", "timeline", str(ev), "-o", str(out), "--workers", "3"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if not line or when in line:
            break
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    err = seen + err
    assert when in seen, err
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-3000:]
    assert not out.exists() and not Path(str(out) + ".manifest.json").exists()
    assert debris(out_dir) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    """A failure while the timeline is being written: no file under the final name."""
    from forensic import writers
    from forensic.timeline import RunOptions, run_timeline

    calls = {"n": 0}
    real_write = writers.TimelineWriter.write

    def failing_write(self, batch):
        calls["n"] += 1
        real_write(self, batch)
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.TimelineWriter, "write", failing_write)
    for fmt in ("parquet", "jsonl", "csv"):
        out = tmp_path / f"t.{fmt}"
        with pytest.raises(KeyboardInterrupt):
            run_timeline(RunOptions(paths=[str(SQLPROD01_LOG)], output=str(out), fmt=fmt, workers=1))
        assert not out.exists() and not Path(str(out) + ".manifest.json").exists()
        assert debris(tmp_path) == []
    assert calls["n"] == 3


def test_special_files_given_directly(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    out = tmp_path / "out" / "t.jsonl"
    proc = run_cli("timeline", tmp_path / "fifo", "/dev/zero", SQLPROD01_LOG / "ERRORLOG", "-o", out, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    problems = manifest_of(out)["problems"]
    assert len(problems) == 2 and all("not a regular file" in p["message"] for p in problems)
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)


# -- property tests of the engine (in-process) ---------------------------------------

def test_sparse_aware_hash_equals_plain_hash(tmp_path):
    import hashlib

    from forensic.discovery import sha256_evidence
    rng = random.Random(3)
    for i in range(8):
        p = tmp_path / f"f{i}"
        with open(p, "wb") as fh:
            for _ in range(rng.randint(0, 4)):
                fh.seek(rng.randint(0, 12_000_000))
                fh.write(rng.randbytes(rng.randint(1, 2_000_000)))
            fh.truncate(rng.choice([0, 7, 1 << 20, (1 << 20) + 1, rng.randint(0, 16_000_000)]))
        assert sha256_evidence(str(p)) == hashlib.sha256(p.read_bytes()).hexdigest(), p


def test_engine_on_damaged_sample_sets(tmp_path_factory):
    """Whole timeline runs (in-process) on random damaged sets: no input ends
    with an error, accounting reconciles, rows equal events, findings build."""
    from fuzz.targets import mutate, seeds
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from forensic.findings import build_findings
    from forensic.timeline import RunOptions, run_timeline

    corpus = seeds()
    names = sorted(corpus)

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(names), min_size=1, max_size=3), st.integers(0, 2**32),
           st.sampled_from(["rust", "python"]))
    def run(picked, seed, engine):
        rng = random.Random(seed)
        tmp = tmp_path_factory.mktemp("engine")
        for i, name in enumerate(picked):
            (tmp / "ev" / str(i)).mkdir(parents=True)
            (tmp / "ev" / str(i) / name.rsplit("/", 1)[-1]).write_bytes(mutate(corpus[name], rng))
        out = tmp / "out" / "t.jsonl"
        out.parent.mkdir()
        result = run_timeline(RunOptions(paths=[str(tmp / "ev")], output=str(out), fmt="jsonl", workers=1,
                                         parser_options={"evtx_engine": engine}, command_line=["test"]))
        m = result.manifest
        for item in m["inputs"]:
            assert not item["errors"], (item["path"], item["errors"])
            assert item["records"]["reconciled"], item["records"]
        assert m["totals"]["events"] == result.rows == sum(1 for _ in out.open(encoding="utf-8"))
        build_findings(str(out))
        shutil.rmtree(tmp)

    run()

"""Collection archives given to `timeline`: zip, tar (plain, gz, bz2, xz), single
compressed files, 7z, nested archives, hostile archives.  Every archive is
built here, at test time, from the bundled evidence and the public samples."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import zipfile
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, PUBLIC, snapshot

from forensic import sources
from forensic.discovery import discover, open_evidence, sha256_evidence
from forensic.sources.base import Limits, check_member_name
from forensic.timeline import RunOptions, run_timeline

SQLPROD = "C/Program Files/Microsoft SQL Server/MSSQL15.MSSQLSERVER/MSSQL/Log"
EVTX = PUBLIC / "evtx" / "sbou_LM_xp_cmdshell_MSSQL_Events.evtx"
TRC = PUBLIC / "trc" / "temporaltabledemo_log_2.trc"


def collection_files() -> dict[str, Path]:
    """A KAPE-like tree: inner path -> file on disk."""
    log = FIXTURES / "SQLPROD01" / "Program Files" / "Microsoft SQL Server" / "MSSQL15.MSSQLSERVER" / "MSSQL" / "Log"
    files = {f"{SQLPROD}/{p.name}": p for p in sorted(log.iterdir())}
    files[f"{SQLPROD}/log_2.trc"] = TRC
    files["C/Windows/System32/winevt/Logs/Application.evtx"] = EVTX
    files["C/Users/Public/notes.txt"] = FIXTURES / "README.txt"
    return files


def make_zip(path: Path, files: dict[str, Path | bytes], method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, src in files.items():
            if isinstance(src, bytes):
                zf.writestr(name, src)
            else:
                zf.write(src, name)
    return path


def make_tar(path: Path, files: dict[str, Path], mode: str) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, src in files.items():
            tf.add(src, name)
    return path


def run(paths, out: Path, workers: int = 1, **kw):
    out.parent.mkdir(parents=True, exist_ok=True)
    opts = RunOptions(paths=[str(p) for p in paths], output=str(out), fmt="parquet", workers=workers, **kw)
    result = run_timeline(opts)
    table = pq.read_table(out).to_pylist() if out.exists() else []
    return result, table


def sha(path: Path | bytes) -> str:
    return hashlib.sha256(path if isinstance(path, bytes) else path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def loose_run(tmp_path_factory):
    """The same files as a plain folder: the reference the archives must match."""
    root = tmp_path_factory.mktemp("loose") / "case"
    for name, src in collection_files().items():
        dest = root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    out = root.parent / "loose.parquet"
    result, table = run([root], out)
    return result, table


def comparable(table: list[dict]) -> list[tuple]:
    return sorted((r["timestamp"], r["source_file"].split("!")[-1].split("case/")[-1], r["source_record"],
                   r["message"], r["tz_source"], r["instance"], r["source_sha256"]) for r in table)


# ---------------------------------------------------------------------------
# every archive kind gives the same timeline as the loose files


@pytest.mark.parametrize("kind", ["zip", "zip-stored", "tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_archive_matches_loose_files(tmp_path, loose_run, kind):
    files = collection_files()
    if kind.startswith("zip"):
        archive = make_zip(tmp_path / "case.zip", files,
                           zipfile.ZIP_STORED if kind == "zip-stored" else zipfile.ZIP_DEFLATED)
    else:
        mode = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[kind]
        archive = make_tar(tmp_path / f"case.{kind}", files, mode)
    before = snapshot(tmp_path)
    result, table = run([archive], tmp_path / "out" / "t.parquet")
    assert result.exit_code == 0, result.manifest["problems"]
    assert comparable(table) == comparable(loose_run[1])
    assert len(table) > 150
    # source_file: container path ! inner path
    name = archive.name
    assert {r["source_file"] for r in table} >= {f"{archive}!{SQLPROD}/ERRORLOG", f"{archive}!{SQLPROD}/log_2.trc",
                                                 f"{archive}!C/Windows/System32/winevt/Logs/Application.evtx"}
    # the manifest hashes the container and every inner artifact
    m = result.manifest
    (entry,) = [c for c in m["containers"] if c["path"] == str(archive)]
    assert entry["sha256"] == sha(archive) and entry["kind"] == kind.replace("zip-stored", "zip")
    assert entry["artifacts"] == 8 and entry["skipped_members"] == 1
    by_path = {i["path"]: i for i in m["inputs"]}
    for inner, src in files.items():
        if inner.endswith("notes.txt"):
            continue
        assert by_path[f"{archive}!{inner}"]["sha256"] == sha(src), inner
    assert [s["path"] for s in m["skipped"]] == [f"{archive}!C/Users/Public/notes.txt"]
    # nothing was written next to the evidence
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "/out/" not in k} == before, name
    assert set(os.listdir(tmp_path)) == {archive.name, "out"}


def test_members_are_attributed_like_loose_files(tmp_path):
    archive = make_zip(tmp_path / "case.zip", collection_files())
    result, table = run([archive], tmp_path / "t.parquet")
    rows = {r["source_file"].split("!")[1]: r for r in table}
    assert rows[f"{SQLPROD}/ERRORLOG.1"]["instance"] == "MSSQLSERVER"  # same folder as ERRORLOG.4
    atts = {i["path"].split("!")[1]: i["attribution"] for i in result.manifest["inputs"]}
    assert atts[f"{SQLPROD}/ERRORLOG.1"] == "same folder"


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_process_pool_reopens_containers(tmp_path, kind):
    files = collection_files()
    # A big member, so that workers read the archive at the same time.
    big = (FIXTURES / "SQLPROD01" / "Program Files" / "Microsoft SQL Server" / "MSSQL15.MSSQLSERVER" / "MSSQL"
           / "Log" / "ERRORLOG.4").read_bytes()
    lines = big.decode("utf-16").splitlines()
    (tmp_path / "ERRORLOG").write_bytes(b"\xff\xfe" + "\r\n".join(lines[:40] + lines[40:] * 300).encode("utf-16-le"))
    files[f"{SQLPROD}/ERRORLOG.9"] = tmp_path / "ERRORLOG"
    if kind == "zip":
        archive = make_zip(tmp_path / "case.zip", files)
    else:
        archive = make_tar(tmp_path / "case.tar.gz", files, "w:gz")
    serial = run([archive], tmp_path / "a.parquet", workers=1)
    pooled = run([archive], tmp_path / "b.parquet", workers=2)
    assert serial[0].exit_code == pooled[0].exit_code == 0
    assert comparable(serial[1]) == comparable(pooled[1])


def test_forked_process_opens_its_own_containers(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "case.zip", collection_files())
    found = discover([str(archive)])
    assert sources._CACHE
    monkeypatch.setattr(sources, "_CACHE_PID", -1)  # as seen from a forked worker
    before = dict(sources._CACHE)
    with open_evidence(found.inputs[0].path) as fh:
        fh.read()
    assert all(sources._CACHE.get(k) is not v for k, v in before.items())


def test_single_compressed_files(tmp_path):
    log = FIXTURES / "WEB02" / "MSSQL13.SQLEXPRESS" / "MSSQL" / "Log" / "ERRORLOG"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ERRORLOG.gz").write_bytes(gzip.compress(log.read_bytes()))
    (tmp_path / "in" / "app.evtx.bz2").write_bytes(bz2.compress(EVTX.read_bytes()))
    result, table = run([tmp_path / "in"], tmp_path / "t.parquet")
    assert result.exit_code == 0
    files = {r["source_file"] for r in table}
    assert files == {f"{tmp_path / 'in' / 'ERRORLOG.gz'}!ERRORLOG", f"{tmp_path / 'in' / 'app.evtx.bz2'}!app.evtx"}
    by = {i["path"]: i for i in result.manifest["inputs"]}
    assert by[f"{tmp_path / 'in' / 'ERRORLOG.gz'}!ERRORLOG"]["sha256"] == sha(log)
    assert by[f"{tmp_path / 'in' / 'ERRORLOG.gz'}!ERRORLOG"]["size"] == log.stat().st_size


def test_nested_archives(tmp_path):
    inner_zip = io.BytesIO()
    with zipfile.ZipFile(inner_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(EVTX, "Logs/Application.evtx")
    inner_tar = io.BytesIO()
    with tarfile.open(fileobj=inner_tar, mode="w:gz") as tf:
        tf.add(TRC, "trace/log_2.trc")
    outer = make_zip(tmp_path / "outer.zip", {"host1/kape.zip": inner_zip.getvalue(),
                                               "host1/more.tar.gz": inner_tar.getvalue()})
    result, table = run([outer], tmp_path / "t.parquet")
    assert result.exit_code == 0
    assert {r["source_file"] for r in table} == {f"{outer}!host1/kape.zip!Logs/Application.evtx",
                                                 f"{outer}!host1/more.tar.gz!trace/log_2.trc"}
    kinds = {c["path"]: (c["kind"], c["parent"], c["sha256"]) for c in result.manifest["containers"]}
    assert kinds[f"{outer}!host1/kape.zip"] == ("zip", str(outer), sha(inner_zip.getvalue()))
    assert kinds[f"{outer}!host1/more.tar.gz"][0] == "tar.gz"


def test_nesting_depth_limit(tmp_path):
    data = EVTX.read_bytes()
    name = "Application.evtx"
    for level in range(6):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(name, data)
        data, name = buf.getvalue(), f"level{level}.zip"
    (tmp_path / "deep.zip").write_bytes(data)
    result, table = run([tmp_path / "deep.zip"], tmp_path / "t.parquet")
    assert table == []
    assert any("nested more than" in p["message"] for p in result.manifest["problems"])


# ---------------------------------------------------------------------------
# hostile archives


def _set_encrypted(data: bytes, name: bytes) -> bytes:
    """Set the 'encrypted' flag of member ``name`` in its local and central headers."""
    buf = bytearray(data)
    for sig, flag_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46)):
        pos = buf.find(sig)
        while pos >= 0:
            n = struct.unpack_from("<H", buf, pos + name_len_at)[0]
            if bytes(buf[pos + name_at: pos + name_at + n]) == name:
                struct.pack_into("<H", buf, pos + flag_at, struct.unpack_from("<H", buf, pos + flag_at)[0] | 1)
            pos = buf.find(sig, pos + 4)
    return bytes(buf)


def _overlapping_zip(path: Path) -> Path:
    """Two central-directory entries for one local member (a zip-bomb construction)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", b"payload" * 100)
    data = buf.getvalue()
    cd = data.find(b"PK\x01\x02")
    eocd = data.find(b"PK\x05\x06")
    central = data[cd:eocd]
    twin = central.replace(b"a.txt", b"b.txt")
    new_cd = central + twin
    end = bytearray(data[eocd:eocd + 22])
    struct.pack_into("<HHII", end, 8, 2, 2, len(new_cd), cd)
    path.write_bytes(data[:cd] + new_cd + bytes(end))
    return path


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_hostile_zip_members_reported_and_skipped(tmp_path):
    evil = tmp_path / "evidence"
    evil.mkdir()
    good = EVTX.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok/Application.evtx", good)
        zf.writestr("../../escape/Application.evtx", good)
        zf.writestr("/etc/cron.d/Application.evtx", good)
        zf.writestr("C:\\Windows\\Application.evtx", good)
        zf.writestr("ok\\..\\..\\back.evtx", good)
        link = zipfile.ZipInfo("ok/link.evtx")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("ok/Application.evtx", b"second copy, hidden by the first")
        zf.writestr("OK/application.EVTX", good)
        zf.writestr("secret/Application.evtx", good)
        zf.writestr("bomb.bin", bytes(64 << 20))
    data = _set_encrypted(buf.getvalue(), b"secret/Application.evtx")
    (evil / "hostile.zip").write_bytes(data)
    _overlapping_zip(evil / "overlap.zip")
    before = snapshot(tmp_path)
    cwd_before = set(os.listdir(os.getcwd()))
    result, table = run([evil], tmp_path / "out" / "t.parquet")
    assert {r["source_file"] for r in table} == {f"{evil / 'hostile.zip'}!ok/Application.evtx"}
    problems = {p["path"].split("!", 1)[-1]: p["message"] for p in result.manifest["problems"]}
    assert "path traversal" in problems["../../escape/Application.evtx"]
    assert "absolute" in problems["/etc/cron.d/Application.evtx"]
    assert "drive letter" in problems["C:\\Windows\\Application.evtx"]
    assert "path traversal" in problems["ok\\..\\..\\back.evtx"]
    assert "symbolic link" in problems["ok/link.evtx"]
    assert "encrypted" in problems["secret/Application.evtx"]
    assert "ratio" in problems["bomb.bin"]
    assert "differs only in case" in problems["OK/application.EVTX"]
    dups = [p for p in result.manifest["problems"] if "duplicate member name" in p["message"]]
    assert len(dups) == 1
    assert sum("overlaps another member" in p["message"] for p in result.manifest["problems"]) == 2
    # Reported, not damage: the run is complete.
    assert result.exit_code == 0
    # Nothing written anywhere but the output folder.
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if "/out/" not in k} == before
    assert set(os.listdir(os.getcwd())) == cwd_before
    assert not (tmp_path.parent / "escape").exists()


def test_hostile_tar_members(tmp_path):
    path = tmp_path / "hostile.tar"
    good = TRC.read_bytes()
    with tarfile.open(path, "w") as tf:
        def add(name, data=good, **kw):
            info = tarfile.TarInfo(name)
            for k, v in kw.items():
                setattr(info, k, v)
            info.size = len(data) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            tf.addfile(info, io.BytesIO(data) if info.size else None)
        add("C/Log/log_2.trc")
        add("../log_3.trc")
        add("/abs/log_4.trc")
        add("C/Log/link.trc", type=tarfile.SYMTYPE, linkname="/etc/shadow")
        add("C/Log/hard.trc", type=tarfile.LNKTYPE, linkname="C/Log/log_2.trc")
        add("C/Log/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("C/Log/log_2.trc", b"duplicate")
    result, table = run([path], tmp_path / "t.parquet")
    assert {r["source_file"] for r in table} == {f"{path}!C/Log/log_2.trc"}
    messages = {p["path"].split("!", 1)[-1]: p["message"] for p in result.manifest["problems"]}
    assert "path traversal" in messages["../log_3.trc"]
    assert "absolute" in messages["/abs/log_4.trc"]
    assert "symbolic link" in messages["C/Log/link.trc"] and "/etc/shadow" in messages["C/Log/link.trc"]
    assert "hard link" in messages["C/Log/hard.trc"]
    assert "not a regular file" in messages["C/Log/dev"]
    assert any("duplicate" in p["message"] for p in result.manifest["problems"])


def test_compressed_bomb_stops(tmp_path):
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"zeros{i}.bin")
            info.size = 24 << 20
            tf.addfile(info, io.BytesIO(bytes(info.size)))
    found = discover([str(path)])  # 72 MiB of zeros from ~70 KiB: over 1000:1
    assert not found.inputs and not found.skipped[2:]
    assert any("compression bomb" in m for _p, m in found.problems)
    relaxed = type(found)()
    sources.expand(relaxed, str(path), str(path), str(path), path.stat().st_size, "tar.gz",
                   limits=Limits(max_ratio=10**6))
    assert not relaxed.problems and len(relaxed.skipped) == 3


def test_total_size_limit(tmp_path):
    archive = make_zip(tmp_path / "case.zip", collection_files())
    found = type(discover([]))()
    limits = Limits(max_total_size=20_000)
    sources.expand(found, str(archive), str(archive), str(archive), archive.stat().st_size, "zip", limits=limits)
    assert any("total-size limit" in m for _p, m in found.problems)
    assert sum(i.size for i in found.inputs + found.skipped) <= 20_000


def test_damaged_archives_never_crash(tmp_path):
    archive = make_zip(tmp_path / "src.zip", collection_files())
    data = archive.read_bytes()
    archive.unlink()
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "cut.zip").write_bytes(data[: len(data) // 2])
    # A flipped byte inside a deflated member: the CRC check fails while parsing.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(EVTX, "Application.evtx")
    bad = bytearray(buf.getvalue())
    compressed = zipfile.ZipFile(io.BytesIO(bytes(bad))).infolist()[0].compress_size
    bad[30 + len("Application.evtx") + compressed // 2] ^= 0xFF
    (tmp_path / "ev" / "crc.zip").write_bytes(bytes(bad))
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        tf.add(TRC, "log_2.trc")
    (tmp_path / "ev" / "cut.tar.gz").write_bytes(tgz.getvalue()[:-200])
    result, _table = run([tmp_path / "ev"], tmp_path / "t.parquet")
    assert result.exit_code == 1
    problems = " ".join(p["path"] + ": " + p["message"] for p in result.manifest["problems"])
    assert "cut.zip" in problems and "cannot" in problems
    crc = [i for i in result.manifest["inputs"] if "crc.zip!" in i["path"]]
    assert crc and crc[0]["status"] in ("error", "damaged")
    assert "Traceback" not in json.dumps(result.manifest)


def test_member_name_checks():
    assert check_member_name("C/Program Files/x") == ("C/Program Files/x", None)
    assert check_member_name("./a//b/./c") == ("a/b/c", None)
    assert check_member_name("a\\b") == ("a/b", None)
    for bad in ("../x", "a/../../x", "/x", "\\\\server\\share\\x", "D:x", "a\x00b", ""):
        assert check_member_name(bad)[0] is None, bad


# ---------------------------------------------------------------------------
# the virtual-path machinery


def test_virtual_paths_stream_and_hash(tmp_path):
    archive = make_tar(tmp_path / "case.tar.xz", collection_files(), "w:xz")
    found = discover([str(archive)])
    (item,) = [i for i in found.inputs if i.display_path.endswith("/ERRORLOG.4")]
    assert sources.is_virtual(item.path) and "\x00" in item.path
    assert os.path.dirname(item.path).endswith(SQLPROD)  # "same folder" works inside containers
    src = collection_files()[f"{SQLPROD}/ERRORLOG.4"]
    with open_evidence(item.path) as fh:
        assert fh.read() == src.read_bytes()
        fh.seek(10)
        assert fh.read(5) == src.read_bytes()[10:15]
    assert sha256_evidence(item.path) == sha(src)
    sources.clear_cache()  # a fresh process: reopened from the path alone
    import pickle
    again = pickle.loads(pickle.dumps(item.path))
    with open_evidence(again) as fh:
        assert fh.read(100) == src.read_bytes()[:100]


def test_missing_member_is_oserror(tmp_path):
    archive = make_zip(tmp_path / "case.zip", {"a/ERRORLOG": b"x"})
    bogus = sources.member_path(str(archive), "zip", "a/ERRORLOG", "7")
    with pytest.raises(OSError):
        open_evidence(bogus)


@pytest.mark.skipif(not shutil.which("7z") and not __import__("importlib").util.find_spec("py7zr"),
                    reason="py7zr not installed")
def test_7z_archive(tmp_path, loose_run):
    py7zr = pytest.importorskip("py7zr")
    path = tmp_path / "case.7z"
    with py7zr.SevenZipFile(path, "w") as z:
        for name, src in collection_files().items():
            z.write(src, name)
    result, table = run([path], tmp_path / "t.parquet", workers=2)
    assert result.exit_code == 0, result.manifest["problems"]
    assert comparable(table) == comparable(loose_run[1])
    (entry,) = result.manifest["containers"]
    assert entry["kind"] == "7z" and entry["sha256"] == sha(path)


# ---------------------------------------------------------------------------
# registry time zone from a collection's SYSTEM hive


def test_collection_system_hive_gives_time_zone(tmp_path):
    pytest.importorskip("dissect.regf")
    from container_builders import build_hive, system_hive_tree
    hive = build_hive(system_hive_tree("Pacific Standard Time", 480, computer="SQLPROD01"), tmp_path / "SYSTEM")
    files = {f"{SQLPROD}/log_2.trc": TRC, "C/Windows/System32/config/SYSTEM": hive}
    archive = make_zip(tmp_path / "kape.zip", files)
    result, table = run([archive], tmp_path / "t.parquet")
    assert result.exit_code == 0
    assert table and {r["tz_source"] for r in table} == {"registry"}
    reg = result.manifest["containers"][0]["registry"]
    assert reg["time_zone"]["iana"] == "America/Los_Angeles" and reg["computer_name"] == "SQLPROD01"
    # The trace's StartTime 2018-02-04 20:17 local is PST (-8:00) in February.
    row = next(r for r in table if r["local_time"])
    local = row["local_time"]
    assert row["timestamp"].strftime("%Y-%m-%d %H:%M") == _plus_hours(local, 8)


def _plus_hours(local: str, hours: int) -> str:
    from datetime import datetime, timedelta
    return (datetime.strptime(local[:16], "%Y-%m-%d %H:%M") + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")


def test_registry_zone_loses_to_errorlog(tmp_path):
    pytest.importorskip("dissect.regf")
    from container_builders import build_hive, system_hive_tree
    # SQLPROD01's ERRORLOG says UTC-5/-4 (US Eastern); the hive claims Tokyo.
    hive = build_hive(system_hive_tree("Tokyo Standard Time", -540, daylight=False), tmp_path / "SYSTEM")
    files = {k: v for k, v in collection_files().items() if "/Log/" in k}
    files["C/Windows/System32/config/SYSTEM"] = hive
    archive = make_zip(tmp_path / "kape.zip", files)
    result, table = run([archive], tmp_path / "t.parquet")
    tz = {r["tz_source"] for r in table if r["source"] == "errorlog"}
    assert tz == {"errorlog_utc_adjustment"}
    notes = [n for i in result.manifest["instances"] for n in i["time_zone"].get("notes", [])]
    assert any("registry" in n and "ERRORLOG's evidence wins" in n for n in notes), notes


def test_dropped_dll_in_a_collection_is_hashed(tmp_path):
    web02 = FIXTURES / "WEB02" / "MSSQL13.SQLEXPRESS" / "MSSQL" / "Log" / "ERRORLOG"
    dll = b"MZ" + bytes(200)
    archive = make_zip(tmp_path / "web02.zip", {
        "C/Program Files/Microsoft SQL Server/MSSQL13.SQLEXPRESS/MSSQL/Log/ERRORLOG": web02,
        "C/Program Files/Microsoft SQL Server/MSSQL13.SQLEXPRESS/MSSQL/Binn/XPSVCHOST.DLL": dll,
        "C/Program Files/Microsoft SQL Server/MSSQL13.SQLEXPRESS/MSSQL/Binn/xplog70.dll": b"MZ shipped",
    })
    result, _table = run([archive], tmp_path / "t.parquet")
    (entry,) = result.manifest["containers"]
    (found,) = entry["extended_procedure_dlls"]  # odsole70.dll is shipped: not listed
    assert found["dll"] == "xpsvchost.dll" and found["found"] and found["sha256"] == sha(dll)
    assert found["path"].endswith("/Binn/XPSVCHOST.DLL")


def test_numbered_files_are_not_split_images(tmp_path):
    """x.001 / x.002 are segments of a split image only when x.001 starts a disk."""
    log = FIXTURES / "WEB02" / "MSSQL13.SQLEXPRESS" / "MSSQL" / "Log" / "ERRORLOG"
    for n in ("001", "002"):
        shutil.copyfile(log, tmp_path / f"ERRORLOG.{n}")
    found = discover([str(tmp_path)])
    assert sorted(os.path.basename(i.path) for i in found.inputs) == ["ERRORLOG.001", "ERRORLOG.002"]
    assert found.containers == []


def test_encrypted_7z_is_reported(tmp_path):
    py7zr = pytest.importorskip("py7zr")
    path = tmp_path / "locked.7z"
    with py7zr.SevenZipFile(path, "w", password="infected") as z:
        z.write(EVTX, "Application.evtx")
    result, table = run([path], tmp_path / "t.parquet")
    assert table == []
    assert any("encrypted" in p["message"] for p in result.manifest["problems"])
    assert "Traceback" not in json.dumps(result.manifest)


def test_velociraptor_layout_hive_is_found(tmp_path):
    pytest.importorskip("dissect.regf")
    from container_builders import build_hive, system_hive_tree
    hive = build_hive(system_hive_tree("AUS Eastern Standard Time", -600), tmp_path / "SYSTEM")
    archive = make_zip(tmp_path / "velo.zip", {
        "uploads/auto/C%3A/Windows/System32/config/SYSTEM": hive,
        "uploads/auto/C%3A/Program Files/Microsoft SQL Server/MSSQL15.MSSQLSERVER/MSSQL/Log/log_2.trc": TRC,
    })
    result, table = run([archive], tmp_path / "t.parquet")
    reg = result.manifest["containers"][0]["registry"]
    assert reg["time_zone"]["iana"] == "Australia/Sydney"
    assert {r["tz_source"] for r in table} == {"registry"}
    # February in Sydney is daylight saving time: UTC+11
    row = next(r for r in table if r["local_time"])
    assert row["timestamp"].strftime("%Y-%m-%d %H:%M") == _plus_hours(row["local_time"], -11)


def test_cli_timeline_on_an_archive(tmp_path, cli):
    archive = make_zip(tmp_path / "case.zip", {**collection_files(), "../x": b"y"})
    out = tmp_path / "out" / "t.jsonl"
    code, _stdout, stderr = cli("timeline", archive, "-o", out, "--quiet", "--workers", "2")
    assert code == 0, stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["source_file"].startswith(f"{archive}!C/") for r in rows)
    manifest = json.loads((tmp_path / "out" / "t.jsonl.manifest.json").read_text())
    assert manifest["containers"][0]["sha256"] == sha(archive)
    assert any(p["path"] == f"{archive}!../x" for p in manifest["problems"])


@pytest.mark.parametrize("key, bias, daylight, disabled, expect", [
    ("Eastern Standard Time", 300, True, 0, ("America/New_York", -240, -300)),
    ("Nowhere Standard Time", 300, True, 0, (None, -240, -300)),  # the hive's own rules
    ("W. Europe Standard Time", -60, True, 1, (None, 60, 60)),  # automatic DST off: fixed
    ("India Standard Time", -330, False, 0, ("Asia/Calcutta", 330, 330)),
])
def test_registry_zone_to_time_context(tmp_path, key, bias, daylight, disabled, expect):
    pytest.importorskip("dissect.regf")
    from datetime import datetime

    from container_builders import build_hive, system_hive_tree

    from forensic.sources.windows import read_machine
    from forensic.timezones import TimeContext
    tree = system_hive_tree(key, bias, daylight=daylight)
    tree["ControlSet001"]["Control"]["TimeZoneInformation"]["@DynamicDaylightTimeDisabled"] = disabled
    hive = build_hive(tree, tmp_path / "SYSTEM")
    with open(hive, "rb") as fh:
        machine = read_machine(fh, "SYSTEM", None, None)
    iana, summer, winter = expect
    assert machine.zone.iana == iana or (iana and machine.zone.iana in (iana, "Asia/Kolkata"))
    ctx = TimeContext.build(machine.anchors, None)
    july, january = datetime(2025, 7, 1, 12), datetime(2025, 1, 15, 12)
    assert ctx.resolve(july)[0].replace(tzinfo=None) == july - timedelta(minutes=summer)
    assert ctx.resolve(january)[0].replace(tzinfo=None) == january - timedelta(minutes=winter)
    assert ctx.resolve(july)[1] == "registry"

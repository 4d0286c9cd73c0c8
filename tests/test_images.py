"""Disk images given to `timeline`: NTFS volumes made at test time with mkntfs
and filled through an ntfs-3g mount, put behind an MBR, converted with
qemu-img (VHDX, VHD, VMDK, QCOW2), imaged with ewfacquire (E01, segmented),
split into .001/.002...; registry hives written by the test's own regf
builder.  Needs the 'images' extra (dissect) and the Debian tools (ntfs-3g,
qemu-utils, ewf-tools); what is missing is skipped with a reason."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, PUBLIC, snapshot
from container_builders import (
    build_hive,
    ewf_image,
    fuse_usable,
    gpt_disk,
    have,
    mbr_disk,
    qemu_convert,
    software_hive_tree,
    system_hive_tree,
)

from forensic.discovery import discover, open_evidence
from forensic.timeline import RunOptions, run_timeline

pytest.importorskip("dissect.target", reason="the 'images' extra (dissect) is not installed")

if not (have("mkntfs") and fuse_usable()):
    pytest.skip("mkntfs / ntfs-3g with FUSE not available (apt-get install ntfs-3g)", allow_module_level=True)

LOG = FIXTURES / "SQLPROD01" / "Program Files" / "Microsoft SQL Server" / "MSSQL15.MSSQLSERVER" / "MSSQL" / "Log"
EVTX = PUBLIC / "evtx" / "sbou_LM_xp_cmdshell_MSSQL_Events.evtx"
SYSMON = PUBLIC / "evtx" / "sbou_sysmon_1_exec_via_sql_xpcmdshell.evtx"
TRC = PUBLIC / "trc" / "temporaltabledemo_log_2.trc"
DEFAULT_LOG = "Program Files/Microsoft SQL Server/MSSQL15.MSSQLSERVER/MSSQL/Log"
EXPRESS = "Program Files/Microsoft SQL Server/MSSQL13.SQLEXPRESS/MSSQL"
WEB02_LOG = FIXTURES / "WEB02" / "MSSQL13.SQLEXPRESS" / "MSSQL" / "Log" / "ERRORLOG"
# The WEB02 ERRORLOG loads 'xpsvchost.dll' for xp_svc_host: a DLL SQL Server does not ship.
DROPPED_DLL = b"MZ\x90\x00" + bytes(60) + b"This program cannot be run in DOS mode. (test stand-in)" + bytes(900)
SIGNATURE = 0x5EC0DE01
C_OFFSET = 1 << 20
D_OFFSET = C_OFFSET + (24 << 20) + (1 << 20)

# What the image holds and where the tool must find it (inner paths).
EXPECTED = {
    "C:/Windows/System32/winevt/Logs/Application.evtx": EVTX,
    "C:/Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx": SYSMON,
    f"C:/{DEFAULT_LOG}/log_2.trc": TRC,  # default trace beside the default Log folder
    f"C:/{EXPRESS}/Log/ERRORLOG": WEB02_LOG,  # a second instance at the default path
    **{f"D:/SQLLogs/{p.name}": p for p in sorted(LOG.iterdir())},  # -e D:\SQLLogs\ERRORLOG
}


def ntfs_volume(path: Path, files: dict, **kw) -> Path:
    """mkntfs + an ntfs-3g mount; a sandbox that refuses the mount skips the test."""
    import subprocess

    import container_builders
    try:
        return container_builders.ntfs_volume(path, files, **kw)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot build an NTFS volume here (mkntfs / ntfs-3g FUSE mount): {exc}")


def sha(data: Path | bytes) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    """A two-volume Windows server disk: C: (system, hives, event logs,
    default SQL Log folder) and D: (the error-log folder the registry names)."""
    work = tmp_path_factory.mktemp("disk")
    system = build_hive(system_hive_tree("Eastern Standard Time", 300, computer="SQLPROD01", mounted={
        "C": struct.pack("<IQ", SIGNATURE, C_OFFSET), "D": struct.pack("<IQ", SIGNATURE, D_OFFSET)}), work / "SYSTEM")
    software = build_hive(software_hive_tree({"MSSQLSERVER": {
        "id": "MSSQL15.MSSQLSERVER", "errorlog": "D:\\SQLLogs\\ERRORLOG", "agent_log": "D:\\SQLLogs\\SQLAGENT.OUT",
        "master": "D:\\SQLData\\master.mdf",
        "sql_path": "C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER\\MSSQL"}}), work / "SOFTWARE")
    c_files = {
        "Windows/System32/config/SYSTEM": system,
        "Windows/System32/config/SOFTWARE": software,
        "Windows/System32/winevt/Logs/Application.evtx": EVTX,
        "Windows/System32/winevt/Logs/Microsoft-Windows-Sysmon%4Operational.evtx": SYSMON,
        "Windows/System32/winevt/Logs/Microsoft-Windows-Other%4Operational.evtx": EVTX,  # not targeted
        f"{DEFAULT_LOG}/log_2.trc": TRC,
        f"{EXPRESS}/Log/ERRORLOG": WEB02_LOG,
        f"{EXPRESS}/Binn/xpsvchost.dll": DROPPED_DLL,
        f"{EXPRESS}/Binn/other.dll": b"MZ not referenced",
        "Users/Public/Documents/ERRORLOG.txt": LOG / "ERRORLOG",  # not where SQL Server writes: not read
    }
    d_files = {f"SQLLogs/{p.name}": p for p in LOG.iterdir()}
    d_files["SQLData/master.mdf"] = b"\x01\x0f" + bytes(8190)
    c = ntfs_volume(work / "c.vol", c_files, label="SYSTEM")
    d = ntfs_volume(work / "d.vol", d_files, label="DATA")
    path, offsets = mbr_disk(work / "server.raw", [c, d], signature=SIGNATURE)
    assert offsets == [C_OFFSET, D_OFFSET]
    c.unlink()
    d.unlink()
    return path


def image(disk: Path, kind: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "raw":
        return Path(shutil.copyfile(disk, dest / "server.dd"))
    if kind == "split":
        data = disk.read_bytes()
        step = 20 << 20
        for i in range(0, len(data), step):
            (dest / f"server.{i // step + 1:03d}").write_bytes(data[i:i + step])
        return dest / "server.001"
    if kind == "ewf":
        if not have("ewfacquire"):
            pytest.skip("ewfacquire not available (apt-get install ewf-tools)")
        return ewf_image(disk, dest / "server", segment_mb=16)[0]
    if not have("qemu-img"):
        pytest.skip("qemu-img not available (apt-get install qemu-utils)")
    fmt, ext = {"vhdx": ("vhdx", "vhdx"), "vhd": ("vpc", "vhd"), "vhd-fixed": ("vpc", "vhd"),
                "vmdk": ("vmdk", "vmdk"), "vmdk-split": ("vmdk", "vmdk"), "qcow2": ("qcow2", "qcow2")}[kind]
    options = {"vhd-fixed": ("-o", "subformat=fixed"), "vmdk-split": ("-o", "subformat=twoGbMaxExtentFlat")}
    return qemu_convert(disk, fmt, dest / f"server.{ext}", *options.get(kind, ()))


@pytest.fixture
def targeted(monkeypatch):
    """Read the test disk as a real (large) system volume is read: targeted."""
    from forensic.sources import images
    monkeypatch.setattr(images, "SMALL_VOLUME_RECORDS", 0)


@pytest.mark.parametrize("kind", ["raw", "split", "ewf", "vhdx", "vhd", "vhd-fixed", "vmdk", "vmdk-split", "qcow2"])
def test_image_formats_find_sql_server_artifacts(disk, tmp_path, kind, targeted):
    path = image(disk, kind, tmp_path / "ev")
    found = discover([str(tmp_path / "ev")])
    inner = {i.display_path.split("!", 1)[1]: i for i in found.inputs}
    assert set(inner) == set(EXPECTED), (kind, found.problems)
    for name, src in EXPECTED.items():
        with open_evidence(inner[name].path) as fh:
            assert sha(fh.read()) == sha(src), name
    skipped = {i.display_path.split("!", 1)[1] for i in found.skipped}
    assert skipped == {"C:/Windows/System32/config/SYSTEM", "C:/Windows/System32/config/SOFTWARE",
                       f"C:/{EXPRESS}/Binn/xpsvchost.dll"}
    tops = [c for c in found.containers if c.parent is None and not c.part_of]
    assert [c.display_path for c in tops] == [str(path)]
    machine = tops[0].machine
    assert machine.computer_name == "SQLPROD01" and machine.zone.iana == "America/New_York"
    assert [i.name for i in machine.instances] == ["MSSQLSERVER"]
    if kind in ("split", "ewf", "vmdk-split"):
        parts = [c for c in found.containers if c.part_of]
        assert parts and all(c.part_of == str(path) for c in parts), [(c.display_path, c.part_of) for c in parts]


def test_small_volumes_are_walked_whole(disk, tmp_path):
    """A lab-sized image (few files) is walked: artifacts anywhere are found by content."""
    path = image(disk, "qcow2", tmp_path / "ev")
    found = discover([str(path)])
    inner = {i.display_path.split("!", 1)[1] for i in found.inputs}
    assert inner == set(EXPECTED) | {"C:/Users/Public/Documents/ERRORLOG.txt",
                                     "C:/Windows/System32/winevt/Logs/Microsoft-Windows-Other%4Operational.evtx"}


def test_timeline_from_e01(disk, tmp_path, targeted):
    if not have("ewfacquire"):
        pytest.skip("ewfacquire not available")
    e01 = image(disk, "ewf", tmp_path / "ev")
    before = snapshot(tmp_path / "ev")
    out = tmp_path / "out" / "t.parquet"
    out.parent.mkdir()
    result = run_timeline(RunOptions(paths=[str(tmp_path / "ev")], output=str(out), fmt="parquet", workers=2))
    assert result.exit_code == 0, result.manifest["problems"]
    assert snapshot(tmp_path / "ev") == before
    rows = pq.read_table(out).to_pylist()
    by_file: dict[str, list] = {}
    for r in rows:
        by_file.setdefault(r["source_file"], []).append(r)
    assert set(by_file) == {f"{e01}!{k}" for k in EXPECTED}
    # ERRORLOG evidence wins for the instance (its banner agrees with the registry's US Eastern)
    assert {r["tz_source"] for r in by_file[f"{e01}!D:/SQLLogs/ERRORLOG.4"]} == {"errorlog_utc_adjustment"}
    # The LocalDB trace has no ERRORLOG beside it: the SYSTEM hive's zone dates it
    trace = by_file[f"{e01}!C:/{DEFAULT_LOG}/log_2.trc"]
    assert {r["tz_source"] for r in trace} == {"registry"}
    # 2018-02-04 is winter: US Eastern is UTC-5
    r = trace[0]
    assert r["local_time"].startswith("2018-02-0")
    from datetime import datetime, timedelta
    local = datetime.strptime(r["local_time"][:19], "%Y-%m-%d %H:%M:%S")
    assert r["timestamp"].replace(tzinfo=None, microsecond=0) == local + timedelta(hours=5)
    m = result.manifest
    containers = {c["path"]: c for c in m["containers"]}
    segments = sorted(p for p in containers if containers[p].get("part_of"))
    assert segments and all(containers[p]["sha256"] == sha(Path(p)) for p in [str(e01), *segments])
    reg = containers[str(e01)]["registry"]
    assert reg["time_zone"]["key_name"] == "Eastern Standard Time"
    assert reg["sql_server_instances"][0]["errorlog"] == "D:\\SQLLogs\\ERRORLOG"
    assert reg["drive_letters"] == {"C": "C:/", "D": "D:/"}
    inputs = {i["path"]: i for i in m["inputs"]}
    for name, src in EXPECTED.items():
        assert inputs[f"{e01}!{name}"]["sha256"] == sha(src)
    flags = {f for r in rows for f in r["flags"]}
    assert {"xp_cmdshell", "startup_procedure", "extended_procedure"} <= flags
    # The dropped DLL the WEB02 ERRORLOG names is found beside the instance's Log folder and hashed
    (dll,) = containers[str(e01)]["extended_procedure_dlls"]
    assert dll["dll"] == "xpsvchost.dll" and dll["found"]
    assert dll["path"] == f"{e01}!C:/{EXPRESS}/Binn/xpsvchost.dll"
    assert dll["referenced_by"] == f"{e01}!C:/{EXPRESS}/Log/ERRORLOG"
    assert dll["sha256"] == sha(DROPPED_DLL)
    assert {s["path"]: s["sha256"] for s in m["skipped"]}[dll["path"]] == sha(DROPPED_DLL)


def test_kape_vhdx_collection_with_nested_zip(tmp_path):
    """A KAPE-style VHDX: one NTFS volume holding a C/ tree (walked whole,
    no partition table) and a zip of more logs."""
    if not have("qemu-img"):
        pytest.skip("qemu-img not available")
    system = build_hive(system_hive_tree("W. Europe Standard Time", -60), tmp_path / "SYSTEM")
    extra = io.BytesIO()
    with zipfile.ZipFile(extra, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(SYSMON, "Logs/Microsoft-Windows-Sysmon%4Operational.evtx")
    vol = ntfs_volume(tmp_path / "kape.vol", {
        "C/Windows/System32/config/SYSTEM": system,
        f"C/{DEFAULT_LOG}/log_2.trc": TRC,
        "C/Windows/System32/winevt/Logs/Application.evtx": EVTX,
        "Extra/more.zip": extra.getvalue(),
    })
    (tmp_path / "ev").mkdir()
    vhdx = qemu_convert(vol, "vhdx", tmp_path / "ev" / "SQL01_kape.vhdx")
    found = discover([str(tmp_path / "ev")])
    names = sorted(i.display_path for i in found.inputs)
    assert names == sorted([f"{vhdx}!C/{DEFAULT_LOG}/log_2.trc",
                            f"{vhdx}!C/Windows/System32/winevt/Logs/Application.evtx",
                            f"{vhdx}!Extra/more.zip!Logs/Microsoft-Windows-Sysmon%4Operational.evtx"])
    nested = [c for c in found.containers if c.parent == str(vhdx)]
    assert [c.kind for c in nested] == ["zip"]
    with open_evidence(found.inputs[-1].path) as fh:
        assert fh.read(8) == b"ElfFile\x00"
    out = tmp_path / "t.parquet"
    result = run_timeline(RunOptions(paths=[str(tmp_path / "ev")], output=str(out), fmt="parquet"))
    assert result.exit_code == 0
    rows = pq.read_table(out).to_pylist()
    trace = [r for r in rows if r["source"] == "default_trace"]
    assert trace and {r["tz_source"] for r in trace} == {"registry"}  # Europe/Berlin from C/.../SYSTEM


def test_image_inside_zip(disk, tmp_path, targeted):
    if not have("qemu-img"):
        pytest.skip("qemu-img not available")
    vhdx = image(disk, "vhdx", tmp_path / "src")
    (tmp_path / "ev").mkdir()
    with zipfile.ZipFile(tmp_path / "ev" / "case.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(vhdx, "images/server.vhdx")
    found = discover([str(tmp_path / "ev")])
    inner = {i.display_path.split("!", 1)[1] for i in found.inputs}
    assert inner == {f"images/server.vhdx!{k}" for k in EXPECTED}
    from forensic import sources
    sources.clear_cache()  # a worker: reopens zip, spools the VHDX, reopens it
    item = next(i for i in found.inputs if i.display_path.endswith("D:/SQLLogs/ERRORLOG"))
    with open_evidence(item.path) as fh:
        assert fh.read() == (LOG / "ERRORLOG").read_bytes()


def test_damaged_images_are_reported(tmp_path):
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "broken.vhdx").write_bytes(b"vhdxfile" + bytes(70000))
    (tmp_path / "ev" / "broken.E01").write_bytes(b"EVF\x09\x0d\x0a\xff\x00\x01\x01\x00" + bytes(5000))
    mbr = bytearray(512)
    mbr[446:462] = struct.pack("<B3sB3sII", 0x80, b"\0\0\0", 7, b"\0\0\0", 2048, 100000)
    mbr[510:512] = b"\x55\xaa"
    (tmp_path / "ev" / "empty.dd").write_bytes(bytes(mbr) + bytes(2 << 20))
    out = tmp_path / "t.parquet"
    result = run_timeline(RunOptions(paths=[str(tmp_path / "ev")], output=str(out), fmt="parquet"))
    assert result.exit_code == 1
    where = {p["path"] for p in result.manifest["problems"]}
    assert {str(tmp_path / "ev" / n) for n in ("broken.vhdx", "broken.E01")} <= {w.split("!")[0] for w in where}
    assert any("empty.dd" in w for w in where)


def test_missing_images_extra_is_a_clear_message(disk, tmp_path, monkeypatch):
    from forensic.sources import images
    monkeypatch.setattr(images, "images_available", lambda: False)
    path = image(disk, "raw", tmp_path / "ev")
    found = discover([str(path)])
    assert not found.inputs
    (msg,) = [m for p, m in found.problems if p == str(path)]
    assert "pip install 'mssql-forensic[images]'" in msg


def test_gpt_disk_drive_letters_from_mounted_devices(tmp_path, targeted):
    """GPT: MountedDevices holds 'DMIO:ID:' + the partition GUID for each letter."""
    import uuid
    guids = ["00000000-0000-4000-8000-000000001000", "00000000-0000-4000-8000-000000001001"]
    mounted = {"C": b"DMIO:ID:" + uuid.UUID(guids[0]).bytes_le, "E": b"DMIO:ID:" + uuid.UUID(guids[1]).bytes_le}
    system = build_hive(system_hive_tree("GMT Standard Time", 0, mounted=mounted), tmp_path / "SYSTEM")
    software = build_hive(software_hive_tree({"PROD": {"id": "MSSQL16.PROD", "errorlog": "E:\\Logs\\ERRORLOG"}}),
                          tmp_path / "SOFTWARE")
    c = ntfs_volume(tmp_path / "c.vol", {"Windows/System32/config/SYSTEM": system,
                                         "Windows/System32/config/SOFTWARE": software})
    e = ntfs_volume(tmp_path / "e.vol", {"Logs/ERRORLOG": WEB02_LOG, "Other/ERRORLOG": WEB02_LOG})
    (tmp_path / "ev").mkdir()
    disk, parts = gpt_disk(tmp_path / "ev" / "gpt.img", [c, e])
    assert [g for _o, g in parts] == guids
    found = discover([str(tmp_path / "ev")])
    assert [i.display_path for i in found.inputs] == [f"{disk}!E:/Logs/ERRORLOG"]
    (top,) = [c for c in found.containers if c.parent is None]
    assert top.machine.drive_letters == {"C": "C:/", "E": "E:/"}
    assert top.machine.zone.iana == "Europe/London"


@pytest.mark.parametrize("kind", ["vhdx", "ewf", "qcow2"])
def test_damaged_image_bytes_never_crash(disk, tmp_path, kind):
    """Bytes flipped in the image's metadata and data, or the file cut: every
    failure is an OSError reported as a problem, never another exception."""
    import random
    src = image(disk, kind, tmp_path / "src")
    data = src.read_bytes()
    rng = random.Random(kind)
    from forensic import sources
    for n in range(8):
        buf = bytearray(data)
        for _ in range(rng.choice([1, 8, 64])):
            pos = rng.randrange(min(len(buf), 1 << 20)) if rng.random() < 0.7 else rng.randrange(len(buf))
            buf[pos] = rng.randrange(256)
        if n % 3 == 2:
            buf = buf[:rng.randrange(len(buf))]
        case = tmp_path / f"case{n}" / src.name
        case.parent.mkdir()
        case.write_bytes(bytes(buf))
        sources.clear_cache()
        found = discover([str(case.parent)])
        for item in found.inputs + found.skipped:
            try:
                with open_evidence(item.path) as fh:
                    while fh.read(1 << 20):
                        pass
            except OSError:
                pass

"""Test-time builders for containers: registry hives, NTFS disk images.

* :func:`build_hive` writes a minimal but valid Windows registry hive
  (``regf``: base block, one hive bin, ``nk``/``vk``/``li`` cells) from a
  nested dict, enough for dissect.regf and for Windows' own layout rules.
* :func:`ntfs_volume` makes an NTFS volume with ``mkntfs`` (Debian's
  ntfs-3g) and fills it through an ntfs-3g FUSE mount (foreground process,
  unmounted with ``fusermount -u``).
* :func:`mbr_disk` puts a volume behind an MBR partition table; qemu-img
  converts raw disks to VHDX, VHD, VMDK, QCOW2; ewfacquire makes an E01.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

# ---------------------------------------------------------------------------
# registry hives

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ = 1, 2, 3, 4, 7


def _filetime(dt: datetime) -> int:
    return int((dt - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)


class _Bin:
    def __init__(self) -> None:
        self.data = bytearray()

    def alloc(self, payload: bytes) -> int:
        """Store a cell; its offset relative to the first hive bin."""
        size = len(payload) + 4
        size = (size + 7) & ~7
        offset = 0x20 + len(self.data)
        self.data += struct.pack("<i", -size) + payload + bytes(size - 4 - len(payload))
        return offset

    def patch(self, offset: int, at: int, fmt: str, *values) -> None:
        pos = offset - 0x20 + 4 + at
        struct.pack_into(fmt, self.data, pos, *values)


def _value_bytes(value) -> tuple[int, bytes]:
    if isinstance(value, tuple):
        return value  # (type, raw bytes)
    if isinstance(value, bool | int):
        return REG_DWORD, struct.pack("<I", int(value) & 0xFFFFFFFF)
    if isinstance(value, bytes):
        return REG_BINARY, value
    if isinstance(value, list):
        return REG_MULTI_SZ, ("\x00".join(value) + "\x00\x00").encode("utf-16-le")
    return REG_SZ, (str(value) + "\x00").encode("utf-16-le")


def build_hive(tree: dict, path: Path, when: datetime | None = None) -> Path:
    """A hive file from ``{"Key": {"Sub": {...}, "@Value": data}}``.

    Keys are dict items whose name does not start with ``@``; values are
    ``@name`` items: str (REG_SZ), int (REG_DWORD), bytes (REG_BINARY),
    list (REG_MULTI_SZ) or ``(type, raw bytes)``.
    """
    stamp = _filetime(when or datetime(2025, 6, 1, tzinfo=UTC))
    hbin = _Bin()

    def key(name: str, content: dict, parent: int, root: bool = False) -> int:
        raw_name = name.encode("latin-1")
        nk = bytearray(76 + len(raw_name))
        nk[0:2] = b"nk"
        struct.pack_into("<H", nk, 2, 0x2C if root else 0x20)  # HIVE_ENTRY|NO_DELETE|COMP_NAME
        struct.pack_into("<Q", nk, 4, stamp)
        struct.pack_into("<I", nk, 16, parent)
        struct.pack_into("<I", nk, 32, 0xFFFFFFFF)
        struct.pack_into("<I", nk, 44, 0xFFFFFFFF)
        struct.pack_into("<I", nk, 48, 0xFFFFFFFF)
        struct.pack_into("<H", nk, 72, len(raw_name))
        nk[76:] = raw_name
        offset = hbin.alloc(bytes(nk))
        subkeys = sorted(((k, v) for k, v in content.items() if not k.startswith("@")), key=lambda kv: kv[0].upper())
        values = [(k[1:], v) for k, v in content.items() if k.startswith("@")]
        if subkeys:
            offs = [key(k, v, offset) for k, v in subkeys]
            li = b"li" + struct.pack("<H", len(offs)) + b"".join(struct.pack("<I", o) for o in offs)
            hbin.patch(offset, 20, "<I", len(offs))
            hbin.patch(offset, 28, "<I", hbin.alloc(li))
            hbin.patch(offset, 52, "<I", max(len(k) * 2 for k, _ in subkeys))
        if values:
            voffs = []
            for vname, v in values:
                vtype, data = _value_bytes(v)
                raw_v = vname.encode("latin-1")
                vk = bytearray(20 + len(raw_v))
                vk[0:2] = b"vk"
                struct.pack_into("<H", vk, 2, len(raw_v))
                if len(data) <= 4:
                    struct.pack_into("<I", vk, 4, len(data) | 0x80000000)
                    vk[8:8 + len(data)] = data
                else:
                    struct.pack_into("<I", vk, 4, len(data))
                    struct.pack_into("<I", vk, 8, hbin.alloc(data))
                struct.pack_into("<I", vk, 12, vtype)
                struct.pack_into("<H", vk, 16, 1 if raw_v else 0)
                vk[20:] = raw_v
                voffs.append(hbin.alloc(bytes(vk)))
            hbin.patch(offset, 36, "<I", len(voffs))
            hbin.patch(offset, 40, "<I", hbin.alloc(b"".join(struct.pack("<I", o) for o in voffs)))
        return offset

    root = key("ROOT", tree, 0xFFFFFFFF, root=True)
    body = bytes(hbin.data)
    size = (len(body) + 0x20 + 4095) & ~4095
    free = size - 0x20 - len(body)
    if free:
        body += struct.pack("<i", free) + bytes(free - 4)
    header = b"hbin" + struct.pack("<IIQQI", 0, size, 0, stamp, 0)
    hbin_bytes = header + body
    base = bytearray(4096)
    base[0:4] = b"regf"
    struct.pack_into("<IIQIIII", base, 4, 1, 1, stamp, 1, 5, 0, 1)
    struct.pack_into("<II", base, 36, root, size)
    struct.pack_into("<I", base, 44, 1)
    checksum = 0
    for (dword,) in struct.iter_unpack("<I", bytes(base[:508])):
        checksum ^= dword
    struct.pack_into("<I", base, 508, checksum)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(base) + hbin_bytes)
    return path


def systemtime(month: int, dow: int, nth: int, hour: int) -> bytes:
    return struct.pack("<8H", 0, month, dow, nth, hour, 0, 0, 0)


def system_hive_tree(key_name: str, bias: int, daylight: bool = True, computer: str = "SQL01",
                     mounted: dict[str, bytes] | None = None) -> dict:
    """A SYSTEM hive with a time zone, e.g. ("Eastern Standard Time", 300)."""
    tzi = {"@TimeZoneKeyName": key_name, "@StandardName": key_name, "@Bias": bias & 0xFFFFFFFF,
           "@StandardBias": 0, "@DaylightBias": (-60 if daylight else 0) & 0xFFFFFFFF,
           "@DynamicDaylightTimeDisabled": 0}
    if daylight:
        if bias < 0:  # Europe: last Sunday of March 02:00 / last Sunday of October 03:00
            tzi["@DaylightStart"] = systemtime(3, 0, 5, 2)
            tzi["@StandardStart"] = systemtime(10, 0, 5, 3)
        else:  # US: second Sunday of March / first Sunday of November, 02:00
            tzi["@DaylightStart"] = systemtime(3, 0, 2, 2)
            tzi["@StandardStart"] = systemtime(11, 0, 1, 2)
    else:
        tzi["@DaylightStart"] = bytes(16)
        tzi["@StandardStart"] = bytes(16)
    tree = {
        "Select": {"@Current": 1, "@Default": 1},
        "ControlSet001": {"Control": {
            "TimeZoneInformation": tzi,
            "ComputerName": {"ComputerName": {"@ComputerName": computer}},
        }},
    }
    if mounted:
        tree["MountedDevices"] = {f"@\\DosDevices\\{k}:": v for k, v in mounted.items()}
    return tree


def software_hive_tree(instances: dict[str, dict]) -> dict:
    """``{"MSSQLSERVER": {"id": "MSSQL15.MSSQLSERVER", "errorlog": "C:\\...\\ERRORLOG", ...}}``."""
    names = {f"@{name}": spec["id"] for name, spec in instances.items()}
    sql: dict = {"Instance Names": {"SQL": names}}
    for _name, spec in instances.items():
        params = {}
        if spec.get("master"):
            params["@SQLArg0"] = "-d" + spec["master"]
        if spec.get("errorlog"):
            params["@SQLArg1"] = "-e" + spec["errorlog"]
        sql[spec["id"]] = {
            "Setup": {"@SQLPath": spec.get("sql_path", ""), "@SQLDataRoot": spec.get("data_root", ""),
                      "@Version": spec.get("version", "15.0.2000.5"), "@Edition": "Standard Edition"},
            "MSSQLServer": {"Parameters": params},
            "SQLServerAgent": {"@ErrorLogFile": spec.get("agent_log", "")} if spec.get("agent_log") else {},
        }
    return {"Microsoft": {"Microsoft SQL Server": sql,
                          "Windows NT": {"CurrentVersion": {"@SystemRoot": "C:\\Windows"}}}}


# ---------------------------------------------------------------------------
# disk images


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def fuse_usable() -> bool:
    return os.path.exists("/dev/fuse") and have("ntfs-3g", "fusermount")


def ntfs_volume(path: Path, files: dict[str, Path | bytes], size_mb: int = 24, label: str = "SYS") -> Path:
    """An NTFS volume image holding ``files`` ({"Windows/System32/config/SYSTEM": source})."""
    with open(path, "wb") as fh:
        fh.truncate(size_mb << 20)
    subprocess.run(["mkntfs", "-F", "-q", "-Q", "-L", label, str(path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mnt = path.parent / (path.name + ".mnt")
    mnt.mkdir()
    proc = subprocess.Popen(["ntfs-3g", str(path), str(mnt), "-o", "no_detach"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.ismount(mnt):
                break
            if proc.poll() is not None:
                raise RuntimeError("ntfs-3g mount failed")
            time.sleep(0.05)
        else:
            raise RuntimeError("ntfs-3g mount did not come up")
        for inner, src in files.items():
            dest = mnt / inner
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dest.write_bytes(src)
            else:
                shutil.copyfile(src, dest)
        os.sync()
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        mnt.rmdir()
    return path


def mbr_disk(path: Path, volumes: list[Path], signature: int = 0x1234ABCD) -> tuple[Path, list[int]]:
    """A raw disk with an MBR; each volume in its own NTFS (type 7) partition,
    the first at 1 MiB.  Returns the disk and the partitions' byte offsets."""
    mbr = bytearray(512)
    struct.pack_into("<I", mbr, 440, signature)
    lba = 2048
    offsets = []
    for i, vol in enumerate(volumes):
        sectors = (vol.stat().st_size + 511) // 512
        entry = struct.pack("<B3sB3sII", 0x80 if i == 0 else 0, b"\xfe\xff\xff", 7, b"\xfe\xff\xff", lba, sectors)
        mbr[446 + 16 * i: 462 + 16 * i] = entry
        offsets.append(lba * 512)
        lba += sectors + 2048
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as out:
        out.write(mbr)
        for vol, offset in zip(volumes, offsets, strict=True):
            out.seek(offset)
            with open(vol, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        out.truncate(lba * 512)
    return path, offsets


def qemu_convert(raw: Path, fmt: str, dest: Path, *options: str) -> Path:
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, *options, str(raw), str(dest)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return dest


def ewf_image(raw: Path, target_base: Path, segment_mb: int | None = None) -> list[Path]:
    """An EnCase (E01) image of ``raw`` made by ewfacquire; its segment files."""
    compression = "none" if segment_mb else "deflate:fast"  # uncompressed: several segments
    cmd = ["ewfacquire", "-u", "-t", str(target_base), "-f", "encase6", "-c", compression,
           "-C", "case", "-D", "test", "-E", "1", "-e", "examiner", "-N", "none", "-m", "fixed", "-M", "logical"]
    if segment_mb:
        cmd += ["-S", f"{segment_mb}MiB"]
    cmd.append(str(raw))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                   timeout=120)
    return sorted(target_base.parent.glob(target_base.name + ".E*"))


BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


def gpt_disk(path: Path, volumes: list[Path]) -> tuple[Path, list[tuple[int, str]]]:
    """A raw disk with a GPT (protective MBR, primary and backup headers);
    each volume a Basic Data partition.  Returns (offset, partition GUID) per volume."""
    import uuid
    import zlib
    sector = 512
    first_lba = 2048
    parts = []
    lba = first_lba
    for i, vol in enumerate(volumes):
        sectors = (vol.stat().st_size + sector - 1) // sector
        guid = str(uuid.UUID(int=0x1000 + i, version=4))
        parts.append((lba, lba + sectors - 1, guid, vol))
        lba += sectors + 2048
    total = lba + 34
    entries = bytearray(128 * 128)
    for i, (start, end, guid, _vol) in enumerate(parts):
        struct.pack_into("<16s16sQQQ", entries, i * 128, uuid.UUID(BASIC_DATA).bytes_le, uuid.UUID(guid).bytes_le,
                         start, end, 0)
        name = f"vol{i}".encode("utf-16-le")
        entries[i * 128 + 56: i * 128 + 56 + len(name)] = name
    entries_crc = zlib.crc32(entries) & 0xFFFFFFFF

    def header(current: int, backup: int, entries_lba: int) -> bytes:
        h = bytearray(92)
        struct.pack_into("<8sIIIIQQQQ16sQIII", h, 0, b"EFI PART", 0x10000, 92, 0, 0, current, backup, 34,
                         total - 34, uuid.UUID(int=0xD15C).bytes_le, entries_lba, 128, 128, entries_crc)
        struct.pack_into("<I", h, 16, zlib.crc32(h) & 0xFFFFFFFF)
        return bytes(h).ljust(sector, b"\x00")

    mbr = bytearray(sector)
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, min(total - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as out:
        out.truncate(total * sector)
        out.write(mbr)
        out.write(header(1, total - 1, 2))
        out.write(entries)
        for start, _end, _guid, vol in parts:
            out.seek(start * sector)
            with open(vol, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        out.seek((total - 33) * sector)
        out.write(entries)
        out.write(header(total - 1, 1, total - 33))
    return path, [(start * sector, guid) for start, _e, guid, _v in parts]

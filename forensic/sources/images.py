"""Disk images and virtual disks through dissect (the optional ``images``
extra: ``pip install 'mssql-forensic[images]'``).

Formats: EWF (``.E01`` and its segments), raw/dd (a disk with an MBR or GPT,
or a bare NTFS volume), split raw (``.001``, ``.002``...), VMDK (sparse,
split, or a descriptor with flat extents), VHD (fixed and dynamic), VHDX
(also KAPE's VHDX collections), QCOW2 and VDI.  Partition tables (MBR, GPT)
are read with ``dissect.volume``, file systems (NTFS) with ``dissect.ntfs``,
containers with ``dissect.evidence`` / ``dissect.hypervisor``.

What is read inside:

* A Windows system volume (``Windows/System32/config/SYSTEM`` at its root):
  targeted, not walked.  The registry (``SOFTWARE``, ``SYSTEM``) names the
  SQL Server instances and their error-log, Agent-log and data folders; those
  folders, the default ``Program Files[ (x86)]/Microsoft SQL Server/*/MSSQL/Log``
  folders (ERRORLOG, SQLAGENT, the default trace ``log_*.trc``) and the
  Application, Security, System and Sysmon event logs are listed, plus the
  two hives themselves.  Folders of other volumes named by the registry
  (``D:\\SQLLogs``) are found through ``MountedDevices``.
* Any other volume (a KAPE VHDX, a data disk without Windows), and a disk
  whose volumes are all small (at most :data:`SMALL_VOLUME_RECORDS` NTFS
  file records: a lab or trimmed image): walked whole, up to
  :attr:`Limits.max_walk_files` files, every file sniffed by content.

Inner paths are ``C:/Program Files/...`` for a volume with a known drive
letter, ``vol2/...`` for other volumes of a multi-volume disk, and the bare
path for a disk with one volume and no letter.
"""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

from forensic.sources.base import Entry, Limits, Listing
from forensic.sources.windows import MachineInfo, read_machine

# dissect logs every format it tries and fails ("Failed to detect ntfs
# filesystem") on the console; what matters is reported in the manifest.
logging.getLogger("dissect").setLevel(logging.CRITICAL)

IMAGES_EXTRA_HINT = ("disk images and virtual disks need the optional 'images' extra: "
                     "pip install 'mssql-forensic[images]' (dissect)")

EWF_MAGIC = b"EVF\x09\x0d\x0a\xff\x00"
VHDX_MAGIC = b"vhdxfile"
VHD_MAGIC = b"conectix"
QCOW_MAGIC = b"QFI\xfb"
VMDK_SPARSE = (b"KDMV", b"COWD")
VDI_MAGIC = b"<<< "

# A volume whose NTFS master file table has at most this many records is
# walked whole even when it holds Windows (a test or lab image, a trimmed
# copy); a real system volume (hundreds of thousands) is read targeted.
SMALL_VOLUME_RECORDS = 20_000

SQL_LOG_GLOBS = ("Program Files/Microsoft SQL Server", "Program Files (x86)/Microsoft SQL Server")
EVENT_LOGS = ("Application.evtx", "Security.evtx", "System.evtx", "Microsoft-Windows-Sysmon%4Operational.evtx")
EVENT_LOG_DIR = "Windows/System32/winevt/Logs"
HIVES = {"system": "Windows/System32/config/SYSTEM", "software": "Windows/System32/config/SOFTWARE"}


def images_available() -> bool:
    try:
        import dissect.target.container  # noqa: F401
        import dissect.target.filesystem  # noqa: F401
        import dissect.target.volume  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------
# detection


def _mbr_partitions(head: bytes) -> list[tuple[int, int, int]]:
    """(type, start LBA, sectors) of the used primary entries of a plausible MBR."""
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return []
    out = []
    for i in range(4):
        entry = head[446 + 16 * i: 462 + 16 * i]
        status, ptype = entry[0], entry[4]
        start, count = struct.unpack("<II", entry[8:16])
        if ptype == 0:
            continue
        if status not in (0x00, 0x80) or start == 0 or count == 0:
            return []
        out.append((ptype, start, count))
    return out


def image_kind(head: bytes, name: str) -> str | None:
    """The disk-image kind of a file from its first bytes, else None.

    ``raw`` needs a partition table (MBR with sane entries, GPT) or an NTFS
    boot sector: a file that merely ends a sector with 55 AA is not a disk.
    """
    if head.startswith(EWF_MAGIC):
        return "ewf"
    if head.startswith(VHDX_MAGIC):
        return "vhdx"
    if head.startswith(VHD_MAGIC):
        return "vhd"
    if head.startswith(QCOW_MAGIC):
        return "qcow2"
    if head[:4] in VMDK_SPARSE or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head.startswith(VDI_MAGIC) and b"VirtualBox Disk Image" in head[:64]:
        return "vdi"
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef" and head[1024 + 24:1024 + 28] in (
            b"\x00\x00\x00\x00", b"\x01\x00\x00\x00", b"\x02\x00\x00\x00", b"\x03\x00\x00\x00",
            b"\x04\x00\x00\x00", b"\x05\x00\x00\x00", b"\x06\x00\x00\x00"):
        return "raw"  # a bare ext2/3/4 volume (SQL Server on Linux: /var/opt/mssql/log)
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        if head[3:11] == b"NTFS    ":
            return "raw"
        if (head[82:90] == b"FAT32   " or head[54:59] in (b"FAT12", b"FAT16")) and \
                struct.unpack("<H", head[11:13])[0] in (512, 1024, 2048, 4096):
            return "raw"  # a bare FAT volume
        if len(head) >= 520 and head[512:520] == b"EFI PART":
            return "raw"
        if _mbr_partitions(head):
            return "raw"
    return None


def ewf_segment_number(head: bytes) -> int:
    return struct.unpack("<H", head[9:11])[0] if len(head) >= 11 else 1


_SPLIT = re.compile(r"^(.*)\.(\d{3,})$")


def vmdk_extents(descriptor: bytes) -> list[str]:
    """File names of the extents a VMDK text descriptor references."""
    out = []
    try:
        text = descriptor.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        return out
    for line in text.splitlines():
        m = re.match(r'\s*(RW|RDONLY|NOACCESS)\s+\d+\s+\S+\s+"([^"]+)"', line)
        if m:
            out.append(m.group(2))
    return out


def part_of(path: str, head: bytes, kind: str | None) -> str | None:
    """When ``path`` is a later segment or extent of another image file in its
    folder, that file's path (so it is read through it, not on its own)."""
    p = Path(path)
    if kind == "ewf" and ewf_segment_number(head) > 1:
        for sib in sorted(p.parent.glob(p.stem + ".*")):
            if re.match(r"\.[Ee]x?01$", sib.suffix):
                return str(sib)
        return None
    m = _SPLIT.match(p.name)
    if m and int(m.group(2)) > 1:
        first = p.parent / f"{m.group(1)}.{'1'.zfill(len(m.group(2)))}"
        try:
            with open(first, "rb") as fh:
                first_head = fh.read(4096)
        except OSError:
            first_head = b""
        if image_kind(first_head, first.name) == "raw":  # x.001 is the start of a disk
            return str(first)
    if p.suffix.lower() == ".vmdk":
        for desc in sorted(p.parent.glob("*.vmdk")):
            if desc == p:
                continue
            try:
                if desc.stat().st_size > 1 << 20:
                    continue
                with open(desc, "rb") as fh:
                    data = fh.read(1 << 16)
            except OSError:
                continue
            if b"# Disk DescriptorFile" in data[:1024] and p.name in vmdk_extents(data):
                return str(desc)
    return None


# ---------------------------------------------------------------------------
# the image


class DiskImage:
    """One disk image, its volumes and file systems (dissect)."""

    def __init__(self, target: str | BinaryIO, kind: str, name: str = ""):
        from dissect.target import filesystem, volume
        self.kind = kind
        self.name = name
        self.disk = _open_container(target, kind)
        self.problems: list[tuple[str, str]] = []
        self.volumes: list[tuple[str, Any]] = []  # (hint, filesystem)
        vols = []
        try:
            vols = list(volume.open(self.disk).volumes)
        except Exception:  # noqa: BLE001 - no partition table: a bare volume
            vols = []
        if not vols:
            try:
                self.volumes.append(("v-", filesystem.open(self.disk)))
            except Exception as exc:  # noqa: BLE001
                self.problems.append(("", f"cannot read a file system on the image: {type(exc).__name__}: {exc}"))
        for i, vol in enumerate(vols):
            try:
                self.volumes.append((f"v{i}", filesystem.open(vol)))
            except Exception as exc:  # noqa: BLE001
                self.problems.append((f"vol{i}", "no readable file system (unsupported, encrypted or empty) on "
                                                 f"partition {i + 1} at offset {getattr(vol, 'offset', '?')}: "
                                                 f"{type(exc).__name__}"))
        self.raw_volumes = vols
        self.labels: dict[str, str] = {}
        self.machine: MachineInfo | None = None

    # -- naming -----------------------------------------------------------
    def _system_hint(self) -> str | None:
        for hint, fs in self.volumes:
            if _exists(fs, HIVES["system"]):
                return hint
        return None

    def _assign_labels(self) -> None:
        system = self._system_hint()
        if system is not None:
            sys_fs = self.fs(system)
            software = _exists(sys_fs, HIVES["software"])
            letter = "C"
            if software:
                from forensic.sources.windows import Hive, system_root
                try:
                    letter = (system_root(Hive(_open(sys_fs, HIVES["software"]))) or "C:")[:1].upper()
                except Exception:  # noqa: BLE001 - a damaged hive: read_machine notes it
                    letter = "C"
            self.labels[system] = f"{letter}:"
            self.machine = read_machine(
                _open(sys_fs, HIVES["system"]), f"{self.name}!{letter}:/{HIVES['system']}",
                _open(sys_fs, HIVES["software"]) if software else None,
                f"{self.name}!{letter}:/{HIVES['software']}" if software else None)
            self._map_letters()
        multi = len(self.volumes) > 1
        for i, (hint, _fs) in enumerate(self.volumes):
            if hint not in self.labels:
                self.labels[hint] = f"vol{i + 1}" if multi else ""
        if self.machine is not None:
            self.machine.drive_letters = {lab[:1]: lab + "/" for lab in self.labels.values() if lab.endswith(":")}

    def _map_letters(self) -> None:
        """Drive letters from the SYSTEM hive's MountedDevices."""
        from forensic.sources.windows import Hive, mounted_devices
        system = self._system_hint()
        try:
            hive = Hive(_open(self.fs(system), HIVES["system"]))
            devices = mounted_devices(hive)
        except Exception:  # noqa: BLE001
            return
        serial = getattr(getattr(self.raw_volumes[0], "vs", None), "serial", None) if self.raw_volumes else None
        for letter, data in devices.items():
            for i, vol in enumerate(self.raw_volumes):
                hint = f"v{i}"
                if hint not in dict(self.volumes) or hint in self.labels:
                    continue
                if len(data) == 12 and serial is not None:
                    sig, offset = struct.unpack("<IQ", data)
                    if sig == serial and offset == getattr(vol, "offset", None):
                        self.labels[hint] = f"{letter}:"
                elif data.startswith(b"DMIO:ID:") and len(data) >= 24 and getattr(vol, "guid", None):
                    import uuid
                    if str(uuid.UUID(bytes_le=data[8:24])).lower() == str(vol.guid).lower():
                        self.labels[hint] = f"{letter}:"

    def fs(self, hint: str):
        return dict(self.volumes)[hint]

    def _display(self, hint: str, path: str) -> str:
        label = self.labels.get(hint, "")
        return f"{label}/{path}" if label else path

    # -- listing ----------------------------------------------------------
    def list(self, limits: Limits) -> Listing:
        out = Listing()
        out.problems.extend(self.problems)
        self._assign_labels()
        system = self._system_hint()
        seen: set[tuple[str, str]] = set()

        def add(hint: str, path: str) -> None:
            key = (hint, path.lower())
            if key in seen:
                return
            fs = self.fs(hint)
            try:
                entry = fs.get(path)
                if entry.is_symlink():
                    out.problems.append((self._display(hint, path), "symbolic link or junction: not followed"))
                    return
                if not entry.is_file():
                    return
                size = int(entry.stat().st_size)
            except Exception:  # noqa: BLE001 - missing or unreadable entry
                return
            seen.add(key)
            out.members += 1
            # "L": the inner path starts with the volume's label (drive letter, volN)
            out.entries.append(Entry(self._display(hint, path), hint + ("L" if self.labels.get(hint) else ""), size))

        if system is None or all(_small(fs) for _hint, fs in self.volumes):
            for hint, fs in self.volumes:
                self._walk(hint, fs, "", add, out, limits)
            return out
        letters = {lab[:1]: hint for hint, lab in self.labels.items() if lab.endswith(":")}
        # The system volume: hives, event logs, default SQL Server log folders.
        for path in HIVES.values():
            add(system, path)
        for name in EVENT_LOGS:
            add(system, f"{EVENT_LOG_DIR}/{name}")
        for hint, fs in self.volumes:
            for base in SQL_LOG_GLOBS:
                for folder in _instance_log_folders(fs, base):
                    self._list_folder(hint, fs, folder, add, out)
        # Folders the registry names for each instance.
        for inst in (self.machine.instances if self.machine else []):
            for folder in inst.log_folders():
                m = re.match(r"^([A-Za-z]):\\(.*)$", folder)
                if not m:
                    continue
                hint = letters.get(m.group(1).upper())
                if hint is None:
                    out.problems.append((folder, f"instance {inst.name}: folder on drive {m.group(1).upper()}: "
                                                 "which is not in this image (or its volume was not recognised)"))
                    continue
                path = m.group(2).replace("\\", "/").strip("/")
                self._list_folder(hint, self.fs(hint), path, add, out)
        return out

    def _list_folder(self, hint: str, fs, folder: str, add, out: Listing) -> None:
        try:
            entry = fs.get(folder)
            if not entry.is_dir():
                return
            names = sorted(entry.listdir())
        except Exception:  # noqa: BLE001
            return
        for name in names:
            add(hint, f"{folder}/{name}")

    def _walk(self, hint: str, fs, top: str, add, out: Listing, limits: Limits) -> None:
        stack = [top]
        count = links = 0
        while stack:
            folder = stack.pop()
            try:
                entry = fs.get(folder) if folder else fs.get("/")
                children = sorted(entry.scandir(), key=lambda e: e.name) if hasattr(entry, "scandir") else []
            except Exception as exc:  # noqa: BLE001
                out.problems.append((self._display(hint, folder), f"cannot list folder: {type(exc).__name__}"))
                continue
            subdirs = []
            for child in children:
                name = child.name
                if name in (".", "..") or (not folder and name.startswith("$")):
                    continue  # NTFS metadata files
                path = f"{folder}/{name}" if folder else name
                try:
                    if child.is_symlink():
                        links += 1  # ordinary in a system (/bin, "Documents and Settings"): counted once
                        continue
                    if child.is_dir():
                        subdirs.append(path)
                        continue
                except Exception:  # noqa: BLE001, S112
                    continue
                count += 1
                if count > limits.max_walk_files:
                    out.problems.append((self._display(hint, ""), f"more than {limits.max_walk_files} files: "
                                                                  "cannot read the rest of the volume (file-count limit)"))
                    return
                add(hint, path)
            stack.extend(reversed(subdirs))
        if links:
            out.problems.append((self._display(hint, top), f"{links} symbolic link(s) or junction(s) not followed "
                                                           "(what they point to is read where it is)"))

    def find(self, where: str) -> Entry | None:
        """The file at a Windows path (``D:\\x\\y.dll``) or an inner path
        (``C:/x/y.dll``, ``vol2/x``, or a bare path on a one-volume disk)."""
        m = re.match(r"^([A-Za-z]):[\\/](.*)$", where)
        by_label = {lab: hint for hint, lab in self.labels.items() if lab}
        if m:
            hint = by_label.get(m.group(1).upper() + ":")
            path = m.group(2)
        else:
            first, _, rest = where.partition("/")
            hint = by_label.get(first)
            path = rest
            if hint is None and len(self.volumes) == 1 and not self.labels.get(self.volumes[0][0]):
                hint, path = self.volumes[0][0], where
        if hint is None:
            return None
        path = path.replace("\\", "/").strip("/")
        try:
            entry = self.fs(hint).get(path)
            if entry.is_symlink() or not entry.is_file():
                return None
            size = int(entry.stat().st_size)
        except Exception:  # noqa: BLE001
            return None
        label = self.labels.get(hint, "")
        return Entry(self._display(hint, path), hint + ("L" if label else ""), size)

    def bin_folders(self) -> list[str]:
        return [f for inst in (self.machine.instances if self.machine else []) for f in inst.bin_folders()]

    # -- reading ----------------------------------------------------------
    def open_member(self, inner: str, hint: str) -> BinaryIO:
        labelled = hint.endswith("L")
        volume = hint[:-1] if labelled else hint
        try:
            fs = self.fs(volume)
        except KeyError as exc:
            raise OSError(f"no volume {volume} in the image") from exc
        path = inner.split("/", 1)[1] if labelled and "/" in inner else inner
        try:
            return fs.get(path).open()
        except Exception as exc:  # noqa: BLE001
            raise OSError(f"cannot open {inner} in the image: {type(exc).__name__}: {exc}") from exc

    def open_random(self, inner: str, hint: str, limits: Limits) -> BinaryIO:
        return self.open_member(inner, hint)

    def close(self) -> None:
        try:
            self.disk.close()
        except Exception:  # noqa: BLE001, S110
            pass


def _open_container(target: str | BinaryIO, kind: str):
    from dissect.target.containers import ewf, qcow2, raw, split, vdi, vhd, vhdx, vmdk
    classes = {"ewf": ewf.EwfContainer, "vhdx": vhdx.VhdxContainer, "vhd": vhd.VhdContainer,
               "qcow2": qcow2.QCow2Container, "vmdk": vmdk.VmdkContainer, "vdi": vdi.VdiContainer,
               "raw": raw.RawContainer, "split": split.SplitContainer}
    if not isinstance(target, str):
        return classes[kind](target)
    from forensic.discovery import open_evidence  # read-only, O_NOATIME where permitted
    path = Path(target)
    if kind == "raw" and _SPLIT.match(path.name):
        siblings = split.find_files(path)
        if len(siblings) > 1:
            return split.SplitContainer([open_evidence(str(p)) for p in siblings])
    if kind == "ewf":
        from dissect.evidence.ewf import find_files
        return ewf.EwfContainer([open_evidence(str(p)) for p in find_files(path)])
    if kind in ("vmdk", "vhdx"):
        return classes[kind](path)  # a descriptor opens its extents, a VHDX its parent, by name
    return classes[kind](open_evidence(target))


def _small(fs) -> bool:
    """A volume with few files (NTFS: MFT records), walked whole."""
    try:
        return fs.ntfs.mft.get(0).size() // 1024 <= SMALL_VOLUME_RECORDS
    except Exception:  # noqa: BLE001 - not NTFS, or no MFT size: treat as large
        return False


def _exists(fs, path: str) -> bool:
    try:
        return fs.get(path).is_file()
    except Exception:  # noqa: BLE001
        return False


def _open(fs, path: str) -> BinaryIO | None:
    try:
        return fs.get(path).open()
    except Exception:  # noqa: BLE001
        return None


def _instance_log_folders(fs, base: str) -> list[str]:
    """``<base>/<instance folder>/MSSQL/Log`` for every instance folder."""
    out = []
    try:
        entry = fs.get(base)
        if not entry.is_dir():
            return out
        names = sorted(entry.listdir())
    except Exception:  # noqa: BLE001
        return out
    for name in names:
        for sub in ("MSSQL/Log", "MSSQL/LOG"):
            path = f"{base}/{name}/{sub}"
            try:
                if fs.get(path).is_dir():
                    out.append(path)
                    break
            except Exception:  # noqa: BLE001, S112
                continue
    return out

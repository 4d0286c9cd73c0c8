"""Collection archives: zip, tar (plain, gz, bz2, xz), single compressed
files (.gz, .bz2, .xz) and, when ``py7zr`` is installed, 7z.

Every reader lists regular-file members with their size and hands out
read-only streams of one member; nothing is ever extracted by name.
Hostile members (absolute names, ``..``, symlinks and hard links, device
files, duplicate names, encrypted or unsupported members, zip bombs) are
reported in the listing's ``problems`` and skipped.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from typing import BinaryIO

from forensic.sources.base import Dedupe, Entry, Limits, Listing, check_member_name
from forensic.sources.streams import COPY_CHUNK, Guarded, View, copy_head, random_access, spool

HEAD_BYTES = 4096

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"

_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def is_tar_header(block: bytes) -> bool:
    """A POSIX/GNU tar header (``ustar`` magic or a valid v7 checksum)."""
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    if stored < 0 or block[:100].strip(b"\x00") == b"":
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return stored == unsigned


def archive_kind(head: bytes) -> str | None:
    """``zip``, ``tar``, ``gz``, ``bz2``, ``xz`` or ``7z`` from the first bytes
    (the compressed kinds are told apart from ``tar.gz``... by the caller,
    which decompresses their first block)."""
    if head[:4] in ZIP_MAGICS:
        return "zip"
    if head.startswith(SEVENZIP_MAGIC):
        return "7z"
    if head.startswith(GZIP_MAGIC):
        return "gz"
    if head.startswith(BZIP2_MAGIC) and len(head) > 3 and head[3:4].isdigit():
        return "bz2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if is_tar_header(head[:512]):
        return "tar"
    return None


def decompressor(kind: str, raw: BinaryIO) -> BinaryIO:
    if kind == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    raise ValueError(kind)


def compressed_is_tar(kind: str, stream: BinaryIO) -> bool:
    """Does the compressed stream hold a tar archive?"""
    try:
        stream.seek(0)
        with decompressor(kind, stream) as d:
            return is_tar_header(copy_head(d, 512))
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
        return False
    finally:
        stream.seek(0)


def _stream_size(stream: BinaryIO) -> int:
    pos = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(pos)
    return end


# ---------------------------------------------------------------------------
# zip


class ZipArchive:
    kind = "zip"

    def __init__(self, stream: BinaryIO, name: str = ""):
        self.name = name
        self.stream = stream
        self.base = random_access(stream)
        self.zf = zipfile.ZipFile(stream)
        self.infos = self.zf.infolist()

    def list(self, limits: Limits) -> Listing:
        out = Listing()
        infos = self.infos
        out.members = len(infos)
        overlapping = _overlapping(infos)
        dedupe = Dedupe()
        total = 0
        for index, info in enumerate(infos):
            if index >= limits.max_members:
                out.problems.append(("", f"more than {limits.max_members} members: cannot read the rest (member-count limit)"))
                break
            raw = info.filename
            if info.is_dir():
                continue
            name, why = check_member_name(raw)
            label = name or raw
            if why:
                out.problems.append((raw, why))
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                out.problems.append((label, "symbolic link member: skipped (links are never followed)"))
                continue
            if mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
                out.problems.append((label, "not a regular file (device, FIFO or socket member): skipped"))
                continue
            if info.flag_bits & 0x1:
                out.problems.append((label, "encrypted member: skipped (no password is ever tried)"))
                continue
            if info.compress_type not in _ZIP_METHODS:
                out.problems.append((label, f"compression method {info.compress_type} not supported: skipped"))
                continue
            if index in overlapping:
                out.problems.append((label, "member data overlaps another member (a zip-bomb construction): skipped"))
                continue
            if (info.file_size > limits.ratio_min_size
                    and info.file_size > max(info.compress_size, 1) * limits.max_ratio):
                out.problems.append((label, f"compression ratio over {limits.max_ratio}:1 "
                                            f"({info.file_size} bytes from {info.compress_size}; zip bomb?): skipped"))
                continue
            if info.file_size > limits.max_member_size:
                out.problems.append((label, f"member larger than {limits.max_member_size} bytes: skipped"))
                continue
            dup = dedupe.check(name)
            if dup:
                out.problems.append((label, dup))
                continue
            if total + info.file_size > limits.max_total_size:
                out.problems.append((label, f"members add up to more than {limits.max_total_size} bytes "
                                            "(total-size limit): cannot read this and the following members"))
                break
            total += info.file_size
            out.entries.append(Entry(name, str(index), info.file_size))
        return out

    def _info(self, inner: str, hint: str) -> zipfile.ZipInfo:
        info = self.infos[int(hint)]
        if check_member_name(info.filename)[0] != inner:
            raise OSError(f"zip member {hint} is not {inner!r} (archive changed?)")
        return info

    def open_member(self, inner: str, hint: str) -> BinaryIO:
        info = self._info(inner, hint)
        try:
            return Guarded(self.zf.open(info), info.file_size, inner, cheap_seek=False)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as exc:
            raise OSError(f"cannot open {inner}: {exc}") from exc

    def open_random(self, inner: str, hint: str, limits: Limits) -> BinaryIO:
        """A member as a cheaply seekable stream: a window on the archive for a
        stored member, a bounded temporary copy for a compressed one."""
        info = self._info(inner, hint)
        if info.compress_type == zipfile.ZIP_STORED:
            local = self.base.read_at(info.header_offset, 30)
            if len(local) == 30 and local[:4] == b"PK\x03\x04":
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                return View(self.base, info.header_offset + 30 + name_len + extra_len, info.file_size, inner)
        with self.open_member(inner, hint) as member:
            return spool(member, limits.max_spool, inner)

    def close(self) -> None:
        self.zf.close()


def _overlapping(infos: list[zipfile.ZipInfo]) -> set[int]:
    """Members whose local data ranges overlap (same or crossing offsets)."""
    spans = sorted(((i.header_offset, i.header_offset + 30 + len(i.orig_filename.encode("utf-8", "replace"))
                     + i.compress_size, n) for n, i in enumerate(infos) if not i.is_dir()))
    bad: set[int] = set()
    end_before, owner = -1, None
    for start, end, n in spans:
        if start < end_before:
            bad.add(n)
            if owner is not None:
                bad.add(owner)
        if end > end_before:
            end_before, owner = end, n
    return bad


# ---------------------------------------------------------------------------
# tar


class TarArchive:
    """A tar archive, plain or compressed (``compression`` gz, bz2, xz).

    Members of a plain tar are windows on the archive (no copy).  A
    compressed tar cannot be entered in the middle: a member is reached by
    decompressing from the start (listing reads the whole archive once).  So
    that one process does this once per member (hashing, first pass and
    parse each open it), members up to :data:`MEMBER_COPY_MAX` are kept as
    anonymous temporary copies while the archive stays open in the process,
    at most :data:`COPIES_MAX` bytes in all (least recently used dropped).
    """

    MEMBER_COPY_MAX = 256 << 20
    COPIES_MAX = 512 << 20

    def __init__(self, stream: BinaryIO, compression: str | None = None, name: str = ""):
        self.stream = stream
        self.base = random_access(stream)
        self.size = _stream_size(stream)
        self.compression = compression
        self.name = name
        self.kind = "tar" if compression is None else f"tar.{compression}"
        self._copies: dict[str, View] = {}  # hint -> spooled member (insertion order = LRU)

    def _raw(self) -> BinaryIO:
        return View(self.base, 0, self.size, self.name)

    def _tar_stream(self) -> BinaryIO:
        raw = self._raw()
        return raw if self.compression is None else decompressor(self.compression, raw)

    def list(self, limits: Limits) -> Listing:
        out = Listing()
        dedupe = Dedupe()
        total = 0
        stream = self._tar_stream()
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            out.problems.append(("", f"cannot read the tar archive: {exc}"))
            return out
        try:
            while True:
                try:
                    info = tar.next()
                except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                    out.problems.append(("", f"cannot read past member {out.members}: {type(exc).__name__}: {exc}"))
                    break
                if info is None:
                    break
                out.members += 1
                if out.members > limits.max_members:
                    out.problems.append(("", f"more than {limits.max_members} members: cannot read the rest (member-count limit)"))
                    break
                entry = self._check(info, dedupe, out, limits)
                if entry is None:
                    continue
                if total + info.size > limits.max_total_size:
                    out.problems.append((entry.inner, f"members add up to more than {limits.max_total_size} bytes "
                                                      "(total-size limit): cannot read this and the following members"))
                    break
                if (self.compression and total + info.size > limits.ratio_min_size
                        and total + info.size > self.size * limits.max_ratio):
                    out.problems.append((entry.inner, f"the archive expands to more than {limits.max_ratio} times "
                                                      "its size (a compression bomb?): cannot read the rest"))
                    break
                total += info.size
                try:
                    member = tar.extractfile(info)
                    entry.head = member.read(HEAD_BYTES) if member is not None else b""
                except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                    out.problems.append((entry.inner, f"cannot read member: {exc}"))
                    continue
                out.entries.append(entry)
        finally:
            try:
                tar.close()
            except Exception:  # noqa: BLE001, S110
                pass
        return out

    @staticmethod
    def _check(info: tarfile.TarInfo, dedupe: Dedupe, out: Listing, limits: Limits) -> Entry | None:
        if info.isdir():
            return None
        name, why = check_member_name(info.name)
        label = name or info.name
        if why:
            out.problems.append((info.name, why))
            return None
        if info.issym() or info.islnk():
            out.problems.append((label, f"{'symbolic' if info.issym() else 'hard'} link member "
                                        f"(to {info.linkname!r}): skipped (links are never followed)"))
            return None
        if not info.isreg():
            out.problems.append((label, "not a regular file (device, FIFO or other special member): skipped"))
            return None
        if info.issparse():
            out.problems.append((label, "sparse member: not supported, skipped"))
            return None
        if info.size > limits.max_member_size:
            out.problems.append((label, f"member larger than {limits.max_member_size} bytes: skipped"))
            return None
        dup = dedupe.check(name)
        if dup:
            out.problems.append((label, dup))
            return None
        return Entry(name, f"{info.offset_data}+{info.size}", info.size)

    def open_member(self, inner: str, hint: str) -> BinaryIO:
        offset, size = (int(x) for x in hint.split("+"))
        if self.compression is None:
            return View(self.base, offset, size, inner)
        copy = self._copies.pop(hint, None)
        if copy is None and size <= self.MEMBER_COPY_MAX:
            with self._reach(inner, offset, size) as member:
                copy = spool(member, self.MEMBER_COPY_MAX, inner)
        if copy is not None:
            self._copies[hint] = copy
            while sum(c._size for c in self._copies.values()) > self.COPIES_MAX and len(self._copies) > 1:
                self._copies.pop(next(iter(self._copies)))
            return View(copy._base, 0, copy._size, inner)  # own position, shared copy
        return self._reach(inner, offset, size)

    def _reach(self, inner: str, offset: int, size: int) -> BinaryIO:
        stream = self._tar_stream()
        try:
            remaining = offset
            while remaining:
                block = stream.read(min(remaining, COPY_CHUNK))
                if not block:
                    raise OSError(f"cannot reach {inner}: archive ends early")
                remaining -= len(block)
        except (EOFError, lzma.LZMAError, zlib.error) as exc:
            raise OSError(f"cannot reach {inner}: {exc}") from exc
        return Guarded(stream, size, inner, base=offset, cheap_seek=False)

    def open_random(self, inner: str, hint: str, limits: Limits) -> BinaryIO:
        member = self.open_member(inner, hint)
        if self.compression is None or isinstance(member, View):
            return member
        with member:
            return spool(member, limits.max_spool, inner)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# a single compressed file (ERRORLOG.gz, Security.evtx.xz, ...)


class CompressedFile:
    """One compressed file; its member is the file name without the suffix."""

    SUFFIXES = {"gz": (".gz", ".gzip"), "bz2": (".bz2",), "xz": (".xz",)}

    def __init__(self, stream: BinaryIO, compression: str, name: str = ""):
        self.stream = stream
        self.base = random_access(stream)
        self.size = _stream_size(stream)
        self.compression = compression
        self.kind = compression
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        for suffix in self.SUFFIXES[compression]:
            if base.lower().endswith(suffix) and len(base) > len(suffix):
                base = base[:-len(suffix)]
                break
        else:
            base = base + ".decompressed"
        self.member_name = base

    def list(self, limits: Limits) -> Listing:
        out = Listing(members=1)
        stream = decompressor(self.compression, View(self.base, 0, self.size))
        total = 0
        head = b""
        try:
            while True:
                block = stream.read(COPY_CHUNK)
                if not block:
                    break
                if len(head) < HEAD_BYTES:
                    head += block[:HEAD_BYTES - len(head)]
                total += len(block)
                if total > limits.max_member_size or (
                        total > limits.ratio_min_size and total > self.size * limits.max_ratio):
                    out.problems.append((self.member_name, f"decompresses to more than {limits.max_ratio} times its "
                                                           "size or the member-size limit (a compression bomb?): "
                                                           "skipped"))
                    return out
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            out.problems.append((self.member_name, f"cannot decompress: {type(exc).__name__}: {exc}"))
            return out
        out.entries.append(Entry(self.member_name, "", total, head))
        return out

    def open_member(self, inner: str, hint: str) -> BinaryIO:
        return Guarded(decompressor(self.compression, View(self.base, 0, self.size)), None, inner, cheap_seek=False)

    def open_random(self, inner: str, hint: str, limits: Limits) -> BinaryIO:
        with self.open_member(inner, hint) as member:
            return spool(member, limits.max_spool, inner)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# 7z (optional: py7zr)


def sevenzip_available() -> bool:
    try:
        import py7zr  # noqa: F401
    except ImportError:
        return False
    return True


class _HeadIO:
    """py7zr writer that keeps the first bytes and counts the rest."""

    def __init__(self, limit: int):
        self.head = bytearray()
        self.limit = limit
        self.total = 0

    def write(self, s) -> int:
        if len(self.head) < self.limit:
            self.head += bytes(s[:self.limit - len(self.head)])
        self.total += len(s)
        return len(s)

    def read(self, size=None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        pass

    def size(self) -> int:
        return self.total

    def close(self) -> None:
        pass


class _SpoolIO(_HeadIO):
    """py7zr writer into an anonymous temporary file, bounded."""

    def __init__(self, limit: int):
        import tempfile
        super().__init__(0)
        self.tmp = tempfile.TemporaryFile(prefix="mssqlf-7z-")  # noqa: SIM115 - handed to a View
        self.max = limit

    def write(self, s) -> int:
        self.total += len(s)
        if self.total > self.max:
            raise OSError(f"7z member larger than the temporary-copy limit ({self.max} bytes)")
        self.tmp.write(s)
        return len(s)


class SevenZipArchive:
    kind = "7z"

    def __init__(self, stream: BinaryIO, name: str = ""):
        import py7zr
        self.stream = stream
        self.name = name
        self.szf = py7zr.SevenZipFile(stream, mode="r")
        self.infos = self.szf.list()

    def list(self, limits: Limits) -> Listing:
        import py7zr.io
        out = Listing(members=len(self.infos))
        if self.szf.needs_password():
            out.problems.append(("", "encrypted 7z archive: skipped (no password is ever tried)"))
            return out
        dedupe = Dedupe()
        wanted: dict[str, Entry] = {}
        total = 0
        for index, info in enumerate(self.infos):
            if info.is_directory:
                continue
            name, why = check_member_name(info.filename)
            label = name or info.filename
            if why:
                out.problems.append((info.filename, why))
                continue
            if getattr(info, "is_symlink", False):
                out.problems.append((label, "symbolic link member: skipped (links are never followed)"))
                continue
            size = int(info.uncompressed or 0)
            if size > limits.max_member_size:
                out.problems.append((label, f"member larger than {limits.max_member_size} bytes: skipped"))
                continue
            dup = dedupe.check(name)
            if dup:
                out.problems.append((label, dup))
                continue
            if total + size > limits.max_total_size:
                out.problems.append((label, "members add up to more than the total-size limit: cannot read the rest"))
                break
            total += size
            wanted[info.filename] = Entry(name, str(index), size)
        if total > limits.ratio_min_size and total > _stream_size(self.stream) * limits.max_ratio:
            out.problems.append(("", f"the archive expands to more than {limits.max_ratio} times its size "
                                     "(a compression bomb?): cannot read it"))
            return out
        heads: dict[str, _HeadIO] = {}

        class Factory(py7zr.io.WriterFactory):
            def create(self, filename: str):
                heads[filename] = _HeadIO(HEAD_BYTES)
                return heads[filename]

        try:
            self.szf.reset()
            self.szf.extract(targets=list(wanted), factory=Factory())
        except Exception as exc:  # noqa: BLE001 - py7zr raises many kinds on bad data
            out.problems.append(("", f"cannot decompress the 7z archive: {type(exc).__name__}: {exc}"))
            return out
        for filename, entry in wanted.items():
            got = heads.get(filename)
            entry.head = bytes(got.head) if got else b""
            out.entries.append(entry)
        return out

    def _extract(self, inner: str, hint: str, limit: int) -> View:
        import py7zr.io
        info = self.infos[int(hint)]
        if check_member_name(info.filename)[0] != inner:
            raise OSError(f"7z member {hint} is not {inner!r}")
        holder: dict[str, _SpoolIO] = {}

        class Factory(py7zr.io.WriterFactory):
            def create(self, filename: str):
                holder[filename] = _SpoolIO(limit)
                return holder[filename]

        try:
            self.szf.reset()
            self.szf.extract(targets=[info.filename], factory=Factory())
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise OSError(f"cannot extract {inner}: {type(exc).__name__}: {exc}") from exc
        got = holder.get(info.filename)
        if got is None:
            raise OSError(f"cannot extract {inner}: not produced by the archive")
        got.tmp.flush()
        return View(random_access(got.tmp), 0, got.total, inner)

    def open_member(self, inner: str, hint: str) -> BinaryIO:
        from forensic.sources.base import DEFAULT_LIMITS
        return self._extract(inner, hint, DEFAULT_LIMITS.max_spool)

    def open_random(self, inner: str, hint: str, limits: Limits) -> BinaryIO:
        return self._extract(inner, hint, limits.max_spool)

    def close(self) -> None:
        self.szf.close()


def open_archive(kind: str, stream: BinaryIO, name: str = ""):
    """An archive reader of ``kind`` over a seekable stream."""
    try:
        if kind == "zip":
            return ZipArchive(stream, name)
        if kind == "tar":
            return TarArchive(stream, None, name)
        if kind.startswith("tar."):
            return TarArchive(stream, kind[4:], name)
        if kind in ("gz", "bz2", "xz"):
            return CompressedFile(stream, kind, name)
        if kind == "7z":
            return SevenZipArchive(stream, name)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, ValueError,
            KeyError, IndexError, struct.error) as exc:
        raise OSError(f"cannot open {kind} archive: {type(exc).__name__}: {exc or 'cut off or damaged data'}") from exc
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - third-party readers (py7zr) raise their own kinds
        raise OSError(f"cannot open {kind} archive: {type(exc).__name__}: {exc or 'cut off or damaged data'}") from exc
    raise ValueError(f"unknown archive kind {kind}")


def sniff_archive(stream: BinaryIO, head: bytes) -> str | None:
    """The archive kind of a seekable stream (``tar.gz`` etc. resolved)."""
    kind = archive_kind(head)
    if kind in ("gz", "bz2", "xz") and compressed_is_tar(kind, stream):
        return f"tar.{kind}"
    return kind


__all__ = ["ZipArchive", "TarArchive", "CompressedFile", "SevenZipArchive", "open_archive", "sniff_archive",
           "archive_kind", "sevenzip_available"]

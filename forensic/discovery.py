"""Finding the inputs: walk the given paths, recognise each file by content.

Folders are walked recursively without following symlinked directories into
loops; FIFOs, sockets, devices and unreadable files are skipped with a
warning.  Symlinks are followed only while they stay inside the command-line
PATH they were found under: one that points outside (an absolute link in a
mounted image points into the analyst's own system) is reported and not
read.  Each regular file's first bytes go through the parser registry's
``sniff``; files that no parser claims are counted as skipped, never an error.

Evidence is only ever opened for reading (:func:`open_evidence`: read-only,
``O_NOATIME`` where permitted, non-blocking so that a FIFO swapped in after
the walk cannot hang the run, and refused unless it is a regular file).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import parsers
from forensic import sources
from parsers.base import SNIFF_BYTES


def _open_fd(path: str) -> int:
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    fd = -1
    if noatime:
        try:
            fd = os.open(path, flags | noatime)
        except OSError:
            fd = -1  # O_NOATIME needs ownership of the file (or CAP_FOWNER); fall back
    if fd < 0:
        fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"not a regular file (mode {stat.filemode(mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_evidence(path: str):
    """Open evidence read-only, without updating its access time where allowed."""
    if "\0" in path:  # a member of an archive or disk image (forensic.sources)
        from forensic.sources import open_virtual
        return open_virtual(path)
    return os.fdopen(_open_fd(path), "rb", buffering=1 << 20)


HASH_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(HASH_CHUNK))


def sha256_evidence(path: str) -> str:
    """SHA-256 of an evidence file, streamed in fixed chunks (flat memory).

    Holes of sparse files (``SEEK_DATA``/``SEEK_HOLE`` where the system has
    them) are hashed as the zeros they read as, without reading them: a
    multi-gigabyte sparse or preallocated file costs hashing time only.
    """
    if "\0" in path:  # a member of an archive or disk image
        from forensic.sources import sha256_virtual
        return sha256_virtual(path)
    digest = hashlib.sha256()
    fd = _open_fd(path)
    try:
        size = os.fstat(fd).st_size
        view = memoryview(bytearray(HASH_CHUNK))
        pos = 0
        sparse = hasattr(os, "SEEK_DATA") and size > HASH_CHUNK
        while True:
            end = None  # end of the data region being read (None: read to EOF)
            if sparse:
                try:
                    data_at = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError as exc:
                    # ENXIO: nothing but a hole up to the end; else not supported here
                    data_at = max(pos, size) if exc.errno == errno.ENXIO else pos
                    sparse = exc.errno == errno.ENXIO
                while pos < data_at:  # the hole reads as zeros
                    n = min(HASH_CHUNK, data_at - pos)
                    digest.update(_ZEROS[:n])
                    pos += n
                if sparse:
                    try:
                        end = os.lseek(fd, pos, os.SEEK_HOLE)
                    except OSError:
                        end = None
                os.lseek(fd, pos, os.SEEK_SET)
            while end is None or pos < end:
                want = HASH_CHUNK if end is None else min(HASH_CHUNK, end - pos)
                n = os.readv(fd, [view[:want]])
                if not n:
                    return digest.hexdigest()
                digest.update(view[:n])
                pos += n
    finally:
        os.close(fd)


@dataclass(slots=True)
class InputFile:
    """One recognised (or skipped) file."""

    path: str  # real path on disk
    display_path: str  # as derived from the command line
    root: str  # the command-line PATH it was found under
    size: int
    parser_name: str | None
    artifact_type: str | None


@dataclass(slots=True)
class DiscoveryResult:
    inputs: list[InputFile] = field(default_factory=list)
    skipped: list[InputFile] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    containers: list = field(default_factory=list)  # forensic.sources.ContainerRecord


def _walk(root: str, result: DiscoveryResult) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under ``root`` (a file or folder), in a stable order."""
    try:
        st = os.stat(root)
    except OSError as exc:
        result.problems.append((root, f"cannot access: {exc.strerror or exc}"))
        return
    if stat.S_ISREG(st.st_mode):
        yield root, st
        return
    if not stat.S_ISDIR(st.st_mode):
        result.problems.append((root, "not a regular file or folder (FIFO, socket or device): skipped"))
        return
    root_real = os.path.realpath(root)
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            fst = os.stat(folder)
        except OSError as exc:
            result.problems.append((folder, f"cannot access: {exc.strerror or exc}"))
            continue
        key = (fst.st_dev, fst.st_ino)
        if key in seen_dirs:
            result.problems.append((folder, "symlink loop: folder already visited, skipped"))
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            result.problems.append((folder, f"cannot list folder: {exc.strerror or exc}"))
            continue
        subdirs = []
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not _inside(target, root_real):
                    result.problems.append((entry.path, f"symlink to {target!r} outside the evidence path: "
                                                        "not followed"))
                    continue
            try:
                est = entry.stat(follow_symlinks=True)
            except OSError as exc:
                what = "broken symlink" if entry.is_symlink() else (exc.strerror or str(exc))
                result.problems.append((entry.path, f"cannot access: {what}"))
                continue
            if stat.S_ISDIR(est.st_mode):
                subdirs.append(entry.path)
            elif stat.S_ISREG(est.st_mode):
                yield entry.path, est
            else:
                result.problems.append((entry.path, "not a regular file (FIFO, socket or device): skipped"))
        stack.extend(reversed(subdirs))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _display(root: str, path: str) -> str:
    return path if path == root else os.path.join(root, os.path.relpath(path, root))


def discover(paths: list[str]) -> DiscoveryResult:
    result = DiscoveryResult()
    seen: set[tuple[int, int]] = set()
    for root in paths:
        for path, st in _walk(root, result):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue  # the same file reached twice (overlapping PATHs, hard links)
            seen.add(key)
            display = _display(root, path)
            try:
                with open_evidence(path) as fh:
                    head = fh.read(SNIFF_BYTES)
            except OSError as exc:
                result.problems.append((display, f"cannot read: {exc.strerror or exc}"))
                continue
            kind, part = sources.detect(path, head) if head else (None, None)
            if kind is not None:  # an archive or disk image: its members are the inputs
                sources.expand(result, root, path, display, st.st_size, kind, part)
                continue
            parser = parsers.sniff(head, Path(path).name) if head else None
            item = InputFile(path, display, root, st.st_size,
                             parser.name if parser else None, parser.artifact_type if parser else None)
            (result.inputs if parser else result.skipped).append(item)
    return result

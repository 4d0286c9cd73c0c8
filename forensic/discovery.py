"""Finding the inputs: walk the given paths, recognise each file by content.

Folders are walked recursively without following symlinked directories into
loops; FIFOs, sockets, devices and unreadable files are skipped with a
warning.  Each regular file's first bytes go through the parser registry's
``sniff``; files that no parser claims are counted as skipped, never an error.
Evidence is only ever opened for reading.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import parsers
from parsers.base import SNIFF_BYTES


def open_evidence(path: str):
    """Open evidence read-only, without updating its access time where allowed."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            fd = os.open(path, flags | noatime)
            return os.fdopen(fd, "rb", buffering=1 << 20)
        except PermissionError:
            pass  # O_NOATIME needs ownership of the file; fall back
        except OSError:
            pass
    fd = os.open(path, flags)
    return os.fdopen(fd, "rb", buffering=1 << 20)


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
            parser = parsers.sniff(head, Path(path).name) if head else None
            item = InputFile(path, display, root, st.st_size,
                             parser.name if parser else None, parser.artifact_type if parser else None)
            (result.inputs if parser else result.skipped).append(item)
    return result

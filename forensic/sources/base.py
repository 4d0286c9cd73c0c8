"""Shared pieces of the container readers: limits, entries, member-name checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile or absurd container from taking the run down.

    ``max_ratio`` applies to members (zip) or whole compressed streams (tar.gz,
    .gz) larger than ``ratio_min_size``: real logs compress 5-50x, an empty
    pre-allocated event log a few hundred times; a zip bomb millions of times.
    """

    max_depth: int = 4  # containers inside containers
    max_ratio: int = 1000
    ratio_min_size: int = 16 * MiB
    max_member_size: int = 64 * GiB
    max_total_size: int = 1 * TiB  # declared sizes of the members of one container
    max_members: int = 1_000_000  # entries listed in one container
    max_spool: int = 16 * GiB  # one temporary copy (nested image, 7z member)
    max_walk_files: int = 500_000  # files listed when a volume is walked whole


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Entry:
    """One regular-file member of a container."""

    inner: str  # display path inside the container, "/"-separated, no leading "/"
    hint: str  # container-specific locator (offset, volume index, ...); no "/" in it
    size: int
    head: bytes | None = None  # first bytes, when the lister already has them (7z)


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (inner path, message)
    members: int = 0  # entries seen, of any kind
    facts: dict = field(default_factory=dict)


class Container(Protocol):
    kind: str

    def list(self, limits: Limits) -> Listing: ...

    def open_member(self, inner: str, hint: str) -> BinaryIO: ...

    def close(self) -> None: ...


_DRIVE = re.compile(r"^[A-Za-z]:")
FORBIDDEN_CHARS = ("\x00", "\x01")


def check_member_name(raw: str) -> tuple[str | None, str | None]:
    """``(clean name, None)`` or ``(None, reason)`` for a member name.

    Backslashes count as separators (zips written on Windows use them).
    Absolute names, drive letters, UNC names and ``..`` components are
    refused: nothing is ever written by a member's name, but an archive that
    carries such names was built to attack an extractor, and the analyst must
    hear of it.
    """
    if any(ch in raw for ch in FORBIDDEN_CHARS):
        return None, "member name contains control characters: skipped"
    name = raw.replace("\\", "/")
    if name.startswith("/"):
        return None, "absolute member name: skipped"
    if _DRIVE.match(name):
        return None, "member name with a drive letter (absolute path): skipped"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None, "path traversal ('..') in member name: skipped"
    if not parts:
        return None, "empty member name: skipped"
    return "/".join(parts), None


class Dedupe:
    """Duplicate member names (also names differing only in case, which
    collide when extracted on Windows): the first is read, later ones are
    reported and skipped."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def check(self, name: str) -> str | None:
        key = name.casefold()
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = name
            return None
        if first == name:
            return "duplicate member name: only the first member of that name is read; this one is skipped"
        return f"member name differs only in case from {first!r} (they collide when extracted): skipped"

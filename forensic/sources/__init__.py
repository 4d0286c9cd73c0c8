"""Evidence inside containers: collection archives and disk images.

Discovery hands every file whose first bytes say "container" to
:func:`expand`, which lists the container's members (recursing into nested
containers), sniffs each member with the parser registry and adds the
artifacts to the discovery result.  An input inside a container keeps

* ``display_path`` = container display path + ``!`` + inner path
  (``case.zip!C/Program Files/.../ERRORLOG``; nested: ``disk.vhdx!C/kape.zip!...``);
* ``path`` = a *virtual path*: the container's real path, then for each
  level ``\\0`` + container kind + ``\\1`` + inner path + ``\\1`` + locator.
  NUL never occurs in a real path, so virtual and real paths never collide;
  the inner path comes last but one so that ``os.path.dirname`` still gives
  "the same folder" inside the container.

A virtual path is all a worker needs: :func:`open_virtual` (called by
:func:`forensic.discovery.open_evidence`) reopens the container chain in
that process (kept in a small per-process cache) and returns a read-only
stream of the member.  Tasks stay small and picklable.

Nothing is extracted: members are streamed from the archive or the image.
Temporary copies are made only where a reader must seek in something it
cannot seek cheaply (a disk image or archive stored compressed inside an
archive, a registry hive or 7z member); they are anonymous temporary files
(no name on disk), bounded by :class:`~forensic.sources.base.Limits`, and
disappear when closed or when the process ends.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from forensic.sources.base import DEFAULT_LIMITS, Limits
from forensic.sources.streams import Guarded, copy_head

SEP = "\x00"
FIELD = "\x01"
HEAD_BYTES = 4096
ARCHIVE_KINDS = ("zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "gz", "bz2", "xz", "7z")
IMAGE_KINDS = ("ewf", "raw", "vhd", "vhdx", "vmdk", "qcow2", "vdi")


@dataclass
class ContainerRecord:
    """One container met during discovery (for hashing and the manifest).

    It quacks like :class:`forensic.discovery.InputFile` (``path``,
    ``display_path``, ``root``, ``size``, ``parser_name``) so that the
    engine's first pass hashes it like any input.
    """

    path: str
    display_path: str
    root: str
    size: int
    kind: str
    parser_name: str | None = None
    artifact_type: str | None = None
    parent: str | None = None  # display path of the enclosing container
    part_of: str | None = None  # for a segment / extent: the image it belongs to
    members: int = 0
    artifacts: int = 0
    skipped: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    machine: Any = None  # windows.MachineInfo
    dlls: list[dict[str, Any]] = field(default_factory=list)  # extended-procedure DLLs (forensic.sources.dlls)

    def manifest_entry(self, sha256: str | None) -> dict[str, Any]:
        entry = {"path": self.display_path, "kind": self.kind, "size": self.size, "sha256": sha256,
                 "parent": self.parent, "members": self.members, "artifacts": self.artifacts,
                 "skipped_members": self.skipped, "problems": self.problems}
        if self.part_of:
            entry["part_of"] = self.part_of
        if self.machine is not None:
            entry["registry"] = self.machine.as_dict()
        if self.dlls:
            entry["extended_procedure_dlls"] = [{k: v for k, v in d.items() if k != "member"} for d in self.dlls]
        return entry


def describe(exc: BaseException) -> str:
    """An exception for a problem message (some libraries raise empty ones)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else f"{type(exc).__name__} (cut off or damaged data)"


def is_virtual(path: str) -> bool:
    return SEP in path


def split_virtual(path: str) -> tuple[str, list[tuple[str, str, str]]]:
    """``(real path, [(container kind, inner path, locator), ...])``."""
    real, *segs = path.split(SEP)
    out = []
    for seg in segs:
        kind, inner, hint = seg.split(FIELD)
        out.append((kind, inner, hint))
    return real, out


def member_path(container_path: str, kind: str, inner: str, hint: str) -> str:
    return f"{container_path}{SEP}{kind}{FIELD}{inner}{FIELD}{hint}"


# ---------------------------------------------------------------------------
# opening containers (per-process cache)

_CACHE: OrderedDict[str, Any] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_PID = os.getpid()


def _cached(key: str, make):
    global _CACHE_PID
    if _CACHE_PID != os.getpid():
        # A forked worker: the parent's open containers share file offsets
        # with it (one open file description); open its own.
        _CACHE.clear()
        _CACHE_PID = os.getpid()
    obj = _CACHE.get(key)
    if obj is not None:
        _CACHE.move_to_end(key)
        return obj
    obj = make()
    _CACHE[key] = obj
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)  # dropped, not closed: open member streams keep what they need
    return obj


def clear_cache() -> None:
    _CACHE.clear()


def _raw_file(path: str) -> BinaryIO:
    from forensic.discovery import open_evidence
    return open_evidence(path)


def open_container(kind: str, source: str | BinaryIO, name: str = ""):
    """A container reader of ``kind`` over a real path or a seekable stream."""
    if kind in IMAGE_KINDS:
        from forensic.sources.images import DiskImage, images_available
        if not images_available():
            from forensic.sources.images import IMAGES_EXTRA_HINT
            raise ImportError(IMAGES_EXTRA_HINT)
        try:
            return DiskImage(source, kind, name)
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - dissect raises its own kinds
            raise OSError(f"cannot open the {kind} image: {describe(exc)}") from exc
    from forensic.sources.archives import open_archive, sevenzip_available
    if kind == "7z" and not sevenzip_available():
        raise ImportError("7z archives need the optional py7zr package: pip install 'mssql-forensic[7z]'")
    stream = _raw_file(source) if isinstance(source, str) else source
    return open_archive(kind, stream, name)


def _container_at(real: str, segs: list[tuple[str, str, str]], limits: Limits):
    """The container holding the member named by the last of ``segs``."""
    kind0 = segs[0][0]
    key = real + SEP + kind0
    container = _cached(key, lambda: open_container(kind0, real, real))
    for i in range(1, len(segs)):
        parent = container
        pkind, pinner, phint = segs[i - 1]
        kind = segs[i][0]
        key = key + FIELD + pinner + FIELD + phint + SEP + kind
        container = _cached(key, lambda p=parent, n=pinner, h=phint, k=kind:
                            open_container(k, p.open_random(n, h, limits), n))
    return container


def open_virtual(path: str, limits: Limits = DEFAULT_LIMITS) -> BinaryIO:
    """A read-only stream of the member a virtual path names (``OSError`` when
    it cannot be read, whatever the container library raised)."""
    real, segs = split_virtual(path)
    try:
        container = _container_at(real, segs, limits)
        _kind, inner, hint = segs[-1]
        stream = container.open_member(inner, hint)
    except OSError:
        raise
    except ImportError as exc:
        raise OSError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a damaged container must never crash a worker
        raise OSError(f"cannot open {segs[-1][1]}: {describe(exc)}") from exc
    return stream if isinstance(stream, Guarded) else Guarded(stream, None, segs[-1][1])


def sha256_virtual(path: str) -> str:
    """SHA-256 of a member, streamed."""
    import hashlib
    digest = hashlib.sha256()
    with open_virtual(path) as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# discovery


def detect(path: str, head: bytes) -> tuple[str | None, str | None]:
    """``(container kind, part_of)`` of a file on disk; both None for an
    ordinary file.  ``part_of`` names the image a segment or extent belongs to."""
    from forensic.sources.archives import archive_kind, compressed_is_tar
    from forensic.sources.images import image_kind, part_of
    kind = archive_kind(head)
    if kind in ("gz", "bz2", "xz"):
        try:
            with _raw_file(path) as fh:
                if compressed_is_tar(kind, fh):
                    kind = f"tar.{kind}"
        except OSError:
            pass
    if kind is not None:
        return kind, None
    kind = image_kind(head, os.path.basename(path))
    if kind == "raw":
        # A fixed VHD is a raw disk with a footer at its end.
        try:
            with _raw_file(path) as fh:
                size = fh.seek(0, 2)
                if size >= 1024:
                    fh.seek(size - 512)
                    if fh.read(8) == b"conectix":
                        kind = "vhd"
        except OSError:
            pass
    owner = part_of(path, head, kind)
    if owner is not None:
        return kind or "raw", owner
    return kind, None


def expand(result, root: str, path: str, display: str, size: int, kind: str, part: str | None = None,
           limits: Limits = DEFAULT_LIMITS) -> None:
    """Add a container found on disk (and everything in it) to a discovery result."""
    record = ContainerRecord(path, display, root, size, kind)
    result.containers.append(record)
    if part is not None:
        record.part_of = part
        record.kind = f"{kind} segment"
        return
    try:
        container = _cached(path + SEP + kind, lambda: open_container(kind, path, display))
    except ImportError as exc:
        _problem(result, record, display, f"cannot open container: {exc}")
        return
    except OSError as exc:
        _problem(result, record, display, f"cannot open container: {exc}")
        return
    _expand_container(result, record, container, path, display, display, 0, limits)


def _problem(result, record: ContainerRecord, where: str, message: str) -> None:
    result.problems.append((where, message))
    record.problems.append({"path": where, "message": message})


def _expand_container(result, record: ContainerRecord, container, vpath: str, display: str, root: str,
                      depth: int, limits: Limits) -> None:
    import parsers
    from forensic.discovery import InputFile
    from forensic.sources.archives import sniff_archive
    from forensic.sources.images import image_kind

    try:
        listing = container.list(limits)
    except Exception as exc:  # noqa: BLE001 - a damaged container is reported, never a crash
        _problem(result, record, display, f"cannot list container: {describe(exc)}")
        return
    record.members = listing.members or len(listing.entries)
    for inner, message in listing.problems:
        _problem(result, record, f"{display}!{inner}" if inner else display, message)
    record.machine = getattr(container, "machine", None) or _archive_machine(container, listing, display, limits)
    if record.machine is not None:
        for note in record.machine.notes:
            record.problems.append({"path": display, "message": note})
    kind = container.kind
    errorlogs: list[tuple[Any, str]] = []
    added: set[str] = set()
    for entry in listing.entries:
        if FIELD in entry.inner or SEP in entry.inner:
            _problem(result, record, f"{display}!{entry.inner!r}", "member name contains control characters: skipped")
            continue
        mpath = member_path(vpath, kind, entry.inner, entry.hint)
        mdisplay = f"{display}!{entry.inner}"
        head = entry.head
        if head is None:
            try:
                with container.open_member(entry.inner, entry.hint) as fh:
                    head = copy_head(fh, HEAD_BYTES)
            except Exception as exc:  # noqa: BLE001
                _problem(result, record, mdisplay, f"cannot read member: {describe(exc)}")
                continue
        base = entry.inner.rsplit("/", 1)[-1]
        nested = _nested_kind(head, base, image_kind)
        if nested is not None:
            if depth + 1 >= limits.max_depth:
                _problem(result, record, mdisplay, f"container nested more than {limits.max_depth} deep: not opened")
                continue
            try:
                stream = container.open_random(entry.inner, entry.hint, limits)
                if nested in ("gz", "bz2", "xz", "tar"):
                    nested = sniff_archive(stream, head) or nested
                child = open_container(nested, stream, entry.inner)
            except ImportError as exc:
                _problem(result, record, mdisplay, f"cannot open nested container: {exc}")
                nested = None
            except Exception as exc:  # noqa: BLE001
                _problem(result, record, mdisplay, f"cannot open nested container: {describe(exc)}")
                nested = None
            if nested is not None:
                _cached(mpath + SEP + nested, lambda c=child: c)
                sub = ContainerRecord(mpath, mdisplay, root, entry.size, nested, parent=display)
                result.containers.append(sub)
                _expand_container(result, sub, child, mpath, mdisplay, root, depth + 1, limits)
                record.artifacts += sub.artifacts
                continue
        parser = parsers.sniff(head, base) if head else None
        item = InputFile(mpath, mdisplay, root, entry.size, parser.name if parser else None,
                         parser.artifact_type if parser else None)
        added.add(mpath)
        if parser:
            result.inputs.append(item)
            record.artifacts += 1
            if parser.name == "errorlog":
                errorlogs.append((entry, mdisplay))
        else:
            result.skipped.append(item)
            record.skipped += 1
    if errorlogs:
        _find_dlls(result, record, container, listing, errorlogs, added, vpath, display, root)


def _find_dlls(result, record: ContainerRecord, container, listing, errorlogs, added: set[str], vpath: str,
               display: str, root: str) -> None:
    """Extended-procedure DLLs the ERRORLOGs name, looked up in the container."""
    from forensic.discovery import InputFile
    from forensic.sources import dlls
    named: dict[str, tuple[Any, str]] = {}
    for entry, mdisplay in errorlogs:
        try:
            with container.open_member(entry.inner, entry.hint) as fh:
                for dll in sorted(dlls.dlls_in_errorlog(fh)):
                    named.setdefault(dll.lower(), (dll, entry, mdisplay))
        except Exception:  # noqa: BLE001, S112 - the parse reports an unreadable ERRORLOG
            continue
    for dll, entry, ref in named.values():
        found = None
        if hasattr(container, "find"):  # a disk image: where SQL Server loads it from
            searched = dlls.windows_candidates(dll, entry.inner, container.bin_folders())
            for where in searched:
                found = container.find(where)
                if found is not None:
                    break
        else:  # an archive: any member of that name
            base = dll.replace("\\", "/").rsplit("/", 1)[-1].casefold()
            searched = [f"any member named {base}"]
            found = next((e for e in listing.entries if e.inner.rsplit("/", 1)[-1].casefold() == base), None)
        info = dlls.record(dll, ref, f"{display}!{found.inner}" if found else None, searched)
        if found is not None:
            mpath = member_path(vpath, container.kind, found.inner, found.hint)
            info["member"] = mpath
            if mpath not in added:
                added.add(mpath)
                result.skipped.append(InputFile(mpath, f"{display}!{found.inner}", root, found.size, None, None))
                record.skipped += 1
        record.dlls.append(info)


def _nested_kind(head: bytes, name: str, image_kind) -> str | None:
    from forensic.sources.archives import archive_kind
    kind = archive_kind(head)
    if kind is not None:
        return kind
    if name.startswith("$"):
        return None  # NTFS metadata ($Boot starts like a volume)
    return image_kind(head, name)


def _archive_machine(container, listing, display: str, limits: Limits):
    """Registry hives inside an archive (KAPE / Velociraptor collections)."""
    from forensic.sources.windows import hive_role, read_machine
    hives: dict[str, Any] = {}
    for entry in listing.entries:
        role = hive_role(entry.inner)
        if role and role not in hives:
            hives[role] = entry
    if not hives:
        return None
    streams: dict[str, Any] = {}
    for role, entry in hives.items():
        try:
            streams[role] = container.open_random(entry.inner, entry.hint, limits)
        except Exception:  # noqa: BLE001
            streams[role] = None
    sysent, softent = hives.get("system"), hives.get("software")
    return read_machine(streams.get("system"), f"{display}!{sysent.inner}" if sysent else None,
                        streams.get("software"), f"{display}!{softent.inner}" if softent else None)


# ---------------------------------------------------------------------------
# after the first pass


def apply_machine_evidence(found, evidence: dict) -> None:
    """Give every input inside a container the time-zone anchors of that
    container's registry (SYSTEM hive), so that each instance group built
    from them has the machine's zone as evidence (``tz_source`` ``registry``)."""
    from forensic.model import InputEvidence
    machines = [(c.path, c.machine) for c in getattr(found, "containers", [])
                if c.machine is not None and c.machine.anchors]
    if not machines:
        return
    for item in found.inputs:
        for cpath, machine in machines:
            if item.path.startswith(cpath + SEP):
                ev = evidence.get(item.path)
                if ev is None:
                    ev = evidence[item.path] = InputEvidence()
                ev.anchors = list(ev.anchors) + list(machine.anchors)


def containers_manifest(found, prescan: dict) -> list[dict[str, Any]]:
    out = []
    for c in getattr(found, "containers", []):
        pre = prescan.get(c.path)
        entry = c.manifest_entry(pre.sha256 if pre else None)
        for dll, info in zip(entry.get("extended_procedure_dlls", []), c.dlls, strict=False):
            member = prescan.get(info.get("member", ""))
            dll["sha256"] = member.sha256 if member else None
        out.append(entry)
    return out

"""Read-only stream helpers for evidence inside containers.

* :class:`View` - a seekable window ``[offset, offset+size)`` over a shared
  random-access base (a file descriptor read with ``os.pread``, or any
  seekable stream read under a lock); many views over one base read
  independently.  Used for uncompressed tar members, stored zip members and
  spooled copies.
* :class:`Guarded` - wraps a member stream so that whatever the container
  library raises on damaged data (``BadZipFile``, ``zlib.error``,
  ``EOFError``, ...) reaches the parsers and the engine as ``OSError``, and
  never more than the declared size is returned.
* :func:`spool` - an anonymous temporary file (no name on disk, freed by the
  operating system when closed or when the process dies) holding a copy of a
  stream, for the few readers that must seek (a disk image or archive nested
  in a compressed member, a registry hive in a zip).  Bounded.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from typing import BinaryIO

COPY_CHUNK = 1 << 20


class SpoolLimitExceeded(OSError):
    """A temporary copy would exceed its bound."""


class _FdBase:
    """Random access through ``os.pread`` on one descriptor (thread-safe)."""

    def __init__(self, fd: int, owner: object = None):
        self.fd = fd
        self.owner = owner  # keeps the file object that owns fd alive

    def read_at(self, pos: int, n: int) -> bytes:
        return os.pread(self.fd, n, pos)


class _StreamBase:
    """Random access through seek+read on a shared stream, under a lock."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.lock = threading.Lock()

    def read_at(self, pos: int, n: int) -> bytes:
        with self.lock:
            self.stream.seek(pos)
            out = bytearray()
            while len(out) < n:
                block = self.stream.read(n - len(out))
                if not block:
                    break
                out += block
            return bytes(out)


def random_access(stream: BinaryIO):
    """A shared random-access base for ``stream`` (pread when it is a real file)."""
    try:
        fd = stream.fileno()
        os.pread(fd, 1, 0)
        return _FdBase(fd, stream)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return _StreamBase(stream)


class View(io.RawIOBase):
    """A read-only, seekable window over a random-access base."""

    def __init__(self, base, offset: int, size: int, name: str = ""):
        super().__init__()
        self._base = base
        self._offset = offset
        self._size = max(0, size)
        self._pos = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._base.read_at(self._offset + self._pos, n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = min(n, self._size - self._pos)
        if n <= 0:
            return b""
        data = self._base.read_at(self._offset + self._pos, n)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)


class Guarded(io.RawIOBase):
    """A member stream whose library errors surface as ``OSError``.

    At most ``size`` bytes are returned (``None``: no bound).  ``closers``
    are closed with the stream (the container objects opened for it).
    """

    def __init__(self, inner: BinaryIO, size: int | None, name: str = "", closers: tuple = (), base: int = 0,
                 cheap_seek: bool | None = None):
        super().__init__()
        # False for decompressing streams: they can seek, but only by reading
        # again from the start; readers that need random access (the Rust
        # EVTX engine) then make their own temporary copy instead.
        self._cheap_seek = cheap_seek
        self._inner = inner
        self._size = size
        self._pos = 0
        self._base = base  # where the member starts in ``inner``
        self._closers = closers
        self.name = name

    def _wrap(self, exc: BaseException) -> OSError:
        if isinstance(exc, OSError):
            return exc
        return OSError(f"cannot read {self.name or 'member'}: {type(exc).__name__}: {exc}")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        if self._cheap_seek is not None:
            return self._cheap_seek
        try:
            return bool(self._inner.seekable())
        except Exception:  # noqa: BLE001
            return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2:
            if self._size is None:
                try:
                    self._pos = self._inner.seek(offset, 2) - self._base
                except Exception as exc:  # noqa: BLE001
                    raise self._wrap(exc) from exc
                return self._pos
            offset, whence = self._size + offset, 0
        elif whence == 1:
            offset, whence = self._pos + offset, 0
        offset = max(0, offset)
        try:
            self._pos = self._inner.seek(self._base + offset, 0) - self._base
        except Exception as exc:  # noqa: BLE001
            raise self._wrap(exc) from exc
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = (self._size - self._pos) if self._size is not None else -1
        elif self._size is not None:
            n = min(n, self._size - self._pos)
        if n == 0:
            return b""
        try:
            data = self._inner.read(n)
        except Exception as exc:  # noqa: BLE001 - damaged member data
            raise self._wrap(exc) from exc
        if self._size is not None and len(data) > self._size - self._pos:
            data = data[:self._size - self._pos]
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        chunks = []
        while block := self.read(COPY_CHUNK):
            chunks.append(block)
        return b"".join(chunks)

    def close(self) -> None:
        if not self.closed:
            for obj in (self._inner, *self._closers):
                try:
                    obj.close()
                except Exception:  # noqa: BLE001, S110 - closing is best effort
                    pass
        super().close()


def spool(stream: BinaryIO, limit: int, name: str = "") -> View:
    """Copy ``stream`` into an anonymous temporary file; a :class:`View` of it.

    The copy has no name on disk (``tempfile.TemporaryFile``): the operating
    system frees it when the last handle closes or the process ends.  More
    than ``limit`` bytes raise :class:`SpoolLimitExceeded`.
    """
    tmp = tempfile.TemporaryFile(prefix="mssqlf-spool-")  # noqa: SIM115 - owned by the View
    total = 0
    try:
        while True:
            block = stream.read(COPY_CHUNK)
            if not block:
                break
            total += len(block)
            if total > limit:
                raise SpoolLimitExceeded(
                    f"{name or 'member'} is larger than the temporary-copy limit ({limit} bytes)")
            tmp.write(block)
        tmp.flush()
    except BaseException:
        tmp.close()
        raise
    return View(_FdBase(tmp.fileno(), tmp), 0, total, name)


def copy_head(stream: BinaryIO, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        block = stream.read(n - len(out))
        if not block:
            break
        out += block
    return bytes(out)

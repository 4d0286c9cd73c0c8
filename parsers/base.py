"""The interface every artifact parser implements.

A parser is a module-level object with:

``name``          short parser id, also used in the manifest (``errorlog``)
``artifact_type`` what the input is (``errorlog``, ``sqlagent_log``, ...)
``sniff(head, name)``  True when the first bytes (up to :data:`SNIFF_BYTES`)
                  are this format.  ``name`` is the file's base name; it may
                  only break ties, never be the sole reason: renamed evidence
                  must still be recognised.
``prescan(src)``  optional cheap pass returning :class:`InputEvidence`
                  (instance names, time-zone anchors); default: nothing.
``parse(src, options)``  yields :class:`Event` and :class:`ParseWarning`
                  objects.  ``options`` is a read-only mapping of run options
                  meant for parsers (``evtx_engine``, ``extract_assemblies``,
                  ...); parsers ignore keys they do not know.

Parsers never raise on bad evidence: damage becomes a ParseWarning naming the
position, and parsing goes on with the next readable record.  They know
nothing about Parquet, the CLI or other formats.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from forensic.model import Event, InputEvidence, ParseWarning

SNIFF_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Source:
    """One input as a parser sees it: an opener, a name and a size.

    ``open()`` returns a fresh read-only binary stream positioned at 0.  It may
    be a plain file, an archive member or a slice of a disk image, so parsers
    must not assume a real path exists on disk.
    """

    display_path: str
    size: int
    opener: object  # zero-argument callable returning a binary stream

    def open(self) -> BinaryIO:
        return self.opener()  # type: ignore[operator]

    @property
    def name(self) -> str:
        tail = self.display_path.replace("\\", "/").rsplit("!", 1)[-1]
        return tail.rsplit("/", 1)[-1]

    @classmethod
    def from_bytes(cls, data: bytes, display_path: str = "<memory>") -> Source:
        """For tests and for parsers handing nested content to each other."""
        return cls(display_path, len(data), lambda: io.BytesIO(data))


class Parser(Protocol):
    name: str
    artifact_type: str

    def sniff(self, head: bytes, name: str) -> bool: ...

    def prescan(self, src: Source) -> InputEvidence:
        """A cheap first pass.  A parser that can parse an input in pieces
        (``options["span"]``, a :class:`parsers.textio.Span`) says so with
        ``cuttable = True``, and ``prescan(src, cuts=True)`` then fills
        ``InputEvidence.cuts``."""
        ...

    def parse(self, src: Source, options: Mapping[str, Any] | None = None) -> Iterator[Event | ParseWarning]: ...

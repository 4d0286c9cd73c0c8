"""Artifact parsers, one module per format, and the registry that finds them.

The registry is ordered: the first parser whose ``sniff`` accepts the first
bytes of a file wins, so more specific formats come first.  Modules are
imported lazily so that an optional dependency missing for one parser never
stops the others.
"""

from __future__ import annotations

import importlib
from functools import cache

from parsers.base import SNIFF_BYTES, Parser, Source

# module name, attribute holding the parser object
_REGISTRY: list[tuple[str, str]] = [
    ("parsers.default_trace", "PARSER"),
    ("parsers.eventlog", "PARSER"),
    ("parsers.errorlog", "PARSER"),
    ("parsers.sqlagent", "PARSER"),
    ("parsers.master_export", "PARSER"),
]


@cache
def registered_parsers() -> tuple[Parser, ...]:
    found = []
    for module_name, attr in _REGISTRY:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only tolerate the parser module itself being absent (not yet
            # built); a missing dependency inside it is a real error.
            if exc.name == module_name:
                continue
            raise
        found.append(getattr(module, attr))
    return tuple(found)


def parser_by_name(name: str) -> Parser:
    for parser in registered_parsers():
        if parser.name == name:
            return parser
    raise KeyError(name)


def sniff(head: bytes, name: str) -> Parser | None:
    """The parser for a file whose first bytes are ``head``, or None."""
    for parser in registered_parsers():
        try:
            if parser.sniff(head, name):
                return parser
        except Exception:  # noqa: BLE001 - a sniff bug must not stop discovery
            continue
    return None


__all__ = ["SNIFF_BYTES", "Parser", "Source", "registered_parsers", "parser_by_name", "sniff"]

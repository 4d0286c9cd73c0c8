"""Classify SQL Server message text: one catalogue for every source.

The ERRORLOG, the default trace's ErrorLog events and the Application-log
events carry the same messages.  They all call :func:`classify` so that a
message is understood the same way wherever it was found.  The templates are
data (``parsers/data/sql_messages.toml``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

_CATALOGUE = Path(__file__).parent / "data" / "sql_messages.toml"
_COLUMN_GROUPS = ("object_name", "user", "database")


@dataclass(slots=True)
class MessageMatch:
    event_type: str
    event_id: int | None = None
    object_name: str | None = None
    object_type: str | None = None
    user: str | None = None
    database: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Template:
    event_id: int | None
    event_type: str
    object_type: str | None
    regex: re.Pattern[str]


def _first_word(text: str) -> str:
    return text.lstrip().split(" ", 1)[0].lower()


@cache
def _templates() -> tuple[dict[str, tuple[_Template, ...]], dict[int, tuple[_Template, ...]]]:
    data = tomllib.loads(_CATALOGUE.read_text(encoding="utf-8"))
    by_word: dict[str, list[_Template]] = {}
    by_id: dict[int, list[_Template]] = {}
    for entry in data["message"]:
        template = _Template(
            event_id=entry.get("id"),
            event_type=entry["event_type"],
            object_type=entry.get("object_type"),
            regex=re.compile(entry["pattern"], re.DOTALL),
        )
        # Dispatch on the literal first word of the pattern: one dict lookup
        # instead of trying every template on every line.
        words = entry.get("words")
        if not words:
            literal = re.match(r"[A-Za-z.\\(]+", entry["pattern"])
            words = [(literal.group(0) if literal else "").replace("\\", "").lower()]
        for word in words:
            by_word.setdefault(word, []).append(template)
        if template.event_id is not None:
            by_id.setdefault(template.event_id, []).append(template)
    return ({k: tuple(v) for k, v in by_word.items()}, {k: tuple(v) for k, v in by_id.items()})


_IDENT = re.compile(r"^[^\W\d][\w@$#]*$|^[@#][\w@$#]*$")


def split_schema(name: str) -> tuple[str | None, str]:
    """``[dbo].[evil]`` -> ("dbo", "evil"); ``master.dbo.x`` -> ("dbo", "x").

    Dots split a name only between bracketed parts or plain identifiers: an
    attacker's ``invoice\u202eexe.txt`` or ``a.b`` with odd characters stays one
    name rather than losing its front as a "schema".
    """
    text = name.strip()
    parts = re.findall(r"\[((?:[^\]]|\]\])*)\]|([^.\[\]]+)", text)
    names = [(a or b).replace("]]", "]").strip() for a, b in parts if (a or b).strip()]
    if not names:
        return None, text.strip("[]")
    if len(names) == 1:
        return None, names[0]
    plain = all(a or _IDENT.match(b.strip()) for a, b in parts if (a or b).strip())
    if not plain:
        return None, text
    return names[-2], names[-1]


def _build(template: _Template, match: re.Match[str]) -> MessageMatch:
    result = MessageMatch(event_type=template.event_type, event_id=template.event_id,
                          object_type=template.object_type)
    for key, value in match.groupdict().items():
        if value is None:
            continue
        value = value.strip()
        if key in _COLUMN_GROUPS:
            setattr(result, key, value)
        else:
            result.attributes[key] = value
    if result.object_name:
        schema, bare = split_schema(result.object_name)
        if schema and result.object_type in ("P", "X", "PC", "AS"):
            result.attributes["schema"] = schema
            result.object_name = bare
        else:
            result.object_name = result.object_name.strip().strip("[]") if result.object_type != "config" else result.object_name
    if template.event_type == "assembly_loaded" and "assembly_full_name" in result.attributes:
        result.object_name = result.attributes["assembly_full_name"].split(",", 1)[0].strip()
    if "appdomain" in result.attributes:
        _appdomain_fields(result)
    return result


_APPDOMAIN = re.compile(r"^(?P<db>.+?)\.(?P<owner>[^.\[]+)\[runtime\]\.(?P<n>\d+)$")


def _appdomain_fields(result: MessageMatch) -> None:
    """``AppDB.dbo[runtime].2`` -> database AppDB, owner dbo."""
    m = _APPDOMAIN.match(result.attributes["appdomain"])
    if m:
        result.database = result.database or m.group("db")
        result.attributes["appdomain_owner"] = m.group("owner")


_REGEX_META = frozenset("\\.^$*+?{}[]|()")


def literal_lead(pattern: str) -> str:
    """The text every match of ``pattern`` starts with: its plain characters
    up to the first regex syntax (a character a quantifier follows is not
    sure to be there, so it is left out)."""
    for i, ch in enumerate(pattern):
        if ch in _REGEX_META:
            return pattern[:i - 1] if ch in "*+?{" and i else pattern[:i]
    return pattern


@cache
def dispatch_leads() -> dict[str, tuple[str, ...] | None]:
    """For each dispatch word (lower case), the literal texts its templates
    start with, or None when some template's start is not literal.  A
    message (with no event id) that starts with none of them matches no
    template, so it needs no classifying: "BACKUP DATABASE successfully
    processed ..." shares only its first word with "BACKUP failed ...".
    """
    leads: dict[str, tuple[str, ...] | None] = {}
    for word, templates in _templates()[0].items():
        texts = tuple(literal_lead(t.regex.pattern) for t in templates)
        leads[word] = None if not all(texts) else texts
    return leads


def classify(text: str, event_id: int | None = None) -> MessageMatch | None:
    """The known template that ``text`` matches, or None (see :func:`_classify`).

    Messages repeat (a brute force writes the same failed-login line thousands
    of times): results are cached by text, and each caller gets its own copy.
    """
    found = _classify_cached(text, event_id)
    if found is None:
        return None
    return replace(found, attributes=dict(found.attributes))


@lru_cache(maxsize=32768)
def _classify_cached(text: str, event_id: int | None) -> MessageMatch | None:
    return _classify(text, event_id)


def _classify(text: str, event_id: int | None = None) -> MessageMatch | None:
    """The known template that ``text`` matches, or None.

    ``event_id``, when the source gives the message number (EVTX, a merged
    ``Error: N`` line), is tried first, so a numbered message is recognised
    even when its first word differs.
    """
    by_word, by_id = _templates()
    tried: tuple[_Template, ...] = ()
    if event_id is not None:
        tried = by_id.get(event_id, ())
        for template in tried:
            m = template.regex.match(text)
            if m:
                return _build(template, m)
    for template in by_word.get(_first_word(text), ()):
        if template in tried:
            continue
        m = template.regex.match(text.lstrip())
        if m:
            return _build(template, m)
    return None

"""Detection rules as data.

Rules live in TOML files (``forensic/rules/*.toml``, plus any directory given
with ``--rules``).  Each ``[[rule]]`` says which events carry which flag and
why.  A rule fires on an event when every condition it states holds:

``sources``      list of ``source`` values (default: any)
``event_ids``    list of native ids (default: any)
``event_types``  list of ``event_type`` values (default: any)
``[rule.where]`` field -> regular expression, all must match (``re.search``);
                 fields are timeline columns or ``attributes.KEY``
``[rule.unless]`` field -> regular expression; any match vetoes the rule

and it then adds ``flag`` to the event and records the rule id in
``attributes.rules``.  ``severity`` and ``why`` are for findings and reports.
Rule loading fails loudly (a broken rule file is a usage error, not evidence).
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import compress, count
from pathlib import Path

import orjson

from forensic.model import Event

RULES_DIR = Path(__file__).parent / "rules"

SEVERITIES = ("high", "medium", "low")

FLAGS = (
    "startup_procedure",
    "clr_assembly_load",
    "clr_enabled",
    "xp_cmdshell",
    "ole_automation",
    "extended_procedure",
    "sqlservr_child_process",
    "audit_tampering",
    "sysadmin_granted",
)


class RuleError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    flag: str
    severity: str
    why: str
    sources: frozenset[str] | None = None
    event_ids: frozenset[int] | None = None
    event_types: frozenset[str] | None = None
    where: tuple[tuple[str, re.Pattern[str]], ...] = ()
    unless: tuple[tuple[str, re.Pattern[str]], ...] = ()
    origin: str = ""

    def matches(self, event: Event) -> bool:
        if self.sources is not None and event.source not in self.sources:
            return False
        if self.event_ids is not None and event.event_id not in self.event_ids:
            return False
        if self.event_types is not None and event.event_type not in self.event_types:
            return False
        for name, pattern in self.where:
            value = field_text(event, name)
            if value is None or not pattern.search(value):
                return False
        for name, pattern in self.unless:
            value = field_text(event, name)
            if value is not None and pattern.search(value):
                return False
        return True


def field_text(event: Event, name: str) -> str | None:
    if name.startswith("attributes."):
        value = event.attributes.get(name[len("attributes."):])
    else:
        value = getattr(event, name, None)
    return _value_text(value)


_MAYBE = object()  # a field a columnar row does not hold yet (host, timestamp, flags, ...)
# Event fields an EventColumns block holds per row.
_ROW_COLUMNS = frozenset({"event_type", "event_id", "message", "local_text", "source_record", "user", "database",
                          "object_name", "object_type"})


def _present(cols, name: str, rows: list[int]) -> dict[object, list[int]]:
    """The rows of a columnar block that have field ``name`` (what
    :func:`field_text` gives is not None), by that text, or by _MAYBE when
    the row cannot tell yet."""
    by_text: defaultdict[object, list[int]] = defaultdict(list)
    if name.startswith("attributes."):
        key = name[len("attributes."):]
        quoted = f'"{key}"'
        attributes = cols.attributes
        if cols.encoded_keys is not None and key not in cols.encoded_keys:
            # The parser vouches that no JSON row holds the key: dict rows only.
            candidates = [i for i in rows if type(attributes[i]) is not str]
        else:
            # Encoded JSON without the key needs no decoding: most rows leave here.
            candidates = [i for i in rows if type(attributes[i]) is not str or quoted in attributes[i]]
        for i in candidates:
            attrs = attributes[i]
            if isinstance(attrs, str):
                try:
                    attrs = orjson.loads(attrs)
                except orjson.JSONDecodeError:
                    by_text[_MAYBE].append(i)
                    continue
            value = attrs.get(key)
            if value is not None:
                by_text[value if type(value) is str else _value_text(value)].append(i)
    elif name in _ROW_COLUMNS:
        column = getattr(cols, name)
        for i in rows:
            value = column[i]
            if value is not None:
                by_text[value if type(value) is str else _value_text(value)].append(i)
    else:  # not known before the engine has finished the row
        by_text[_MAYBE] = list(rows)
    return by_text


def _value_text(value: object) -> str | None:
    """A field's value as the text rule patterns are matched against."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return str(value)


def _patterns(table: dict, origin: str, rule_id: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    out = []
    for name, regex in table.items():
        try:
            out.append((name, re.compile(regex)))
        except re.error as exc:
            raise RuleError(f"{origin}: rule {rule_id!r}: bad regex for {name!r}: {exc}") from exc
    return tuple(out)


def _rule_from_table(table: dict, origin: str) -> Rule:
    try:
        rule_id = table["id"]
        flag = table["flag"]
    except KeyError as exc:
        raise RuleError(f"{origin}: a rule lacks {exc.args[0]!r}") from exc
    severity = table.get("severity", "medium")
    if severity not in SEVERITIES:
        raise RuleError(f"{origin}: rule {rule_id!r}: severity must be one of {SEVERITIES}")
    unknown = set(table) - {"id", "flag", "severity", "why", "sources", "event_ids", "event_types", "where", "unless"}
    if unknown:
        raise RuleError(f"{origin}: rule {rule_id!r}: unknown keys {sorted(unknown)}")

    def opt(key, kind):
        return frozenset(kind(v) for v in table[key]) if key in table else None

    return Rule(
        id=rule_id,
        flag=flag,
        severity=severity,
        why=table.get("why", ""),
        sources=opt("sources", str),
        event_ids=opt("event_ids", int),
        event_types=opt("event_types", str),
        where=_patterns(table.get("where", {}), origin, rule_id),
        unless=_patterns(table.get("unless", {}), origin, rule_id),
        origin=origin,
    )


def load_rules(paths: Iterable[Path]) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: set[str] = set()
    for path in paths:
        files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
        for file in files:
            try:
                data = tomllib.loads(file.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise RuleError(f"{file}: {exc}") from exc
            for table in data.get("rule", []):
                rule = _rule_from_table(table, file.name)
                if rule.id in seen:
                    raise RuleError(f"{file}: duplicate rule id {rule.id!r}")
                seen.add(rule.id)
                rules.append(rule)
    return tuple(rules)


@cache
def default_rules() -> tuple[Rule, ...]:
    return load_rules([RULES_DIR])


class RuleSet:
    """Rules indexed by source, event id and event type, so each event tests
    only the few rules that can fire on it."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = tuple(rules)
        self.by_rule_id = {r.id: r for r in self.rules}
        self._indexes: dict[str, tuple[dict, dict, list]] = {}

    def _index(self, source: str) -> tuple[dict[int, list[Rule]], dict[str, list[Rule]], list[Rule]]:
        index = self._indexes.get(source)
        if index is None:
            by_id: dict[int, list[Rule]] = {}
            by_type: dict[str, list[Rule]] = {}
            anything: list[Rule] = []
            for rule in self.rules:
                if rule.sources is not None and source not in rule.sources:
                    continue
                if rule.event_ids is not None:
                    for eid in rule.event_ids:
                        by_id.setdefault(eid, []).append(rule)
                elif rule.event_types is not None:
                    for et in rule.event_types:
                        by_type.setdefault(et, []).append(rule)
                else:
                    anything.append(rule)
            index = self._indexes[source] = (by_id, by_type, anything)
        return index

    def has_candidates(self, source: str, event_id: int | None, event_type: str) -> bool:
        """Could any rule fire on an event of this source, id and type?"""
        by_id, by_type, anything = self._index(source)
        return bool(anything or (event_id is not None and event_id in by_id) or event_type in by_type)

    def rows_may_fire(self, cols) -> list[bool]:
        """For each row of a columnar block (:class:`forensic.model.EventColumns`):
        could a rule fire on it once the engine has finished it?

        Never False for a row on which a rule fires.  A rule's ids, types and
        ``where`` patterns on the block's columns and on dict attributes are
        tested as :meth:`Rule.matches` does (already-encoded JSON attributes are
        decoded only for a row whose text names the attribute), and so are
        ``unless`` patterns on what all rows of an id and type share (event id
        and type, source); the rest (what the engine adds later: host,
        timestamp, flags, ...; other ``unless`` vetoes) counts as passing.
        """
        out = [False] * len(cols)
        by_id, by_type, anything = self._index(cols.source)
        if not (by_id or by_type or anything):
            return out
        ids, types = cols.event_id, cols.event_type
        every_row = bool(anything)
        if every_row:
            rows_of_interest: Iterable[int] = range(len(cols))
        else:
            # Only rows whose id or type some rule names, found at C speed:
            # in a log most rows are plain messages no rule is about.
            live_ids = set(ids).intersection(by_id)
            live_types = set(types).intersection(by_type)
            if not (live_ids or live_types):
                return out
            found: set[int] = set()
            if live_types:
                found.update(compress(count(), map(live_types.__contains__, types)))
            if live_ids:
                found.update(compress(count(), map(live_ids.__contains__, ids)))
            rows_of_interest = sorted(found)
        # The rules that can apply to each (id, type) pair of those rows; rows
        # are gathered only for the pairs that have some.
        live: dict[tuple[int | None, str], tuple[dict[str, object], list[Rule]]] = {}
        pairs = set(zip(ids, types, strict=True)) if every_row else {(ids[i], types[i]) for i in rows_of_interest}
        for eid, etype in pairs:
            shared = {"event_id": eid, "event_type": etype, "source": cols.source,
                      "timestamp_desc": cols.timestamp_desc}
            rules = [r for r in (*(by_id.get(eid, ()) if eid is not None else ()), *by_type.get(etype, ()),
                                 *anything)
                     if (r.event_ids is None or eid in r.event_ids)
                     and (r.event_types is None or etype in r.event_types)
                     and not any(name in shared and _value_text(shared[name]) is not None
                                 and pattern.search(_value_text(shared[name]))  # type: ignore[arg-type]
                                 for name, pattern in r.unless)]
            if rules:
                live[(eid, etype)] = (shared, rules)
        if not live:
            return out
        groups: dict[tuple[int | None, str], list[int]] = {pair: [] for pair in live}
        group_of = groups.get
        if every_row:
            for i, pair in enumerate(zip(ids, types, strict=True)):
                rows = group_of(pair)
                if rows is not None:
                    rows.append(i)
        else:
            for i in rows_of_interest:
                rows = group_of((ids[i], types[i]))
                if rows is not None:
                    rows.append(i)
        for pair, rows in groups.items():
            shared, rules = live[pair]
            present: dict[str, dict[object, list[int]]] = {}  # field -> its text (or _MAYBE) -> rows
            for rule in rules:
                alive: set[int] | None = None
                for name, pattern in rule.where:
                    if name in shared:
                        text = _value_text(shared[name])
                        if text is None or not pattern.search(text):
                            alive = set()
                            break
                        continue
                    by_text = present.get(name)
                    if by_text is None:
                        by_text = present[name] = _present(cols, name, rows)
                    hits = [i for text, text_rows in by_text.items()
                            if text is _MAYBE or pattern.search(text)  # type: ignore[arg-type]
                            for i in text_rows]
                    alive = set(hits) if alive is None else alive.intersection(hits)
                    if not alive:
                        break
                for i in rows if alive is None else alive:
                    out[i] = True
        return out

    def candidates(self, event: Event) -> list[Rule]:
        by_id, by_type, anything = self._index(event.source)
        out = list(by_id.get(event.event_id, ())) if event.event_id is not None else []
        out.extend(by_type.get(event.event_type, ()))
        out.extend(anything)
        return out

    def apply(self, event: Event) -> None:
        fired: list[str] = []
        for rule in self.candidates(event):
            if rule.matches(event):
                if rule.flag not in event.flags:
                    event.flags.append(rule.flag)
                fired.append(rule.id)
        if fired:
            previous = event.attributes.get("rules") or []
            event.attributes["rules"] = [*previous, *(r for r in fired if r not in previous)]

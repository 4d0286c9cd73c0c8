"""Which SQL Server instance each input belongs to, and its time context.

The contract's rule: an input is attributed by what it says itself (ERRORLOG
banner and startup parameters, trace header server name, ...); failing that,
by the single instance whose evidence lies in the same folder (the trace
files next to the ERRORLOG); failing that, by the single instance found under
the same command-line PATH.  With several candidates it stays unattributed
and the summary says so.  The time context of an instance is built from the
time anchors of all its inputs, so that every local-time artifact of one
instance is converted with the same offsets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import tzinfo

from forensic.discovery import InputFile
from forensic.model import InputEvidence
from forensic.timezones import TimeContext


def norm_host(host: str | None) -> str | None:
    if not host:
        return None
    return host.strip().split(".", 1)[0].upper() or None


def norm_instance(instance: str | None) -> str | None:
    if not instance:
        return None
    return instance.strip().strip('"').upper() or None


@dataclass(frozen=True, slots=True)
class InstanceKey:
    host: str | None  # normalised (upper-case short name)
    instance: str | None

    @property
    def complete(self) -> bool:
        return self.host is not None and self.instance is not None

    def compatible(self, other: InstanceKey) -> bool:
        return ((self.host is None or other.host is None or self.host == other.host)
                and (self.instance is None or other.instance is None or self.instance == other.instance))

    def label(self) -> str:
        return f"{self.host or '?'}\\{self.instance or '?'}"


@dataclass(slots=True)
class Attribution:
    key: InstanceKey | None
    host: str | None  # as the evidence writes it
    instance: str | None
    how: str  # "own evidence", "same folder", "same PATH", "unattributed", ...
    group: str  # time-context group id


@dataclass
class InstanceDirectory:
    attributions: dict[str, Attribution] = field(default_factory=dict)  # by InputFile.path
    contexts: dict[str, TimeContext] = field(default_factory=dict)  # by group id
    ambiguous_roots: list[str] = field(default_factory=list)

    def context_for(self, path: str) -> TimeContext:
        return self.contexts[self.attributions[path].group]


def build_directory(inputs: list[InputFile], evidence: dict[str, InputEvidence],
                    cli_zone: tzinfo | None) -> InstanceDirectory:
    directory = InstanceDirectory()
    own: dict[str, InstanceKey] = {}
    display_names: dict[InstanceKey, tuple[str | None, str | None]] = {}
    for item in inputs:
        ev = evidence.get(item.path)
        if ev is None or (not ev.host and not ev.instance):
            continue
        key = InstanceKey(norm_host(ev.host), norm_instance(ev.instance))
        own[item.path] = key
        if key.complete:
            display_names.setdefault(key, (ev.host, ev.instance))

    complete_by_dir: dict[str, set[InstanceKey]] = {}
    complete_by_root: dict[str, set[InstanceKey]] = {}
    for item in inputs:
        key = own.get(item.path)
        if key is not None and key.complete:
            complete_by_dir.setdefault(os.path.dirname(item.path), set()).add(key)
            complete_by_root.setdefault(item.root, set()).add(key)

    def unique(candidates: set[InstanceKey], partial: InstanceKey | None) -> InstanceKey | None:
        fits = {c for c in candidates if partial is None or partial.compatible(c)}
        return fits.pop() if len(fits) == 1 else None

    for item in inputs:
        partial = own.get(item.path)
        if partial is not None and partial.complete:
            key, how = partial, "own evidence"
        else:
            key = unique(complete_by_dir.get(os.path.dirname(item.path), set()), partial)
            how = "same folder"
            if key is None:
                key = unique(complete_by_root.get(item.root, set()), partial)
                how = "same PATH"
            if key is None and partial is not None:
                key, how = partial, "own evidence (partial)"
            if key is None:
                how = "unattributed"
                if len(complete_by_root.get(item.root, set())) > 1 and item.root not in directory.ambiguous_roots:
                    directory.ambiguous_roots.append(item.root)
        host, instance = display_names.get(key, (None, None)) if key else (None, None)
        if key is not None and host is None and instance is None:
            host, instance = _first_written(key, evidence, inputs, own)
        group = f"instance:{key.label()}" if key is not None else f"path:{item.root}"
        directory.attributions[item.path] = Attribution(key, host, instance, how, group)

    anchors_by_group: dict[str, list] = {}
    for item in inputs:
        att = directory.attributions[item.path]
        ev = evidence.get(item.path)
        anchors_by_group.setdefault(att.group, [])
        if ev is not None:
            anchors_by_group[att.group].extend(ev.anchors)
    for group, anchors in anchors_by_group.items():
        directory.contexts[group] = TimeContext.build(anchors, cli_zone)
    return directory


def _first_written(key: InstanceKey, evidence: dict[str, InputEvidence], inputs: list[InputFile],
                   own: dict[str, InstanceKey]) -> tuple[str | None, str | None]:
    for item in inputs:
        if own.get(item.path) == key:
            ev = evidence[item.path]
            return ev.host, ev.instance
    return key.host, key.instance

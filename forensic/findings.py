"""Findings: the flagged events of a timeline grouped by what they are about.

One finding per suspicious object or behaviour per instance (a startup
procedure, a user assembly, xp_cmdshell use, ...), with every event from
every source that speaks of it.  Severity is the highest severity of the
rules that fired on its events, raised to high for combinations that are
damning together (a startup procedure that was also launched; xp_cmdshell
enabled and then used).  The timeline is read batch by batch and only flagged
rows are kept, so memory follows the number of flagged events.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.compute as pc
from rich.table import Table
from rich.text import Text

from forensic.instances import norm_host
from forensic.rules import default_rules
from forensic.textsafe import safe_text
from parsers.sqlmessages import split_schema

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}

# Which flag defines the finding's subject, in order of precedence.
SUBJECT_FLAGS = ("startup_procedure", "clr_assembly_load", "extended_procedure", "xp_cmdshell",
                 "ole_automation", "sqlservr_child_process", "sysadmin_granted", "audit_tampering",
                 "clr_enabled")

TITLES = {
    "startup_procedure": "Startup procedure {obj}",
    "clr_assembly_load": "User CLR assembly {obj}",
    "extended_procedure": "Extended stored procedure DLL {obj}",
    "xp_cmdshell": "xp_cmdshell enabled or used",
    "ole_automation": "OLE automation enabled or used",
    "sqlservr_child_process": "Processes started by sqlservr.exe",
    "sysadmin_granted": "sysadmin granted to {obj}",
    "audit_tampering": "Audit tampering",
    "clr_enabled": "CLR security weakened",
}

# Behaviours are one finding per instance; objects one per object name.
PER_OBJECT = {"startup_procedure", "clr_assembly_load", "extended_procedure", "sysadmin_granted"}


class FindingsError(ValueError):
    pass


@dataclass
class Finding:
    title: str
    severity: str
    flags: list[str]
    object_name: str | None
    host: str | None
    instance: str | None
    first_seen: str | None = None
    last_seen: str | None = None
    sources: list[str] = field(default_factory=list)
    event_count: int = 0
    why: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    database_names: set[str] = field(default_factory=set)
    # (timestamp, event_type, flags, attributes) of each row, for escalation
    rows: list[tuple] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title, "severity": self.severity, "flags": self.flags,
            "object_name": self.object_name, "host": self.host, "instance": self.instance,
            "first_seen": self.first_seen, "last_seen": self.last_seen, "sources": self.sources,
            "event_count": self.event_count, "why": self.why, "evidence": self.evidence,
        }


def norm_object(name: str | None) -> str | None:
    """SQL Server object names compare case-, bracket- and schema-insensitively."""
    if not name:
        return None
    return split_schema(name)[1].lower()


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else None


def iter_flagged_rows(path: str) -> Iterator[dict[str, Any]]:
    columns = ["timestamp", "message", "source", "event_type", "host", "instance", "user", "database",
               "object_name", "object_type", "flags", "source_file", "source_record", "attributes"]
    if path.lower().endswith((".jsonl", ".ndjson", ".json")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                if row.get("flags"):
                    ts = row.get("timestamp")
                    row["timestamp"] = datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None
                    yield row
        return
    if os.path.isdir(path):  # a --layout dataset folder: scanned part by part
        from forensic.dataset import DatasetError, iter_timeline_batches
        # Parts are sorted each on its own: the flagged rows (which findings
        # keep anyway) are put in timeline order, so that findings do not
        # depend on the layout.
        try:
            rows = [r for batch in iter_timeline_batches(path, columns, batch_size=10_000, flagged_only=True)
                    for r in batch.to_pylist()]
        except DatasetError as exc:
            raise FindingsError(str(exc)) from None
        rows.sort(key=lambda r: (r["timestamp"] is None, r["timestamp"] or datetime.min.replace(tzinfo=UTC),
                                 r["source_file"] or "", r["source_record"] if r["source_record"] is not None
                                 else 2**63))
        yield from rows
        return
    from forensic.dataset import DatasetError, open_timeline_file
    try:
        pf = open_timeline_file(path, columns)
    except DatasetError as exc:
        raise FindingsError(str(exc)) from None
    for batch in pf.iter_batches(columns=columns, batch_size=10_000):
        mask = pc.greater(pc.list_value_length(batch.column("flags")), 0)
        flagged = batch.filter(pc.fill_null(mask, False))
        yield from flagged.to_pylist()


def build_findings(path: str) -> list[Finding]:
    rules = {r.id: r for r in default_rules()}
    groups: dict[tuple, Finding] = {}
    for row in iter_flagged_rows(path):
        flags = list(row["flags"])
        subject = next((f for f in SUBJECT_FLAGS if f in flags), flags[0])
        attrs = row["attributes"]
        attrs = json.loads(attrs) if isinstance(attrs, str) and attrs else (attrs or {})
        obj = _subject_object(subject, row, attrs)
        key = (norm_host(row["host"]) or "", (row["instance"] or "").upper(), subject, norm_object(obj))
        finding = groups.get(key)
        if finding is None:
            finding = groups[key] = Finding(
                title=_title(subject, obj, row), severity="low", flags=[],
                object_name=obj, host=row["host"], instance=row["instance"])
        finding.event_count += 1
        for f in flags:
            if f not in finding.flags:
                finding.flags.append(f)
        if row.get("database"):
            finding.database_names.add(row["database"].lower())
        if row["source"] not in finding.sources:
            finding.sources.append(row["source"])
        for rule_id in attrs.get("rules", []):
            rule = rules.get(rule_id)
            if rule is None:
                continue
            if SEVERITY_RANK[rule.severity] < SEVERITY_RANK[finding.severity]:
                finding.severity = rule.severity
            if rule.why and rule.why not in finding.why:
                finding.why.append(rule.why)
        ts = _iso(row["timestamp"])
        if ts is not None:
            finding.first_seen = ts if finding.first_seen is None or ts < finding.first_seen else finding.first_seen
            finding.last_seen = ts if finding.last_seen is None or ts > finding.last_seen else finding.last_seen
        finding.rows.append((row["timestamp"], row["event_type"], flags, attrs))
        for note in attrs.get("correlation") or ():
            if note not in finding.why:
                finding.why.append(note)
        finding.evidence.append({"timestamp": ts, "source": row["source"], "source_file": row["source_file"],
                                 "source_record": row["source_record"],
                                 "message": (row["message"] or "").split("\n", 1)[0]})
    out = _attach_appdomains(groups)
    _escalate(out)
    for f in out:
        f.evidence.sort(key=lambda e: (e["timestamp"] is None, e["timestamp"] or "", e["source_file"],
                                       e["source_record"] or 0))
    out.sort(key=lambda f: (SEVERITY_RANK[f.severity], f.first_seen is None, f.first_seen or "", f.title))
    return out


COMMAND_FLAGS = {"xp_cmdshell", "ole_automation", "sqlservr_child_process", "extended_procedure"}
STARTUP_FOLLOW_UP = timedelta(seconds=60)
XP_USED_TYPES = {"extended_procedure_dll_loaded", "feature_blocked"}


def _raise(f: Finding, why: str) -> None:
    f.severity = "high"
    if why not in f.why:
        f.why.insert(0, why)


def _escalate(findings: list[Finding]) -> None:
    """Combinations that are damning together make a finding high.

    - a startup procedure whose own rows also show command execution (its
      catalogued body calls xp_cmdshell, sp_OACreate, ...);
    - a startup procedure whose launch is followed, in the same session and
      within a minute, by command execution or CLR/extended-procedure loads;
    - xp_cmdshell turned on and then used (8128 load, audited EXEC, a process
      started by sqlservr.exe) on the same instance.
    """
    by_instance: dict[tuple, list[Finding]] = {}
    for f in findings:
        by_instance.setdefault((norm_host(f.host) or "", (f.instance or "").upper()), []).append(f)
    for group in by_instance.values():
        others = [(ts, et, flags, attrs) for g in group for ts, et, flags, attrs in g.rows]
        for f in group:
            if "startup_procedure" not in f.flags or f.object_name is None:
                continue
            if any(COMMAND_FLAGS & set(flags) for _ts, _et, flags, _a in f.rows):
                _raise(f, f"The startup procedure {f.object_name} itself runs commands "
                          "(its body or its rows show xp_cmdshell, OLE automation or a process start).")
                continue
            for ts, et, _flags, attrs in f.rows:
                if et != "startup_procedure_launched" or ts is None:
                    continue
                session = attrs.get("process")
                follow = [o for o in others
                          if o[0] is not None and ts <= o[0] <= ts + STARTUP_FOLLOW_UP
                          and session is not None and o[3].get("process") == session
                          and (COMMAND_FLAGS | {"clr_assembly_load"}) & set(o[2])]
                if follow:
                    kinds = sorted({flag for o in follow for flag in o[2]
                                    if flag in COMMAND_FLAGS | {"clr_assembly_load"}})
                    _raise(f, f"Right after SQL Server launched {f.object_name} at startup, the same session "
                              f"({session}) did: {', '.join(kinds)}.")
                    break
        for f in group:
            if "xp_cmdshell" not in f.flags or f.object_name is not None:
                continue
            enabled = [ts for ts, et, _fl, attrs in f.rows
                       if ts is not None and et == "config_changed" and str(attrs.get("new_value")) not in ("0", "None")]
            used = [ts for ts, et, flags, attrs in f.rows
                    if ts is not None and (et in XP_USED_TYPES or "sqlservr_child_process" in flags
                                           or attrs.get("action_id") == "EX")]
            if enabled and used and max(used) >= min(enabled):
                _raise(f, "xp_cmdshell was turned on and then used on this instance.")


def _subject_object(subject: str, row: dict[str, Any], attrs: dict[str, Any]) -> str | None:
    """The object a finding is about (None: a behaviour of the instance)."""
    if subject not in PER_OBJECT or row.get("object_type") == "config":
        return None
    if subject == "extended_procedure":
        # 8128 names the procedure and the DLL; the DLL is the implant.
        return attrs.get("dll") or row["object_name"]
    if subject == "clr_assembly_load" and not row["object_name"]:
        return f"{row['database']} (database)" if row.get("database") else None
    return row["object_name"]


def _title(subject: str, obj: str | None, row: dict[str, Any]) -> str:
    if obj is None and subject == "startup_procedure":
        return "Startup procedures enabled ('scan for startup procs')"
    if obj is None and subject in PER_OBJECT:
        return TITLES[subject].format(obj="(unnamed)")
    if subject == "clr_assembly_load" and row.get("object_type") in ("PC", "FS", "FT", "TA", "AF"):
        return f"CLR module {obj}"
    return TITLES.get(subject, subject).format(obj=obj or "?")


def _attach_appdomains(groups: dict[tuple, Finding]) -> list[Finding]:
    """App-domain events name only a database; fold them into the finding of
    the one user assembly seen loading in that database, when there is one."""
    out = []
    by_db: dict[tuple, list[Finding]] = {}
    for (host, inst, subject, obj), f in groups.items():
        if subject == "clr_assembly_load" and obj and not obj.endswith(" (database)"):
            by_db.setdefault((host, inst), []).append(f)
    for (host, inst, subject, obj), f in groups.items():
        if subject == "clr_assembly_load" and obj and obj.endswith(" (database)"):
            candidates = [a for a in by_db.get((host, inst), []) if a.database_names & {obj[:-11].lower()}]
            if len(candidates) == 1:
                target = candidates[0]
                target.event_count += f.event_count
                target.evidence.extend(f.evidence)
                target.sources.extend(s for s in f.sources if s not in target.sources)
                target.why.extend(w for w in f.why if w not in target.why)
                target.flags.extend(x for x in f.flags if x not in target.flags)
                if SEVERITY_RANK[f.severity] < SEVERITY_RANK[target.severity]:
                    target.severity = f.severity
                for ts in (f.first_seen, f.last_seen):
                    if ts and (target.first_seen is None or ts < target.first_seen):
                        target.first_seen = ts
                    if ts and (target.last_seen is None or ts > target.last_seen):
                        target.last_seen = ts
                continue
        out.append(f)
    return out


def _short(ts: str | None) -> str:
    return f"{ts[:10]} {ts[11:19]}" if ts else "-"


def findings_table(findings: list[Finding]) -> Table:
    table = Table(title=f"{len(findings)} finding(s)", title_justify="left")
    for col in ("severity", "finding", "host\\instance", "first seen (UTC)", "last seen (UTC)", "sources", "events"):
        table.add_column(col)
    style = {"high": "bold red", "medium": "yellow", "low": "cyan"}
    for f in findings:
        table.add_row(Text(f.severity, style=style[f.severity]), safe_text(f.title),
                      safe_text(f"{f.host or '?'}\\{f.instance or '?'}"), Text(_short(f.first_seen)),
                      Text(_short(f.last_seen)), safe_text(", ".join(f.sources)), str(f.event_count))
    return table

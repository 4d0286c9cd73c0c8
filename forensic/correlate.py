"""Detection that needs more than one event, decided before the full parse.

The first pass (prescan) gives per-input facts; here they are combined per
instance into annotations that the workers attach to single events, where
the data-driven rules can see them (``attributes.cycle_burst`` and the rule
``errorlog-cycled-repeatedly``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from forensic.instances import InstanceDirectory
from forensic.model import InputEvidence
from parsers.errorlog import parse_local

CYCLE_BURST_COUNT = 3  # cycles of the error log ...
CYCLE_BURST_WINDOW = timedelta(hours=1)  # ... within this time


def cycle_bursts(directory: InstanceDirectory, evidence: dict[str, InputEvidence]) -> dict[str, list[str]]:
    """Per time-context group, the ERRORLOG timestamps of cycles in a burst.

    ``sp_cycle_errorlog`` run again and again pushes old logs out of the
    rotation set.  Each cycle leaves 17183 at the end of the old log and 17184
    at the start of the new one; either may be gone, so each kind is counted
    on its own.
    """
    by_group: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path, ev in evidence.items():
        att = directory.attributions.get(path)
        if att is None or ev is None:
            continue
        for ts, kind in ev.facts.get("cycle_times", []):
            by_group[att.group][kind].add(ts)
    out: dict[str, list[str]] = {}
    for group, kinds in by_group.items():
        marked: set[str] = set()
        for stamps in kinds.values():
            timed = sorted((parse_local(s), s) for s in stamps if parse_local(s) is not None)
            start = 0
            for end in range(len(timed)):
                while timed[end][0] - timed[start][0] > CYCLE_BURST_WINDOW:
                    start += 1
                if end - start + 1 >= CYCLE_BURST_COUNT:
                    marked.update(s for _t, s in timed[start:end + 1])
        if marked:
            # The reinitialised log's first line shares the cycle's moment.
            for stamps in kinds.values():
                for s in stamps:
                    t = parse_local(s)
                    if t and any(abs(t - parse_local(m)) < timedelta(seconds=1) for m in marked):
                        marked.add(s)
            out[group] = sorted(marked)
    return out


def setup_windows(directory: InstanceDirectory, evidence: dict[str, InputEvidence]) -> dict[str, list]:
    """Per time-context group, local-time windows in which the server ran for
    SQL Server setup (``-m"SqlSetup"``): from that start to the next start."""
    starts: dict[str, set] = defaultdict(set)
    setups: dict[str, set] = defaultdict(set)
    for path, ev in evidence.items():
        att = directory.attributions.get(path)
        if att is None or ev is None:
            continue
        starts[att.group].update(t for t in map(parse_local, ev.facts.get("run_starts", [])) if t)
        setups[att.group].update(t for t in map(parse_local, ev.facts.get("setup_runs", [])) if t)
    out: dict[str, list] = {}
    for group, begins in setups.items():
        if not begins:
            continue
        windows = []
        for begin in sorted(begins):
            later = sorted(t for t in starts[group] if t > begin + timedelta(seconds=1))
            windows.append((begin - timedelta(seconds=1), later[0] if later else None))
        out[group] = windows
    return out


# -- after the parse: flags that follow the object ------------------------------

# Flags that mark an *object* as malicious: every event about that object, in
# any source of the same instance, carries the flag too.
OBJECT_FLAGS = ("startup_procedure", "clr_assembly_load", "extended_procedure")
CLR_MODULE_TYPES = ("PC", "FS", "FT", "TA", "AF")


def instance_key(host: str | None, instance: str | None) -> str:
    from forensic.instances import norm_host, norm_instance
    return f"{norm_host(host) or ''}\\{norm_instance(instance) or ''}"


def object_key(host: str | None, instance: str | None, name: str) -> str:
    from forensic.findings import norm_object
    return f"{instance_key(host, instance)}|{norm_object(name)}"


@dataclass
class ObjectFacts:
    """What the parse phase learned about objects, per instance."""

    flagged: dict[str, set[str]] = field(default_factory=dict)  # object key -> flags
    links: set[tuple[str, str]] = field(default_factory=set)  # (module key, assembly key)
    xp_cmdshell_enabled: dict[str, str] = field(default_factory=dict)  # host key -> earliest UTC ISO

    def merge(self, other: ObjectFacts) -> None:
        for key, flags in other.flagged.items():
            self.flagged.setdefault(key, set()).update(flags)
        self.links |= other.links
        for host, ts in other.xp_cmdshell_enabled.items():
            if host not in self.xp_cmdshell_enabled or ts < self.xp_cmdshell_enabled[host]:
                self.xp_cmdshell_enabled[host] = ts

    def observe(self, ev) -> None:
        """Learn from one finished event (called in the worker)."""
        name = ev.object_name
        if name and ev.object_type != "config":
            for flag in ev.flags:
                if flag in OBJECT_FLAGS:
                    self.flagged.setdefault(object_key(ev.host, ev.instance, name), set()).add(flag)
            assembly = ev.attributes.get("assembly_name")
            if assembly and ev.object_type in CLR_MODULE_TYPES:
                self.links.add((object_key(ev.host, ev.instance, name), object_key(ev.host, ev.instance, assembly)))
        if ev.timestamp is not None and "xp-cmdshell-enabled" in (ev.attributes.get("rules") or ()):
            from forensic.instances import norm_host
            host = norm_host(ev.host) or ""
            ts = ev.timestamp.isoformat()
            if host not in self.xp_cmdshell_enabled or ts < self.xp_cmdshell_enabled[host]:
                self.xp_cmdshell_enabled[host] = ts

    def closed(self) -> dict[str, set[str]]:
        """Flagged objects including CLR modules of flagged assemblies (and back)."""
        out = {k: set(v) for k, v in self.flagged.items()}
        for module, assembly in self.links:
            if "clr_assembly_load" in out.get(assembly, ()):
                out.setdefault(module, set()).add("clr_assembly_load")
            if out.get(module):
                out.setdefault(assembly, set()).add("clr_assembly_load")
        return out


class Correlator:
    """Adds object-following flags to merged record batches (vectorised test,
    Python only for the few rows that change)."""

    def __init__(self, facts: ObjectFacts):
        import pyarrow as pa
        self.flagged = facts.closed()
        self.xp_since = facts.xp_cmdshell_enabled
        self._keys = pa.array(sorted(self.flagged), type=pa.string())
        self.changed = 0

    def __call__(self, batch):
        import json

        import pyarrow as pa
        import pyarrow.compute as pc

        from forensic.schema import attributes_json
        if not len(self._keys) and not self.xp_since:
            return batch
        rows_to_fix: dict[int, list[tuple[str, str]]] = {}
        if len(self._keys):
            names = batch.column("object_name")
            if names.null_count < len(names):
                hosts = batch.column("host").to_pylist()
                insts = batch.column("instance").to_pylist()
                name_list = names.to_pylist()
                types = batch.column("object_type").to_pylist()
                keys = [object_key(h, i, n) if n and t != "config" else None
                        for h, i, n, t in zip(hosts, insts, name_list, types, strict=True)]
                mask = pc.is_in(pa.array(keys, type=pa.string()), value_set=self._keys).to_pylist()
                for idx, hit in enumerate(mask):
                    if hit:
                        for flag in sorted(self.flagged[keys[idx]]):
                            rows_to_fix.setdefault(idx, []).append(
                                (flag, f"{name_list[idx]} is flagged {flag} by other evidence of this instance"))
        if self.xp_since:
            flags_col = batch.column("flags").to_pylist()
            from forensic.instances import norm_host
            hosts = batch.column("host").to_pylist()
            stamps = batch.column("timestamp").to_pylist()
            for idx, flags in enumerate(flags_col):
                if "sqlservr_child_process" in flags and "xp_cmdshell" not in flags:
                    since = self.xp_since.get(norm_host(hosts[idx]) or "")
                    if since and stamps[idx] is not None and stamps[idx].isoformat() >= since:
                        rows_to_fix.setdefault(idx, []).append(
                            ("xp_cmdshell", f"process started by sqlservr.exe after xp_cmdshell was enabled ({since})"))
        if not rows_to_fix:
            return batch
        flags_col = batch.column("flags").to_pylist()
        attrs_col = batch.column("attributes").to_pylist()
        for idx, additions in rows_to_fix.items():
            attrs = json.loads(attrs_col[idx])
            notes = attrs.get("correlation") or []
            changed = False
            for flag, why in additions:
                if flag not in flags_col[idx]:
                    flags_col[idx] = [*flags_col[idx], flag]
                    notes.append(why)
                    changed = True
            if changed:
                attrs["correlation"] = notes
                attrs_col[idx] = attributes_json(attrs)
                self.changed += 1
        schema = batch.schema
        batch = batch.set_column(schema.get_field_index("flags"), schema.field("flags"),
                                 pa.array(flags_col, type=schema.field("flags").type))
        return batch.set_column(schema.get_field_index("attributes"), schema.field("attributes"),
                                pa.array(attrs_col, type=pa.string()))

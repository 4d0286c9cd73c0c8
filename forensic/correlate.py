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
    """Adds object-following flags to merged record batches.

    The rows that may change are found with Arrow kernels (an object name
    that some flagged object has, once normalised; a process that
    ``sqlservr.exe`` started); Python looks only at those few rows.
    """

    # Normalised names of object names seen so far (bounded: a trace names
    # many objects).
    NAME_CACHE_ENTRIES = 100_000

    def __init__(self, facts: ObjectFacts):
        self.flagged = facts.closed()
        self.xp_since = facts.xp_cmdshell_enabled
        # Every text after a "|" of a key: its normalised object name is one
        # of them, whatever a hostile host name holds.
        self._flagged_names = {"|".join(parts[i:]) for parts in (k.split("|") for k in self.flagged)
                               for i in range(1, len(parts))}
        self._normalised: dict[str, str | None] = {}
        self.changed = 0

    def _object_rows(self, batch) -> list[int]:
        """Rows whose object has a flagged name (any instance), not config rows."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from forensic.findings import norm_object
        names = batch.column("object_name")
        if not self._flagged_names or names.null_count == len(names):
            return []
        cache = self._normalised
        if len(cache) > self.NAME_CACHE_ENTRIES:
            cache.clear()
        wanted = []
        for name in pc.unique(names).to_pylist():
            if name:
                if name not in cache:
                    cache[name] = norm_object(name)
                if cache[name] in self._flagged_names:
                    wanted.append(name)
        if not wanted:
            return []
        not_config = pc.fill_null(pc.not_equal(batch.column("object_type"), "config"), True)
        mask = pc.and_(pc.is_in(names, value_set=pa.array(wanted, type=pa.string())), not_config)
        return pc.indices_nonzero(mask).to_pylist()

    def _child_process_rows(self, batch) -> list[int]:
        """Rows flagged ``sqlservr_child_process``."""
        import pyarrow.compute as pc
        flags = batch.column("flags")
        hit = pc.equal(pc.list_flatten(flags), "sqlservr_child_process")
        return sorted(set(pc.filter(pc.list_parent_indices(flags), hit).to_pylist()))

    def __call__(self, batch):
        import json

        import pyarrow as pa

        from forensic.instances import norm_host
        from forensic.schema import attributes_json
        if not self.flagged and not self.xp_since:
            return batch
        rows_to_fix: dict[int, list[tuple[str, str]]] = {}
        for idx in self._object_rows(batch):
            name = batch.column("object_name")[idx].as_py()
            key = object_key(batch.column("host")[idx].as_py(), batch.column("instance")[idx].as_py(), name)
            for flag in sorted(self.flagged.get(key, ())):
                rows_to_fix.setdefault(idx, []).append(
                    (flag, f"{name} is flagged {flag} by other evidence of this instance"))
        if self.xp_since:
            for idx in self._child_process_rows(batch):
                if "xp_cmdshell" in batch.column("flags")[idx].as_py():
                    continue
                since = self.xp_since.get(norm_host(batch.column("host")[idx].as_py()) or "")
                stamp = batch.column("timestamp")[idx].as_py()
                if since and stamp is not None and stamp.isoformat() >= since:
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

"""Detection that needs more than one event, decided before the full parse.

The first pass (prescan) gives per-input facts; here they are combined per
instance into annotations that the workers attach to single events, where
the data-driven rules can see them (``attributes.cycle_burst`` and the rule
``errorlog-cycled-repeatedly``).
"""

from __future__ import annotations

from collections import defaultdict
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

"""The end-of-run summary printed by ``timeline``."""

from __future__ import annotations

from collections import Counter, defaultdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from forensic.textsafe import safe_text
from forensic.timeline import RunResult


def _t(value) -> Text:
    # Evidence text is never interpreted as console markup or terminal control.
    return safe_text(value)


def print_summary(result: RunResult, console: Console) -> None:
    m = result.manifest
    by_type: dict[str, Counter] = defaultdict(Counter)
    for item in m["inputs"]:
        c = by_type[item["artifact_type"] or "?"]
        c["inputs"] += 1
        c["events"] += item["events"]
        c["warnings"] += item["warnings"]
        c["damaged"] += item["status"] != "complete"
    table = Table(title="Inputs by artifact type", title_justify="left")
    for col in ("artifact type", "inputs", "events", "warnings", "damaged"):
        table.add_column(col, justify="left" if col == "artifact type" else "right")
    for kind, c in sorted(by_type.items()):
        table.add_row(_t(kind), str(c["inputs"]), str(c["events"]), str(c["warnings"]), str(c["damaged"]))
    totals = m["totals"]
    table.add_row("skipped (not artifacts)", str(totals["skipped"]), "", "", "")
    table.add_row(Text("total", style="bold"), str(totals["inputs"]), str(totals["events"]),
                  str(totals["warnings"]), str(totals["damaged_inputs"]))
    console.print(table)

    if totals["flags"]:
        flags = Table(title="Events per flag", title_justify="left")
        flags.add_column("flag")
        flags.add_column("events", justify="right")
        for flag, n in sorted(totals["flags"].items(), key=lambda kv: (-kv[1], kv[0])):
            flags.add_row(_t(flag), str(n))
        console.print(flags)

    tz = Table(title="Time zones", title_justify="left")
    for col in ("host", "instance", "inputs", "decision"):
        tz.add_column(col)
    for inst in m["instances"]:
        desc = inst["time_zone"]
        if desc["method"] in ("cli", "assumed_utc"):
            decision = desc["method"] + (f" {desc.get('zone')}" if desc.get("zone") else "")
        elif len(desc["offsets"]) > 6:  # a whole zone (registry): one line, details in the manifest
            kinds = Counter(o["tz_source"] for o in desc["offsets"])
            decision = (f"{len(desc['offsets'])} offset periods ({', '.join(sorted({o['offset'] for o in desc['offsets']}))}"
                        f"; {desc.get('zone_hint') or 'zone unknown'}) from " + ", ".join(sorted(kinds)))
        else:
            decision = ", ".join(f"{o['offset']} ({o['tz_source']}{' from ' + o['from_local'] if o['from_local'] else ''})"
                                 for o in desc["offsets"])
        tz.add_row(_t(inst["host"] or "?"), _t(inst["instance"] or "?"), str(inst["inputs"]), _t(decision))
    console.print(tz)

    assumed: Counter = Counter()
    for item in m["inputs"]:
        assumed[item["time_zone"]["group"]] += item["time_zone"]["tz_sources"].get("assumed_utc", 0)
    for inst in m["instances"]:
        label = f"{inst['host'] or '?'}\\{inst['instance'] or '?'}"
        if inst["time_zone"]["method"] == "assumed_utc":
            # Only a warning where local times were actually taken as UTC
            # (an instance seen only in EVTX has UTC times of its own).
            if assumed[inst["group"]]:
                console.print(safe_text(f"warning: {label}: no time-zone evidence and no --tz: "
                                   f"{assumed[inst['group']]} local times taken as UTC (tz_source assumed_utc)",
                                   style="yellow"))
            continue
        for note in inst["time_zone"].get("notes", []):
            console.print(safe_text(f"warning: {label}: {note}", style="yellow"))
    for root in m["unattributed_paths"]:
        console.print(safe_text(f"warning: several instances under {root}; inputs that name none stay unattributed",
                           style="yellow"))
    for item in m["inputs"]:
        if item["status"] != "complete":
            first = (item["errors"] or [w["message"] + (f" ({w['position']})" if w["position"] else "")
                                        for w in item["warning_details"]] or [""])[0]
            console.print(safe_text(f"{item['status']}: {item['path']}: {first.splitlines()[0] if first else ''}"
                               f"{' (+' + str(item['warnings'] - 1) + ' more warnings)' if item['warnings'] > 1 else ''}",
                               style="red"))
    for p in m["problems"]:
        console.print(safe_text(f"skipped: {p['path']}: {p['message']}", style="yellow"))
    console.print(safe_text(f"{result.rows} events written to {m['output']['path']} "
                       f"(manifest: {result.manifest_path}); exit status {result.exit_code}"))

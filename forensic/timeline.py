"""``timeline``: evidence folders in, one sorted timeline and a manifest out.

Phases: discover -> first pass (hash, instance and time evidence) ->
attribute inputs to instances and build their time contexts -> parse every
input in parallel into sorted runs -> merge the runs into the output ->
manifest.  Nothing is ever written next to the evidence; scratch files live
in a hidden folder beside the output and are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import tzinfo as TzInfo
from typing import Any

from forensic import __version__
from forensic.correlate import Correlator, ObjectFacts, cycle_bursts, setup_windows
from forensic.discovery import DiscoveryResult, InputFile, discover
from forensic.executors import TaskFailed, make_executor
from forensic.instances import InstanceDirectory, build_directory
from forensic.manifest import write_manifest
from forensic.model import InputEvidence
from forensic.pieces import (
    first_pass_tasks,
    join_first_pass,
    join_reports,
    split_tasks,
    task_bytes,
)
from forensic.pipeline import (
    InputReport,
    ParseTask,
    PrescanResult,
    PrescanTask,
    run_parse_task,
    run_prescan_task,
)
from forensic.sorting import merge_runs
from forensic.sources import apply_machine_evidence, containers_manifest
from forensic.timezones import zone_label
from forensic.writers import TimelineWriter


@dataclass
class RunOptions:
    paths: list[str]
    output: str
    fmt: str
    cli_zone: TzInfo | None = None
    cli_zone_text: str | None = None
    workers: int = 1
    parser_options: dict[str, Any] = field(default_factory=dict)
    rule_paths: list[str] = field(default_factory=list)
    csv_bom: bool = False
    # Dask distributed (forensic.executor_dask): None = the local pool;
    # "local" = an in-process LocalCluster; "tcp://host:port" = a cluster.
    scheduler: str | None = None
    # Folder for the scratch run files (default: beside OUT); with a cluster
    # it must be on storage every worker reads and writes.
    scratch: str | None = None
    # "file": one sorted timeline file; "dataset": a Parquet dataset
    # directory, hive-partitioned by host and month (forensic.dataset).
    layout: str = "file"
    command_line: list[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class RunResult:
    exit_code: int
    rows: int
    discovery: DiscoveryResult
    reports: dict[str, InputReport]
    prescan: dict[str, PrescanResult]
    directory: InstanceDirectory
    manifest_path: str
    manifest: dict[str, Any]


ProgressHook = Callable[[str, InputFile | None, int], None]  # (phase, input, bytes)


def run_timeline(opts: RunOptions, progress: ProgressHook | None = None) -> RunResult:
    started = datetime.now(UTC)
    hook = progress or (lambda phase, item, n: None)
    found = discover(opts.paths)
    hook("inputs", None, len(found.inputs))
    hook("discovered", None, sum(i.size for i in found.inputs))

    executor = make_executor(opts.workers, opts.scheduler)
    try:
        scratch_parent = opts.scratch or os.path.dirname(os.path.abspath(opts.output))
        require_visible = getattr(executor, "require_visible", None)
        if require_visible is not None:  # a cluster: evidence and scratch must be shared
            shared = [*opts.paths, scratch_parent]
            if opts.layout == "dataset":  # workers write the parts beside OUT
                shared.append(os.path.dirname(os.path.abspath(opts.output)))
            require_visible(shared)
        prescan: dict[str, PrescanResult] = {}
        tasks = first_pass_tasks([PrescanTask(i.path, i.display_path, i.size, i.parser_name)
                                  for i in found.inputs + found.skipped + found.containers], opts.workers)
        halves: dict[str, dict[str, PrescanResult]] = {}
        for task, result in executor.map_unordered(run_prescan_task, tasks):
            if isinstance(result, TaskFailed):
                result = PrescanResult(task.path, None, None, str(result))
            if task.part == "all":
                prescan[task.path] = result
            else:
                halves.setdefault(task.path, {})[task.part] = result
        for path, two in halves.items():
            prescan[path] = join_first_pass(two["hash"], two["scan"])
        evidence: dict[str, InputEvidence] = {p: r.evidence for p, r in prescan.items() if r.evidence is not None}
        apply_machine_evidence(found, evidence)  # registry time zone of archives / images
        directory = build_directory(found.inputs, evidence, opts.cli_zone)
        bursts = cycle_bursts(directory, evidence)
        setups = setup_windows(directory, evidence)

        scratch = tempfile.mkdtemp(prefix=".mssql-forensic-", dir=scratch_parent)
        written: Counter = Counter()  # rows in the output per input (display path)
        reports: dict[str, InputReport] = {}
        writer: TimelineWriter | None = None
        try:
            parse_tasks = []
            for item in found.inputs:
                pre = prescan[item.path]
                if pre.sha256 is None:  # unreadable since discovery
                    rep = InputReport(item.path, item.display_path, item.parser_name or "")
                    rep.damaged = True
                    rep.errors.append(pre.error or "cannot read")
                    reports[item.path] = rep
                    continue
                att = directory.attributions[item.path]
                parse_tasks.append(ParseTask(
                    path=item.path, display_path=item.display_path, root=item.root, size=item.size,
                    sha256=pre.sha256, parser_name=item.parser_name or "", host=att.host,
                    instance=att.instance, time_context=directory.contexts[att.group],
                    options=dict(opts.parser_options), rule_paths=list(opts.rule_paths),
                    annotations={"cycle_burst": bursts[att.group]} if att.group in bursts else {},
                    windows={"setup_mode": setups[att.group]} if att.group in setups else {},
                    spill_dir=scratch))
            # Big logs in pieces (forensic.pieces), then big tasks first:
            # every worker busy to the end.
            parse_tasks = split_tasks(parse_tasks, {p: r.evidence.cuts for p, r in prescan.items() if r.evidence},
                                      opts.workers)
            parse_tasks.sort(key=lambda t: -task_bytes(t))
            by_path = {i.path: i for i in found.inputs}
            tasks_left = Counter(t.path for t in parse_tasks)
            pieces: dict[str, list] = {}
            for task, result in executor.map_unordered(run_parse_task, parse_tasks):
                if isinstance(result, TaskFailed):
                    rep = InputReport(task.path, task.display_path, task.parser_name)
                    rep.damaged = True
                    where = "" if task.span is None else f" (piece from byte {task.span.start})"
                    rep.errors.append(f"{result}{where}")
                    result = rep
                if task.span is None:
                    reports[task.path] = result
                else:
                    pieces.setdefault(task.path, []).append((task.span, result))
                tasks_left[task.path] -= 1
                if not tasks_left[task.path]:
                    hook("parsed", by_path[task.path], by_path[task.path].size)
            for path, parts in pieces.items():
                reports[path] = join_reports(parts)
            runs = [r for rep in reports.values() for r in rep.runs]
            hook("merging", None, 0)
            facts = ObjectFacts()
            for rep in reports.values():
                facts.merge(rep.facts)
            if opts.layout == "dataset":
                # Each worker merges, correlates and writes one input's parts.
                from forensic.dataset import write_dataset
                rows, parts_written = write_dataset(executor, opts.output, reports, facts, scratch)
                written.update(parts_written)
            else:
                release = getattr(executor, "release", None)
                if release is not None:  # the workers exit during the merge, not after it
                    release()
                writer = TimelineWriter(opts.output, opts.fmt, csv_bom=opts.csv_bom)
                correlate = Correlator(facts)
                writer.write_all(_count_rows((correlate(b) for b in merge_runs(runs, scratch, consume=True)), written))
                writer.close()
                rows = writer.rows
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        executor.close()

    for rep in reports.values():
        _reconcile(rep, written.get(rep.display_path, 0))
    exit_code = 1 if (any(r.damaged for r in reports.values())
                      or any("cannot" in msg for _p, msg in found.problems)) else 0
    finished = datetime.now(UTC)
    manifest_path = opts.output + ".manifest.json"
    manifest = build_manifest(opts, found, prescan, directory, reports, rows, exit_code, started, finished, bursts)
    write_manifest(manifest_path, manifest)
    return RunResult(exit_code, rows, found, reports, prescan, directory, manifest_path, manifest)


def _time_zone_entry(group: str, rep: InputReport | None, ctx) -> dict[str, Any]:
    tz_sources = dict(rep.tz_sources) if rep else {}
    if tz_sources and set(tz_sources) == {"utc"}:
        # The artifact stores UTC itself (EVTX): no local-time decision applied.
        return {"group": group, "tz_sources": tz_sources, "method": "utc",
                "notes": ["the artifact stores UTC times"]}
    return {"group": group, "tz_sources": tz_sources, **ctx.describe()}


def _count_rows(batches, written: Counter):
    """Pass batches through, counting rows per input (``source_file``)."""
    import pyarrow.compute as pc
    for batch in batches:
        for item in pc.value_counts(batch.column("source_file")).to_pylist():
            written[item["values"]] += item["counts"]
        yield batch


def _records(events: int, written: int, lost: int, stats: dict[str, Any]) -> dict[str, Any]:
    """Record accounting for one input (the manifest's ``records``).

    ``read``: records the parser took from the input (its own count where it
    gives one, else events + lost); ``skipped``: read but not timeline
    material (e.g. EVTX records of no SQL Server interest); ``lost``: dropped
    because of damage (from the parser's warnings); ``recovered``: kept
    although a stock reader would drop them (e.g. EVTX chunks past a stale
    header); ``events``: rows the parser produced; ``written``: rows of this
    input in the output.  ``reconciled``: written == events, and where the
    parser counts for itself, read == events + skipped and its lost count
    equals the warnings'.
    """
    skipped = int(stats.get("records_skipped") or 0)
    read = stats.get("records_read")
    problems = []
    if written != events:
        problems.append(f"{events} events parsed but {written} rows written")
    if read is not None:
        if read != events + skipped:
            problems.append(f"parser read {read} records: {events} events + {skipped} skipped != {read}")
        if "records_lost" in stats and stats["records_lost"] != lost:
            problems.append(f"parser counts {stats['records_lost']} lost records, its warnings {lost}")
    else:
        read = events + lost
    return {"read": read, "events": events, "written": written, "skipped": skipped, "lost": lost,
            "recovered": int(stats.get("records_recovered") or 0), "reconciled": not problems,
            "problems": problems}


def _reconcile(rep: InputReport, written: int) -> None:
    rep.records = _records(rep.events, written, rep.lost_records, rep.parser_stats or {})
    if rep.records["problems"]:
        rep.damaged = True
        rep.errors.extend("record accounting: " + p for p in rep.records["problems"])


def build_manifest(opts: RunOptions, found: DiscoveryResult, prescan: dict[str, PrescanResult],
                   directory: InstanceDirectory, reports: dict[str, InputReport], rows: int, exit_code: int,
                   started: datetime, finished: datetime, bursts: dict[str, list[str]]) -> dict[str, Any]:
    inputs = []
    flags: Counter = Counter()
    for item in found.inputs:
        rep = reports.get(item.path)
        pre = prescan.get(item.path)
        att = directory.attributions[item.path]
        ctx = directory.contexts[att.group]
        ev = pre.evidence if pre else None
        if rep:
            flags.update(rep.flags)
        status = "complete"
        if rep is None or rep.errors:
            status = "error" if (rep is None or not rep.events) else "damaged"
        elif rep.damaged:
            status = "damaged"
        inputs.append({
            "path": item.display_path,
            "size": item.size,
            "sha256": pre.sha256 if pre else None,
            "artifact_type": item.artifact_type,
            "parser": item.parser_name,
            "status": status,
            "events": rep.events if rep else 0,
            "warnings": rep.warning_count if rep else 0,
            "warning_details": rep.warnings if rep else [],
            "errors": (rep.errors if rep else []) + ([pre.error] if pre and pre.error else []),
            "lost_records": rep.lost_records if rep else 0,
            "records": rep.records if rep else _records(0, 0, 0, {}),
            "flags": dict(rep.flags) if rep else {},
            "event_types": dict(rep.event_types) if rep else {},
            "first_timestamp": rep.first_timestamp if rep else None,
            "last_timestamp": rep.last_timestamp if rep else None,
            "host": att.host,
            "instance": att.instance,
            "attribution": att.how,
            "time_zone": _time_zone_entry(att.group, rep, ctx),
            "parser_stats": rep.parser_stats if rep else {},
            "pieces": rep.pieces if rep else 0,
            "facts": ev.facts if ev else {},
        })
    skipped = [{"path": i.display_path, "size": i.size,
                "sha256": prescan[i.path].sha256 if i.path in prescan else None,
                "reason": "not a recognised artifact"} for i in found.skipped]
    instances = []
    seen_groups = set()
    for att in directory.attributions.values():
        if att.group in seen_groups:
            continue
        seen_groups.add(att.group)
        members = [p for p, a in directory.attributions.items() if a.group == att.group]
        instances.append({"group": att.group, "host": att.host, "instance": att.instance,
                          "inputs": len(members), "time_zone": directory.contexts[att.group].describe(),
                          "errorlog_cycle_burst": bursts.get(att.group, [])})
    return {
        "tool": "mssql-forensic",
        "version": __version__,
        "command_line": opts.command_line,
        "started_utc": started.isoformat().replace("+00:00", "Z"),
        "finished_utc": finished.isoformat().replace("+00:00", "Z"),
        "options": {"format": opts.fmt, "tz": opts.cli_zone_text,
                    "tz_resolved": zone_label(opts.cli_zone) if opts.cli_zone else None,
                    "workers": opts.workers, "scheduler": opts.scheduler, **{k: v for k, v in opts.parser_options.items()},
                    "rules": opts.rule_paths},
        "output": {"path": opts.output, "format": opts.fmt, "layout": opts.layout, "rows": rows},
        "exit_code": exit_code,
        "inputs": inputs,
        "skipped": skipped,
        "problems": [{"path": p, "message": m} for p, m in found.problems],
        "containers": containers_manifest(found, prescan),
        "instances": instances,
        "unattributed_paths": directory.ambiguous_roots,
        "totals": {
            "inputs": len(found.inputs),
            "skipped": len(found.skipped),
            "events": sum(r.events for r in reports.values()),
            "warnings": sum(r.warning_count for r in reports.values()),
            "lost_records": sum(r.lost_records for r in reports.values()),
            "damaged_inputs": sum(1 for r in reports.values() if r.damaged),
            "unreconciled_inputs": sum(1 for r in reports.values() if not r.records.get("reconciled", True)),
            "flags": dict(flags),
        },
    }

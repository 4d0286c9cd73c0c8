"""``report``: the examiner's report, one self-contained HTML file.

The report is read from a timeline (Parquet or the JSON Lines timeline) and
its run manifest (``TIMELINE.manifest.json``) when there is one.  It holds:
the case summary (run, inputs with hashes, time-zone decisions, warnings),
the findings most severe first with their evidence and why each fired, an
inline SVG picture of the flagged events per instance and source over time
with the attack window shaded, the flagged events as a table, and the
evidence inputs with their SHA-256.

Safety: the file carries no script, font, image or link to anything outside
itself, and a Content-Security-Policy that forbids all of them, so it opens
offline (from a USB stick) and evidence text can never run.  Every piece of
evidence text (object names, statements, paths, the manifest) goes through
:func:`h`: HTML-escaped, with control, bidi-override and zero-width
characters shown as ``<U+202E>``-style markers so that nothing is hidden or
reordered on screen.

Memory: the timeline is read in Parquet record batches (JSON Lines line by
line); only flagged rows are turned into Python objects, and of those only
what the report shows (capped per finding and for the table).  Activity of
all events is kept as per-lane histogram counts.
"""

from __future__ import annotations

import hashlib
import heapq
import html
import json
import math
import os
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from forensic import __version__
from forensic.findings import SEVERITY_RANK, SUBJECT_FLAGS, Finding, FindingsError, build_findings
from forensic.instances import norm_host

MAX_TABLE_ROWS = 5_000       # flagged events listed in the events table
MAX_EVIDENCE_SHOWN = 200     # evidence events listed per finding
MAX_FIRST_LINE = 300         # characters of a message's first line shown
MAX_TEXT = 1_200             # characters of a message's further lines shown (statements)
BATCH_ROWS = 10_000          # Parquet rows per batch: attributes JSON makes rows big

SOURCE_ORDER = ("errorlog", "sqlagent_log", "default_trace", "evtx", "master_export")
FLAG_COLOURS = {
    "startup_procedure": "#d62728",
    "clr_assembly_load": "#9467bd",
    "clr_enabled": "#c5b0d5",
    "xp_cmdshell": "#ff7f0e",
    "ole_automation": "#8c564b",
    "extended_procedure": "#e377c2",
    "sqlservr_child_process": "#1f77b4",
    "audit_tampering": "#2ca02c",
    "sysadmin_granted": "#bcbd22",
}
OTHER_COLOUR = "#7f7f7f"
FLAG_ORDER = tuple(SUBJECT_FLAGS) + tuple(f for f in FLAG_COLOURS if f not in SUBJECT_FLAGS)

_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")


class ReportError(ValueError):
    """The timeline cannot be read for a report (a usage error)."""


# -- escaping -----------------------------------------------------------------

def _mark(m: re.Match) -> str:
    return f"\u27e8U+{ord(m.group(0)):04X}\u27e9"


def visible(text: Any) -> str:
    """Text with invisible and reordering characters shown as markers."""
    return _HIDDEN.sub(_mark, "" if text is None else str(text))


def h(text: Any) -> str:
    """Escape for HTML text and (quoted) attribute values."""
    return html.escape(visible(text), quote=True)


# -- reading the timeline -----------------------------------------------------

def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else None


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _us(ts: datetime) -> int:
    d = ts - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def timeline_kind(path: str) -> str:
    """``parquet``, ``jsonl`` or ``dataset`` (a ``--layout dataset`` folder);
    anything else is a :class:`ReportError`."""
    if os.path.isdir(path):
        from forensic.dataset import is_dataset
        if is_dataset(path):
            return "dataset"
        raise ReportError(f"{path}: a folder that is not a timeline dataset (written by timeline --layout dataset)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head == b"PAR1":
                return "parquet"
            fh.seek(0)
            first = b""
            for line in fh:
                if line.strip():
                    first = line.strip()
                    break
    except OSError as exc:
        raise ReportError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    if first.startswith(b"{"):
        try:
            obj = json.loads(first)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "datetime" in obj and "flags" in obj:
            raise ReportError(f"{path}: a Timesketch export; give the Parquet or JSON Lines timeline")
        if isinstance(obj, dict) and {"timestamp", "flags", "source", "message"} <= set(obj):
            return "jsonl"
    if not first:
        return "jsonl"  # an empty timeline
    raise ReportError(f"{path}: not a mssql-forensic timeline (Parquet or JSON Lines; CSV exports are "
                      "lossy and cannot be reported on)")


@dataclass
class Lane:
    """One instance's one source in the picture."""
    source: str
    flagged_us: array = field(default_factory=lambda: array("q"))
    flagged_flag: array = field(default_factory=lambda: array("B"))
    events: int = 0
    first_us: int | None = None
    last_us: int | None = None


@dataclass
class InstanceGroup:
    key: tuple[str, str]
    host: str | None
    instance: str | None
    lanes: dict[str, Lane] = field(default_factory=dict)


@dataclass
class Scan:
    """What one pass over the timeline keeps."""
    rows: int = 0
    flagged: int = 0
    flagged_no_time: int = 0
    first_us: int | None = None
    last_us: int | None = None
    per_source: Counter = field(default_factory=Counter)
    per_flag: Counter = field(default_factory=Counter)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)   # source_file -> sha, rows, flagged
    groups: dict[tuple[str, str], InstanceGroup] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    details: dict[tuple, dict[str, Any]] = field(default_factory=dict)   # evidence key -> row
    # chart id -> (host key, instance key, source) -> bin -> events
    activity: dict[str, dict[tuple, Counter]] = field(default_factory=dict)


def instance_key(host: str | None, instance: str | None) -> tuple[str, str]:
    return (norm_host(host) or "", (instance or "").strip().upper())


def evidence_key(source_file: str | None, source_record: int | None, ts: str | None) -> tuple:
    return (source_file, source_record, ts)


@dataclass
class Chart:
    """One picture: a time range and the instances it shows."""
    id: str
    title: str
    start_us: int
    end_us: int
    keys: list[tuple[str, str]]
    bins: int = 170

    def bin_of(self, us: int) -> int | None:
        if us < self.start_us or us > self.end_us:
            return None
        span = max(self.end_us - self.start_us, 1)
        return min(int((us - self.start_us) * self.bins // span), self.bins - 1)


_COLUMNS = ["timestamp", "timestamp_desc", "message", "source", "event_type", "event_id", "host", "instance",
            "user", "database", "object_name", "object_type", "flags", "source_file", "source_sha256",
            "source_record", "local_time", "tz_source", "attributes"]


def _iter_batches(path: str, kind: str) -> Iterator[pa.RecordBatch | list[dict[str, Any]]]:
    if kind == "dataset":
        from forensic.dataset import DatasetError, iter_timeline_batches
        try:
            yield from iter_timeline_batches(path, _COLUMNS, batch_size=BATCH_ROWS)
        except DatasetError as exc:
            raise ReportError(str(exc)) from None
        return
    if kind == "parquet":
        from forensic.dataset import DatasetError, open_timeline_file
        try:
            pf = open_timeline_file(path, _COLUMNS)
        except DatasetError as exc:
            raise ReportError(str(exc)) from None
        yield from pf.iter_batches(columns=_COLUMNS, batch_size=BATCH_ROWS)
        return
    chunk: list[dict[str, Any]] = []
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                row["timestamp"] = _parse_iso(row.get("timestamp"))
            except (ValueError, AttributeError, TypeError):
                raise ReportError(f"{path}: line {n} is not a timeline row") from None
            for c in _COLUMNS:
                row.setdefault(c, None)
            row["flags"] = row["flags"] or []
            chunk.append(row)
            if len(chunk) >= 5_000:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def scan_timeline(path: str, kind: str, charts: list[Chart], wanted: set[tuple],
                  finding_of: dict[tuple, str]) -> Scan:
    """One pass: counts, per-lane activity, the flagged rows the report shows."""
    scan = Scan()
    for chart in charts:
        scan.activity[chart.id] = defaultdict(Counter)
    chart_sets = [(c, set(c.keys)) for c in charts]
    for batch in _iter_batches(path, kind):
        if isinstance(batch, pa.RecordBatch):
            _count_arrow(scan, batch, chart_sets)
            mask = pc.fill_null(pc.greater(pc.list_value_length(batch.column("flags")), 0), False)
            flagged = batch.filter(mask).to_pylist()
        else:
            _count_rows(scan, batch, chart_sets)
            flagged = [r for r in batch if r["flags"]]
        for row in flagged:
            _take_flagged(scan, row, wanted, finding_of, ordered=kind != "dataset")
    if kind == "dataset":
        # Parts are sorted each on its own: the table keeps the earliest rows.
        scan.table = sorted((item for _key, _n, item in scan.table), key=_table_key)
    return scan


def _table_key(slim: dict[str, Any]) -> tuple:
    return (slim["timestamp"] is None, slim["timestamp"] or "", slim["source_file"] or "",
            slim["source_record"] if slim["source_record"] is not None else 2**63)


def _group(scan: Scan, host: str | None, instance: str | None) -> InstanceGroup:
    key = instance_key(host, instance)
    g = scan.groups.get(key)
    if g is None:
        g = scan.groups[key] = InstanceGroup(key, host, instance)
    return g


def _lane(scan: Scan, host: str | None, instance: str | None, source: str) -> Lane:
    g = _group(scan, host, instance)
    lane = g.lanes.get(source)
    if lane is None:
        lane = g.lanes[source] = Lane(source)
    return lane


def _note_range(obj, first: int | None, last: int | None) -> None:
    if first is not None and (obj.first_us is None or first < obj.first_us):
        obj.first_us = first
    if last is not None and (obj.last_us is None or last > obj.last_us):
        obj.last_us = last


def _count_arrow(scan: Scan, batch: pa.RecordBatch, chart_sets) -> None:
    scan.rows += batch.num_rows
    table = pa.Table.from_batches([batch.select(["timestamp", "host", "instance", "source", "source_file",
                                                 "source_sha256"])])
    ts_us = pc.cast(table.column("timestamp"), pa.int64())
    table = table.append_column("us", ts_us)
    per_lane = table.group_by(["host", "instance", "source"]).aggregate(
        [("us", "min"), ("us", "max"), ([], "count_all")]).to_pylist()
    for r in per_lane:
        lane = _lane(scan, r["host"], r["instance"], r["source"])
        lane.events += r["count_all"]
        scan.per_source[r["source"]] += r["count_all"]
        _note_range(lane, r["us_min"], r["us_max"])
        _note_range(scan, r["us_min"], r["us_max"])
    for r in table.group_by(["source_file", "source_sha256"]).aggregate([([], "count_all")]).to_pylist():
        item = scan.inputs.setdefault(r["source_file"], {"sha256": r["source_sha256"], "rows": 0, "flagged": 0})
        item["rows"] += r["count_all"]
    for chart, keys in chart_sets:
        us = table.column("us")
        inside = pc.fill_null(pc.and_(pc.greater_equal(us, chart.start_us), pc.less_equal(us, chart.end_us)), False)
        sub = table.select(["host", "instance", "source", "us"]).filter(inside)
        if not sub.num_rows:
            continue
        span = max(chart.end_us - chart.start_us, 1)
        bins = pc.min_element_wise(pc.divide(pc.multiply(pc.subtract(sub.column("us"), chart.start_us), chart.bins),
                                             span), chart.bins - 1)
        sub = sub.append_column("bin", bins)
        hist = scan.activity[chart.id]
        for r in sub.group_by(["host", "instance", "source", "bin"]).aggregate([([], "count_all")]).to_pylist():
            key = instance_key(r["host"], r["instance"])
            if key in keys:
                hist[(*key, r["source"])][r["bin"]] += r["count_all"]


def _count_rows(scan: Scan, rows: list[dict[str, Any]], chart_sets) -> None:
    scan.rows += len(rows)
    for r in rows:
        lane = _lane(scan, r["host"], r["instance"], r["source"])
        lane.events += 1
        scan.per_source[r["source"]] += 1
        item = scan.inputs.setdefault(r["source_file"], {"sha256": r["source_sha256"], "rows": 0, "flagged": 0})
        item["rows"] += 1
        ts = r["timestamp"]
        if ts is None:
            continue
        us = _us(ts)
        _note_range(lane, us, us)
        _note_range(scan, us, us)
        key = instance_key(r["host"], r["instance"])
        for chart, keys in chart_sets:
            if key in keys:
                b = chart.bin_of(us)
                if b is not None:
                    scan.activity[chart.id][(*key, r["source"])][b] += 1


def _subject_flag(flags: list[str]) -> str:
    return next((f for f in FLAG_ORDER if f in flags), flags[0])


def _take_flagged(scan: Scan, row: dict[str, Any], wanted: set[tuple], finding_of: dict[tuple, str],
                  ordered: bool = True) -> None:
    scan.flagged += 1
    flags = list(row["flags"])
    scan.per_flag.update(flags)
    item = scan.inputs.get(row["source_file"])
    if item is not None:
        item["flagged"] += 1
    ts = row["timestamp"]
    if ts is not None and ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    lane = _lane(scan, row["host"], row["instance"], row["source"])
    if ts is None:
        scan.flagged_no_time += 1
    else:
        lane.flagged_us.append(_us(ts))
        subject = _subject_flag(flags)
        lane.flagged_flag.append(FLAG_ORDER.index(subject) if subject in FLAG_ORDER else 255)
    key = evidence_key(row["source_file"], row["source_record"], _iso(ts))
    # Unordered input (a dataset): the table is a heap of the earliest rows.
    need_table = len(scan.table) < MAX_TABLE_ROWS or not ordered
    if key not in wanted and not need_table:
        return
    try:
        attrs = json.loads(row["attributes"]) if isinstance(row["attributes"], str) else (row["attributes"] or {})
    except ValueError:
        attrs = {}
    message = row["message"] or ""
    slim = {
        "timestamp": _iso(ts), "timestamp_desc": row["timestamp_desc"], "message": _clip(message),
        "message_len": len(message), "source": row["source"],
        "event_type": row["event_type"], "event_id": row["event_id"], "host": row["host"],
        "instance": row["instance"], "user": row["user"], "database": row["database"],
        "object_name": row["object_name"], "object_type": row["object_type"], "flags": flags,
        "source_file": row["source_file"], "source_record": row["source_record"],
        "local_time": row["local_time"], "tz_source": row["tz_source"],
        "rules": [str(r) for r in (attrs.get("rules") or [])] if isinstance(attrs, dict) else [],
        "finding": finding_of.get(key),
    }
    if key in wanted:
        scan.details[key] = slim
    if need_table and ordered:
        scan.table.append(slim)
    elif need_table:  # (negated key, tie-break, row): a max-heap of the earliest MAX_TABLE_ROWS
        item = (_neg_key(_table_key(slim)), scan.flagged, slim)
        if len(scan.table) < MAX_TABLE_ROWS:
            heapq.heappush(scan.table, item)
        elif item[0] > scan.table[0][0]:
            heapq.heapreplace(scan.table, item)


class _neg_key(tuple):
    """Reverses the order of a key (a max-heap on heapq's min-heap)."""
    __slots__ = ()

    def __lt__(self, other):
        return tuple.__gt__(self, other)

    def __gt__(self, other):
        return tuple.__lt__(self, other)


# -- the case -----------------------------------------------------------------

@dataclass
class Case:
    timeline_path: str
    timeline_sha256: str
    timeline_size: int
    manifest_path: str | None
    manifest_sha256: str | None
    manifest: dict[str, Any] | None
    findings: list[Finding]
    finding_ids: list[str]
    scan: Scan
    charts: list[Chart]
    windows: dict[tuple[str, str], tuple[int, int, str]]   # instance key -> (first, last, basis)
    warnings: list[str]
    input_ids: dict[str, str]
    title: str
    generated_utc: str


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(timeline_path: str, manifest_path: str | None) -> tuple[str | None, dict | None, list[str]]:
    path = manifest_path or timeline_path + ".manifest.json"
    if not os.path.isfile(path):
        if manifest_path:
            raise ReportError(f"no such manifest file: {manifest_path!r}")
        return None, None, [f"No run manifest ({os.path.basename(path)}) next to the timeline: inputs, "
                            "hashes and time-zone decisions below come from the timeline rows only."]
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return path, None, [f"The run manifest {path} cannot be read ({exc}); it is left out."]
    return path, data, []


def attack_windows(findings: list[Finding]) -> dict[tuple[str, str], tuple[int, int, str]]:
    """Per instance: first to last evidence of its most severe findings."""
    by_inst: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        by_inst[instance_key(f.host, f.instance)].append(f)
    out = {}
    for key, fs in by_inst.items():
        best = min(SEVERITY_RANK[f.severity] for f in fs)
        chosen = [f for f in fs if SEVERITY_RANK[f.severity] == best and f.first_seen]
        if not chosen:
            continue
        first = min(_us(_parse_iso(f.first_seen)) for f in chosen)
        last = max(_us(_parse_iso(f.last_seen or f.first_seen)) for f in chosen)
        basis = next(s for s, r in SEVERITY_RANK.items() if r == best)
        out[key] = (first, last, basis)
    return out


def _pad(first: int, last: int) -> tuple[int, int]:
    span = last - first
    pad = max(span // 20, 60_000_000)
    return first - pad, last + pad


def plan_charts(findings: list[Finding]) -> list[Chart]:
    """The overview of every instance with findings, and a close-up of each
    instance whose activity would be a sliver in the overview."""
    spans: dict[tuple[str, str], list[int]] = {}
    order: list[tuple[str, str]] = []
    for f in sorted(findings, key=lambda f: f.first_seen or "~"):
        key = instance_key(f.host, f.instance)
        if key not in spans:
            spans[key] = []
            order.append(key)
        for ts in (f.first_seen, f.last_seen):
            if ts:
                spans[key].append(_us(_parse_iso(ts)))
    timed = [k for k in order if spans[k]]
    if not timed:
        return []
    first = min(min(spans[k]) for k in timed)
    last = max(max(spans[k]) for k in timed)
    start, end = _pad(first, last)
    charts = [Chart("overview", "All instances", start, end, timed)]
    if len(timed) > 1:
        for n, key in enumerate(timed, 1):
            lo, hi = min(spans[key]), max(spans[key])
            if (hi - lo) < 0.25 * (end - start):
                s, e = _pad(lo, hi)
                charts.append(Chart(f"detail{n}", "", s, e, [key]))
    return charts


def build_case(timeline_path: str, manifest_path: str | None = None, title: str | None = None) -> Case:
    if not os.path.isfile(timeline_path) and not os.path.isdir(timeline_path):
        raise ReportError(f"no such timeline file: {timeline_path!r}")
    kind = timeline_kind(timeline_path)
    mpath, manifest, warnings = load_manifest(timeline_path, manifest_path)
    try:
        findings = (build_findings(timeline_path) if kind in ("parquet", "dataset") or os.path.getsize(timeline_path)
                    else [])
    except FindingsError as exc:
        raise ReportError(str(exc)) from None
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ReportError(f"{timeline_path}: cannot read its flagged events ({exc})") from None
    finding_ids = [f"F{n}" for n in range(1, len(findings) + 1)]
    finding_of: dict[tuple, str] = {}
    wanted: set[tuple] = set()
    for fid, f in zip(finding_ids, findings, strict=True):
        for n, e in enumerate(f.evidence):
            key = evidence_key(e["source_file"], e["source_record"], e["timestamp"])
            finding_of.setdefault(key, fid)
            if n < MAX_EVIDENCE_SHOWN:
                wanted.add(key)
    charts = plan_charts(findings)
    scan = scan_timeline(timeline_path, kind, charts, wanted, finding_of)
    windows = attack_windows(findings)
    warnings.extend(_warnings(manifest, scan))
    input_ids = _input_ids(manifest, scan)
    if kind == "dataset":  # digest over the parts' names and hashes (forensic.dataset)
        from forensic.dataset import dataset_digest
        timeline_sha256, timeline_size = dataset_digest(timeline_path)
    else:
        timeline_sha256, timeline_size = _sha256(timeline_path), os.path.getsize(timeline_path)
    return Case(
        timeline_path=timeline_path, timeline_sha256=timeline_sha256,
        timeline_size=timeline_size, manifest_path=mpath,
        manifest_sha256=_sha256(mpath) if mpath and manifest is not None else None, manifest=manifest,
        findings=findings, finding_ids=finding_ids, scan=scan, charts=charts, windows=windows,
        warnings=warnings, input_ids=input_ids, title=title or "SQL Server compromise assessment",
        generated_utc=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"))


def _label(host: str | None, instance: str | None) -> str:
    return f"{host or '?'}\\{instance or '?'}"


def _warnings(manifest: dict | None, scan: Scan) -> list[str]:
    out: list[str] = []
    if scan.flagged_no_time:
        out.append(f"{scan.flagged_no_time} flagged event(s) have no time (state rows): listed, not drawn.")
    if not manifest:
        return out
    rows = (manifest.get("output") or {}).get("rows")
    if isinstance(rows, int) and rows != scan.rows:
        out.append(f"The manifest says {rows} events were written, the timeline holds {scan.rows}: "
                   "the timeline is not the file this manifest describes, or it was changed.")
    known = {i.get("path"): i.get("sha256") for i in manifest.get("inputs") or [] if isinstance(i, dict)}
    for path, item in scan.inputs.items():
        if path in known and known[path] and item["sha256"] and known[path] != item["sha256"]:
            out.append(f"{path}: SHA-256 in the timeline differs from the manifest.")
    assumed: Counter = Counter()
    for item in manifest.get("inputs") or []:
        tz = item.get("time_zone") or {}
        assumed[tz.get("group")] += (tz.get("tz_sources") or {}).get("assumed_utc", 0)
    for inst in manifest.get("instances") or []:
        label = _label(inst.get("host"), inst.get("instance"))
        tz = inst.get("time_zone") or {}
        if tz.get("method") == "assumed_utc":
            if assumed[inst.get("group")]:
                out.append(f"{label}: no time-zone evidence and no --tz: {assumed[inst.get('group')]} local "
                           "times taken as UTC (tz_source assumed_utc).")
            continue
        for note in tz.get("notes") or []:
            out.append(f"{label}: {note}")
    for root in manifest.get("unattributed_paths") or []:
        out.append(f"Several instances under {root}: inputs that name none stay unattributed.")
    for item in manifest.get("inputs") or []:
        if item.get("status") not in (None, "complete"):
            first = (item.get("errors") or [w.get("message", "") + (f" ({w['position']})" if w.get("position") else "")
                                            for w in item.get("warning_details") or []] or [""])[0]
            extra = f" (+{item['warnings'] - 1} more warnings)" if (item.get("warnings") or 0) > 1 else ""
            lost = f"; {item['lost_records']} records lost" if item.get("lost_records") else ""
            out.append(f"{item.get('status')}: {item.get('path')}: {str(first).splitlines()[0] if first else ''}"
                       f"{extra}{lost}")
    for p in manifest.get("problems") or []:
        out.append(f"skipped: {p.get('path')}: {p.get('message')}")
    return out


def _input_ids(manifest: dict | None, scan: Scan) -> dict[str, str]:
    paths = [i.get("path") for i in (manifest or {}).get("inputs") or [] if isinstance(i, dict)]
    paths += sorted(p for p in scan.inputs if p not in set(paths))
    return {p: f"E{n}" for n, p in enumerate(paths, 1)}


# -- rendering helpers --------------------------------------------------------

def _short(ts: str | None, ms: bool = True) -> str:
    if not ts:
        return "-"
    text = ts.replace("T", " ").replace("Z", "")
    if "." in text:
        head, frac = text.split(".", 1)
        return head + ("." + frac[:3] if ms else "")
    return text


def _duration(us: int) -> str:
    secs = us // 1_000_000
    if secs < 60:
        return f"{secs} s"
    mins = secs // 60
    if mins < 120:
        return f"{mins} min"
    hours = mins // 60
    if hours < 72:
        return f"{hours} h {mins % 60} min"
    return f"{hours // 24} days {hours % 24} h"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def _colour(flag: str) -> str:
    return FLAG_COLOURS.get(flag, OTHER_COLOUR)


def _chip(flag: str) -> str:
    return f'<span class="chip" style="--c:{_colour(flag)}">{h(flag)}</span>'


def _sev(sev: str) -> str:
    return f'<span class="sev sev-{h(sev)}">{h(sev)}</span>'


def _cite(case: Case, source_file: str | None, record: int | None) -> str:
    base = os.path.basename((source_file or "").replace("\\", "/").split("!")[-1]) or (source_file or "?")
    ref = case.input_ids.get(source_file or "")
    rec = f":{record}" if record is not None else ""
    link = f' <a class="ref" href="#{h(ref.lower())}">[{h(ref)}]</a>' if ref else ""
    return f'<span class="mono">{h(base)}{h(rec)}</span>{link}'


def _when(ts: str | None) -> str:
    """A UTC time as date over time of day (narrow table columns)."""
    text = _short(ts)
    if " " not in text:
        return h(text)
    day, clock = text.split(" ", 1)
    return f"{h(day)}<br>{h(clock)}"


def _cols(*widths: int | None) -> str:
    """Column widths, given in pixels of the 1184 px screen layout, as
    percentages so that the same table fits a printed page."""
    return "<colgroup>" + "".join(f'<col style="width:{w / 11.84:.1f}%">' if w else "<col>"
                                  for w in widths) + "</colgroup>"


def _clip(text: str | None) -> str:
    """The part of a message the report shows: the first line and the start of the rest."""
    first, nl, rest = (text or "").partition("\n")
    return first[:MAX_FIRST_LINE] + (nl + rest[:MAX_TEXT] if nl else "")


def _message(text: str, full_len: int = 0) -> str:
    first, _, rest = (text or "").partition("\n")
    out = f'<span class="msg1">{h(first)}</span>'
    if rest.strip():
        out += f'<pre class="more">{h(rest)}</pre>'
    cut = full_len - len(text or "")
    if cut > 0:
        out += f'<span class="muted"> [... {cut:,} more characters in the timeline]</span>'
    return out


# -- the picture --------------------------------------------------------------

_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
            172800, 604800]
_STEPS_M = [1, 3, 6, 12, 24, 60, 120]   # months


def _ticks(start_us: int, end_us: int, target: int = 8) -> list[tuple[int, str, str]]:
    """(position, main label, date line) of round times between start and end."""
    span_s = (end_us - start_us) / 1e6
    want = span_s / target
    out: list[tuple[int, str, str]] = []
    start, end = _from_us(start_us), _from_us(end_us)
    step_s = next((s for s in _STEPS_S if s >= want), None)
    if step_s is not None:
        first = math.ceil(start_us / (step_s * 1_000_000)) * step_s
        fmt = "%H:%M:%S" if step_s < 60 else ("%H:%M" if step_s < 86400 else "%Y-%m-%d")
        t = first
        last_date = None
        while t * 1_000_000 <= end_us:
            dt = _from_us(t * 1_000_000)
            date = dt.strftime("%Y-%m-%d")
            main = dt.strftime(fmt)
            sub = date if (step_s < 86400 and date != last_date) else ""
            last_date = date
            out.append((t * 1_000_000, main, sub))
            t += step_s
        return out
    months = next((m for m in _STEPS_M if m * 30.4 * 86400 >= want), _STEPS_M[-1])
    y, m = start.year, start.month
    while True:
        index = y * 12 + (m - 1)
        if index % months == 0:
            dt = datetime(y, m, 1, tzinfo=UTC)
            if dt > end:
                break
            if dt >= start:
                out.append((_us(dt), dt.strftime("%Y" if months >= 12 else "%Y-%m"), ""))
        m += 1
        if m > 12:
            y, m = y + 1, 1
        if y > end.year + 1:
            break
    return out


def _source_sort(source: str) -> tuple:
    return (SOURCE_ORDER.index(source) if source in SOURCE_ORDER else len(SOURCE_ORDER), source)


def render_chart(case: Case, chart: Chart) -> str:
    label_w, plot_w, right = 250, 900, 10
    lane_h, head_h, top, axis_h = 26, 22, 8, 36
    width = label_w + plot_w + right
    span = max(chart.end_us - chart.start_us, 1)

    def x(us: int) -> float:
        return label_w + (us - chart.start_us) * plot_w / span

    rows: list[tuple[str, Any]] = []
    for key in chart.keys:
        group = case.scan.groups.get(key)
        if group is None:
            continue
        rows.append(("head", group))
        for source in sorted(group.lanes, key=_source_sort):
            rows.append(("lane", (group, group.lanes[source])))
    height = top + sum(head_h if kind == "head" else lane_h for kind, _ in rows) + axis_h
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{h(chart.title or "timeline")}" xmlns="http://www.w3.org/2000/svg">']
    plot_top, plot_bottom = top, height - axis_h
    parts.append(f'<rect x="{label_w}" y="{plot_top}" width="{plot_w}" height="{plot_bottom - plot_top}" '
                 'fill="#fbfbfc" stroke="#d0d4da"/>')
    ticks = _ticks(chart.start_us, chart.end_us)
    for pos, main, sub in ticks:
        tx = x(pos)
        parts.append(f'<line x1="{tx:.1f}" y1="{plot_top}" x2="{tx:.1f}" y2="{plot_bottom}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{tx:.1f}" y="{plot_bottom + 16}" class="tick" text-anchor="middle">{h(main)}</text>')
        if sub:
            parts.append(f'<text x="{tx:.1f}" y="{plot_bottom + 30}" class="tick sub" '
                         f'text-anchor="middle">{h(sub)}</text>')
    parts.append(f'<text x="6" y="{plot_bottom + 16}" class="tick sub">times in UTC</text>')
    y = top
    activity = case.scan.activity.get(chart.id, {})
    bin_w = plot_w / chart.bins
    for kind, item in rows:
        if kind == "head":
            group = item
            n_lanes = len(group.lanes)
            block_h = head_h + n_lanes * lane_h
            window = case.windows.get(group.key)
            if window:
                wx1, wx2 = max(x(window[0]), label_w), min(x(window[1]), label_w + plot_w)
                if wx2 >= label_w and wx1 <= label_w + plot_w:
                    if wx2 - wx1 < 4:
                        wx1, wx2 = (wx1 + wx2) / 2 - 2, (wx1 + wx2) / 2 + 2
                    parts.append(f'<rect x="{wx1:.1f}" y="{y + 3}" width="{wx2 - wx1:.1f}" height="{block_h - 4}" '
                                 f'class="window"><title>{h("attack window " + _short(_iso(_from_us(window[0]))) + " to " + _short(_iso(_from_us(window[1]))) + " UTC")}</title></rect>')
            if y > top:
                parts.append(f'<line x1="0" y1="{y}" x2="{width}" y2="{y}" stroke="#9aa3ad"/>')
            parts.append(f'<text x="6" y="{y + 16}" class="inst">{h(_label(group.host, group.instance))}</text>')
            y += head_h
            continue
        group, lane = item
        parts.append(f'<line x1="{label_w}" y1="{y + lane_h}" x2="{label_w + plot_w}" y2="{y + lane_h}" '
                     'stroke="#eceef1"/>')
        flagged_n = len(lane.flagged_us)
        parts.append(f'<text x="18" y="{y + 17}" class="lane">{h(lane.source)}</text>')
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" class="lane count" text-anchor="end">'
                     f'{flagged_n:,} / {lane.events:,}</text>')
        hist = activity.get((*group.key, lane.source), {})
        if hist:
            peak = max(hist.values())
            for b, count in sorted(hist.items()):
                bh = 2 + (lane_h - 6) * math.log1p(count) / math.log1p(peak)
                parts.append(f'<rect x="{label_w + b * bin_w:.1f}" y="{y + lane_h - 2 - bh:.1f}" '
                             f'width="{max(bin_w - 0.6, 0.8):.1f}" height="{bh:.1f}" class="act"/>')
        # Flagged events: one mark per pixel and flag, the count in its tooltip.
        marks: dict[tuple[int, int], list[int]] = {}
        for us, fi in zip(lane.flagged_us, lane.flagged_flag, strict=True):
            if us < chart.start_us or us > chart.end_us:
                continue
            px = int(x(us))
            m = marks.get((px, fi))
            if m is None:
                marks[(px, fi)] = [1, us, us]
            else:
                m[0] += 1
                m[1], m[2] = min(m[1], us), max(m[2], us)
        # Several flags at one pixel share the lane's height, so none hides another.
        per_px: dict[int, int] = Counter(px for px, _fi in marks)
        slot: Counter = Counter()
        for (px, fi), (count, lo, hi) in sorted(marks.items()):
            flag = FLAG_ORDER[fi] if fi < len(FLAG_ORDER) else "other"
            when = _short(_iso(_from_us(lo)))
            if count > 1:
                when = f"{count} events {when} to {_short(_iso(_from_us(hi)))}"
            tip = f"{_label(group.host, group.instance)} {lane.source}: {flag}, {when} UTC"
            mh = (lane_h - 6) / per_px[px]
            my = y + 3 + slot[px] * mh
            slot[px] += 1
            parts.append(f'<rect x="{px - 1.5}" y="{my:.1f}" width="4" height="{mh:.1f}" fill="{_colour(flag)}" '
                         f'stroke="#fff" stroke-width="0.5"><title>{h(tip)}</title></rect>')
        y += lane_h
    parts.append("</svg>")
    return "".join(parts)


def render_pictures(case: Case) -> str:
    if not case.charts:
        return '<p class="muted">No flagged event has a time: nothing to draw.</p>'
    out = []
    legend = "".join(f'<span class="lg"><i style="background:{_colour(f)}"></i>{h(f)}</span>'
                     for f in FLAG_ORDER if case.scan.per_flag.get(f))
    legend += ('<span class="lg"><i class="lg-window"></i>attack window (first to last evidence of the most '
               'severe findings)</span><span class="lg"><i class="lg-act"></i>all events of the source '
               '(log scale)</span>')
    out.append(f'<p class="legend">{legend}</p>')
    out.append('<p class="muted">Each lane is one source of one instance; numbers on the left are flagged / all '
               'events of that source. Coloured marks are flagged events (by their main flag); grey bars show how '
               'many events the source holds over time, so gaps in the evidence stand out.</p>')
    for chart in case.charts:
        if chart.id == "overview":
            caption = (f"All instances with findings, {_short(_iso(_from_us(chart.start_us)), False)} to "
                       f"{_short(_iso(_from_us(chart.end_us)), False)} UTC")
        else:
            g = case.scan.groups.get(chart.keys[0])
            caption = (f"Close-up: {_label(g.host if g else None, g.instance if g else None)}, "
                       f"{_short(_iso(_from_us(chart.start_us)), False)} to "
                       f"{_short(_iso(_from_us(chart.end_us)), False)} UTC")
        out.append(f'<figure class="fig"><figcaption>{h(caption)}</figcaption>'
                   f'<div class="scroll">{render_chart(case, chart)}</div></figure>')
    return "".join(out)


# -- sections -----------------------------------------------------------------

CSS = """
:root{--fg:#1c2430;--muted:#5b6573;--line:#d9dde3;--bg:#fff;--soft:#f4f6f8;--high:#b42318;--medium:#b54708;
--low:#175cd3;color-scheme:light}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:36px 0 12px;padding-bottom:6px;border-bottom:2px solid var(--fg)}
h3{font-size:16px;margin:0}
h4{font-size:13px;margin:14px 0 6px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
a{color:#175cd3}
.mono,pre,code{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono","DejaVu Sans Mono",monospace;
font-size:12px}
.muted{color:var(--muted)}
.sub{color:var(--muted);margin:0 0 14px}
header.top{border-bottom:4px solid var(--fg);padding-bottom:12px;margin-bottom:8px}
header.top .meta{color:var(--muted);font-size:13px}
nav.toc{font-size:13px;margin:10px 0 0}
nav.toc a{margin-right:14px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:14px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card .n{font-size:26px;font-weight:700;line-height:1.1}
.card .l{color:var(--muted);font-size:12px}
.card.alert{border-color:var(--high);background:#fef3f2}
.card.alert .n{color:var(--high)}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}
th,td{border-bottom:1px solid var(--line);padding:5px 7px;text-align:left;vertical-align:top}
th{background:var(--soft);font-size:12px;font-weight:600;white-space:nowrap}
td{font-size:13px;overflow-wrap:break-word}
table.fixed{table-layout:fixed}
td.path,td.msg,td.cite{overflow-wrap:anywhere}
td.num,th.num{text-align:right;white-space:nowrap}
td.nowrap{white-space:nowrap}
.sev{display:inline-block;min-width:62px;text-align:center;border-radius:4px;padding:1px 6px;font-size:11px;
font-weight:700;text-transform:uppercase;letter-spacing:.04em;color:#fff}
.sev-high{background:var(--high)}.sev-medium{background:var(--medium)}.sev-low{background:var(--low)}
.chip{display:inline-block;border-left:4px solid var(--c);background:var(--soft);border-radius:3px;padding:0 5px;
margin:1px 2px 1px 0;font-size:11px;overflow-wrap:anywhere}
.finding{border:1px solid var(--line);border-left:6px solid var(--muted);border-radius:8px;padding:12px 16px;
margin:14px 0}
.finding.high{border-left-color:var(--high)}.finding.medium{border-left-color:var(--medium)}
.finding.low{border-left-color:var(--low)}
.finding .facts{color:var(--muted);font-size:13px;margin:4px 0 0}
.finding .facts b{color:var(--fg);font-weight:600}
ul.why{margin:4px 0 8px;padding-left:20px}
ul.why li{margin:2px 0}
ul.warn{padding-left:20px}
ul.warn li{margin:3px 0;overflow-wrap:anywhere}
.msg1{overflow-wrap:anywhere}
pre.more{white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0 0;padding:4px 6px;background:var(--soft);
border-radius:4px;max-height:none}
.ref{font-size:11px;text-decoration:none}
.scroll{overflow-x:auto}
figure.fig{margin:10px 0 22px}
figure.fig figcaption{font-weight:600;margin-bottom:4px}
svg.chart{max-width:100%;height:auto;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
svg .tick{font-size:11px;fill:#46505c}
svg .tick.sub{fill:#7a8491;font-size:10px}
svg .inst{font-size:12px;font-weight:700;fill:#1c2430}
svg .lane{font-size:11px;fill:#39424e}
svg .count{fill:#7a8491}
svg .window{fill:#d92d20;fill-opacity:.10;stroke:#d92d20;stroke-opacity:.55;stroke-dasharray:4 3}
svg .act{fill:#b8c0ca}
p.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;margin:6px 0}
.lg i{display:inline-block;width:10px;height:12px;margin-right:5px;vertical-align:-2px;border-radius:2px}
.lg i.lg-window{width:22px;background:rgba(217,45,32,.12);border:1px dashed rgba(217,45,32,.7)}
.lg i.lg-act{background:#b8c0ca}
table.events td{font-size:12px}

.hash{font-family:ui-monospace,Menlo,Consolas,"Liberation Mono",monospace;font-size:11px;word-break:break-all}
td.when{font-variant-numeric:tabular-nums}
.local{color:var(--muted);font-size:11px;margin-top:3px;overflow-wrap:anywhere}
.flags{margin-top:3px}
footer{margin-top:40px;border-top:1px solid var(--line);padding-top:8px;color:var(--muted);font-size:12px}
@page{size:A4;margin:14mm 12mm}
@media print{
  body{font-size:10pt;-webkit-print-color-adjust:exact;print-color-adjust:exact}
  main{max-width:none;padding:0}
  nav.toc{display:none}
  h2,h3,h4{break-after:avoid}
  h2{margin-top:18px}
  section.major{break-before:page}
  section.first{break-before:auto}
  .finding,.card,figure.fig,tr{break-inside:avoid}
  .finding{break-inside:auto}
  .finding>header{break-after:avoid}
  thead{display:table-header-group}
  .scroll{overflow:visible}
  a{color:inherit;text-decoration:none}
  td,th{padding:3px 5px}
  table.events td{font-size:8pt}
  svg.chart{width:100%}
}
"""


def _case_summary(case: Case) -> str:
    m = case.manifest or {}
    scan = case.scan
    sev = Counter(f.severity for f in case.findings)
    inst_with = {instance_key(f.host, f.instance) for f in case.findings}
    totals = m.get("totals") or {}
    n_inputs = totals.get("inputs", len(scan.inputs))
    evidence_bytes = sum(i.get("size") or 0 for i in m.get("inputs") or [])
    out = ['<section id="summary" class="first"><h2>1. Case summary</h2>']
    cards = [
        ("alert" if sev.get("high") else "", len(case.findings),
         f"findings: {sev.get('high', 0)} high, {sev.get('medium', 0)} medium, {sev.get('low', 0)} low"),
        ("", len(inst_with), f"instance(s) with findings, of {len(m.get('instances') or scan.groups)} seen"),
        ("", f"{scan.flagged:,}", f"flagged events of {scan.rows:,} in the timeline"),
        ("", n_inputs, f"evidence inputs ({_size(evidence_bytes)})" if evidence_bytes else "evidence inputs"),
        ("alert" if case.warnings else "", len(case.warnings), "warnings (see below)"),
    ]
    out.append('<div class="cards">' + "".join(
        f'<div class="card {cls}"><div class="n">{h(n)}</div><div class="l">{h(label)}</div></div>'
        for cls, n, label in cards) + "</div>")

    if case.windows:
        out.append("<h4>Attack window per instance</h4>")
        out.append('<table><thead><tr><th>instance</th><th>first evidence (UTC)</th><th>last evidence (UTC)</th>'
                   '<th>duration</th><th>based on</th><th>findings</th><th>sources</th></tr></thead><tbody>')
        by_inst: dict[tuple, list[Finding]] = defaultdict(list)
        for f in case.findings:
            by_inst[instance_key(f.host, f.instance)].append(f)
        for key, (first, last, basis) in sorted(case.windows.items(), key=lambda kv: kv[1][0]):
            fs = by_inst[key]
            g = case.scan.groups.get(key)
            label = _label(g.host if g else fs[0].host, g.instance if g else fs[0].instance)
            sources = sorted({s for f in fs for s in f.sources}, key=_source_sort)
            counts = Counter(f.severity for f in fs)
            out.append(f"<tr><td><b>{h(label)}</b></td><td class=nowrap>{h(_short(_iso(_from_us(first))))}</td>"
                       f"<td class=nowrap>{h(_short(_iso(_from_us(last))))}</td>"
                       f"<td class=nowrap>{h(_duration(last - first))}</td><td>{h(basis)} findings</td>"
                       f"<td>{', '.join(f'{counts[s]} {s}' for s in SEVERITY_RANK if counts[s])}</td>"
                       f"<td>{h(', '.join(sources))}</td></tr>")
        out.append("</tbody></table>")

    out.append("<h4>Time zones</h4>")
    if m.get("instances"):
        out.append('<table class="fixed">' + _cols(260, 60, 190, 300, None)
                   + '<thead><tr><th>instance</th><th class=num>inputs</th><th>decision</th><th>offsets applied</th>'
                   '<th>notes</th></tr></thead><tbody>')
        for inst in m["instances"]:
            tz = inst.get("time_zone") or {}
            method = tz.get("method") or "?"
            if tz.get("zone"):
                method += f" ({tz['zone']})"
            offsets = "<br>".join(
                h(f"{o.get('offset')} from {o.get('tz_source')}"
                  + (f", from {o['from_local']} local" if o.get("from_local") else ""))
                for o in tz.get("offsets") or []) or '<span class="muted">none: times taken as UTC</span>'
            notes = [tz["zone_hint"]] if tz.get("zone_hint") else []
            notes += tz.get("notes") or []
            out.append(f"<tr><td class=path><b>{h(_label(inst.get('host'), inst.get('instance')))}</b></td>"
                       f"<td class=num>{h(inst.get('inputs'))}</td><td>{h(method)}</td><td>{offsets}</td>"
                       f"<td>{'<br>'.join(h(n) for n in notes)}</td></tr>")
        out.append("</tbody></table>")
        opts = m.get("options") or {}
        out.append(f'<p class="muted">--tz given: {h(opts.get("tz") or "no")}. Local times become UTC with the '
                   "offset the evidence states (ERRORLOG banner UTC adjustment, 17176/17177 pairs), else --tz, "
                   "else they are taken as UTC; every event keeps its local time and how it was converted "
                   "(tz_source).</p>")
    else:
        out.append('<p class="muted">No manifest: the time-zone decisions are not known to this report. Each '
                   "event's tz_source column in the timeline says how its time was made UTC.</p>")

    out.append("<h4>Warnings</h4>")
    if case.warnings:
        out.append('<ul class="warn">' + "".join(f"<li>{h(w)}</li>" for w in case.warnings) + "</ul>")
    else:
        out.append('<p class="muted">None: every input was read completely and every local time had an offset '
                   "from the evidence or --tz.</p>")

    out.append("<h4>Run</h4><table><tbody>")
    rows = [("timeline", f'<span class="mono">{h(case.timeline_path)}</span> ({h(_size(case.timeline_size))}, '
             f"{scan.rows:,} events)"),
            ("timeline SHA-256", f'<span class="hash">{h(case.timeline_sha256)}</span>')]
    if case.manifest_path and case.manifest is not None:
        rows.append(("manifest", f'<span class="mono">{h(case.manifest_path)}</span>'))
        rows.append(("manifest SHA-256", f'<span class="hash">{h(case.manifest_sha256)}</span>'))
    if m:
        cmd = m.get("command_line")
        rows.append(("produced by", h(f"{m.get('tool', '?')} {m.get('version', '?')}, exit status "
                                      f"{m.get('exit_code', '?')}")))
        rows.append(("run (UTC)", h(f"{_short(m.get('started_utc'), False)} to {_short(m.get('finished_utc'), False)}")))
        if cmd:
            rows.append(("command line", f'<span class="mono">{h(" ".join(map(str, cmd)) if isinstance(cmd, list) else cmd)}</span>'))
    rows.append(("events by source", h(", ".join(f"{s}: {n:,}" for s, n in sorted(scan.per_source.items(),
                                                                                  key=lambda kv: _source_sort(kv[0]))))))
    rows.append(("report", h(f"generated {_short(case.generated_utc)} UTC by mssql-forensic {__version__}")))
    out.append("".join(f"<tr><th>{h(k)}</th><td>{v}</td></tr>" for k, v in rows))
    out.append("</tbody></table></section>")
    return "".join(out)


def _findings_section(case: Case) -> str:
    out = ['<section id="findings" class="major"><h2>2. Findings</h2>']
    if not case.findings:
        out.append('<p>No finding: no event in this timeline carries a detection flag.</p></section>')
        return "".join(out)
    out.append('<p class="sub">Most severe first. Each finding groups the flagged events about one object or '
               "behaviour of one instance, from every source that speaks of it.</p>")
    out.append('<table><thead><tr><th>#</th><th>severity</th><th>finding</th><th>instance</th>'
               '<th>first seen (UTC)</th><th>last seen (UTC)</th><th>sources</th><th class=num>events</th>'
               '</tr></thead><tbody>')
    for fid, f in zip(case.finding_ids, case.findings, strict=True):
        out.append(f'<tr><td><a href="#{fid.lower()}">{fid}</a></td><td>{_sev(f.severity)}</td>'
                   f'<td><a href="#{fid.lower()}">{h(f.title)}</a></td><td>{h(_label(f.host, f.instance))}</td>'
                   f"<td class=nowrap>{h(_short(f.first_seen, False))}</td>"
                   f"<td class=nowrap>{h(_short(f.last_seen, False))}</td><td>{h(', '.join(f.sources))}</td>"
                   f"<td class=num>{f.event_count:,}</td></tr>")
    out.append("</tbody></table>")
    for fid, f in zip(case.finding_ids, case.findings, strict=True):
        out.append(_finding_card(case, fid, f))
    out.append("</section>")
    return "".join(out)


def _finding_card(case: Case, fid: str, f: Finding) -> str:
    out = [f'<article class="finding {h(f.severity)}" id="{fid.lower()}"><header>'
           f'<h3>{_sev(f.severity)} <span class="muted">{fid}</span> {h(f.title)}</h3>'
           f'<p class="facts"><b>{h(_label(f.host, f.instance))}</b>'
           + (f" &middot; object <b class=mono>{h(f.object_name)}</b>" if f.object_name else "")
           + f" &middot; {h(_short(f.first_seen))} to {h(_short(f.last_seen))} UTC"
           f" &middot; {f.event_count:,} event(s) from {h(', '.join(f.sources))}</p>"
           f'<p class="facts">{"".join(_chip(x) for x in f.flags)}</p></header>']
    out.append("<h4>Why it fired</h4>")
    if f.why:
        out.append('<ul class="why">' + "".join(f"<li>{h(w)}</li>" for w in f.why) + "</ul>")
    else:
        out.append(f'<p class="muted">Flagged {h(", ".join(f.flags))} by rules this report does not know '
                   "(extra --rules files); see the rules column of each event.</p>")
    out.append(f"<h4>Evidence ({f.event_count:,}, oldest first)</h4>")
    out.append('<table class="fixed">' + _cols(124, 72, 160, None, 175)
               + '<thead><tr><th>time (UTC)</th><th>source</th><th>event</th><th>message</th>'
               '<th>cited as</th></tr></thead><tbody>')
    for e in f.evidence[:MAX_EVIDENCE_SHOWN]:
        d = case.scan.details.get(evidence_key(e["source_file"], e["source_record"], e["timestamp"]))
        if d:
            local = (f'<div class="local">local {h(d["local_time"])}<br>{h(d["tz_source"])}</div>'
                     if d.get("local_time") else "")
            event = h(d["event_type"]) + (f' <span class="muted">{h(d["event_id"])}</span>'
                                          if d.get("event_id") is not None else "")
            rules = (f'<br><span class="muted">rules: {h(", ".join(d["rules"]))}</span>' if d["rules"] else "")
            who = " &middot; ".join(x for x in (
                f"user <b>{h(d['user'])}</b>" if d.get("user") else "",
                f"db <b>{h(d['database'])}</b>" if d.get("database") else "") if x)
            msg = _message(d["message"], d["message_len"]) + (f'<br><span class="muted">{who}</span>' if who else "")
            out.append(f"<tr><td class=when>{_when(e['timestamp'])}{local}</td><td>{h(e['source'])}</td>"
                       f'<td>{event}{rules}</td><td class="msg">{msg}</td>'
                       f"<td class=cite>{_cite(case, e['source_file'], e['source_record'])}</td></tr>")
        else:
            out.append(f"<tr><td class=when>{_when(e['timestamp'])}</td><td>{h(e['source'])}</td><td></td>"
                       f'<td class="msg">{_message(_clip(e["message"]), len(e["message"]))}</td>'
                       f"<td class=cite>{_cite(case, e['source_file'], e['source_record'])}</td></tr>")
    out.append("</tbody></table>")
    if len(f.evidence) > MAX_EVIDENCE_SHOWN:
        out.append(f'<p class="muted">... and {len(f.evidence) - MAX_EVIDENCE_SHOWN:,} more evidence events of '
                   "this finding in the timeline (mssql-forensic findings --json lists them all).</p>")
    out.append("</article>")
    return "".join(out)


def _events_section(case: Case) -> str:
    scan = case.scan
    out = ['<section id="events" class="major"><h2>4. Flagged events</h2>']
    if not scan.table:
        out.append('<p class="muted">No flagged event.</p></section>')
        return "".join(out)
    shown = len(scan.table)
    note = (f"The first {shown:,} of {scan.flagged:,} flagged events, in timeline order; the timeline holds them "
            "all." if scan.flagged > shown else f"All {scan.flagged:,} flagged events, in timeline order.")
    out.append(f'<p class="sub">{h(note)}</p>')
    out.append('<table class="events fixed">' + _cols(104, 140, 170, 135, None, 160, 58)
               + '<thead><tr><th>time (UTC)</th><th>instance / source</th><th>event / flags</th>'
               '<th>object / user</th><th>message</th><th>cited as</th><th>finding</th></tr></thead><tbody>')
    for d in scan.table:
        obj = " ".join(x for x in (
            f'<span class="mono">{h(d["object_name"])}</span>' if d.get("object_name") else "",
            f'<span class="muted">({h(d["object_type"])})</span>' if d.get("object_type") else "") if x)
        if d.get("user"):
            obj += f'<br><span class="muted">user</span> {h(d["user"])}'
        event = h(d["event_type"]) + (f' <span class="muted">{h(d["event_id"])}</span>'
                                      if d.get("event_id") is not None else "")
        first = (d["message"] or "").split("\n", 1)[0]
        if d["message_len"] > len(first):
            first += " [...]"
        fid = d.get("finding")
        link = f'<a href="#{h(fid.lower())}">{h(fid)}</a>' if fid else ""
        out.append(f"<tr><td class=when>{_when(d['timestamp'])}</td>"
                   f"<td class=path>{h(_label(d['host'], d['instance']))}<br><span class=muted>{h(d['source'])}</span></td>"
                   f"<td>{event}<div class=flags>{''.join(_chip(x) for x in d['flags'])}</div></td><td class=path>{obj}</td>"
                   f'<td class="msg">{h(first)}</td><td class=cite>{_cite(case, d["source_file"], d["source_record"])}</td>'
                   f"<td>{link}</td></tr>")
    out.append("</tbody></table></section>")
    return "".join(out)


def _inputs_section(case: Case) -> str:
    m = case.manifest or {}
    scan = case.scan
    out = ['<section id="inputs" class="major"><h2>5. Evidence inputs</h2>']
    out.append('<p class="sub">Every input read, with its SHA-256 as computed when the timeline was made. '
               "Evidence is cited in this report as <span class=mono>file:record</span> [E<i>n</i>]: the record is "
               "the line number (text logs), the record number (EVTX), the record index (trace files) or the row "
               "(exports).</p>")
    out.append('<table class="fixed">' + _cols(42, None, 105, 78, 82, 62, 62, 170, 245)
               + '<thead><tr><th>#</th><th>path</th><th>type</th><th class=num>size</th><th>status</th>'
               '<th class=num>events</th><th class=num>flagged</th><th>instance</th><th>SHA-256</th>'
               '</tr></thead><tbody>')
    listed = set()
    for item in m.get("inputs") or []:
        path = item.get("path")
        listed.add(path)
        ref = case.input_ids.get(path, "")
        got = scan.inputs.get(path, {})
        status = item.get("status") or "?"
        if item.get("warnings"):
            status += f", {item['warnings']} warning(s)"
        out.append(f'<tr id="{h(ref.lower())}"><td>{h(ref)}</td><td class="mono path">{h(path)}</td>'
                   f"<td class=path>{h(item.get('artifact_type'))}</td><td class=num>{h(_size(item.get('size')))}</td>"
                   f"<td>{h(status)}</td><td class=num>{h(item.get('events'))}</td>"
                   f"<td class=num>{h(got.get('flagged', 0))}</td>"
                   f"<td class=path>{h(_label(item.get('host'), item.get('instance')))}</td>"
                   f'<td class="hash">{h(item.get("sha256"))}</td></tr>')
    for path in sorted(p for p in scan.inputs if p not in listed):
        ref = case.input_ids.get(path, "")
        got = scan.inputs[path]
        out.append(f'<tr id="{h(ref.lower())}"><td>{h(ref)}</td><td class="mono path">{h(path)}</td><td></td><td></td>'
                   f'<td class=muted>not in a manifest</td><td class=num>{got["rows"]:,}</td>'
                   f'<td class=num>{got["flagged"]:,}</td><td></td><td class="hash">{h(got["sha256"])}</td></tr>')
    out.append("</tbody></table>")
    skipped = m.get("skipped") or []
    if skipped:
        out.append(f"<h4>Skipped: not a recognised artifact ({len(skipped)})</h4>")
        out.append('<table class="fixed">' + _cols(None, 90, 245)
                   + '<thead><tr><th>path</th><th class=num>size</th><th>SHA-256</th></tr></thead><tbody>')
        for s in skipped:
            out.append(f'<tr><td class="mono path">{h(s.get("path"))}</td><td class=num>{h(_size(s.get("size")))}</td>'
                       f'<td class="hash">{h(s.get("sha256"))}</td></tr>')
        out.append("</tbody></table>")
    out.append("</section>")
    return "".join(out)


def render_html(case: Case) -> str:
    csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
           "form-action 'none'; frame-ancestors 'none'")
    sev = Counter(f.severity for f in case.findings)
    summary = (f"{len(case.findings)} finding(s) ({sev.get('high', 0)} high), {case.scan.flagged:,} flagged "
               f"events of {case.scan.rows:,}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{h(case.title)}: mssql-forensic report</title>",
        f"<style>{CSS}</style></head><body><main>",
        f'<header class="top"><h1>{h(case.title)}</h1>'
        f'<div class="meta">SQL Server persistence evidence &middot; {h(summary)} &middot; report generated '
        f"{h(_short(case.generated_utc))} UTC by mssql-forensic {h(__version__)}. All times are UTC.</div>"
        '<nav class="toc"><a href="#summary">1. Case summary</a><a href="#findings">2. Findings</a>'
        '<a href="#timeline">3. Timeline</a><a href="#events">4. Flagged events</a>'
        '<a href="#inputs">5. Evidence inputs</a></nav></header>',
        _case_summary(case),
        _findings_section(case),
        '<section id="timeline" class="major"><h2>3. Timeline</h2>',
        render_pictures(case),
        "</section>",
        _events_section(case),
        _inputs_section(case),
        f'<footer>mssql-forensic {h(__version__)} &middot; timeline SHA-256 '
        f'<span class="hash">{h(case.timeline_sha256)}</span> &middot; evidence text in this report is shown '
        "escaped; invisible and direction-changing characters appear as \u27e8U+XXXX\u27e9.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def write_report(timeline_path: str, output: str, manifest_path: str | None = None,
                 title: str | None = None) -> Case:
    """Build the report of ``timeline_path`` and write it to ``output``
    (under a temporary name first, renamed at the end)."""
    case = build_case(timeline_path, manifest_path, title)
    text = render_html(case)
    folder, name = os.path.split(os.path.abspath(output))
    tmp = os.path.join(folder, f".{name}.partial-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, output)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return case

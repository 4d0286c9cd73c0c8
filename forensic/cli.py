"""Command line: ``mssql-forensic timeline``, ``findings``, ``report`` and ``query``.

Exit status (contract): 0 every recognised input parsed completely; 1 the
timeline was written but some input was damaged or partly readable; 2 usage
error, and then nothing is written.  Bad evidence never produces a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from forensic import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Offline forensic timeline and persistence findings for SQL Server evidence.")

err_console = Console(stderr=True, highlight=False)
if not err_console.is_terminal:
    # Logs and pipes: wide enough that tables do not fold evidence names.
    err_console = Console(stderr=True, highlight=False, width=160)


class OutFormat(StrEnum):
    parquet = "parquet"
    jsonl = "jsonl"
    csv = "csv"
    timesketch = "timesketch"


class Layout(StrEnum):
    file = "file"
    dataset = "dataset"


class EvtxEngine(StrEnum):
    auto = "auto"
    rust = "rust"
    python = "python"


def usage_error(message: str) -> typer.Exit:
    err_console.print(f"mssql-forensic: error: {message}", markup=False)
    return typer.Exit(2)


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _check_output(output: str, paths: list[str], force: bool, layout: str = "file") -> None:
    out = os.path.abspath(output)
    if layout == "dataset":
        from forensic.dataset import replaceable
        if not replaceable(out):
            raise usage_error(f"output {output!r} exists and is not a timeline dataset written by this tool; "
                              "give a new (or empty) folder for --layout dataset")
    elif os.path.isdir(out):
        raise usage_error(f"output {output!r} is a folder; give a file name")
    parent = os.path.dirname(out)
    targets = (out, out + ".manifest.json")
    for p in paths:
        # Never replace evidence, not even with --force: an evidence file given
        # as PATH, or an existing file inside an evidence folder.
        for target in targets:
            if os.path.lexists(target) and ((os.path.isfile(p) and os.path.realpath(p) == os.path.realpath(target))
                                            or (os.path.isdir(p) and _inside(target, p))):
                raise usage_error(f"output {output!r} would overwrite {target!r} in the evidence path {p!r}")
    if not force:
        for p in paths:
            if os.path.isdir(p) and _inside(parent, p):
                raise usage_error(f"output {output!r} is inside the evidence path {p!r}; "
                                  "nothing may be written next to evidence (use --force to override)")
    _ensure_output_folder(parent)


def _ensure_output_folder(parent: str) -> None:
    """Create the output's folder if needed; it must be writable."""
    if not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise usage_error(f"cannot create output folder {parent!r}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise usage_error(f"output folder {parent!r} is not writable")


def _check_scheduler(scheduler: str) -> None:
    from forensic.executor_dask import INSTALL_HINT, dask_available

    if scheduler != "local" and "://" not in scheduler and ":" not in scheduler:
        raise usage_error(f"--scheduler {scheduler!r}: give tcp://HOST:PORT (a running `dask scheduler`) or 'local'")
    if not dask_available():
        raise usage_error(f"--scheduler needs Dask distributed, which is not installed: {INSTALL_HINT}")


def _check_scratch(scratch: str, paths: list[str], force: bool) -> str:
    folder = os.path.abspath(scratch)
    if not force and any(os.path.isdir(p) and _inside(folder, p) for p in paths):
        raise usage_error(f"--scratch {scratch!r} is inside an evidence path; nothing may be written next to evidence")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise usage_error(f"cannot create --scratch folder {scratch!r}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise usage_error(f"--scratch folder {scratch!r} is not writable")
    return folder


@app.command()
def timeline(
    paths: Annotated[list[str], typer.Argument(help="Evidence files and folders (folders are read recursively).")],
    output: Annotated[str, typer.Option("-o", "--output", help="Timeline file to write.")],
    fmt: Annotated[OutFormat | None, typer.Option("--format", help="Output format (default: from OUT's extension, else parquet); timesketch: JSON Lines for Timesketch import.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone for local-time artifacts when the evidence gives none: IANA name or offset like -05:00.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Parallel parse processes (default: number of CPUs).")] = None,
    evtx_engine: Annotated[EvtxEngine, typer.Option("--evtx-engine", help="EVTX library: rust (evtx), python (python-evtx) or auto.")] = EvtxEngine.auto,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    rules: Annotated[list[str] | None, typer.Option("--rules", help="Extra detection rule file or folder (TOML); repeatable.")] = None,
    extract_assemblies: Annotated[str | None, typer.Option("--extract-assemblies", help="Write CLR assembly bytes found in exports to this folder as <sha256>.dll.")] = None,
    csv_bom: Annotated[bool, typer.Option("--csv-bom", help="Start CSV output with a UTF-8 BOM (for Excel).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Allow writing the output inside an evidence folder.")] = False,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Run the per-input work on Dask distributed: tcp://HOST:PORT of a running scheduler, or 'local' for an in-process LocalCluster of --workers processes (optional extra: pip install 'mssql-forensic[distributed]'). Evidence and the scratch folder must be readable by every worker under the same path.")] = None,
    layout: Annotated[Layout, typer.Option("--layout", help="file: one sorted timeline file (default); dataset: OUT is a Parquet dataset folder, hive-partitioned by host and UTC month (host=H/month=YYYY-MM/part-*.parquet), each part sorted, written by the workers; manifest beside it as OUT.manifest.json.")] = Layout.file,
    scratch: Annotated[str | None, typer.Option("--scratch", help="Folder for the intermediate sorted runs (default: beside OUT); with --scheduler it must be shared storage every worker can write.")] = None,
) -> None:
    """Read every SQL Server artifact under PATHS and write one UTC timeline."""
    from forensic.report import print_summary
    from forensic.rules import RuleError, load_rules
    from forensic.timeline import RunOptions, run_timeline
    from forensic.timezones import parse_cli_zone
    from forensic.writers import format_for

    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise usage_error("no such file or folder: " + ", ".join(repr(p) for p in missing))
    cli_zone = None
    if tz is not None:
        try:
            cli_zone = parse_cli_zone(tz)
        except ValueError as exc:
            raise usage_error(str(exc)) from None
    if rules:
        try:
            load_rules([Path(r) for r in rules])
        except (RuleError, OSError) as exc:
            raise usage_error(f"bad rules: {exc}") from None
    if layout == Layout.dataset and fmt not in (None, OutFormat.parquet):
        raise usage_error(f"--layout dataset writes Parquet; --format {fmt.value} needs --layout file")
    _check_output(output, paths, force, layout.value)
    if scheduler is not None:
        _check_scheduler(scheduler)
    if scratch is not None:
        scratch = _check_scratch(scratch, paths, force)
    if extract_assemblies:
        for p in paths:
            if os.path.isdir(p) and _inside(extract_assemblies, p) and not force:
                raise usage_error("--extract-assemblies folder is inside an evidence path")
        try:
            os.makedirs(extract_assemblies, exist_ok=True)
        except OSError as exc:
            raise usage_error(f"cannot create {extract_assemblies!r}: {exc.strerror or exc}") from None

    fmt_name = "parquet" if layout == Layout.dataset else format_for(output, fmt.value if fmt else None)
    parser_options = {"evtx_engine": evtx_engine.value}
    if extract_assemblies:
        parser_options["extract_assemblies"] = os.path.abspath(extract_assemblies)
    opts = RunOptions(paths=list(paths), output=output, fmt=fmt_name, cli_zone=cli_zone, cli_zone_text=tz,
                      workers=workers or os.cpu_count() or 1, parser_options=parser_options,
                      rule_paths=[os.path.abspath(r) for r in (rules or [])], csv_bom=csv_bom,
                      scheduler=scheduler, scratch=scratch, layout=layout.value)
    from forensic.executor_dask import ExecutorError
    from forensic.progress import run_with_progress
    try:
        result = run_with_progress(opts, run_timeline, quiet=quiet, console=err_console)
    except ExecutorError as exc:
        raise usage_error(str(exc)) from None
    except KeyboardInterrupt:
        err_console.print("mssql-forensic: interrupted; no timeline written", markup=False)
        raise typer.Exit(130) from None
    if not quiet:
        print_summary(result, err_console)
        if fmt_name in ("parquet", "jsonl") and result.rows:
            from forensic.findings import build_findings, findings_table
            found = build_findings(output)
            if found:
                err_console.print(findings_table(found))
            else:
                err_console.print("No findings: no flagged events.", markup=False)
    raise typer.Exit(result.exit_code)


def _timeline_exists(path: str) -> bool:
    """A timeline file, or a dataset folder written by ``--layout dataset``."""
    from forensic.dataset import is_dataset
    return os.path.isfile(path) or is_dataset(path)


@app.command()
def findings(
    timeline_path: Annotated[str, typer.Argument(metavar="TIMELINE", help="Timeline written by `timeline` (Parquet or JSON Lines file, or a --layout dataset folder).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array on stdout.")] = False,
) -> None:
    """Group the flagged events of a timeline into findings, most severe first."""
    from forensic.findings import FindingsError, build_findings, findings_table
    from forensic.report_html import ReportError, timeline_kind

    if not _timeline_exists(timeline_path):
        raise usage_error(f"no such timeline file or dataset: {timeline_path!r}")
    try:
        timeline_kind(timeline_path)  # a clear error for CSV and Timesketch exports
    except ReportError as exc:
        raise usage_error(str(exc)) from None
    try:
        result = build_findings(timeline_path)
    except FindingsError as exc:
        raise usage_error(str(exc)) from None
    except (OSError, ValueError) as exc:  # a damaged timeline file (ArrowInvalid is a ValueError)
        raise usage_error(f"cannot read the timeline {timeline_path!r}: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps([f.to_json() for f in result], indent=2, ensure_ascii=False) + "\n")
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=200)
        console.print(findings_table(result))


def _check_report_output(output: str, protected: list[str]) -> None:
    out = os.path.abspath(output)
    if os.path.isdir(out):
        raise usage_error(f"output {output!r} is a folder; give a file name")
    for p in protected:
        if p and os.path.exists(p) and os.path.realpath(p) == os.path.realpath(out):
            raise usage_error(f"output {output!r} would overwrite {p!r}")
    parent = os.path.dirname(out)
    _ensure_output_folder(parent)


@app.command()
def report(
    timeline_path: Annotated[str, typer.Argument(metavar="TIMELINE", help="Timeline written by `timeline` (Parquet or JSON Lines file, or a --layout dataset folder).")],
    output: Annotated[str, typer.Option("-o", "--output", help="HTML file to write.")],
    manifest: Annotated[str | None, typer.Option("--manifest", help="Run manifest (default: TIMELINE.manifest.json when present).")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Report title, e.g. the case name or number.")] = None,
) -> None:
    """Write the examiner's report: one self-contained HTML file (no scripts, works offline)."""
    import time

    from forensic.report_html import ReportError, write_report

    if not _timeline_exists(timeline_path):
        raise usage_error(f"no such timeline file or dataset: {timeline_path!r}")
    _check_report_output(output, [timeline_path, manifest or timeline_path + ".manifest.json"])
    started = time.monotonic()
    try:
        case = write_report(timeline_path, output, manifest_path=manifest, title=title)
    except ReportError as exc:
        raise usage_error(str(exc)) from None
    except (OSError, ValueError) as exc:  # a damaged timeline file (ArrowInvalid is a ValueError)
        raise usage_error(f"cannot read the timeline {timeline_path!r}: {exc}") from None
    sev = {s: sum(1 for f in case.findings if f.severity == s) for s in ("high", "medium", "low")}
    err_console.print(f"report written to {output} ({os.path.getsize(output):,} bytes, "
                      f"{time.monotonic() - started:.1f} s): {len(case.findings)} finding(s) "
                      f"({sev['high']} high, {sev['medium']} medium, {sev['low']} low), "
                      f"{case.scan.flagged:,} flagged of {case.scan.rows:,} events"
                      + (f", {len(case.warnings)} warning(s)" if case.warnings else ""), markup=False)


class QueryFormat(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


@app.command()
def query(
    timeline_path: Annotated[str, typer.Argument(metavar="TIMELINE", help="Timeline written by `timeline` (Parquet or JSON Lines file, or a --layout dataset folder).")],
    sql: Annotated[str, typer.Argument(metavar="SQL", help="DuckDB SQL over the views `timeline` and `flagged`.")],
    fmt: Annotated[QueryFormat, typer.Option("--format", help="table (readable), csv (spreadsheet-safe) or jsonl.")] = QueryFormat.table,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows shown by --format table (csv and jsonl print all).")] = 1000,
) -> None:
    """Run SQL over a timeline with DuckDB (optional extra: pip install 'mssql-forensic[query]').

    The views: `timeline` (every row; `attributes` as JSON, so attributes->>'spid' works)
    and `flagged` (rows with at least one flag). Read-only: the query cannot read or write
    other files.
    """
    from forensic.query import QueryError, run_query

    if not _timeline_exists(timeline_path):
        raise usage_error(f"no such timeline file or dataset: {timeline_path!r}")
    try:
        run_query(timeline_path, sql, fmt.value, max_rows, sys.stdout, err_console)
    except QueryError as exc:
        raise usage_error(str(exc)) from None


@app.command()
def version() -> None:
    """Print the tool version."""
    print(f"mssql-forensic {__version__}")


def main() -> None:
    try:
        app(prog_name="mssql-forensic")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

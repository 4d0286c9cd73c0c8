"""Progress output: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from forensic.textsafe import printable
from forensic.timeline import RunOptions, RunResult


def run_with_progress(opts: RunOptions, runner: Callable, quiet: bool, console: Console) -> RunResult:
    if quiet:
        return runner(opts)
    if console.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      DownloadColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
            state: dict = {}

            def hook(phase, item, nbytes):
                if phase == "inputs":
                    state["count"] = nbytes
                elif phase == "discovered":
                    state["files"] = bar.add_task("files", total=state.get("count"))
                    state["bytes"] = bar.add_task("bytes", total=nbytes)
                elif phase == "parsed":
                    bar.advance(state["files"], 1)
                    bar.advance(state["bytes"], nbytes)
                elif phase == "merging":
                    bar.update(state["files"], description="writing")
            return runner(opts, hook)

    done = {"files": 0, "bytes": 0}

    def say(text: str) -> None:
        # Plain lines for logs and pipes: no wrapping, no markup, and no
        # control characters from evidence names (terminal escape sequences).
        print(printable(text), file=console.file, flush=True)

    def log(phase, item, nbytes):
        if phase == "discovered":
            say(f"mssql-forensic: reading {nbytes:,} bytes of evidence")
        elif phase == "parsed" and item is not None:
            done["files"] += 1
            done["bytes"] += nbytes
            say(f"mssql-forensic: parsed {item.display_path} ({item.artifact_type}, {item.size:,} bytes)")
        elif phase == "merging":
            say(f"mssql-forensic: writing {opts.output}")
    return runner(opts, log)

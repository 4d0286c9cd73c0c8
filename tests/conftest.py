from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "evidence"
SHARED = REPO.parent / "shared"
PUBLIC = SHARED / "fixtures-public"

SQLPROD01_LOG = FIXTURES / "SQLPROD01" / "Program Files" / "Microsoft SQL Server" / "MSSQL15.MSSQLSERVER" / "MSSQL" / "Log"
WEB02_LOG = FIXTURES / "WEB02" / "MSSQL13.SQLEXPRESS" / "MSSQL" / "Log"
LINUX_LOG = FIXTURES / "sql-linux01" / "var" / "opt" / "mssql" / "log"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from forensic.cli import app

    def run(*args: str):
        runner = CliRunner()
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run


def write_utf16(path: Path, lines: list[str], bom: bool = True, newline: str = "\r\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (newline.join(lines) + newline).encode("utf-16-le")
    path.write_bytes((b"\xff\xfe" if bom else b"") + data)
    return path


def snapshot(folder: Path, atime: bool = False) -> dict[str, tuple]:
    """size, mtime_ns and SHA-256 of every file under folder (and atime_ns,
    with ``atime``).  Hashing reads without touching atime (O_NOATIME), and
    the stat is taken before the read."""
    import hashlib
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0)
            try:
                fd = os.open(p, flags)
            except PermissionError:
                fd = os.open(p, os.O_RDONLY)
            with os.fdopen(fd, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            out[p] = (st.st_size, st.st_mtime_ns, digest) + ((st.st_atime_ns,) if atime else ())
    return out


def atime_supported(folder: Path) -> bool:
    """Whether reading a file in ``folder`` updates its access time (not on
    noatime mounts, nor where O_NOATIME is unknown: then atime is not checked)."""
    if not getattr(os, "O_NOATIME", 0):
        return False
    probe = Path(folder) / ".atime-probe"
    probe.write_bytes(b"x")
    st = probe.stat()
    os.utime(probe, ns=(st.st_mtime_ns - 86_400 * 10**9, st.st_mtime_ns))
    before = probe.stat().st_atime_ns
    probe.read_bytes()
    changed = probe.stat().st_atime_ns != before
    probe.unlink()
    return changed

"""Evidence discovery: recursion, content sniffing, special files, loops."""

from __future__ import annotations

import json
import os

from conftest import SQLPROD01_LOG, write_utf16

from forensic.discovery import discover


def test_special_files_loops_and_renamed_artifacts(tmp_path, cli):
    ev = tmp_path / "ev"
    (ev / "a" / "b").mkdir(parents=True)
    # renamed ERRORLOG deep inside, plus a non-artifact
    (ev / "a" / "b" / "evidence_001.dat").write_bytes((SQLPROD01_LOG / "ERRORLOG.3").read_bytes())
    (ev / "a" / "notes.txt").write_text("hello\n")
    (ev / "empty").write_bytes(b"")
    os.symlink(ev / "a", ev / "a" / "b" / "loop")  # symlink loop
    os.symlink(ev / "missing", ev / "broken")  # broken symlink
    os.mkfifo(ev / "pipe")  # a FIFO must not block the run
    found = discover([str(ev)])
    assert [os.path.basename(i.path) for i in found.inputs] == ["evidence_001.dat"]
    assert found.inputs[0].artifact_type == "errorlog"
    assert sorted(os.path.basename(i.path) for i in found.skipped) == ["empty", "notes.txt"]
    messages = "\n".join(f"{p}: {m}" for p, m in found.problems)
    assert "symlink loop" in messages and "FIFO" in messages and "broken symlink" in messages

    out = tmp_path / "out" / "t.parquet"
    code, _o, err = cli("timeline", ev, "-o", out, "--workers", "1")
    # A broken symlink is an unreadable input: exit 1, the rest goes on.
    assert code == 1
    manifest = json.loads((tmp_path / "out" / "t.parquet.manifest.json").read_text())
    assert manifest["totals"]["inputs"] == 1 and manifest["inputs"][0]["events"] > 20
    assert {p["message"].split(":")[0] for p in manifest["problems"]} >= {"symlink loop", "cannot access"}
    assert "Traceback" not in err


def test_device_as_path_is_skipped_with_warning(tmp_path, cli):
    out = tmp_path / "t.parquet"
    code, _o, err = cli("timeline", "/dev/null", str(SQLPROD01_LOG / "ERRORLOG"), "-o", out, "--workers", "1")
    assert code == 0
    assert "not a regular file" in err


def test_same_file_given_twice_is_read_once(tmp_path):
    p = write_utf16(tmp_path / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      x"])
    found = discover([str(p), str(tmp_path)])
    assert len(found.inputs) == 1

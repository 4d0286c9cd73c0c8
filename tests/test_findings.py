"""Findings across sources: grouping, escalation, noise discipline."""

from __future__ import annotations

import json
import shutil
from datetime import datetime

from conftest import PUBLIC, write_utf16
from trc_builder import ServerTrace, object_event

INFO = "This is an informational message only. No user action is required."


def radar_errorlog(setup: bool) -> list[str]:
    """An ERRORLOG of MSSQL01\\RADAR (the instance of the public mdec samples)."""
    ts = "2020-08-01 23:20:00.10"
    params = ' -s "RADAR"' + ('\n\t -m "SqlSetup"\n\t -T 4022\n\t -T 4010' if setup else "")
    return [
        f"{ts} Server      Microsoft SQL Server 2014 (SP3) (KB4022619) - 12.0.6024.0 (X64) \n\tSep  7 2018 01:37:51 \n\tCopyright (c) Microsoft Corporation\n\tStandard Edition (64-bit) on Windows NT 6.3 <X64> (Build 9600: ) (Hypervisor)",
        "",
        f"{ts} Server      UTC adjustment: 2:00",
        f"{ts} Server      Command Line Startup Parameters:\n\t{params}",
        f"{ts} spid8s      Server name is 'MSSQL01\\RADAR'. {INFO}",
    ]


def test_multi_source_instance(tmp_path, cli):
    case = tmp_path / "MSSQL01"
    log = case / "MSSQL12.RADAR" / "MSSQL" / "Log"
    # Setup run first (its option changes are SQL Server's own), then the attack run.
    write_utf16(log / "ERRORLOG.1", radar_errorlog(setup=True) + [
        "2020-08-01 23:20:05.00 spid51      Configuration option 'show advanced options' changed from 0 to 1. Run the RECONFIGURE statement to install.",
        "2020-08-01 23:20:05.10 spid51      Configuration option 'clr enabled' changed from 0 to 1. Run the RECONFIGURE statement to install.",
        "2020-08-01 23:20:05.20 spid51      Configuration option 'clr enabled' changed from 1 to 0. Run the RECONFIGURE statement to install.",
    ])
    write_utf16(log / "ERRORLOG", [line.replace("2020-08-01 23:20:00.10", "2020-08-01 23:25:00.10")
                                   for line in radar_errorlog(setup=False)] + [
        "2020-08-01 23:26:00.00 spid20s     Launched startup procedure 'sp_radar_persist'.",
        "2020-08-01 23:26:00.05 spid20s     Using 'xplog70.dll' version '2014.120.6024' to execute extended stored procedure 'xp_cmdshell'. " + INFO,
    ])
    trace = ServerTrace("MSSQL01\\RADAR", start=datetime(2020, 8, 1, 23, 22, 0))
    trace.event(46, object_event("P", "sp_radar_persist", "master", 1, login="OFFSEC\\admmig", host="ADMIN-PC"),
                seconds=30)
    trace.event(46, object_event("P", "usp_nightly", "Sales", 1, login="etl", host="APP01"), seconds=40)
    trace.stop(600)
    (log / "log_3.trc").write_bytes(trace.file())
    evtx = case / "evtx"
    evtx.mkdir()
    for name in ("mdec_ID15457_xp_cmdshell_enabled.evtx", "mdec_ID4688_sqlservr_cmd_children_msf.evtx"):
        shutil.copy(PUBLIC / "evtx" / name, evtx / name)

    out = tmp_path / "out" / "t.parquet"
    code, _o, err = cli("timeline", case, "-o", out, "--workers", "2")
    assert code == 0, err
    code, stdout, _ = cli("findings", out, "--json")
    findings = json.loads(stdout)
    by_title = {f["title"]: f for f in findings}

    sp = by_title["Startup procedure sp_radar_persist"]
    assert sp["severity"] == "high"
    assert sorted(sp["sources"]) == ["default_trace", "errorlog"]
    assert sp["first_seen"] == "2020-08-01T21:22:30Z"  # trace creation, local 23:22:30 at +02:00
    assert any("same session" in w for w in sp["why"])

    xp = [f for f in findings if f["title"] == "xp_cmdshell enabled or used"]
    assert len(xp) == 1 and xp[0]["severity"] == "high"
    assert {"evtx", "errorlog"} <= set(xp[0]["sources"])
    assert "xp_cmdshell was turned on and then used on this instance." in xp[0]["why"]

    # Noise: setup-time option changes and an ordinary procedure are no finding.
    assert not [f for f in findings if f["title"] == "CLR security weakened"]
    assert not [f for f in findings if "usp_nightly" in f["title"]]
    for f in findings:
        assert f["why"], f["title"]
        assert f["evidence"] and all(e["source_file"] for e in f["evidence"])


def test_findings_rejects_non_timelines(tmp_path, cli):
    bogus = tmp_path / "x.parquet"
    bogus.write_bytes(b"not parquet")
    code, _o, err = cli("findings", bogus)
    assert code == 2 and "not a" in err and "timeline" in err

"""Local time to UTC: offsets, pairs, DST across anchors, --tz, assumed UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forensic.model import TimeAnchor
from forensic.timezones import TimeContext, pair_offset, parse_cli_zone, parse_offset


@pytest.mark.parametrize("text,minutes", [
    ("-8:00", -480), ("-7:00", -420), ("4:00", 240), ("5:30", 330), ("0:00", 0), ("+05:30", 330),
    ("-03:30", -210), ("UTC-3", -180)])
def test_parse_offset(text, minutes):
    assert parse_offset(text) == minutes


@pytest.mark.parametrize("text", ["", "abc", "15:00", "5:75"])
def test_parse_offset_rejects(text):
    assert parse_offset(text) is None


def test_pair_offset_from_real_17176_line():
    assert pair_offset("5/29/2025 3:29:14 PM", "5/29/2025 11:29:14 AM") == 240
    assert pair_offset("6/1/2025 9:22:45 AM", "6/1/2025 5:22:45 AM") == 240
    assert pair_offset("1/1/2025 1:00:00 AM", "12/31/2024 5:00:00 PM") == 480
    assert pair_offset("garbage", "6/1/2025 5:22:45 AM") is None


def anchor(y, mo, d, h, mi, off, kind="errorlog_utc_adjustment"):
    return TimeAnchor(datetime(y, mo, d, h, mi), off, kind)


def test_single_offset_applies_everywhere():
    ctx = TimeContext.build([anchor(2025, 6, 1, 9, 22, 240)], None)
    utc, src = ctx.resolve(datetime(2025, 6, 2, 0, 0, 53, 980000))
    assert utc == datetime(2025, 6, 1, 20, 0, 53, 980000, tzinfo=UTC) and src == "errorlog_utc_adjustment"
    # Before the first anchor: the first anchor's offset still applies.
    assert ctx.resolve(datetime(2025, 5, 1))[0] == datetime(2025, 4, 30, 20, 0, tzinfo=UTC)


def test_dst_change_between_anchors_switches_at_the_transition():
    ctx = TimeContext.build([anchor(2025, 3, 1, 9, 0, -300),
                             anchor(2025, 3, 12, 0, 0, -240, "errorlog_local_utc_pair")], None)
    assert ctx.resolve(datetime(2025, 3, 9, 1, 59)) == (datetime(2025, 3, 9, 6, 59, tzinfo=UTC),
                                                        "errorlog_utc_adjustment")
    assert ctx.resolve(datetime(2025, 3, 9, 3, 0)) == (datetime(2025, 3, 9, 7, 0, tzinfo=UTC),
                                                       "errorlog_local_utc_pair")
    assert ctx.resolve(datetime(2025, 3, 11, 12, 0))[0] == datetime(2025, 3, 11, 16, 0, tzinfo=UTC)


def test_europe_autumn_change():
    ctx = TimeContext.build([anchor(2025, 10, 1, 9, 0, 120), anchor(2025, 11, 2, 0, 0, 60)], None)
    assert ctx.resolve(datetime(2025, 10, 26, 1, 30))[0] == datetime(2025, 10, 25, 23, 30, tzinfo=UTC)
    assert ctx.resolve(datetime(2025, 10, 26, 4, 0))[0] == datetime(2025, 10, 26, 3, 0, tzinfo=UTC)


def test_cli_zone_used_without_evidence_and_is_dst_aware():
    ctx = TimeContext.build([], parse_cli_zone("Europe/Berlin"))
    assert ctx.resolve(datetime(2025, 1, 15, 12, 0)) == (datetime(2025, 1, 15, 11, 0, tzinfo=UTC), "cli")
    assert ctx.resolve(datetime(2025, 7, 15, 12, 0)) == (datetime(2025, 7, 15, 10, 0, tzinfo=UTC), "cli")
    fixed = TimeContext.build([], parse_cli_zone("-05:00"))
    assert fixed.resolve(datetime(2025, 7, 15, 12, 0))[0] == datetime(2025, 7, 15, 17, 0, tzinfo=UTC)


def test_evidence_wins_over_disagreeing_cli_zone():
    ctx = TimeContext.build([anchor(2025, 6, 1, 9, 0, -420)], parse_cli_zone("Europe/Berlin"))
    assert ctx.resolve(datetime(2025, 6, 1, 10, 0)) == (datetime(2025, 6, 1, 17, 0, tzinfo=UTC),
                                                        "errorlog_utc_adjustment")
    assert any("disagrees with the evidence" in n for n in ctx.notes)
    agreeing = TimeContext.build([anchor(2025, 6, 1, 9, 0, 120)], parse_cli_zone("Europe/Berlin"))
    assert agreeing.notes == []


def test_no_evidence_no_cli_is_assumed_utc():
    ctx = TimeContext.build([], None)
    assert ctx.resolve(datetime(2025, 6, 1, 10, 0)) == (datetime(2025, 6, 1, 10, 0, tzinfo=UTC), "assumed_utc")
    assert ctx.describe()["method"] == "assumed_utc"


def test_unknown_cli_zone_raises():
    with pytest.raises(ValueError):
        parse_cli_zone("Mars/Olympus")


def test_collection_offset_is_evidence(tmp_path, cli):
    import json

    import pyarrow.parquet as pq
    from conftest import REPO
    src = REPO / "tests" / "fixtures" / "master_export" / "collect_output.xml"
    ev = tmp_path / "case"
    ev.mkdir()
    (ev / "collect_output.xml").write_bytes(src.read_bytes())
    out = tmp_path / "t.parquet"
    code, _o, err = cli("timeline", ev, "-o", out, "--workers", "1", "--quiet")
    assert code in (0, 1), err
    rows = [r for r in pq.read_table(out).to_pylist() if r["timestamp"] is not None]
    assert rows and {r["tz_source"] for r in rows} == {"collection_utc_offset"}
    manifest = json.loads((tmp_path / "t.parquet.manifest.json").read_text())
    assert manifest["inputs"][0]["time_zone"]["offsets"][0]["offset"] == "-05:00"

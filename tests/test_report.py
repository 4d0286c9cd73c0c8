"""`report`: content of the examiner's HTML report, and that evidence text is always escaped."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser

import pytest
from conftest import FIXTURES, write_utf16

import forensic.report_html as report_html

# Everything the report may contain: no script, no embedded object, no form.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "nav", "footer", "section", "article",
    "figure", "figcaption", "h1", "h2", "h3", "h4", "p", "div", "span", "a", "b", "i", "br", "pre", "ul", "li",
    "table", "colgroup", "col", "thead", "tbody", "tr", "th", "td", "svg", "rect", "line", "text",
}
ALLOWED_ATTRS = {"class", "id", "href", "style", "lang", "charset", "http-equiv", "content", "name", "viewbox",
                 "width", "height", "role", "aria-label", "xmlns", "x", "y", "x1", "x2", "y1", "y2", "fill",
                 "stroke", "stroke-width", "text-anchor"}


class Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self.current = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        self.current = tag

    def handle_endtag(self, tag):
        self.current = ""

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        (self.style if self.current == "style" else self.text).append(data)


def parse(html_text: str) -> Collect:
    c = Collect()
    c.feed(html_text)
    c.close()
    return c


def assert_inert(html_text: str) -> Collect:
    """Only known tags and attributes, links only inside the page, no script anywhere."""
    c = parse(html_text)
    for tag, attrs in c.tags:
        assert tag in ALLOWED_TAGS, f"unexpected tag <{tag}>"
        for name, value in attrs:
            assert name in ALLOWED_ATTRS, f"unexpected attribute {name}= on <{tag}>"
            if name == "href":
                assert value and value.startswith("#"), f"external link {value!r}"
            if name == "style":
                assert "url(" not in (value or "") and "expression" not in (value or "")
    assert "<script" not in html_text.lower()
    style = "".join(c.style).lower()
    assert style and "@import" not in style and "url(" not in style and "@font-face" not in style
    return c


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from typer.testing import CliRunner

    from forensic.cli import app
    folder = tmp_path_factory.mktemp("report")
    timeline = folder / "t.parquet"
    result = CliRunner().invoke(app, ["timeline", str(FIXTURES), "-o", str(timeline), "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    out = folder / "report.html"
    result = CliRunner().invoke(app, ["report", str(timeline), "-o", str(out), "--title", "Case 2025-031"])
    assert result.exit_code == 0, result.output
    return timeline, out, out.read_text(encoding="utf-8"), result


def test_sample_report_content(sample):
    timeline, out, text, result = sample
    assert "report written to" in result.stderr and "finding(s)" in result.stderr
    c = assert_inert(text)
    body = " ".join(c.text)
    # Case summary from the manifest: inputs, hashes, time-zone decisions, warnings.
    manifest = json.loads((timeline.parent / "t.parquet.manifest.json").read_text())
    for item in manifest["inputs"]:
        assert item["sha256"] in text and item["path"] in body
    assert "Case 2025-031" in body
    assert "errorlog_utc_adjustment" in body and "-05:00" in body and "-04:00" in body
    assert "offset changed from -05:00 to -04:00" in body  # the DST warning of SQLPROD01
    assert "README.txt" in body  # skipped files are listed with their hashes
    # Findings, most severe first, with why and evidence.
    from forensic.findings import build_findings
    findings = build_findings(str(timeline))
    positions = [text.index(f'id="f{n}"') for n in range(1, len(findings) + 1)]
    assert positions == sorted(positions)
    ranks = [report_html.SEVERITY_RANK[f.severity] for f in findings]
    assert ranks == sorted(ranks)
    for f in findings:
        assert report_html.h(f.title) in text
        for why in f.why:
            assert report_html.h(why) in text
    sp = next(f for f in findings if f.title == "Startup procedure sp_sqlsvc_update")
    first = sp.evidence[0]
    assert f"{os.path.basename(first['source_file'])}:{first['source_record']}" in body
    # The picture: inline SVG, one lane per source, the attack window.
    assert text.count("<svg") >= 2 and 'class="window"' in text
    assert "sqlagent_log" in body and "SQLPROD01\\MSSQLSERVER" in body
    # The flagged events table holds every flagged event.
    flagged = sum(manifest["totals"]["flags"].values())
    assert text.count('<td class=when>') >= len(findings)
    assert f"flagged events of {manifest['totals']['events']:,}" in body
    assert flagged >= 1
    # Self-contained, print-ready, and it says what it was made from.
    assert "Content-Security-Policy" in text and "@media print" in text and "@page" in text
    assert report_html._sha256(str(timeline)) in text


def test_report_from_jsonl_matches_parquet(tmp_path, cli, sample):
    timeline, _out, text, _r = sample
    jsonl = tmp_path / "t.jsonl"
    code, _o, _e = cli("timeline", FIXTURES, "-o", jsonl, "--workers", "1", "--quiet")
    assert code == 0
    out = tmp_path / "r.html"
    code, _o, err = cli("report", jsonl, "-o", out)
    assert code == 0, err
    other = out.read_text(encoding="utf-8")
    titles = re.findall(r'<h3>.*?</h3>', text)
    assert titles and re.findall(r'<h3>.*?</h3>', other) == titles


def test_report_without_manifest(tmp_path, cli, sample):
    timeline = tmp_path / "copy.parquet"
    timeline.write_bytes(sample[0].read_bytes())
    out = tmp_path / "r.html"
    code, _o, err = cli("report", timeline, "-o", out)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert "No run manifest" in text and "not in a manifest" in text
    assert "Startup procedure sp_sqlsvc_update" in text


def test_report_notices_a_changed_timeline(tmp_path, cli, sample):
    timeline = tmp_path / "t.parquet"
    timeline.write_bytes(sample[0].read_bytes())
    manifest = json.loads((sample[0].parent / "t.parquet.manifest.json").read_text())
    manifest["output"]["rows"] += 5
    (tmp_path / "t.parquet.manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "r.html"
    assert cli("report", timeline, "-o", out)[0] == 0
    assert "is not the file this manifest describes" in out.read_text(encoding="utf-8")


def test_report_caps_are_stated(tmp_path, cli, sample, monkeypatch):
    monkeypatch.setattr(report_html, "MAX_TABLE_ROWS", 3)
    monkeypatch.setattr(report_html, "MAX_EVIDENCE_SHOWN", 1)
    out = tmp_path / "r.html"
    code, _o, err = cli("report", sample[0], "-o", out)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert re.search(r"The first 3 of \d+ flagged events", text)
    assert "more evidence events of this finding" in text
    events = text[text.index('id="events"'):text.index('id="inputs"')]
    assert events.count("<td class=when>") == 3


@pytest.mark.parametrize("content, message", [
    (None, "no such timeline file"),
    ("timestamp,message\n2025-01-01,x\n", "not a mssql-forensic timeline"),
    ('{"message": "m", "datetime": "2025-01-01T00:00:00+00:00", "timestamp_desc": "t", "flags": []}\n',
     "Timesketch export"),
])
def test_report_usage_errors(tmp_path, cli, content, message):
    path = tmp_path / "t.csv"
    if content is not None:
        path.write_text(content)
    code, _o, err = cli("report", path, "-o", tmp_path / "r.html")
    assert code == 2 and message in err
    assert not (tmp_path / "r.html").exists()


def test_report_of_a_damaged_timeline(tmp_path, cli, sample):
    data = sample[0].read_bytes()
    damaged = tmp_path / "t.parquet"
    damaged.write_bytes(data[:4] + data[4:len(data) // 2] + b"\0" * 64 + data[-8:])
    code, _o, err = cli("report", damaged, "-o", tmp_path / "r.html")
    assert code == 2 and "timeline" in err
    assert not (tmp_path / "r.html").exists()
    # Damage inside the data pages, footer intact: a clear error, no traceback.
    flipped = bytearray(data)
    for i in range(len(data) // 4, len(data) // 2, 97):
        flipped[i] ^= 0x5A
    damaged.write_bytes(bytes(flipped))
    for args in (("report", damaged, "-o", tmp_path / "r.html"), ("findings", damaged)):
        code, _o, err = cli(*args)
        assert code == 2 and "cannot read the timeline" in err, args
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_to_overwrite_its_input(sample, cli):
    timeline = sample[0]
    before = timeline.read_bytes()
    code, _o, err = cli("report", timeline, "-o", timeline)
    assert code == 2 and "would overwrite" in err
    assert timeline.read_bytes() == before


def test_findings_command_names_wrong_inputs(tmp_path, cli):
    path = tmp_path / "ts.jsonl"
    path.write_text('{"message": "m", "datetime": "2025-01-01T00:00:00+00:00", "timestamp_desc": "t", '
                    '"timestamp": 0, "flags": ["xp_cmdshell"]}\n')
    code, _o, err = cli("findings", path)
    assert code == 2 and "Timesketch export" in err


# -- attacker-controlled evidence ---------------------------------------------

EVIL_NAMES = [
    '<script>document.body.setAttribute("data-pwned","1")</script>',
    '"><img src=x onerror=document.body.setAttribute("data-pwned","2")>',
    "</textarea></style></title><svg onload=alert(3)>",
    "javascript:alert(4)",
    "<a href=\"javascript:alert(5)\">click</a>",
    "invoice\u202eexe.txt",
]


def evil_case(tmp_path):
    ev = tmp_path / "ev"
    lines = ["2025-01-01 10:00:00.00 Server      UTC adjustment: 0:00",
             "2025-01-01 10:00:00.10 spid8s      Server name is 'SRV01\\PROD'. This is an informational message only."]
    for n, name in enumerate(EVIL_NAMES, 1):
        lines.append(f"2025-01-01 10:00:{n:02d}.00 spid9s      Launched startup procedure '{name}'.")
    lines.append("2025-01-01 10:01:00.00 spid51      Configuration option 'xp_cmdshell' changed from 0 to 1. "
                 "Run the RECONFIGURE statement to install.\n\t<iframe src=\"javascript:alert(6)\"></iframe>"
                 "\n\t</pre><script>alert(7)</script>")
    # File names are evidence too.
    write_utf16(ev / 'ERRORLOG"><img src=x onerror=alert(8)>', lines)
    return ev


def test_evidence_markup_is_escaped(tmp_path, cli):
    ev = evil_case(tmp_path)
    timeline = tmp_path / "t.parquet"
    code, _o, err = cli("timeline", ev, "-o", timeline, "--workers", "1", "--quiet")
    assert code == 0, err
    out = tmp_path / "r.html"
    code, _o, err = cli("report", timeline, "-o", out, "--title", "</title><script>alert(9)</script>")
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    c = assert_inert(text)
    body = "".join(c.text)
    # The names are shown (as text), not dropped and not interpreted.
    for name in EVIL_NAMES[:-1]:
        assert name in body, name
    assert "invoice\u27e8U+202E\u27e9exe.txt" in body and "\u202e" not in text
    assert "<script>alert(7)</script>" in body and "</title><script>alert(9)</script>" in body
    assert 'ERRORLOG"><img src=x onerror=alert(8)>' in body
    # Findings name the procedures; each has its own escaped card.
    assert text.count('class="finding high"') + text.count('class="finding medium"') >= len(EVIL_NAMES)


def test_visible_and_escape():
    h = report_html.h
    assert h('<a href="x">\'&') == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;"
    assert h("a\x00b\u200bc\u202ed\ud800") == "a\u27e8U+0000\u27e9b\u27e8U+200B\u27e9c\u27e8U+202E\u27e9d\u27e8U+D800\u27e9"
    assert h("tab\tand\nnewline") == "tab\tand\nnewline"
    assert h(None) == ""


def test_lone_surrogate_in_evidence_does_not_break_the_report(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forensic.schema import TIMELINE_SCHEMA
    from forensic.writers import TimelineWriter
    row = {name: None for name in TIMELINE_SCHEMA.names}
    from datetime import UTC, datetime
    row.update(timestamp=datetime(2025, 1, 1, tzinfo=UTC), timestamp_desc="Event Logged",
               message="Launched startup procedure 'x\\udcff'.", source="errorlog",
               event_type="startup_procedure_launched", flags=["startup_procedure"], source_file="/e/ERRORLOG",
               source_sha256="0" * 64, source_record=1, tz_source="utc", object_name="x\x01y",
               attributes=json.dumps({"rules": ["startup-procedure-launched"]}))
    path = tmp_path / "t.parquet"
    w = TimelineWriter(str(path), "parquet")
    w.write(pa.RecordBatch.from_pylist([row], schema=TIMELINE_SCHEMA))
    w.close()
    assert pq.read_table(path).num_rows == 1
    case = report_html.write_report(str(path), str(tmp_path / "r.html"))
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert case.scan.flagged == 1 and "x\u27e8U+0001\u27e9y" in text


def test_ticks_are_round_times():
    from datetime import UTC, datetime
    us = report_html._us
    t = report_html._ticks(us(datetime(2025, 3, 6, 3, 0, tzinfo=UTC)), us(datetime(2025, 3, 13, 7, 0, tzinfo=UTC)))
    assert [label for _p, label, _s in t][:2] == ["2025-03-07", "2025-03-08"]
    t = report_html._ticks(us(datetime(2025, 3, 6, 3, 2, 10, tzinfo=UTC)), us(datetime(2025, 3, 6, 3, 9, tzinfo=UTC)))
    assert t[0][1] == "03:03" and t[0][2] == "2025-03-06" and all(s == "" for _p, _l, s in t[1:])
    t = report_html._ticks(us(datetime(2019, 7, 1, tzinfo=UTC)), us(datetime(2025, 9, 1, tzinfo=UTC)))
    assert [label for _p, label, _s in t] == ["2020", "2021", "2022", "2023", "2024", "2025"]
    t = report_html._ticks(us(datetime(2025, 1, 15, tzinfo=UTC)), us(datetime(2025, 9, 1, tzinfo=UTC)))
    assert t[0][1] == "2025-02" and all(label.startswith("2025-") for _p, label, _s in t)


def test_report_of_an_empty_timeline(tmp_path, cli):
    ev = tmp_path / "ev"
    write_utf16(ev / "ERRORLOG", ["2025-01-01 10:00:00.00 spid51      Nothing to see here."])
    timeline = tmp_path / "t.parquet"
    assert cli("timeline", ev, "-o", timeline, "--workers", "1", "--quiet", "--tz", "UTC")[0] == 0
    out = tmp_path / "r.html"
    code, _o, err = cli("report", timeline, "-o", out)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert_inert(text)
    assert "No finding" in text and "nothing to draw" in text and os.path.getsize(out) < 60_000

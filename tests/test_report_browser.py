"""The report in a real browser: headless Chromium renders it, prints it, and runs none of the evidence.

Skipped only when no Chromium is installed and it could not be installed (`.ci/run` installs Debian's
`chromium` package; set CHROMIUM to use another binary).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from conftest import FIXTURES

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def chromium_binary() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


CHROMIUM = chromium_binary()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed and could not be installed here (apt-get install -y chromium; .ci/run "
           "installs it): the report's browser rendering is NOT tested in this run")


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# -- a tiny PNG decoder (8-bit RGB/RGBA/grey, non-interlaced: what Chromium writes) ------------------

def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _c, _f, interlace = header
    assert depth == 8 and interlace == 0, (depth, interlace)
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows, prev, p = [], bytearray(stride), 0
    for _y in range(height):
        kind, line = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def pixel_stats(rows: list[bytes], bpp: int) -> tuple[int, int, int]:
    """(pixels, non-white pixels, strongly red pixels: the severity badges)."""
    total = ink = red = 0
    for row in rows[::2]:
        for i in range(0, len(row), bpp * 2):
            r, g, b = (row[i], row[i + 1], row[i + 2]) if bpp >= 3 else (row[i],) * 3
            total += 1
            if r < 235 or g < 235 or b < 235:
                ink += 1
            if r > 150 and g < 80 and b < 80:
                red += 1
    return total, ink, red


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    from typer.testing import CliRunner

    from forensic.cli import app
    folder = tmp_path_factory.mktemp("browser")
    timeline = folder / "t.parquet"
    runner = CliRunner()
    assert runner.invoke(app, ["timeline", str(FIXTURES), "-o", str(timeline), "--workers", "1", "--quiet"]).exit_code == 0
    out = folder / "report.html"
    result = runner.invoke(app, ["report", str(timeline), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_screenshot_is_not_blank(sample_report, tmp_path):
    png = tmp_path / "report.png"
    proc = run_chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,2000", sample_report.as_uri())
    assert png.exists(), proc.stderr[-2000:]
    width, height, bpp, rows = decode_png(png.read_bytes())
    assert (width, height) == (1280, 2000)
    total, ink, red = pixel_stats(rows, bpp)
    # Text, tables and badges cover a good part of the first screen; the red of
    # the severity badges shows the stylesheet was applied.
    assert ink / total > 0.04, f"only {ink / total:.1%} non-white pixels"
    assert red > 200, f"only {red} red pixels: severity badges not rendered"
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(png, keep)


def test_prints_to_pdf(sample_report, tmp_path):
    pdf = tmp_path / "report.pdf"
    proc = run_chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", sample_report.as_uri())
    assert pdf.exists(), proc.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    # Sections start on new pages: summary, findings, timeline, events, inputs.
    assert data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type/Page/") >= 5 or \
        data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 5


def test_evidence_does_not_run_in_the_browser(tmp_path, cli):
    from test_report import evil_case
    ev = evil_case(tmp_path)
    timeline = tmp_path / "t.parquet"
    assert cli("timeline", ev, "-o", timeline, "--workers", "1", "--quiet")[0] == 0
    out = tmp_path / "evil.html"
    assert cli("report", timeline, "-o", out, "--title", "<script>document.title='pwned'</script>")[0] == 0
    proc = run_chromium(tmp_path, "--dump-dom", "--virtual-time-budget=3000", out.as_uri())
    dom = proc.stdout
    assert "<main>" in dom and 'id="findings"' in dom, proc.stderr[-2000:]
    # The payloads would have set data-pwned on <body>, or added elements.
    assert "<body data-pwned" not in dom and "<body>" in dom
    assert "<img" not in dom and "<iframe" not in dom and "<script" not in dom
    assert "&lt;script&gt;document.body.setAttribute" in dom

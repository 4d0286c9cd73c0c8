"""The streamed record reader shared by the ERRORLOG and SQL Agent parsers."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from forensic.model import ParseWarning
from parsers.base import Source
from parsers.errorlog import RECORD_HEAD, RECORD_START
from parsers.textlog import MAX_RECORD_CHARS, RecordBlock, _split_columns, iter_record_batches

TS = "2025-06-01 09:22:44.70"
# Lines a damaged or hostile ERRORLOG can hold: records, continuation lines,
# blanks, other scripts' digits (\d matches them), odd line-break characters
# that are not newlines for the record pattern, near-miss timestamps.
LINE = st.one_of(
    st.builds(lambda src, msg: f"{TS} {src} {msg}", st.sampled_from(["Server     ", "spid51", "", "Logon  "]),
              st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=30)),
    st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=30),
    st.sampled_from(["", "\t -T1117", "٢٠٢٥-٠٦-٠١ ٠٩:٢٢:٤٤.٧٠ spid5 arabic digits", f"{TS}x", f"{TS}  ",
                     f"{TS}\r", "\x0b\x0c\x1c\x85\u2028", "2025-06-01 09:22:44.7 short"]),
)


def _lines_the_slow_way(text: str) -> list[int]:
    starts = [m.start() for m in RECORD_START.finditer(text)]
    return [1 + text.count("\n", 0, s) for s in starts]


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=25), st.booleans())
def test_record_pattern_finds_every_record_start_and_its_line(lines, trailing_newline):
    """The contract iter_record_batches relies on: RECORD_HEAD matches after a
    newline exactly where RECORD_START matches, so the records cover the text
    and their line numbers follow from the newlines inside them."""
    text = f"{TS} Server      first\n" + "\n".join(lines) + ("\n" if trailing_newline else "")
    block = _split_columns(text, 1, RECORD_HEAD)
    assert list(block.lines) == _lines_the_slow_way(text)
    assert block.end_line == 1 + text.count("\n")
    # Nothing but the newline ending each record lies between them.
    assert sum(len(ts) + len(m) for ts, m in zip(block.columns[0], block.columns[-1], strict=True)) <= len(text)
    assert "".join(block.columns[-1]).count("\n") + len(block) - 1 == text.count("\n")


def test_overlong_record_tail_is_counted_and_later_lines_stay_right(monkeypatch):
    import parsers.textio as textio
    from parsers import textlog
    # Small chunks: the overlong record's tail spans several chunks.
    monkeypatch.setattr(textlog, "iter_decoded",
                        lambda s, e, r, **kw: textio.iter_decoded(s, e, r, chunk_bytes=70_001, **kw))
    long_line = f"{TS} spid51      " + "x" * (MAX_RECORD_CHARS + 150_000)
    text = "\n".join([f"{TS} Server      one", long_line, "\tcontinued", f"{TS} spid52      after",
                      f"{TS} spid53      last"]) + "\n"
    items = list(iter_record_batches(Source.from_bytes(text.encode(), "ERRORLOG"), RECORD_START,
                                     head_re=RECORD_HEAD))
    records = [(line, msg.rstrip()[:20]) for b in items if isinstance(b, RecordBlock)
               for line, msg in zip(b.lines, b.columns[-1], strict=True)]
    assert records == [(1, "one"), (2, "x" * 20), (4, "after"), (5, "last")]
    warnings = [w.message for w in items if isinstance(w, ParseWarning)]
    overlong = len(long_line) + len("\n\tcontinued\n")  # the record up to the next one
    assert any(f"{overlong - MAX_RECORD_CHARS} characters of overlong" in w for w in warnings), warnings
    assert re.search(r"line 2 is longer than", " ".join(warnings))

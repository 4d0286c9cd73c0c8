"""Every parser survives arbitrary, truncated and bit-flipped input (issue 8).

Small fixed hypothesis budgets keep the suite fast; ``tests/fuzz/`` runs the
same checks (:mod:`fuzz.targets`) for as long as you like.  The trace, EVTX
and master-export parsers have their own format-aware property tests in their
test files; here every parser gets the generic checks, and the ERRORLOG and
Agent-log parsers get grammar-aware ones.
"""

from __future__ import annotations

import random

import pytest
from fuzz.targets import Violation, check_input, check_parser, mutate, parser_runs, seeds
from fuzz.textgen import agent_lines, encoded, errorlog_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import registered_parsers
from parsers.base import Source

SEEDS = seeds()
SEED_NAMES = sorted(SEEDS)
FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def by_name(name: str):
    return next(p for p in registered_parsers() if p.name == name)


def test_seeds_cover_every_parser():
    """The corpus has a sample each parser claims, so mutations reach every format."""
    claimed = {p.name for data in SEEDS.values() for p in registered_parsers() if p.sniff(data[:4096], "x")}
    assert claimed >= {"errorlog", "sqlagent", "default_trace", "evtx", "master_export"}, claimed


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_every_parser(data):
    check_input(data, time_limit=30)


@settings(FAST, max_examples=40)
@given(st.sampled_from(SEED_NAMES), st.integers(0, 2**32), st.integers(1, 6))
def test_damaged_samples_every_parser(name, seed, steps):
    data = mutate(SEEDS[name], random.Random(seed), steps)
    check_input(data, name=name.rsplit("/", 1)[-1], time_limit=30)


@settings(FAST, max_examples=120)
@given(encoded(errorlog_lines()))
def test_errorlog_grammar(data):
    check_input(data, only=["errorlog", "sqlagent", "master_export"], time_limit=30)


@settings(FAST, max_examples=120)
@given(encoded(agent_lines()))
def test_sqlagent_grammar(data):
    check_input(data, only=["sqlagent", "errorlog", "master_export"], time_limit=30)


# -- regressions found by the fuzzers -------------------------------------------

@pytest.mark.parametrize("line", [
    "2025-01-01 10:00:00 - ? [\u00b2] superscript two passes str.isdigit() but not int()",
    "2025-01-01 10:00:00 - ? [99999999999999999999999] beyond int64",
    "2025-01-01 10:00:00 - ? [" + "9" * 5000 + "] beyond int()'s 4300-digit limit",
])
def test_sqlagent_odd_message_numbers_stay_text(line):
    data = (line + "\n2025-01-01 10:00:01 - ? [100] next record\n").encode()
    events, _warnings = check_parser(by_name("sqlagent"), data)
    assert events == 2
    items = list(by_name("sqlagent").parse(Source.from_bytes(data)))
    assert items[0].event_id is None and items[0].attributes["tag"]
    assert items[1].event_id == 100


@pytest.mark.parametrize("number", ["99999999999999999999999", "9" * 5000, "\u0663\u0663"])
def test_errorlog_odd_error_numbers_keep_the_record(number):
    data = (f"2025-01-01 10:00:00.00 spid51      Error: {number}, Severity: 16, State: 1.\r\n"
            "2025-01-01 10:00:00.00 spid51      Something failed.\r\n"
            "2025-01-01 10:00:01.00 spid51      Launched startup procedure 'x'.\r\n").encode("utf-16-le")
    events, _warnings = check_parser(by_name("errorlog"), b"\xff\xfe" + data)
    assert events >= 2  # the Error: pair (merged or not) and the record after it


def test_violations_are_detected():
    """The checker itself can fail: a parser that raises or loops is caught."""
    class Raises:
        name = "raises"

        def sniff(self, head, name):
            return False

        def parse(self, src, options=None):
            yield from ()
            raise ValueError("boom")

    class Loops(Raises):
        name = "loops"

        def parse(self, src, options=None):
            from forensic.model import ParseWarning
            while True:
                yield ParseWarning("again", None, 0, False)

    with pytest.raises(Violation, match="boom"):
        check_parser(Raises(), b"abc")
    with pytest.raises(Violation, match="more items than the input has bytes"):
        check_parser(Loops(), b"abc")


def test_every_registered_parser_is_fuzzed():
    names = {p.name for p, _ in parser_runs()}
    assert names == {p.name for p in registered_parsers()}

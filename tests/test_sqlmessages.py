"""The message catalogue's dispatch: a template's literal start."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.sqlmessages import _templates, dispatch_leads, literal_lead

TEMPLATES = sorted({t for ts in _templates()[0].values() for t in ts}, key=lambda t: t.regex.pattern)


def test_literal_lead_stops_at_regex_syntax():
    assert literal_lead("BACKUP failed to complete the command") == "BACKUP failed to complete the command"
    assert literal_lead("DBCC TRACEON (?P<flag>\\d+)") == "DBCC TRACEON "
    assert literal_lead("Logins? failed") == "Login"  # the s may be missing
    assert literal_lead("ab{2}c") == "a"
    assert literal_lead("\\.NET Framework") == ""
    assert literal_lead("(?:Login|Logon) failed") == ""


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.regex.pattern[:40])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_match_starts_with_the_lead(template, data):
    text = data.draw(st.from_regex(template.regex, fullmatch=True))
    assert text.startswith(literal_lead(template.regex.pattern))


def test_every_dispatch_word_has_leads_that_start_with_it():
    for word, leads in dispatch_leads().items():
        for lead in leads or ():
            assert lead.lower().startswith(word), (word, lead)

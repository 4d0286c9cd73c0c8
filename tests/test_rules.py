"""Detection rules are data: loading, validation, matching, extension by file."""

from __future__ import annotations

import pytest
from conftest import SQLPROD01_LOG

from forensic.model import Event
from forensic.rules import FLAGS, RuleError, RuleSet, default_rules, load_rules


def test_default_rules_load_and_use_contract_flags():
    rules = default_rules()
    assert len(rules) >= 20
    assert {r.flag for r in rules} <= set(FLAGS)
    assert all(r.why for r in rules)


def test_bad_rule_files_fail_loudly(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "x"\nflag = "xp_cmdshell"\n[rule.where]\nmessage = "(unclosed"\n')
    with pytest.raises(RuleError, match="bad regex"):
        load_rules([bad])
    bad.write_text('[[rule]]\nid = "x"\nflag = "xp_cmdshell"\nseverity = "urgent"\n')
    with pytest.raises(RuleError, match="severity"):
        load_rules([bad])
    bad.write_text('[[rule]]\nflag = "xp_cmdshell"\n')
    with pytest.raises(RuleError, match="lacks 'id'"):
        load_rules([bad])


def test_where_and_unless():
    rules = RuleSet(load_rules([]) + default_rules())
    on = Event(source="errorlog", event_type="config_changed", message="", event_id=15457,
               object_name="xp_cmdshell", attributes={"old_value": "0", "new_value": "1"})
    off = Event(source="errorlog", event_type="config_changed", message="", event_id=15457,
                object_name="xp_cmdshell", attributes={"old_value": "1", "new_value": "0"})
    rules.apply(on)
    rules.apply(off)
    assert on.flags == ["xp_cmdshell"] and on.attributes["rules"] == ["xp-cmdshell-enabled"]
    assert off.attributes["rules"] == ["xp-cmdshell-disabled"]
    signed = Event(source="errorlog", event_type="assembly_loaded", message="", attributes={
        "assembly_full_name": "microsoft.sqlserver.integrationservices.server, version=15.0.0.0, "
                              "culture=neutral, publickeytoken=89845dcd8080cc91"})
    rules.apply(signed)
    assert signed.flags == []


def test_extra_rules_from_cli(tmp_path, cli):
    extra = tmp_path / "rules"
    extra.mkdir()
    (extra / "mine.toml").write_text(
        '[[rule]]\nid = "brute-force-sa"\nflag = "sysadmin_granted"\nseverity = "low"\n'
        'event_types = ["login_failed"]\nwhy = "test"\n[rule.where]\nuser = "^sa$"\n')
    out = tmp_path / "t.jsonl"
    code, _o, _e = cli("timeline", SQLPROD01_LOG, "-o", out, "--workers", "1", "--quiet", "--rules", extra)
    assert code == 0
    import json
    failed = [json.loads(line) for line in out.read_text().splitlines() if '"login_failed"' in line]
    assert [r["flags"] for r in failed if r["user"] == "sa"] == [["sysadmin_granted"]] * 6
    code, _o, err = cli("timeline", SQLPROD01_LOG, "-o", tmp_path / "x.jsonl", "--rules", tmp_path / "nope.toml")
    assert code == 2


def test_rows_may_fire_finds_rule_rows_among_plain_ones():
    """Only rows whose id or type a rule names are looked at (at C speed);
    the answer is the same as looking at every row."""
    from forensic.model import EventColumns
    from forensic.rules import RuleSet, default_rules
    rules = RuleSet(default_rules())
    cols = EventColumns("errorlog")
    plain = Event(source="errorlog", event_type="log_message", message="Log was backed up.", local_text="2025-01-01 00:00:00.00",
                  source_record=1, attributes={"process": "Backup"})
    xp_on = Event(source="errorlog", event_type="config_changed", event_id=15457, object_name="xp_cmdshell",
                  message="Configuration option 'xp_cmdshell' changed from 0 to 1.", local_text="2025-01-01 00:00:01.00",
                  source_record=2, attributes={"old_value": 0, "new_value": 1})
    other_option = Event(source="errorlog", event_type="config_changed", event_id=15457, object_name="max memory",
                         message="Configuration option 'max memory' changed from 1 to 2.",
                         local_text="2025-01-01 00:00:02.00", source_record=3, attributes={"old_value": 1, "new_value": 2})
    audit = Event(source="errorlog", event_type="log_message", event_id=33205, message="x",
                  local_text="2025-01-01 00:00:03.00", source_record=4, attributes={})
    for ev in (plain, xp_on, plain, other_option, plain, audit, plain):
        cols.append(ev)
    may = rules.rows_may_fire(cols)
    fires = [any(rule.matches(cols.event(i, None)) for rule in rules.candidates(cols.event(i, None)))
             for i in range(len(cols))]
    assert fires[1] and may[1] and not may[3]
    assert all(may[i] for i in range(len(cols)) if fires[i])  # never False where a rule fires
    assert not any(may[i] for i in (0, 2, 4, 6))  # plain rows: no rule is about them

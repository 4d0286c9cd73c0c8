"""Hypothesis strategies for ERRORLOG and SQL Agent log text.

Random bytes almost never look like a log line, so the text parsers are also
fed lines built from the grammar they read: a timestamp (plausible, out of
range, or in other scripts' digits), a source column, and a message that is
a known template, an ``Error: N, Severity: S, State: X.`` line with any
number, or arbitrary text; then encoded the ways SQL Server writes logs.
"""

from __future__ import annotations

from hypothesis import strategies as st

# Digits other than ASCII that str.isdigit() or \d accept.
ODD_DIGITS = "0123456789\u00b2\u00b3\u00b9\u0660\u0663\u06f5\u0966\uff11\U0001d7ce"

_MESSAGES = (
    "Configuration option 'xp_cmdshell' changed from 0 to 1. Run the RECONFIGURE statement to install.",
    "Launched startup procedure 'sp_evil'.",
    "Launch of startup procedure 'x' failed",
    "Using 'xplog70.dll' version '2019.150.2000' to execute extended stored procedure 'xp_cmdshell'.",
    "Unsafe assembly 'evil, version=0.0.0.0, culture=neutral' loaded into appdomain 2 (master.dbo[runtime].1).",
    "AppDomain 99999999999999999999999 (a.b[runtime].1) created.",
    "Login failed for user 'sa'. Reason: Password did not match. [CLIENT: 10.0.0.1]",
    "Setting database option TRUSTWORTHY to ON for database 'x'.",
    "UTC adjustment: -5:00", "UTC adjustment: 99:99",
    "This instance of SQL Server last reported using a process ID of 1 at 1/1/2025 10:00:00 AM (local) "
    "1/1/2025 3:00:00 PM (UTC). This is an informational message only; no user action is required.",
    "This instance of SQL Server has been using a process ID of 99 since 13/45/9999 99:99:99 PM (local) "
    "x (UTC).",
    "Server name is 'HOST\\INST'.", "Server name is ''.",
    "Microsoft SQL Server 2019 (RTM) - 15.0.2000.5 (X64)",
    "Registry startup parameters: \n\t -d C:\\x\\master.mdf\n\t -T3608\n\t -s\"INST\"",
    "Attempting to cycle error log. This is an informational message only; no user action is required.",
    "SQL Trace ID 1 was started by login \"sa\".",
    "Audit event: audit_schema_version:1\nevent_time:2025-01-01 10:00:00.0000000\naction_id:AL",
)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=ODD_DIGITS, min_size=n, max_size=n)


def _timestamp(fraction: bool) -> st.SearchStrategy[str]:
    plain = st.builds(
        lambda y, mo, d, h, mi, s, cs: f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}" + (f".{cs:02d}" if fraction else ""),
        st.sampled_from([1, 2, 1900, 2025, 9998, 9999]) | st.integers(0, 9999),
        st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
        st.integers(0, 99))
    odd = st.builds(lambda *p: "{}-{}-{} {}:{}:{}".format(*p) + (".00" if fraction else ""),
                    _digits(4), _digits(2), _digits(2), _digits(2), _digits(2), _digits(2))
    return st.one_of(plain, plain, odd)


_free_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
_number = st.one_of(st.integers(-(10**30), 10**30).map(str), st.integers(0, 6000).map(lambda n: "9" * n),
                    _digits(3))


def _errorlog_message() -> st.SearchStrategy[str]:
    error = st.builds(lambda n, s, x: f"Error: {n}, Severity: {s}, State: {x}.", _number, _number, _number)
    return st.one_of(st.sampled_from(_MESSAGES), error, _free_text)


@st.composite
def errorlog_lines(draw) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(_free_text))  # continuation or junk
        elif kind == 1:
            lines.append("\t" + draw(_free_text))
        else:
            ts = draw(_timestamp(True))
            proc = draw(st.sampled_from(["Server", "spid51", "spid7s", "Logon", "Backup", "x" * 20, ""]))
            lines.append(f"{ts} {proc:<12}{draw(_errorlog_message())}")
    return lines


@st.composite
def agent_lines(draw) -> list[str]:
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(_free_text))
            continue
        ts = draw(_timestamp(False))
        level = draw(st.sampled_from("?+!"))
        tag = draw(st.one_of(_number, st.sampled_from(["LOG", "", "100", " 7", "\u00b2"]), _free_text))
        msg = draw(st.one_of(st.sampled_from([
            "Microsoft SQLServerAgent version 15.0.4322.2 (X64 unicode retail build)",
            "SQL Server HOST\\INST version 15.00.4322 (0 connection limit)",
            "Local computer is HOST running Windows NT 6.2 (9200)",
            "Step 1 of job 'evil' failed", "job 'x' completed"]), _free_text))
        lines.append(f"{ts} - {level} [{tag}] {msg}")
    return lines


@st.composite
def encoded(draw, lines_strategy) -> bytes:
    """Lines joined and encoded the ways the logs are found."""
    lines = draw(lines_strategy)
    newline = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    codec = draw(st.sampled_from(["utf-16-le-bom", "utf-16-le", "utf-8", "utf-8-sig", "cp1252", "utf-16-be-bom"]))
    if codec == "utf-16-le-bom":
        data = b"\xff\xfe" + text.encode("utf-16-le", "surrogatepass")
    elif codec == "utf-16-be-bom":
        data = b"\xfe\xff" + text.encode("utf-16-be", "surrogatepass")
    elif codec == "cp1252":
        data = text.encode("cp1252", "replace")
    else:
        data = text.encode(codec, "surrogatepass")
    if draw(st.integers(0, 4)) == 0:  # cut anywhere (a log copied while written)
        data = data[:draw(st.integers(0, len(data)))]
    return data

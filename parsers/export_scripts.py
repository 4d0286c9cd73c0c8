"""dbatools ``Export-DbaScript`` files: SMO-scripted T-SQL, read as catalog rows.

Reference master-exports.md section 2.2: the file starts (unless
``-NoPrefix``) with ``/* Created by <user> using dbatools Export-DbaScript for
objects on <server> at <date> ... */`` and holds SMO scripts separated by
``GO`` lines.  A script says what exists, not when it was made: every row is
a state row with no time.  Statements understood:

- ``CREATE [OR ALTER] PROC[EDURE]`` (T-SQL or ``EXTERNAL NAME`` CLR), followed
  by ``sp_procoption ... 'startup' ...`` when SMO scripts the startup option;
- ``CREATE ASSEMBLY ... FROM 0x... WITH PERMISSION_SET = ...``;
- ``sp_configure 'option', value``;
- ``CREATE TRIGGER ... ON ALL SERVER``;
- ``CREATE LOGIN``, ``ALTER SERVER ROLE ... ADD MEMBER``, ``sp_addsrvrolemember``;
- ``sp_addextendedproc``; ``ALTER DATABASE ... SET TRUSTWORTHY ON``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TextIO

from forensic.model import ParseWarning
from parsers.export_shapes import Row

_GO = re.compile(r"^\s*GO(?:\s+\d+)?\s*$", re.IGNORECASE)
_PREFIX = re.compile(r"Created by (?P<user>.+?) using dbatools Export-DbaScript for objects on "
                     r"(?P<server>\S+?) at (?P<date>.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_HEADER_COMMENT = re.compile(r"^\s*/\*{6}\s*Object:\s*(?P<kind>\w+)\s+(?P<name>.+?)\s+Script Date:\s*"
                             r"(?P<date>.+?)\s*\*{6}/\s*$", re.MULTILINE)
_NAME = r"(?P<name>(?:\[(?:[^\]]|\]\])+\]|[\w#@$]+)(?:\s*\.\s*(?:\[(?:[^\]]|\]\])+\]|[\w#@$]+))*)"
_LEAD = r"^(?:\s|--[^\n]*\n|/\*.*?\*/)*"
_PROC = re.compile(_LEAD + r"CREATE\s+(?:OR\s+ALTER\s+)?PROC(?:EDURE)?\s+" + _NAME, re.IGNORECASE | re.DOTALL)
_EXTERNAL = re.compile(r"EXTERNAL\s+NAME\s+(?P<asm>\[[^\]]+\]|\w+)\.(?P<cls>\[[^\]]+\]|[\w.]+)\."
                       r"(?P<meth>\[[^\]]+\]|\w+)", re.IGNORECASE)
_ARG = r"(?:@\w+\s*=\s*)?N?'(?P<{0}>(?:[^']|'')*)'"
_PROCOPTION = re.compile(r"\bsp_procoption\s+" + _ARG.format("proc") + r"\s*,\s*" + _ARG.format("opt")
                         + r"\s*,\s*" + r"(?:@\w+\s*=\s*)?N?'?(?P<val>\w+)'?", re.IGNORECASE)
_ASSEMBLY = re.compile(_LEAD + r"CREATE\s+ASSEMBLY\s+" + _NAME
                       + r"(?:\s+AUTHORIZATION\s+(?P<owner>\[[^\]]+\]|\w+))?\s+FROM\s+(?P<src>0x[0-9A-Fa-f]*|N?'[^']*')"
                       + r"(?:\s+WITH\s+PERMISSION_SET\s*=\s*(?P<perm>\w+))?", re.IGNORECASE | re.DOTALL)
_CONFIGURE = re.compile(r"\bsp_configure\s+" + _ARG.format("opt") + r"\s*,\s*(?:@\w+\s*=\s*)?N?'?(?P<val>-?\d+)'?",
                        re.IGNORECASE)
_TRIGGER = re.compile(_LEAD + r"CREATE\s+(?:OR\s+ALTER\s+)?TRIGGER\s+" + _NAME + r"\s+ON\s+ALL\s+SERVER",
                      re.IGNORECASE | re.DOTALL)
_LOGIN = re.compile(_LEAD + r"CREATE\s+LOGIN\s+" + _NAME, re.IGNORECASE | re.DOTALL)
_ROLE_MEMBER = re.compile(r"ALTER\s+SERVER\s+ROLE\s+(?P<role>\[[^\]]+\]|\w+)\s+ADD\s+MEMBER\s+"
                          r"(?P<member>\[(?:[^\]]|\]\])+\]|[\w\\$]+)", re.IGNORECASE)
_ADDSRVROLEMEMBER = re.compile(r"\bsp_addsrvrolemember\s+" + _ARG.format("member") + r"\s*,\s*"
                               + _ARG.format("role"), re.IGNORECASE)
_ADDEXTPROC = re.compile(r"\bsp_addextendedproc\s+" + _ARG.format("proc") + r"\s*,\s*" + _ARG.format("dll"),
                         re.IGNORECASE)
_TRUSTWORTHY = re.compile(r"ALTER\s+DATABASE\s+" + _NAME + r"\s+SET\s+TRUSTWORTHY\s+(?P<val>ON|OFF)",
                          re.IGNORECASE)
_LEADING_COMMENTS = re.compile(r"^(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
# Batches SMO writes around the objects; nothing to report about them.
_SESSION_STATEMENT = re.compile(r"(SET|USE|PRINT|RECONFIGURE|ENABLE\s+TRIGGER|GRANT|DENY)\b", re.IGNORECASE)
_DISABLE_TRIGGER = re.compile(r"DISABLE\s+TRIGGER\s+" + _NAME + r"\s+ON\s+ALL\s+SERVER", re.IGNORECASE)


def _unbracket(name: str) -> str:
    name = name.strip()
    if name.startswith("[") and name.endswith("]"):
        return name[1:-1].replace("]]", "]")
    return name


def _batches(text: TextIO) -> Iterator[tuple[str, int]]:
    """(batch text, first line number), split on ``GO`` lines; streamed."""
    lines: list[str] = []
    start = 1
    number = 0
    for number, line in enumerate(text, 1):
        if _GO.match(line):
            if lines:
                yield "".join(lines), start
            lines = []
            start = number + 1
            continue
        lines.append(line)
    if lines and "".join(lines).strip():
        yield "".join(lines), start


def read_dbatools(text: TextIO) -> Iterator[Row | ParseWarning]:
    context: dict[str, Any] = {}
    number = 0
    held: Row | None = None  # last procedure, until we know its startup option
    ignored = 0
    for batch, line in _batches(text):
        if not context:
            m = _PREFIX.search(batch[:4096])
            if m:
                context = {"server_name": m.group("server"), "scripted_by": m.group("user"),
                           "scripted_at": m.group("date")}
        values, hint = _statement(batch)
        if hint == "procoption":
            target = _split(values["name"])[1] if values.get("name") else None
            if held is not None and target and target.lower() == str(held.values.get("name", "")).lower():
                held.values["is_auto_executed"] = values["is_auto_executed"]
                continue
            hint = "sys.procedures"
        if hint is None:
            stripped = _LEADING_COMMENTS.sub("", batch)
            if stripped.strip() and not _SESSION_STATEMENT.match(stripped):
                ignored += 1
            continue
        if held is not None:
            yield held
            held = None
        number += 1
        row = Row(values, number, f"line {line}", 0, hint, dict(context))
        if hint == "sys.procedures" and "definition" in values:
            held = row
        else:
            yield row
    if held is not None:
        yield held
    if ignored:
        yield ParseWarning(f"{ignored} script batch(es) of kinds this parser does not read were skipped", None,
                           damaged=False)


def _statement(batch: str) -> tuple[dict[str, Any], str | None]:
    """Catalog-style values and the view of one batch."""
    header = _HEADER_COMMENT.search(batch)
    extra = {"script_date": header.group("date")} if header else {}
    m = _PROC.match(batch)
    if m:
        schema, name = _split(m.group("name"))
        values: dict[str, Any] = {"name": name, "schema": schema, "definition": _body(batch, m.start("name")),
                                  **extra}
        ext = _EXTERNAL.search(batch)
        values["type"] = "PC" if ext else "P"
        if ext:
            values.update(assembly_name=_unbracket(ext.group("asm")), assembly_class=_unbracket(ext.group("cls")),
                          assembly_method=_unbracket(ext.group("meth")))
        # A procedure's own body may call sp_procoption for another procedure:
        # only an option naming this procedure marks it.
        for opt in _PROCOPTION.finditer(batch):
            if opt.group("opt").lower() == "startup" and _split(opt.group("proc"))[1].lower() == name.lower():
                values["is_auto_executed"] = opt.group("val")
        return values, "sys.procedures"
    m = _PROCOPTION.search(batch)
    if m and m.group("opt").lower() == "startup":
        return {"name": m.group("proc").replace("''", "'"), "is_auto_executed": m.group("val")}, "procoption"
    m = _ASSEMBLY.match(batch)
    if m:
        src = m.group("src")
        # SMO scripts user assemblies only (system ones cannot be created).
        values = {"assembly_name": _unbracket(m.group("name")), "permission_set": m.group("perm"),
                  "is_user_defined": True, **extra}
        if m.group("owner"):
            values["owner"] = _unbracket(m.group("owner"))
        if src.lower().startswith("0x"):
            values["content"] = src
        else:
            values["file_name"] = src.lstrip("Nn").strip("'")
            values["content"] = None
        return values, "sys.assembly_files"
    m = _CONFIGURE.search(batch)
    if m:
        return {"name": m.group("opt").replace("''", "'"), "value": m.group("val")}, "sys.configurations"
    m = _TRIGGER.match(batch)
    if m:
        ext = _EXTERNAL.search(batch)
        values = {"name": _unbracket(m.group("name")), "definition": _body(batch, m.start("name")),
                  "type": "TA" if ext else "TR", **extra}
        if _DISABLE_TRIGGER.search(batch):
            values["is_disabled"] = True
        return values, "sys.server_triggers"
    m = _LOGIN.match(batch)
    if m:
        values = {"name": _unbracket(m.group("name")), **extra}
        member = _ROLE_MEMBER.search(batch) or _ADDSRVROLEMEMBER.search(batch)
        if member and _unbracket(member.group("role")).lower() == "sysadmin":
            values["is_sysadmin"] = True
        return values, "sys.server_principals"
    m = _ROLE_MEMBER.search(batch) or _ADDSRVROLEMEMBER.search(batch)
    if m:
        return {"role": _unbracket(m.group("role")), "member": _unbracket(m.group("member"))}, \
            "sys.server_role_members"
    m = _ADDEXTPROC.search(batch)
    if m:
        return {"name": m.group("proc"), "dll_name": m.group("dll")}, "sys.extended_procedures"
    m = _TRUSTWORTHY.search(batch)
    if m:
        return {"name": _unbracket(m.group("name")), "is_trustworthy_on": m.group("val")}, "sys.databases"
    return {}, None


def _split(name: str) -> tuple[str | None, str]:
    parts = [p for p in re.findall(r"\[(?:[^\]]|\]\])+\]|[^.\s]+", name)]
    parts = [_unbracket(p) for p in parts]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1]


def _body(batch: str, name_start: int) -> str:
    """The CREATE statement as SQL Server stores it (from CREATE on)."""
    create = batch.upper().rfind("CREATE", 0, name_start)
    return (batch[create:] if create >= 0 else batch).rstrip()

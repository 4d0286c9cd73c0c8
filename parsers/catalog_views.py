"""Which catalog view an exported row came from, and what it says as events.

Exports name the same column many ways: catalog names (``is_auto_executed``),
PowerUpSQL's (``ProcedureName``, ``CREATED``), dbatools/SMO property names
(``Startup``, ``CreateDate``, ``SecurityLevel``) and INFORMATION_SCHEMA's
(``ROUTINE_DEFINITION``).  Column names are first reduced to a key (lower
case, letters and digits only) and mapped to one canonical name
(:data:`_ALIASES`); the view is then recognised from the set of canonical
names (:func:`recognise`).  Reference: master-exports.md sections 1, 2 and 5.

Times in exports are the server's local time: events carry ``local_time``
(naive) and ``local_text`` (as written) and the engine converts them with the
instance's offset.  Rows whose view has no time (configuration, role
membership) become state rows with no time ("Snapshot").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import PureWindowsPath
from typing import Any

from forensic.model import Event, ParseWarning
from parsers import clr_binary

SOURCE = "master_export"
_NON_ALNUM = re.compile(r"[^a-z0-9]")

# --------------------------------------------------------------------------
# Column names


@lru_cache(maxsize=4096)
def _norm_key(name: str) -> str:
    return _NON_ALNUM.sub("", name.lower())


def norm_key(name: Any) -> str:
    """Column name -> lookup key: lower case, letters and digits only (cached:
    every row repeats its file's column names)."""
    return _norm_key(str(name))


def _aliases(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for canonical, names in table.items():
        for name in (canonical, *names):
            out[norm_key(name)] = canonical
    return out


# canonical name -> other spellings (PowerUpSQL, dbatools/SMO, INFORMATION_SCHEMA,
# sp_configure, sysobjects/syslogins).
_ALIASES = _aliases({
    "name": ("ObjectName",),
    "procedure_name": ("ProcedureName", "ROUTINE_NAME", "sp_name", "ProcName"),
    "object_id": ("ID", "ObjectId", "sp_object_id"),
    "schema": ("schema_name", "SchemaName", "ROUTINE_SCHEMA"),
    "schema_id": (),
    "database": ("DatabaseName", "database_name", "db_name", "ROUTINE_CATALOG"),
    "host": ("ComputerName", "MachineName", "NetBIOSName", "HostName"),
    "instance": ("InstanceName", "SqlInstance", "ServerName", "SqlServer", "Server"),
    "type": ("sp_type", "xtype", "ObjectType"),
    "type_desc": (),
    "implementation_type": ("ImplementationType",),
    "procedure_type": ("ProcedureType", "ROUTINE_TYPE"),
    "create_date": ("CreateDate", "CREATED", "crdate", "DateCreated", "CreationDate"),
    "modify_date": ("DateLastModified", "LAST_ALTERED", "LastModified", "updatedate"),
    "is_ms_shipped": ("IsSystemObject",),
    "is_auto_executed": ("ExecIsStartup", "Startup", "IsStartup", "AutoExecuted"),
    "definition": ("ProcedureDefinition", "ROUTINE_DEFINITION", "TextBody", "ObjectDefinition",
                   "sql_text", "SqlDefinition"),
    "text": ("ctext",),
    "text_header": ("TextHeader",),
    "dll_name": (),
    "dll": (),
    "assembly_id": (),
    "assembly_name": ("AssemblyName",),
    "clr_name": (),
    "permission_set": ("permission_set_desc", "SecurityLevel", "AssemblySecurityLevel"),
    "is_user_defined": (),
    "file_id": (),
    "file_name": (),
    "content": ("FileContent", "AssemblyContent", "Bytes"),
    "content_length": ("DataLength",),
    "assembly_class": ("ClassName",),
    "assembly_method": ("MethodName",),
    "config_name": ("DisplayName",),
    "smo_config_name": ("ConfigName",),
    "configuration_id": (),
    "value": ("config_value", "ConfiguredValue"),
    "value_in_use": ("run_value", "RunningValue"),
    "minimum": ("MinValue",),
    "maximum": ("MaxValue",),
    "is_advanced": (),
    "is_dynamic": (),
    "description": (),
    "principal_id": (),
    "sid": (),
    "is_disabled": ("denylogin",),
    "is_enabled": ("IsEnabled",),
    "default_database_name": ("DefaultDatabase",),
    "is_fixed_role": (),
    "role": ("role_name", "ServerRole"),
    "member": ("member_name", "Login", "LoginName", "MemberLoginName"),
    "member_type": (),
    "role_principal_id": (),
    "member_principal_id": (),
    "is_sysadmin": ("sysadmin",),
    "database_id": ("dbid",),
    "owner": ("owner_name", "OwnerLogin"),
    "owner_sid": (),
    "is_trustworthy_on": ("Trustworthy", "IsTrustworthy"),
    "parent_class": ("parent_class_desc",),
    "ddl_trigger_events": ("DdlTriggerEvents",),
    "hash": (),
    "created_by": (),
    "version": (),
    "is_visible": (),
    "parent_object_id": (),
    "principal_type": (),
})

# Columns that PowerShell objects carry and that say nothing about the server:
# DataRow's own members and SMO plumbing (reference section 5).
_NOISE = {norm_key(n) for n in (
    "RowError", "RowState", "Table", "ItemArray", "HasErrors", "Item", "Parent", "Urn", "Properties",
    "ExecutionManager", "UserData", "SmoRole", "SmoLogin", "Property", "PSComputerName", "RunspaceId",
    "PSShowComputerName",
)}

# Columns that identify a row but do not make it a catalog row by themselves.
_CONTEXT = {"host", "instance", "database", "schema", "name", "description", "type", "object_id", "version"}


def known_column_count(names: Iterable[str]) -> int:
    """How many of ``names`` are catalog columns other than generic ones."""
    return sum(1 for n in names if _ALIASES.get(norm_key(n)) not in (None, *_CONTEXT))


def header_recognised(names: list[str]) -> bool:
    """Do these column names make a catalog export's header?

    Two catalog-specific columns are enough; with one, every column must be
    known (``name,dll`` from sp_helpextendedproc) and the set must name a view.
    """
    if len(names) < 2:
        return False
    distinctive = known_column_count(names)
    if distinctive >= 2:
        return True
    if distinctive == 0:
        return False
    keys = [norm_key(n) for n in names]
    if not all(k in _ALIASES or k in _NOISE for k in keys):
        return False
    rec, _ = canonical(dict.fromkeys(names, ""))
    return recognise(set(rec)) is not None


def canonical(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(canonical name -> value, other columns -> value); noise dropped."""
    rec: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in values.items():
        nk = norm_key(key)
        if nk in _NOISE:
            continue
        name = _ALIASES.get(nk)
        if name is None:
            extras[key] = value
        elif name not in rec or rec[name] in (None, ""):
            rec[name] = value
        else:
            extras[key] = value
    return rec, extras


# --------------------------------------------------------------------------
# Recognising the view

VIEWS = {
    "procedures": "sys.procedures",
    "sql_modules": "sys.sql_modules",
    "assemblies": "sys.assemblies",
    "assembly_files": "sys.assembly_files",
    "assembly_modules": "sys.assembly_modules",
    "configurations": "sys.configurations",
    "server_principals": "sys.server_principals",
    "role_members": "sys.server_role_members",
    "server_triggers": "sys.server_triggers",
    "extended_procedures": "sys.extended_procedures",
    "databases": "sys.databases",
    "trusted_assemblies": "sys.trusted_assemblies",
    "objects": "sys.objects",
}

# Hints (collection marker, XML element, CLIXML type name), most specific first.
_HINTS = (
    ("trusted_assembl", "trusted_assemblies"),
    ("assembly_files", "assembly_files"),
    ("assembly_modules", "assembly_modules"),
    ("assembl", "assemblies"),
    ("configur", "configurations"),
    ("role_member", "role_members"),
    ("rolemember", "role_members"),
    ("server_principals", "server_principals"),
    ("smo.login", "server_principals"),
    ("server_triggers", "server_triggers"),
    ("serverddltrigger", "server_triggers"),
    ("extended_procedures", "extended_procedures"),
    ("extendedstoredprocedure", "extended_procedures"),
    ("sql_modules", "sql_modules"),
    ("sys.databases", "databases"),
    ("smo.database", "databases"),
    ("procedures", "procedures"),
    ("storedprocedure", "procedures"),
    ("sys.objects", "objects"),
)


def view_from_hint(hint: str | None) -> str | None:
    if not hint:
        return None
    low = hint.lower()
    if low in VIEWS:
        return low
    for needle, view in _HINTS:
        if needle in low:
            return view
    return None


def recognise(keys: set[str], hint: str | None = None) -> str | None:
    """The view of a row with canonical column names ``keys``."""
    view = view_from_hint(hint)
    if view:
        return view
    k = keys
    if "hash" in k and ("created_by" in k or "description" in k) and "name" not in k:
        return "trusted_assemblies"
    if "content" in k or ("dll" in k and "assembly_id" in k):
        return "assembly_files"
    if "value_in_use" in k or "configuration_id" in k or "config_name" in k \
            or ({"value", "minimum", "maximum"} <= k):
        return "configurations"
    if ("role" in k and ("member" in k or "name" in k)) or {"role_principal_id", "member_principal_id"} <= k:
        return "role_members"
    if "is_trustworthy_on" in k or ("database_id" in k and ("owner_sid" in k or "owner" in k)):
        return "databases"
    if "is_sysadmin" in k or "is_fixed_role" in k or "default_database_name" in k \
            or ({"sid", "principal_id"} <= k):
        return "server_principals"
    if "parent_class" in k or "ddl_trigger_events" in k:
        return "server_triggers"
    if "clr_name" in k or "permission_set" in k or ("assembly_id" in k and "name" in k
                                                     and "assembly_class" not in k):
        return "assemblies"
    if "assembly_class" in k or "assembly_method" in k:
        return "assembly_modules"
    if "dll_name" in k or "dll" in k:
        return "extended_procedures"
    if "is_auto_executed" in k or "procedure_name" in k or "implementation_type" in k \
            or ("definition" in k and "name" in k):
        return "procedures"
    if "definition" in k and "object_id" in k:
        return "sql_modules"
    if "type" in k and "name" in k and ("create_date" in k or "object_id" in k):
        return "objects"
    return None


# --------------------------------------------------------------------------
# Headerless layouts: SELECT * column orders (SSMS CSV without headers, bcp)


@dataclass(frozen=True, slots=True)
class Layout:
    view: str
    columns: tuple[str, ...]


_OBJECT_COLUMNS = ("name", "object_id", "principal_id", "schema_id", "parent_object_id", "type", "type_desc",
                   "create_date", "modify_date", "is_ms_shipped", "is_published", "is_schema_published")
HEADERLESS_LAYOUTS: dict[str, Layout] = {
    "sys.procedures": Layout("procedures", (*_OBJECT_COLUMNS, "is_auto_executed", "is_execution_replicated",
                                            "is_repl_serializable_only", "skips_repl_constraints")),
    "sys.extended_procedures": Layout("extended_procedures", (*_OBJECT_COLUMNS, "dll_name")),
    "sys.objects": Layout("objects", _OBJECT_COLUMNS),
    "sys.assemblies": Layout("assemblies", ("name", "principal_id", "assembly_id", "clr_name", "permission_set",
                                            "permission_set_desc", "is_visible", "create_date", "modify_date",
                                            "is_user_defined")),
    "sys.assembly_files": Layout("assembly_files", ("assembly_id", "name", "file_id", "content")),
    "sys.assembly_modules": Layout("assembly_modules", ("object_id", "assembly_id", "assembly_class",
                                                        "assembly_method", "null_on_null_input",
                                                        "execute_as_principal_id")),
    "sys.configurations": Layout("configurations", ("configuration_id", "name", "value", "minimum", "maximum",
                                                    "value_in_use", "description", "is_dynamic", "is_advanced")),
    "sp_configure": Layout("configurations", ("name", "minimum", "maximum", "config_value", "run_value")),
    "sys.server_triggers": Layout("server_triggers", ("name", "object_id", "parent_class", "parent_class_desc",
                                                      "parent_id", "type", "type_desc", "create_date",
                                                      "modify_date", "is_ms_shipped", "is_disabled")),
    "sys.trusted_assemblies": Layout("trusted_assemblies", ("hash", "description", "create_date", "created_by")),
    "sys.server_principals": Layout("server_principals", (
        "name", "principal_id", "sid", "type", "type_desc", "is_disabled", "create_date", "modify_date",
        "default_database_name", "default_language_name", "credential_id", "owning_principal_id",
        "is_fixed_role")),
    "sp_helpextendedproc": Layout("extended_procedures", ("name", "dll")),
}

_INT = re.compile(r"^-?\d+$")
_BIT = re.compile(r"^(0|1|true|false)$", re.IGNORECASE)
_TYPE2 = re.compile(r"^[A-Z][A-Z0-9 ]?$")
_TYPE_DESC = re.compile(r"^[A-Z][A-Z_]+$")
_BINARY = re.compile(r"^(0x)?[0-9A-Fa-f]+$")
_DLL = re.compile(r"(?i)\.dll$|^\(server internal\)$")


def _validator(column: str) -> re.Pattern[str] | None:
    if column.endswith("_date"):
        return _DATE_ANY
    if column.startswith(("is_", "skips_", "null_on")):
        return _BIT
    if column in ("type",):
        return _TYPE2
    if column.endswith("_desc") and column != "permission_set_desc":
        return _TYPE_DESC
    if column in ("content", "hash", "sid"):
        return _BINARY
    if column == "dll" or column == "dll_name":
        return _DLL
    if column.endswith("_id") or column in ("minimum", "maximum", "config_value", "run_value", "value",
                                             "value_in_use", "permission_set", "parent_class"):
        return _INT
    return None


def row_start(names: list[str], fields: list[str]) -> bool:
    """Can ``fields`` begin a row of columns ``names``?  Typed columns must fit.

    Used to tell a new row from the continuation of an unquoted multi-line
    value.  Only the columns before the free-text column are tested when the
    record is longer than the header (unquoted separators shift the rest).
    """
    if len(fields) < len(names):
        return False
    text_idx, checks = _row_checks(tuple(names))
    limit = len(names) if len(fields) == len(names) or text_idx is None else text_idx
    for index, check in checks:
        if index >= limit:
            break
        value = fields[index].strip()
        if value not in ("", "NULL") and not check.search(value):
            return False
    return True


@lru_cache(maxsize=256)
def _row_checks(names: tuple[str, ...]) -> tuple[int | None, tuple[tuple[int, re.Pattern[str]], ...]]:
    checks = []
    for index, name in enumerate(names):
        check = _validator(_ALIASES.get(norm_key(name), name))
        if check is not None:
            checks.append((index, check))
    return free_text_column(list(names)), tuple(checks)


def match_layout(fields: list[str]) -> str | None:
    """The headerless layout whose typed columns all fit ``fields``."""
    best: tuple[int, str] | None = None
    for name, layout in HEADERLESS_LAYOUTS.items():
        cols = layout.columns
        if len(fields) < len(cols):
            continue
        if len(fields) > len(cols) and not any(_validator(c) is None for c in cols):
            continue
        if len(fields) > len(cols):
            continue  # extras could be folded, but a first row must fit exactly
        typed = 0
        ok = True
        for col, value in zip(cols, fields, strict=True):
            check = _validator(col)
            if check is None:
                if col == "name" and not value.strip():
                    ok = False
                    break
                continue
            value = value.strip()
            if value in ("", "NULL"):
                continue
            if not check.search(value):
                ok = False
                break
            typed += 1
        if ok and typed >= 1 and (typed >= 3 or len(cols) <= 5 and typed >= len(cols) - 1):
            if best is None or typed > best[0]:
                best = (typed, name)
    return best[1] if best else None


# --------------------------------------------------------------------------
# Values


def text_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex().upper()
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    return None if text.strip().upper() == "NULL" else text


def to_bool(value: Any) -> bool | None:
    """1/0, true/false, True/False, TRUE, on/off, yes/no; None when unknown."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "-1", "enabled"):
        return True
    if text in ("0", "false", "no", "off", "disabled"):
        return False
    return None


def to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = text_of(value)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        try:
            return int(float(text.strip()))
        except ValueError:
            return None


_TYPE_DESCS = {
    "SQL_STORED_PROCEDURE": "P", "CLR_STORED_PROCEDURE": "PC", "EXTENDED_STORED_PROCEDURE": "X",
    "CLR_SCALAR_FUNCTION": "FS", "CLR_TABLE_VALUED_FUNCTION": "FT", "CLR_TRIGGER": "TA",
    "AGGREGATE_FUNCTION": "AF", "SQL_TRIGGER": "TR", "REPLICATION_FILTER_PROCEDURE": "RF",
    "TRANSACTSQL": "P", "SQLCLR": "PC", "PROCEDURE": "P",
}


def type_code(*candidates: Any) -> str | None:
    """``'P '`` -> P, ``x`` -> X, ``CLR_STORED_PROCEDURE`` -> PC, ``SqlClr`` -> PC."""
    for value in candidates:
        text = text_of(value)
        if not text or not text.strip():
            continue
        text = text.strip().upper()
        if text in _TYPE_DESCS:
            return _TYPE_DESCS[text]
        if len(text) <= 2 and text.isalnum():
            return text
    return None


_PERMISSION = {"1": "SAFE", "2": "EXTERNAL_ACCESS", "3": "UNSAFE", "SAFE": "SAFE", "SAFE_ACCESS": "SAFE",
               "EXTERNAL": "EXTERNAL_ACCESS", "EXTERNAL_ACCESS": "EXTERNAL_ACCESS", "UNSAFE": "UNSAFE",
               "UNSAFE_ACCESS": "UNSAFE", "UNRESTRICTED": "UNSAFE"}


def permission_set(value: Any) -> str | None:
    """1/2/3, SAFE_ACCESS..., SMO's Safe/External/Unrestricted -> SAFE/EXTERNAL_ACCESS/UNSAFE."""
    text = text_of(value)
    if not text:
        return None
    return _PERMISSION.get(text.strip().upper().replace(" ", "_"), text.strip())


# dbatools Get-DbaSpConfigure's SMO property names -> sp_configure names.
_SMO_CONFIG = {norm_key(k): v for k, v in {
    "XPCmdShellEnabled": "xp_cmdshell", "IsSqlClrEnabled": "clr enabled",
    "ClrStrictSecurity": "clr strict security", "OleAutomationProceduresEnabled": "Ole Automation Procedures",
    "ScanForStartupProcedures": "scan for startup procs", "ShowAdvancedOptions": "show advanced options",
    "AdHocDistributedQueriesEnabled": "Ad Hoc Distributed Queries", "AgentXPsEnabled": "Agent XPs",
    "DefaultTraceEnabled": "default trace enabled",
}.items()}


# --------------------------------------------------------------------------
# Dates: local server time in every spelling


_DATE_ISO = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$")
_DATE_CULTURE = re.compile(
    r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{4})(?:,?\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,7}))?)?"
    r"\s*([AaPp]\.?[Mm]\.?)?)?$")
_DATE_SQL0 = re.compile(r"^([A-Za-z]{3})\s+(\d{1,2})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:[:.](\d{3}))?)?"
                        r"\s*([AaPp][Mm])$")
_DATE_ANY = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}|^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}|^[A-Za-z]{3}\s+\d{1,2}\s+\d{4}")
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                        "dec"), 1)}


@dataclass(slots=True)
class DateReading:
    local: datetime | None
    text: str | None
    notes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _fraction(digits: str | None) -> int:
    return int((digits or "0")[:6].ljust(6, "0"))


def _hour12(hour: int, ampm: str | None) -> int:
    if not ampm:
        return hour
    pm = ampm.lower().startswith("p")
    return (hour % 12) + (12 if pm else 0)


def parse_local(value: Any, state: FileState) -> DateReading:
    """A local date as exports write it; day/month order learnt per file."""
    if isinstance(value, datetime):
        return DateReading(value.replace(tzinfo=None), value.isoformat())
    text = text_of(value)
    if text is None or not text.strip():
        return DateReading(None, None)
    raw = text
    text = text.strip()
    try:
        m = _DATE_ISO.match(text)
        if m:
            y, mo, d, h, mi, s, frac, off = m.groups()
            local = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), _fraction(frac))
            notes = {"written_utc_offset": off} if off else {}
            return DateReading(local, raw, notes)
        m = _DATE_SQL0.match(text)
        if m:
            mon, d, y, h, mi, s, ms, ampm = m.groups()
            local = datetime(int(y), _MONTHS[mon.lower()], int(d), _hour12(int(h), ampm), int(mi), int(s or 0),
                             int(ms or 0) * 1000)
            return DateReading(local, raw)
        m = _DATE_CULTURE.match(text)
        if m:
            a, sep, b, y, h, mi, s, frac, ampm = m.groups()
            first, second = int(a), int(b)
            notes: dict[str, Any] = {}
            if sep == "." or first > 12:
                order = "DMY"
            elif ampm or second > 12:
                order = "MDY"
            elif state.date_order:
                order = state.date_order
                notes["date_order_inferred_from_file"] = order
            else:
                # PowerShell's invariant culture and en-US are month first.
                order = "MDY"
                notes["date_order_assumed"] = "MDY"
            if not notes and sep != ".":
                state.date_order = order
            month, day = (first, second) if order == "MDY" else (second, first)
            local = datetime(int(y), month, day, _hour12(int(h or 0), ampm), int(mi or 0), int(s or 0),
                             _fraction(frac))
            return DateReading(local, raw, notes)
    except (ValueError, KeyError) as exc:
        return DateReading(None, raw, error=f"date {text!r} is not valid: {exc}")
    return DateReading(None, raw, error=f"date {text!r} in an unknown format")


# --------------------------------------------------------------------------
# Per-file state


@dataclass(slots=True)
class FileState:
    """What one file's earlier rows tell its later rows."""

    extract_dir: str | None = None
    date_order: str | None = None
    host: str | None = None
    instance: str | None = None
    startup_ids: set[str] = field(default_factory=set)
    startup_names: set[str] = field(default_factory=set)
    assembly_sha512: dict[str, str] = field(default_factory=dict)
    trusted_hashes: dict[str, str] = field(default_factory=dict)
    extracted: list[str] = field(default_factory=list)
    views: dict[str, int] = field(default_factory=dict)
    scan_for_startup: str | None = None  # 'scan for startup procs' running (else configured) value
    last_position: str = "the start"


_INSTANCE_KEYS = frozenset(("computername", "machinename", "netbiosname", "hostname", "instancename", "sqlinstance",
                            "instance", "servername", "sqlserver", "server"))


def host_instance(values: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Host and instance from PowerUpSQL/dbatools/collection columns.

    ``Instance``/``SqlInstance``/``ServerName`` hold ``HOST\\INSTANCE`` or
    just ``HOST`` for the default instance (named ``MSSQLSERVER`` here, as
    in the contract); dbatools' ``InstanceName`` is the bare instance name.
    """
    host = full = bare = None
    for key, value in values.items():
        nk = norm_key(key)
        if nk not in _INSTANCE_KEYS:
            continue
        text = text_of(value)
        if not text or not text.strip():
            continue
        if nk in ("computername", "machinename", "netbiosname", "hostname") and not host:
            host = text.strip()
        elif nk in ("instancename",) and not bare:
            bare = text.strip()
        elif nk in ("sqlinstance", "instance", "servername", "sqlserver", "server") and not full:
            full = text.strip()
    instance = bare
    if full:
        full = re.sub(r"^(tcp|np|lpc):", "", full, flags=re.IGNORECASE).split(",", 1)[0]
        if "\\" in full:
            h, i = full.split("\\", 1)
            host = host or h
            instance = instance or i
        else:
            host = host or full
            instance = instance or "MSSQLSERVER"
    if host and not instance and bare is None and full is None:
        return host, None
    return host, instance


# --------------------------------------------------------------------------
# Rows to events

# Definitions cut at these lengths by the tool that exported them (reference 0.3).
_TEXT_LIMITS = {
    4000: "4,000 characters (INFORMATION_SCHEMA.ROUTINES / Invoke-Sqlcmd -MaxCharLength / syscomments)",
    256: "256 characters (sqlcmd default -y)",
    65535: "65,535 characters (SSMS grid)",
    8000: "8,000 characters (varchar(8000))",
    2033: "2,033 characters (one FOR XML/JSON row)",
}

_OBJECT_KINDS = {"P": "Stored procedure", "PC": "CLR stored procedure", "X": "Extended stored procedure",
                 "RF": "Replication filter procedure", "TR": "Trigger", "TA": "CLR trigger",
                 "FS": "CLR scalar function", "FT": "CLR table-valued function", "AF": "CLR aggregate",
                 "AS": "Assembly", "U": "Table", "V": "View", "FN": "Function", "IF": "Function",
                 "TF": "Function"}


@dataclass(slots=True)
class Subject:
    """What a row is about, before it becomes one or more events."""

    kind: str
    object_name: str | None
    object_type: str | None
    attributes: dict[str, Any]
    detail: str = ""
    database: str | None = None
    user: str | None = None
    snapshot_type: str = "catalog_object"
    dated: bool = True
    warnings: list[ParseWarning] = field(default_factory=list)


def _definition(rec: dict[str, Any], attrs: dict[str, Any], sub_warnings: list[ParseWarning]) -> str | None:
    text = text_of(rec.get("definition"))
    header = text_of(rec.get("text_header"))
    if header and text is not None:
        text = header + text  # dbatools/SMO split the definition in two
    if text is None:
        return None
    attrs["definition"] = text
    attrs["definition_length"] = len(text)
    limit = _TEXT_LIMITS.get(len(text))
    if limit:
        attrs["truncated"] = True
        attrs["truncated_at"] = len(text)
        attrs["truncated_reason"] = f"definition is exactly {limit} long: probably cut"
        sub_warnings.append(ParseWarning(f"definition cut at {len(text)} characters ({limit}); it is not the "
                                         "complete procedure text", None, damaged=False))
    return text


def _split_name(name: str | None, schema: str | None) -> tuple[str | None, str | None]:
    """``[dbo].[x]`` or ``dbo.x`` -> ("dbo", "x")."""
    if not name:
        return schema, name
    from parsers.sqlmessages import split_schema
    found, bare = split_schema(name)
    return schema or found, bare


def _common_object(rec: dict[str, Any], attrs: dict[str, Any]) -> None:
    for key in ("object_id", "schema_id", "principal_id", "parent_object_id"):
        value = text_of(rec.get(key))
        if value is not None and value.strip():
            attrs[key] = to_int(value) if to_int(value) is not None else value.strip()
    ms = to_bool(rec.get("is_ms_shipped"))
    if ms is not None:
        attrs["is_ms_shipped"] = ms


def _procedure(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    warnings: list[ParseWarning] = []
    schema, name = _split_name(text_of(rec.get("name")) or text_of(rec.get("procedure_name")),
                               text_of(rec.get("schema")))
    otype = type_code(rec.get("type"), rec.get("type_desc"), rec.get("implementation_type")) or "P"
    if otype == "X":
        return _extended(rec, state)
    _common_object(rec, attrs)
    if schema:
        attrs["schema"] = schema
    startup = to_bool(rec.get("is_auto_executed"))
    key_id = text_of(rec.get("object_id"))
    if startup:
        if name:
            state.startup_names.add(name.lower())
        if key_id:
            state.startup_ids.add(key_id.strip())
    elif (name and name.lower() in state.startup_names) or (key_id and key_id.strip() in state.startup_ids):
        startup = True
        attrs["startup_from"] = "an earlier result set in the same file marks it for startup"
    if startup is not None:
        attrs["is_auto_executed"] = startup
    if otype in ("PC", "FS", "FT", "TA", "AF"):
        for key in ("assembly_name", "assembly_class", "assembly_method"):
            if text_of(rec.get(key)):
                attrs[key] = text_of(rec[key])
    if otype not in ("X",):
        text = rec.get("definition") if rec.get("definition") is not None else rec.get("text")
        if text is not None and rec.get("definition") is None:
            rec = {**rec, "definition": text}
        _definition(rec, attrs, warnings)
    kind = _OBJECT_KINDS.get(otype, f"Object ({otype})")
    detail = " (runs at startup)" if startup else ""
    return Subject(kind, name, otype, attrs, detail, text_of(rec.get("database")), warnings=warnings)


def _extended(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    schema, name = _split_name(text_of(rec.get("name")) or text_of(rec.get("procedure_name")),
                               text_of(rec.get("schema")))
    _common_object(rec, attrs)
    if schema:
        attrs["schema"] = schema
    # PowerUpSQL's Get-SQLStoredProcedureXP puts the DLL path in syscomments' text.
    dll = text_of(rec.get("dll_name")) or text_of(rec.get("dll")) or text_of(rec.get("text"))
    if dll:
        attrs["dll"] = dll.strip()
    detail = f" (DLL {dll.strip()})" if dll else ""
    return Subject("Extended stored procedure", name, "X", attrs, detail, text_of(rec.get("database")))


def _sql_module(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    warnings: list[ParseWarning] = []
    _common_object(rec, attrs)
    schema, name = _split_name(text_of(rec.get("name")), text_of(rec.get("schema")))
    if schema:
        attrs["schema"] = schema
    key_id = (text_of(rec.get("object_id")) or "").strip()
    if key_id in state.startup_ids or (name and name.lower() in state.startup_names):
        attrs["is_auto_executed"] = True
        attrs["startup_from"] = "an earlier result set in the same file marks it for startup"
    _definition(rec, attrs, warnings)
    otype = type_code(rec.get("type"), rec.get("type_desc"))
    return Subject("Module definition of", name or (f"object_id {key_id}" if key_id else None), otype, attrs,
                   database=text_of(rec.get("database")), warnings=warnings)


def _user_defined(rec: dict[str, Any]) -> bool | None:
    flag = to_bool(rec.get("is_user_defined"))
    if flag is not None:
        return flag
    assembly_id = to_int(rec.get("assembly_id"))
    if assembly_id is not None:
        return assembly_id >= 65536  # reference 1.5: ids from 65536 on are user assemblies
    system = to_bool(rec.get("is_ms_shipped"))
    return None if system is None else not system


def _assembly(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    name = text_of(rec.get("assembly_name")) or text_of(rec.get("name"))
    for key in ("clr_name", "version", "owner"):
        if text_of(rec.get(key)):
            attrs[key] = text_of(rec[key])
    if to_int(rec.get("assembly_id")) is not None:
        attrs["assembly_id"] = to_int(rec["assembly_id"])
    perm = permission_set(rec.get("permission_set"))
    if perm:
        attrs["permission_set"] = perm
    user_defined = _user_defined(rec)
    if user_defined is not None:
        attrs["is_user_defined"] = user_defined
    visible = to_bool(rec.get("is_visible"))
    if visible is not None:
        attrs["is_visible"] = visible
    return Subject("Assembly", name, "AS", attrs, f" ({perm})" if perm else "", text_of(rec.get("database")))


def _assembly_file(rec: dict[str, Any], state: FileState) -> Subject:
    sub = _assembly(rec, state)
    attrs = sub.attributes
    file_name = text_of(rec.get("file_name")) or (text_of(rec.get("name")) if rec.get("assembly_name") else None)
    raw_name = text_of(rec.get("name"))
    if not text_of(rec.get("assembly_name")) and raw_name:
        # sys.assembly_files.name is the file path (FROM 'c:\x.dll') or the
        # assembly name (FROM 0x...): the object is the assembly.
        file_name = raw_name
        sub.object_name = PureWindowsPath(raw_name).name
        if sub.object_name.lower().endswith(".dll") and ("\\" in raw_name or "/" in raw_name):
            sub.object_name = sub.object_name[:-4]
    if file_name:
        attrs["file_name"] = file_name
    if to_int(rec.get("file_id")) is not None:
        attrs["file_id"] = to_int(rec["file_id"])
    # PowerUpSQL's Get-SQLStoredProcedureCLR adds the CLR procedure.
    for key in ("procedure_name", "assembly_class", "assembly_method"):
        if text_of(rec.get(key)):
            attrs[key] = text_of(rec[key])
    content = rec.get("content") if rec.get("content") is not None else rec.get("dll")
    decoded = clr_binary.decode_binary(content)
    described = clr_binary.describe_assembly(decoded)
    where = f"assembly {sub.object_name!r}"
    # The collection script sends DATALENGTH(content): completeness is then
    # a fact, not a guess.
    expected = to_int(rec.get("content_length"))
    if expected is not None:
        described["content_length"] = expected
        size = described.get("size")
        if size is None and expected > 0 and decoded.encoding == "empty":
            decoded.encoding = described["content_encoding"] = "lost"
            decoded.problems.append(f"binary not captured ({expected} bytes on the server, left out of the export)")
        elif size is not None and size != expected:
            described.update(truncated=True, truncated_at=size, truncated_reason=f"{size} of {expected} bytes exported")
    attrs.update(described)
    if decoded.encoding == "lost":
        sub.warnings.append(ParseWarning(f"{where}: {decoded.problems[0]}", None, damaged=False))
    elif decoded.encoding == "unknown":
        sub.warnings.append(ParseWarning(f"{where}: {decoded.problems[0]}", None, damaged=True))
    if described.get("truncated"):
        sub.warnings.append(ParseWarning(f"{where}: content cut at {described['truncated_at']} bytes "
                                         f"({described['truncated_reason']})", None, damaged=False))
    sha256 = described.get("sha256")
    if sha256:
        perm = attrs.get("permission_set")
        sub.detail = f" ({perm + ', ' if perm else ''}SHA-256 {sha256})"
        state.assembly_sha512[described["sha512"]] = sub.object_name or ""
        match = state.trusted_hashes.get(described["sha512"])
        if match is not None:
            attrs["trusted_assembly_entry"] = match or True
        # Only PE images are written (a cut one too: it is still the evidence);
        # other files of an assembly (ADD FILE sources, .pdb) are not DLLs.
        if state.extract_dir and decoded.data and described.get("pe_valid"):
            attrs["extracted_to"] = clr_binary.extract(decoded.data, sha256, state.extract_dir)
            state.extracted.append(attrs["extracted_to"])
    if described.get("assembly_name") and not sub.object_name:
        sub.object_name = described["assembly_name"]
    return sub


def _assembly_module(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    _common_object(rec, attrs)
    for key in ("assembly_name", "assembly_class", "assembly_method"):
        if text_of(rec.get(key)):
            attrs[key] = text_of(rec[key])
    if to_int(rec.get("assembly_id")) is not None:
        attrs["assembly_id"] = to_int(rec["assembly_id"])
        attrs.setdefault("is_user_defined", to_int(rec["assembly_id"]) >= 65536)
    schema, name = _split_name(text_of(rec.get("name")) or text_of(rec.get("procedure_name")),
                               text_of(rec.get("schema")))
    if schema:
        attrs["schema"] = schema
    otype = type_code(rec.get("type"), rec.get("type_desc")) or "PC"
    name = name or text_of(rec.get("assembly_method"))
    return Subject(_OBJECT_KINDS.get(otype, "CLR module"), name, otype, attrs,
                   f" ({attrs.get('assembly_name', '?')}.{attrs.get('assembly_class', '?')}."
                   f"{attrs.get('assembly_method', '?')})", text_of(rec.get("database")))


def _configuration(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    # dbatools: Name is SMO's property name, DisplayName the sp_configure name.
    smo = next((n for n in (text_of(rec.get("name")), text_of(rec.get("smo_config_name")))
                if n and " " not in n and norm_key(n) in _SMO_CONFIG), None)
    name = text_of(rec.get("config_name")) or text_of(rec.get("name"))
    if smo:
        attrs["smo_name"] = smo
        if not text_of(rec.get("config_name")):
            name = _SMO_CONFIG[norm_key(smo)]
    value = text_of(rec.get("value"))
    in_use = text_of(rec.get("value_in_use"))
    for key, val in (("value", value), ("value_in_use", in_use)):
        if val is not None:
            attrs[key] = val.strip()
    for key in ("minimum", "maximum", "configuration_id", "description"):
        if text_of(rec.get(key)) is not None:
            attrs[key] = text_of(rec[key]).strip()
    for key in ("is_advanced", "is_dynamic"):
        if to_bool(rec.get(key)) is not None:
            attrs[key] = to_bool(rec[key])
    # Both the configured and the running value are evidence (a value set
    # but not yet RECONFIGUREd still shows intent): rules test either.
    attrs["setting"] = sorted({v.strip() for v in (value, in_use) if v is not None and v.strip()})
    if name and name.strip().lower() == "scan for startup procs":
        current = in_use if in_use is not None else value
        state.scan_for_startup = current.strip() if current else None
    shown = in_use if in_use is not None else value
    detail = f" = {value}" if value is not None else ""
    if in_use is not None and in_use != value:
        detail += f" (in use: {in_use})" if value is not None else f" = {in_use} (in use)"
    return Subject("Configuration option", name.strip() if name else None, "config", attrs,
                   detail if detail else f" = {shown}", snapshot_type="configuration_option", dated=False)


def _principal(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    name = text_of(rec.get("name")) or text_of(rec.get("member"))
    ptype = type_code(rec.get("type"))
    if ptype:
        attrs["principal_type"] = ptype
    if text_of(rec.get("type_desc")):
        attrs["principal_type_desc"] = text_of(rec["type_desc"]).strip()
    for key in ("principal_id",):
        if to_int(rec.get(key)) is not None:
            attrs[key] = to_int(rec[key])
    if rec.get("sid") is not None:
        attrs["sid"] = text_of(rec["sid"])
    for key in ("is_disabled", "is_fixed_role", "is_sysadmin"):
        if to_bool(rec.get(key)) is not None:
            attrs[key] = to_bool(rec[key])
    if text_of(rec.get("default_database_name")):
        attrs["default_database_name"] = text_of(rec["default_database_name"])
    detail = " (sysadmin)" if attrs.get("is_sysadmin") else ""
    return Subject("Login", name, "login", attrs, detail)


def _role_member(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    role = text_of(rec.get("role"))
    member = text_of(rec.get("member")) or text_of(rec.get("name"))
    if role is None and to_int(rec.get("role_principal_id")) == 3:
        role = "sysadmin"  # reference 1.7: sysadmin is server principal 3
    if role:
        attrs["role"] = role.strip()
        if role.strip().lower() == "sysadmin":
            attrs["is_sysadmin"] = True
    for key in ("role_principal_id", "member_principal_id"):
        if to_int(rec.get(key)) is not None:
            attrs[key] = to_int(rec[key])
    if text_of(rec.get("member_type")):
        attrs["member_type"] = text_of(rec["member_type"]).strip()
    if member is None and "member_principal_id" in attrs:
        member = f"principal_id {attrs['member_principal_id']}"
    return Subject("Server role member", member.strip() if member else None, "login", attrs,
                   f" of {role.strip()}" if role else "", snapshot_type="server_role_member", dated=False)


def _database(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    name = text_of(rec.get("name")) or text_of(rec.get("database"))
    trustworthy = to_bool(rec.get("is_trustworthy_on"))
    if trustworthy is not None:
        attrs["is_trustworthy_on"] = trustworthy
    for key in ("owner",):
        if text_of(rec.get(key)):
            attrs[key] = text_of(rec[key]).strip()
    if rec.get("owner_sid") is not None:
        attrs["owner_sid"] = text_of(rec["owner_sid"])
    if to_int(rec.get("database_id")) is not None:
        attrs["database_id"] = to_int(rec["database_id"])
    detail = " TRUSTWORTHY ON" if trustworthy else ""
    if attrs.get("owner"):
        detail += f", owner {attrs['owner']}"
    return Subject("Database", name, "database", attrs, detail, database=name)


def _server_trigger(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {"server_trigger": True}
    warnings: list[ParseWarning] = []
    _common_object(rec, attrs)
    name = text_of(rec.get("name"))
    otype = type_code(rec.get("type"), rec.get("type_desc"), rec.get("implementation_type"))
    otype = "TA" if otype in ("TA", "PC") else "TR"
    disabled = to_bool(rec.get("is_disabled"))
    if disabled is None and to_bool(rec.get("is_enabled")) is not None:
        disabled = not to_bool(rec.get("is_enabled"))
    if disabled is not None:
        attrs["is_disabled"] = disabled
    if text_of(rec.get("ddl_trigger_events")):
        attrs["trigger_events"] = text_of(rec["ddl_trigger_events"])
    _definition(rec, attrs, warnings)
    kind = "Server CLR trigger" if otype == "TA" else "Server trigger"
    return Subject(kind, name, otype, attrs, " (disabled)" if disabled else "", warnings=warnings)


def _trusted_assembly(rec: dict[str, Any], state: FileState) -> Subject:
    attrs: dict[str, Any] = {}
    decoded = clr_binary.decode_binary(rec.get("hash"))
    digest = decoded.data.hex() if decoded.data else text_of(rec.get("hash"))
    if digest:
        attrs["hash"] = digest
        match = state.assembly_sha512.get(digest.lower())
        state.trusted_hashes[digest.lower()] = text_of(rec.get("description")) or ""
        if match is not None:
            attrs["matches_assembly"] = match
    description = text_of(rec.get("description"))
    if description:
        attrs["description"] = description
    name = description or (f"hash {digest[:16]}" if digest else None)
    return Subject("Trusted assembly entry", name, "trusted_assembly", attrs,
                   user=text_of(rec.get("created_by")))


def _object(rec: dict[str, Any], state: FileState) -> Subject:
    otype = type_code(rec.get("type"), rec.get("type_desc"))
    if otype in ("P", "PC", "RF", "X"):
        return _procedure(rec, state)
    attrs: dict[str, Any] = {}
    _common_object(rec, attrs)
    schema, name = _split_name(text_of(rec.get("name")), text_of(rec.get("schema")))
    if schema:
        attrs["schema"] = schema
    return Subject(_OBJECT_KINDS.get(otype or "", f"Object ({otype})"), name, otype, attrs,
                   database=text_of(rec.get("database")))


_BUILDERS = {
    "procedures": _procedure, "sql_modules": _sql_module, "assemblies": _assembly,
    "assembly_files": _assembly_file, "assembly_modules": _assembly_module, "configurations": _configuration,
    "server_principals": _principal, "role_members": _role_member, "server_triggers": _server_trigger,
    "extended_procedures": _extended, "databases": _database, "trusted_assemblies": _trusted_assembly,
    "objects": _object,
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        return "0x" + data[:256].hex().upper() + ("..." if len(data) > 256 else "")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def row_events(view: str, values: Mapping[str, Any], state: FileState, *, record: int, position: str,
               context: Mapping[str, Any] | None = None,
               extra_attributes: Mapping[str, Any] | None = None) -> Iterator[Event | ParseWarning]:
    """The events (and warnings) of one recognised row."""
    rec, extras = canonical(values)
    subject = _BUILDERS[view](rec, state)
    host, instance = host_instance(values)
    if not (host or instance) and context:
        host, instance = host_instance(context)
    host = host or state.host
    instance = instance or state.instance
    # Remember the first instance named, for rows and findings that name none.
    state.host = state.host or host
    state.instance = state.instance or instance
    attrs = {"view": VIEWS[view], **subject.attributes}
    if extra_attributes:
        attrs.update(extra_attributes)
    if extras:
        attrs["columns"] = {k: _jsonable(v) for k, v in extras.items()}
    for warning in subject.warnings:
        warning.position = warning.position or position
        yield warning
    database = subject.database or text_of(rec.get("database")) or text_of((context or {}).get("database"))
    database = database.strip() if database else None
    label = subject.object_name or "(unnamed)"
    if attrs.get("schema") and subject.object_type in ("P", "PC", "X", "RF", "FS", "FT", "AF"):
        label = f"{attrs['schema']}.{label}"
    base = dict(source=SOURCE, host=host, instance=instance, user=subject.user, database=database,
                object_name=subject.object_name, object_type=subject.object_type, source_record=record)
    dates = []
    if subject.dated:
        for column, desc, verb, etype in (("create_date", "Object Created", "created", "object_created"),
                                          ("modify_date", "Object Modified", "modified", "object_modified")):
            reading = parse_local(rec.get(column), state)
            if reading.error:
                yield ParseWarning(f"{column}: {reading.error}", position, damaged=False)
                attrs[f"{column}_text"] = reading.text
            if reading.local is not None:
                dates.append((column, reading, desc, verb, etype))
    if len(dates) == 2 and dates[0][1].local == dates[1][1].local:
        # Never modified since creation: one event, the modify time kept.
        attrs["modify_date_equals_create_date"] = True
        dates = dates[:1]
    if not dates:
        kind_text = f"{subject.kind} {label}{subject.detail}"
        yield Event(timestamp_desc="Snapshot", event_type=subject.snapshot_type,
                    message=f"{kind_text} [{VIEWS[view]}]", attributes=dict(attrs), **base)
        return
    for column, reading, desc, verb, etype in dates:
        event_attrs = dict(attrs)
        event_attrs.update(reading.notes)
        for other_column, other, *_ in dates:
            if other_column != column:
                event_attrs[other_column] = other.text
        yield Event(timestamp_desc=desc, event_type=etype, local_time=reading.local, local_text=reading.text,
                    message=f"{subject.kind} {label} {verb}{subject.detail} [{VIEWS[view]}]",
                    attributes=event_attrs, **base)


def free_text_column(names: list[str] | None) -> int | None:
    """Index of the column that absorbs unquoted separators (definition first)."""
    if not names:
        return None
    canon = [_ALIASES.get(norm_key(n)) for n in names]
    for wanted in ("definition", "text", "description", "config_name", "name", "procedure_name"):
        if wanted in canon:
            return canon.index(wanted)
    return None


def consistency_events(state: FileState) -> Iterator[Event]:
    """What the file's rows say together (reference 0.6).

    sp_procoption sets 'scan for startup procs' to 1 when it marks the first
    procedure and to 0 when it unmarks the last: a startup procedure with the
    option at 0, or the option at 1 with none marked in a full procedure
    listing, means the option was changed by hand.
    """
    if state.scan_for_startup is None or "procedures" not in state.views:
        return
    startup = sorted(state.startup_names)
    scan_on = state.scan_for_startup not in ("0", "")
    if startup and not scan_on:
        message = (f"Startup procedure(s) {', '.join(startup)} marked while 'scan for startup procs' is "
                   f"{state.scan_for_startup}: the option was changed by hand (they will not run until it is 1)")
    elif scan_on and not startup:
        message = ("'scan for startup procs' is on but no procedure in the listing is marked for startup: "
                   "set by hand, or the marked procedure was removed")
    else:
        return
    yield Event(source=SOURCE, event_type="startup_config_mismatch", message=message, timestamp_desc="Snapshot",
                host=state.host, instance=state.instance, object_name="scan for startup procs",
                object_type="config", attributes={"view": "consistency", "scan_for_startup_procs":
                                                  state.scan_for_startup, "startup_procedures": startup})

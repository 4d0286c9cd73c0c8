"""Names for SQL Trace numbers: columns, event classes, subclasses, object types.

Sources: ``sp_trace_setevent`` and the event-class pages of the SQL Server
documentation, ``sys.trace_columns`` types, and the "ObjectType Trace Event
Column" page, as collected in ``../shared/reference/trc-format.md``
(sections 8, 9 and 11).  Unknown numbers are never an error: callers fall
back to the number itself.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Value types, decided by column id (sys.trace_columns.type_name).
INT, BIGINT, TEXT, TIME, IMAGE, GUID = "int", "bigint", "text", "time", "image", "guid"

# id -> (name, type)
COLUMNS: dict[int, tuple[str, str]] = {
    1: ("TextData", TEXT), 2: ("BinaryData", IMAGE), 3: ("DatabaseID", INT),
    4: ("TransactionID", BIGINT), 5: ("LineNumber", INT), 6: ("NTUserName", TEXT),
    7: ("NTDomainName", TEXT), 8: ("HostName", TEXT), 9: ("ClientProcessID", INT),
    10: ("ApplicationName", TEXT), 11: ("LoginName", TEXT), 12: ("SPID", INT),
    13: ("Duration", BIGINT), 14: ("StartTime", TIME), 15: ("EndTime", TIME),
    16: ("Reads", BIGINT), 17: ("Writes", BIGINT), 18: ("CPU", INT),
    19: ("Permissions", BIGINT), 20: ("Severity", INT), 21: ("EventSubClass", INT),
    22: ("ObjectID", INT), 23: ("Success", INT), 24: ("IndexID", INT),
    25: ("IntegerData", INT), 26: ("ServerName", TEXT), 27: ("EventClass", INT),
    28: ("ObjectType", INT), 29: ("NestLevel", INT), 30: ("State", INT),
    31: ("Error", INT), 32: ("Mode", INT), 33: ("Handle", INT),
    34: ("ObjectName", TEXT), 35: ("DatabaseName", TEXT), 36: ("FileName", TEXT),
    37: ("OwnerName", TEXT), 38: ("RoleName", TEXT), 39: ("TargetUserName", TEXT),
    40: ("DBUserName", TEXT), 41: ("LoginSid", IMAGE), 42: ("TargetLoginName", TEXT),
    43: ("TargetLoginSid", IMAGE), 44: ("ColumnPermissions", INT), 45: ("LinkedServerName", TEXT),
    46: ("ProviderName", TEXT), 47: ("MethodName", TEXT), 48: ("RowCounts", BIGINT),
    49: ("RequestID", INT), 50: ("XactSequence", BIGINT), 51: ("EventSequence", BIGINT),
    52: ("BigintData1", BIGINT), 53: ("BigintData2", BIGINT), 54: ("GUID", GUID),
    55: ("IntegerData2", INT), 56: ("ObjectID2", BIGINT), 57: ("Type", INT),
    58: ("OwnerID", INT), 59: ("ParentName", TEXT), 60: ("IsSystem", INT),
    61: ("Offset", INT), 62: ("SourceDatabaseID", INT), 63: ("SqlHandle", IMAGE),
    64: ("SessionLoginName", TEXT), 65: ("PlanHandle", IMAGE), 66: ("GroupID", INT),
}
SID_COLUMNS = frozenset({41, 43})

# Column ids used by name in the parser.
C_TEXT, C_HOST, C_CLIENT_PID, C_APP, C_LOGIN, C_SPID = 1, 8, 9, 10, 11, 12
C_NT_USER, C_NT_DOMAIN = 6, 7
C_START, C_END, C_SUBCLASS, C_OBJECT_TYPE, C_OBJECT_NAME = 14, 15, 21, 28, 34
C_DATABASE, C_FILE, C_ROLE, C_TARGET_LOGIN, C_SESSION_LOGIN, C_ERROR = 35, 36, 38, 42, 64, 31


def snake(name: str) -> str:
    """``NTUserName`` -> ``nt_user_name``; ``Object:Created`` -> ``object_created``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


COLUMN_KEYS: dict[int, str] = {cid: snake(name) for cid, (name, _t) in COLUMNS.items()}
COLUMN_TYPES: dict[int, str] = {cid: kind for cid, (_n, kind) in COLUMNS.items()}

EVENT_NAMES: dict[int, str] = {
    10: "RPC:Completed", 11: "RPC:Starting", 12: "SQL:BatchCompleted", 13: "SQL:BatchStarting",
    14: "Audit Login", 15: "Audit Logout", 16: "Attention", 17: "ExistingConnection",
    18: "Audit Server Starts and Stops", 19: "DTCTransaction", 20: "Audit Login Failed",
    21: "EventLog", 22: "ErrorLog", 23: "Lock:Released", 24: "Lock:Acquired", 25: "Lock:Deadlock",
    26: "Lock:Cancel", 27: "Lock:Timeout", 28: "Degree of Parallelism Event", 33: "Exception",
    34: "SP:CacheMiss", 35: "SP:CacheInsert", 36: "SP:CacheRemove", 37: "SP:Recompile",
    38: "SP:CacheHit", 39: "Deprecated", 40: "SQL:StmtStarting", 41: "SQL:StmtCompleted",
    42: "SP:Starting", 43: "SP:Completed", 44: "SP:StmtStarting", 45: "SP:StmtCompleted",
    46: "Object:Created", 47: "Object:Deleted", 50: "SQL Transaction", 51: "Scan:Started",
    52: "Scan:Stopped", 53: "CursorOpen", 54: "TransactionLog", 55: "Hash Warning",
    58: "Auto Stats", 59: "Lock:Deadlock Chain", 60: "Lock:Escalation", 61: "OLE DB Errors",
    67: "Execution Warnings", 68: "Showplan Text (Unencoded)", 69: "Sort Warnings",
    70: "CursorPrepare", 71: "Prepare SQL", 72: "Exec Prepared SQL", 73: "Unprepare SQL",
    74: "CursorExecute", 75: "CursorRecompile", 76: "CursorImplicitConversion",
    77: "CursorUnprepare", 78: "CursorClose", 79: "Missing Column Statistics",
    80: "Missing Join Predicate", 81: "Server Memory Change",
    **{82 + n: f"User Configurable {n}" for n in range(10)},
    92: "Data File Auto Grow", 93: "Log File Auto Grow", 94: "Data File Auto Shrink",
    95: "Log File Auto Shrink", 96: "Showplan Text", 97: "Showplan All",
    98: "Showplan Statistics Profile", 100: "RPC Output Parameter",
    102: "Audit Database Scope GDR Event", 103: "Audit Schema Object GDR Event",
    104: "Audit AddLogin Event", 105: "Audit Login GDR Event",
    106: "Audit Login Change Property Event", 107: "Audit Login Change Password Event",
    108: "Audit Add Login to Server Role Event", 109: "Audit Add DB User Event",
    110: "Audit Add Member to DB Role Event", 111: "Audit Add Role Event",
    112: "Audit App Role Change Password Event", 113: "Audit Statement Permission Event",
    114: "Audit Schema Object Access Event", 115: "Audit Backup/Restore Event",
    116: "Audit DBCC Event", 117: "Audit Change Audit Event",
    118: "Audit Object Derived Permission Event", 119: "OLEDB Call Event",
    120: "OLEDB QueryInterface Event", 121: "OLEDB DataRead Event", 122: "Showplan XML",
    123: "SQL:FullTextQuery", 124: "Broker:Conversation", 125: "Deprecation Announcement",
    126: "Deprecation Final Support", 127: "Exchange Spill Event",
    128: "Audit Database Management Event", 129: "Audit Database Object Management Event",
    130: "Audit Database Principal Management Event", 131: "Audit Schema Object Management Event",
    132: "Audit Server Principal Impersonation Event",
    133: "Audit Database Principal Impersonation Event",
    134: "Audit Server Object Take Ownership Event",
    135: "Audit Database Object Take Ownership Event", 136: "Broker:Conversation Group",
    137: "Blocked Process Report", 138: "Broker:Connection",
    139: "Broker:Forwarded Message Sent", 140: "Broker:Forwarded Message Dropped",
    141: "Broker:Message Classify", 142: "Broker:Transmission", 143: "Broker:Queue Disabled",
    146: "Showplan XML Statistics Profile", 148: "Deadlock Graph",
    149: "Broker:Remote Message Acknowledgement", 150: "Trace File Close",
    152: "Audit Change Database Owner", 153: "Audit Schema Object Take Ownership Event",
    155: "FT:Crawl Started", 156: "FT:Crawl Stopped", 157: "FT:Crawl Aborted",
    158: "Audit Broker Conversation", 159: "Audit Broker Login",
    160: "Broker:Message Undeliverable", 161: "Broker:Corrupted Message",
    162: "User Error Message", 163: "Broker:Activation", 164: "Object:Altered",
    165: "Performance statistics", 166: "SQL:StmtRecompile",
    167: "Database Mirroring State Change", 168: "Showplan XML For Query Compile",
    169: "Showplan All For Query Compile", 170: "Audit Server Scope GDR Event",
    171: "Audit Server Object GDR Event", 172: "Audit Database Object GDR Event",
    173: "Audit Server Operation Event", 175: "Audit Server Alter Trace Event",
    176: "Audit Server Object Management Event", 177: "Audit Server Principal Management Event",
    178: "Audit Database Operation Event", 180: "Audit Database Object Access Event",
    181: "TM: Begin Tran starting", 182: "TM: Begin Tran completed",
    183: "TM: Promote Tran starting", 184: "TM: Promote Tran completed",
    185: "TM: Commit Tran starting", 186: "TM: Commit Tran completed",
    187: "TM: Rollback Tran starting", 188: "TM: Rollback Tran completed",
    189: "Lock:Timeout (timeout > 0)", 190: "Progress Report: Online Index Operation",
    191: "TM: Save Tran starting", 192: "TM: Save Tran completed", 193: "Background Job Error",
    194: "OLEDB Provider Information", 195: "Mount Tape", 196: "Assembly Load",
    198: "XQuery Static Type", 199: "QN: subscription", 200: "QN: parameter table",
    201: "QN: template", 202: "QN: dynamics", 212: "Bitmap Warning",
    213: "Database Suspect Data Page", 214: "CPU threshold exceeded",
    215: "PreConnect:Starting", 216: "PreConnect:Completed", 217: "Plan Guide Successful",
    218: "Plan Guide Unsuccessful", 235: "Audit Fulltext",
}

_ADD_DROP = {1: "Add", 2: "Drop"}
_GDR = {1: "Grant", 2: "Revoke", 3: "Deny"}
_OBJECT_DDL = {0: "Begin", 1: "Commit", 2: "Rollback"}
_POOLED = {1: "Nonpooled", 2: "Pooled"}
# EventSubClass meanings per event class (documentation event-class pages).
SUBCLASS_NAMES: dict[int, dict[int, str]] = {
    14: _POOLED, 15: _POOLED,
    18: {1: "Shutdown", 2: "Started", 3: "Paused", 4: "Continue"},
    46: _OBJECT_DDL, 47: _OBJECT_DDL, 164: _OBJECT_DDL,
    55: {0: "Recursion", 1: "Bailout"},
    69: {1: "Single pass", 2: "Multiple pass"},
    81: {1: "Memory Increase", 2: "Memory Decrease"},
    102: _GDR, 103: _GDR, 105: _GDR, 170: _GDR, 171: _GDR, 172: _GDR,
    104: _ADD_DROP, 108: _ADD_DROP, 111: _ADD_DROP,
    109: {1: "Add", 2: "Drop", 3: "Grant database access", 4: "Revoke database access"},
    110: {1: "Add", 2: "Drop", 3: "Change group"},
    115: {1: "Backup", 2: "Restore", 3: "BackupLog"},
    117: {1: "Audit started", 2: "Audit stopped", 3: "C2 mode ON", 4: "C2 mode OFF"},
}

# Event classes whose event_type is not simply the snake_case of their name.
_SERVER_STATE = {1: "server_stopped", 2: "server_started", 3: "server_paused", 4: "server_continued"}
EVENT_TYPE_OVERRIDES: dict[int, str] = {20: "login_failed", 22: "errorlog_message"}


def event_name(event_class: int) -> str:
    return EVENT_NAMES.get(event_class, f"Event {event_class}")


def subclass_name(event_class: int, subclass: int | None) -> str | None:
    if subclass is None:
        return None
    return SUBCLASS_NAMES.get(event_class, {}).get(subclass)


@lru_cache(maxsize=4096)  # a handful of (class, subclass) pairs per file; snake() is regex work
def event_type(event_class: int, subclass: int | None) -> str:
    """The lower_snake ``event_type`` of a trace event class."""
    if event_class == 18 and subclass in _SERVER_STATE:
        return _SERVER_STATE[subclass]
    if event_class in EVENT_TYPE_OVERRIDES:
        return EVENT_TYPE_OVERRIDES[event_class]
    if event_class not in EVENT_NAMES:
        return f"trace_event_{event_class}"
    kind = snake(EVENT_NAMES[event_class])
    # "Audit ... Event" names: the trailing word adds nothing.
    return kind[: -len("_event")] if kind.endswith("_event") else kind


OBJECT_TYPE_NAMES: dict[str, str] = {
    "C": "Check Constraint", "D": "Default", "F": "Foreign-key Constraint", "P": "Stored Procedure",
    "R": "Rule", "S": "System Table", "T": "Trigger on Server", "U": "User Table", "V": "View",
    "X": "Extended Stored Procedure", "TA": "CLR Trigger", "DB": "Database", "OB": "Object",
    "FC": "FullText Catalog", "PC": "CLR Stored Procedure", "SC": "Schema", "CD": "Credential",
    "SD": "DDL Event", "ME": "Management Event", "SE": "Security Event", "UE": "User Event",
    "AF": "CLR Aggregate Function", "IF": "Inline Table-valued SQL Function",
    "PF": "Partition Function", "RF": "Replication Filter Procedure",
    "TF": "Table-valued SQL Function", "SG": "Server Role", "WG": "Windows Group",
    "AK": "Asymmetric Key", "MK": "Master Key", "PK": "Primary Key", "SK": "ObfusKey",
    "AL": "Asymmetric Key Login", "CL": "Certificate Login", "RL": "Role", "SL": "SQL Login",
    "WL": "Windows Login", "BN": "Remote Service Binding", "DN": "Event Notification on Database",
    "EN": "Event Notification", "FN": "Scalar SQL Function", "ON": "Event Notification on Object",
    "SN": "Synonym", "SO": "Sequence", "EP": "End Point", "AQ": "Adhoc Query", "PQ": "Prepared Query",
    "SQ": "Service Queue", "UQ": "Unique Constraint", "AR": "Application Role", "CR": "Certificate",
    "SR": "Server", "TR": "Transact-SQL Trigger", "AS": "Assembly", "FS": "CLR Scalar Function",
    "IS": "Inline scalar SQL Function", "PS": "Partition Scheme", "US": "User",
    "CT": "Service Contract", "DT": "Trigger on Database", "FT": "CLR Table-valued Function",
    "IT": "Internal Table", "MT": "Message Type", "RT": "Route", "ST": "Statistics",
    "AU": "User", "CU": "User", "GU": "User", "SU": "User", "WU": "User", "SV": "Service",
    "IX": "Index", "LX": "Certificate Login", "SX": "XML Schema", "TY": "Type",
}


@lru_cache(maxsize=4096)
def object_type_code(value: int) -> str | None:
    """ObjectType int -> sys.objects-style code: 8277 -> ``U``, 21313 -> ``AS``.

    The two low bytes are ASCII characters, low byte first.  None when they
    are not printable (a damaged or unknown value is then kept as a number).
    """
    if not 0 <= value <= 0xFFFF:
        return None
    low, high = value & 0xFF, value >> 8
    if not (0x41 <= low <= 0x5A and (high == 0x20 or 0x41 <= high <= 0x5A)):
        return None
    return (chr(low) + chr(high)).strip()

"""Extended-procedure DLLs named in a container's ERRORLOGs, looked up in the
container.

SQL Server writes ``Attempting to load library 'x.dll' into memory`` and
``Using 'x.dll' version '...' to execute extended stored procedure '...'``
(message 8128) when an extended procedure's DLL is loaded.  A DLL that SQL
Server does not ship is the attacker's: when the container holds the file
(beside the instance's ``Binn`` folder, where a bare name is loaded from, at
the absolute path given, or anywhere in an archive), it is listed as a
member so that the manifest hashes it, and the container's manifest entry
names it (``extended_procedure_dlls``).  The DLL is never loaded or run.
"""

from __future__ import annotations

import re
from typing import Any

SHIPPED = re.compile(
    r"(?i)^(.*[\\/])?(xplog70|xpstar|xpstar90|xpsqlbot|odsole70|xprepl|xpweb70|xpweb90|xpadsi|xpadsi90|xpqueue|"
    r"xpsql70|replrec|replsub|sqlmaint|xpmapi70|xpsmtp70|xpstar80|xplog90|xpsqlbot90|xpstar100|odsole|xpoledb)"
    r"\.(dll|so)$")
_LOADED = re.compile(r"(?:Using '([^'\r\n]{1,400})' version '[^'\r\n]*' to execute extended stored procedure"
                     r"|Attempting to load library '([^'\r\n]{1,400})' into memory)")
ERRORLOG_NAME = re.compile(r"(?i)^errorlog(\.\d+)?$")
SCAN_LIMIT = 64 << 20  # bytes of one ERRORLOG scanned for DLL names


def _decode(data: bytes) -> str:
    if data.startswith(b"\xff\xfe") or (len(data) > 64 and data[1:64:2].count(0) > 24):
        return data.decode("utf-16-le", "replace")
    return data.decode("utf-8", "replace")


def dlls_in_errorlog(stream) -> set[str]:
    """Names of non-shipped DLLs an ERRORLOG says were loaded for extended procedures."""
    data = stream.read(SCAN_LIMIT)
    out = set()
    for m in _LOADED.finditer(_decode(data)):
        name = (m.group(1) or m.group(2) or "").strip()
        if name and not SHIPPED.match(name) and name.lower().endswith((".dll", ".so")):
            out.add(name)
    return out


def windows_candidates(dll: str, errorlog_inner: str, bin_roots: list[str]) -> list[str]:
    """Windows paths (``C:\\...``) or inner paths where a DLL may be, in the
    order SQL Server would load it."""
    if re.match(r"^[A-Za-z]:\\", dll):
        return [dll]
    name = dll.replace("/", "\\").rsplit("\\", 1)[-1]
    out = []
    folder = errorlog_inner.rsplit("/", 1)[0] if "/" in errorlog_inner else ""
    if folder.lower().endswith("/log"):
        out.append(folder[:-4] + "/Binn/" + name)  # <instance>\MSSQL\Binn beside <instance>\MSSQL\Log
    for root in bin_roots:
        out.append(root.rstrip("\\") + "\\" + name)
    out.append("C:\\Windows\\System32\\" + name)
    return out


def record(dll: str, referenced_by: str, found: str | None, searched: list[str]) -> dict[str, Any]:
    return {"dll": dll, "referenced_by": referenced_by, "path": found, "found": found is not None,
            "searched": searched}

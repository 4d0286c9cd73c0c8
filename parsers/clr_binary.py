"""Assembly bytes as master exports carry them: decoding, PE/.NET checks, metadata.

``sys.assembly_files.content`` (and ``CREATE ASSEMBLY ... FROM 0x...`` in
scripts) reaches the lab in five encodings depending on the tool that exported
it (reference master-exports.md section 0.2 and 5): ``0x``-hex (sqlcmd, SSMS),
bare hex (bcp), base64 (FOR JSON, FOR XML BINARY BASE64, CLIXML ``<BA>``),
space-separated decimal bytes (PowerUpSQL's ``[string]`` cast) and the literal
``System.Byte[]`` (plain Export-Csv: the bytes are lost).

Nothing here ever loads or runs an assembly: the PE structure is read with
``struct`` and the .NET metadata, when the optional ``dnfile`` library is
installed, with dnfile's pure-Python table reader from an in-memory buffer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Lengths at which export tools cut binary values (reference section 0.3):
# Invoke-Sqlcmd's -MaxBinaryLength default (and it pads shorter values to it).
TRUNCATING_BYTE_LENGTHS = {1024: "Invoke-Sqlcmd -MaxBinaryLength (1024 bytes)"}
# Text lengths at which the hex/base64 rendering itself was cut.
TRUNCATING_TEXT_LENGTHS = {
    256: "sqlcmd default -y width (256 characters)",
    4000: "4,000-character limit",
    65535: "SSMS grid limit (65,535 characters)",
}

_HEX0X = re.compile(r"^0[xX]([0-9A-Fa-f]*)$")
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_DECIMAL = re.compile(r"^\d{1,3}(?:[ ,]+\d{1,3})+$")
_CONSOLE_ARRAY = re.compile(r"^\{\s*\d{1,3}(?:,\s*\d{1,3})*(?:\.\.\.)?\s*\}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")

# Type references that tell what a SQL CLR assembly can do.  Keys are
# "Namespace.Type" prefixes; the value is the capability reported.
_TELLING_TYPES = (
    ("System.Diagnostics.Process", "process_start"),
    ("System.Diagnostics.ProcessStartInfo", "process_start"),
    ("System.Net.Sockets.", "network"),
    ("System.Net.WebClient", "network"),
    ("System.Net.WebRequest", "network"),
    ("System.Net.HttpWebRequest", "network"),
    ("System.Net.Http.", "network"),
    ("System.Net.Dns", "network"),
    ("System.Reflection.Assembly", "reflection"),
    ("System.Reflection.MethodInfo", "reflection"),
    ("System.Activator", "reflection"),
    ("System.Runtime.InteropServices.Marshal", "native_interop"),
    ("System.Runtime.InteropServices.DllImportAttribute", "native_interop"),
    ("System.IO.File", "file_io"),
    ("System.IO.Directory", "file_io"),
    ("Microsoft.Win32.Registry", "registry"),
    ("System.Management.Automation.", "powershell"),
)


@dataclass(slots=True)
class DecodedBinary:
    """The bytes of one binary cell, or why there are none."""

    data: bytes | None
    encoding: str  # hex_0x, hex, base64, decimal, bytes, lost, empty, unknown
    problems: list[str] = field(default_factory=list)
    truncated_reason: str | None = None


def decode_binary(value: Any) -> DecodedBinary:
    """Recognise the encoding of a binary cell by its shape and decode it."""
    if value is None:
        return DecodedBinary(None, "empty")
    if isinstance(value, bytes | bytearray):
        return DecodedBinary(bytes(value), "bytes")
    text = str(value).strip()
    if not text or text.upper() == "NULL":
        return DecodedBinary(None, "empty")
    if text == "System.Byte[]" or text.startswith("dbobject/"):
        # Export-Csv of a byte[] property, or FOR XML AUTO without BINARY
        # BASE64 (a URL reference instead of the data): the bytes are gone.
        return DecodedBinary(None, "lost", [f"binary not captured (the export wrote {text[:40]!r})"])
    if _CONSOLE_ARRAY.match(text):
        # PowerShell's console rendering of a byte[] ("{77, 90, 144...}"):
        # at most the first few bytes, never the whole value.
        return DecodedBinary(None, "lost", ["binary not captured (console rendering of a byte array)"])
    reason = TRUNCATING_TEXT_LENGTHS.get(len(text))
    m = _HEX0X.match(text)
    if m:
        return _from_hex(m.group(1), "hex_0x", reason)
    if _DECIMAL.match(text):
        numbers = [int(n) for n in re.split(r"[ ,]+", text)]
        if any(n > 255 for n in numbers):
            return DecodedBinary(None, "unknown", ["decimal byte list holds values above 255"])
        return DecodedBinary(bytes(numbers), "decimal", truncated_reason=reason)
    compact = re.sub(r"\s+", "", text)
    if _HEX.match(compact) and (len(compact) % 2 == 0 or compact[:4].upper() == "4D5A"):
        # bcp writes varbinary as bare hex.  A string of hex digits is also
        # valid base64; the MZ signature decides, then hex wins because the
        # text-producing tools (bcp) are the ones that write hex.
        if compact[:4].upper() == "4D5A" or not _base64_is_pe(compact):
            return _from_hex(compact, "hex", reason)
    if _BASE64.match(text):
        padded = compact + "=" * (-len(compact) % 4)
        try:
            data = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError) as exc:
            return DecodedBinary(None, "unknown", [f"not decodable as base64: {exc}"])
        problems = [] if len(compact) % 4 == 0 else ["base64 text length is not a multiple of 4 (cut off?)"]
        return DecodedBinary(data, "base64", problems, reason or ("cut base64" if problems else None))
    return DecodedBinary(None, "unknown", ["binary value in an unknown encoding"])


def _base64_is_pe(text: str) -> bool:
    try:
        return base64.b64decode(text[:8] + "=" * (-len(text[:8]) % 4)).startswith(b"MZ")
    except (binascii.Error, ValueError):
        return False


def _from_hex(digits: str, encoding: str, reason: str | None) -> DecodedBinary:
    problems = []
    if len(digits) % 2:
        problems.append("odd number of hex digits: the value was cut")
        reason = reason or "odd number of hex digits"
        digits = digits[:-1]
    return DecodedBinary(bytes.fromhex(digits), encoding, problems, reason)


@dataclass(slots=True)
class PeReport:
    """What the PE headers say about a byte string (no code is run)."""

    is_pe: bool = False
    is_dotnet: bool = False
    complete: bool = False
    expected_size: int | None = None
    machine: int | None = None
    problems: list[str] = field(default_factory=list)
    metadata_offset: int | None = None


def check_pe(data: bytes) -> PeReport:
    """MZ, ``PE\\0\\0`` at e_lfanew, the CLR header and the section extent."""
    rep = PeReport()
    if len(data) < 0x40 or data[:2] != b"MZ":
        rep.problems.append("no MZ header: not a PE image")
        return rep
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if e_lfanew + 24 > len(data):
        rep.problems.append(f"PE header offset 0x{e_lfanew:x} lies beyond the data: image cut")
        return rep
    if data[e_lfanew:e_lfanew + 4] != b"PE\0\0":
        rep.problems.append("no PE signature at e_lfanew")
        return rep
    rep.is_pe = True
    machine, nsections, _, _, _, opt_size, _ = struct.unpack_from("<HHIIIHH", data, e_lfanew + 4)
    rep.machine = machine
    opt = e_lfanew + 24
    section_table = opt + opt_size
    if section_table + 40 * nsections > len(data):
        rep.problems.append("section table lies beyond the data: image cut")
        return rep
    sections = []
    end = 0
    for i in range(nsections):
        base = section_table + 40 * i
        vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<IIII", data, base + 8)
        sections.append((vaddr, max(vsize, raw_size), raw_ptr))
        end = max(end, raw_ptr + raw_size)
    rep.expected_size = end
    rep.complete = len(data) >= end
    if not rep.complete:
        rep.problems.append(f"image is {len(data)} bytes but its sections end at {end}: cut")
    (magic,) = struct.unpack_from("<H", data, opt)
    dir_base = opt + (96 if magic == 0x10B else 112)
    ndirs_off = dir_base - 4
    if ndirs_off + 4 > len(data):
        return rep
    (ndirs,) = struct.unpack_from("<I", data, ndirs_off)
    if ndirs > 14 and dir_base + 8 * 15 <= len(data):
        clr_rva, clr_size = struct.unpack_from("<II", data, dir_base + 8 * 14)
        if clr_rva and clr_size:
            clr_off = _rva_to_offset(clr_rva, sections)
            if clr_off is None or clr_off + 16 > len(data):
                rep.problems.append("CLR header lies beyond the data")
            else:
                rep.is_dotnet = True
                md_rva, _md_size = struct.unpack_from("<II", data, clr_off + 8)
                md_off = _rva_to_offset(md_rva, sections)
                if md_off is not None and data[md_off:md_off + 4] == b"BSJB":
                    rep.metadata_offset = md_off
                else:
                    rep.problems.append("CLR metadata signature BSJB missing")
    return rep


def _rva_to_offset(rva: int, sections: list[tuple[int, int, int]]) -> int | None:
    for vaddr, size, raw_ptr in sections:
        if vaddr <= rva < vaddr + size:
            return rva - vaddr + raw_ptr
    return None


def dotnet_metadata(data: bytes) -> dict[str, Any] | None:
    """Assembly name, version, references and telling types, via dnfile.

    Returns None when dnfile is not installed; ``{"metadata_error": ...}``
    when the metadata cannot be read (cut or damaged image).
    """
    try:
        import dnfile  # optional: a pure-Python .NET metadata reader
    except ImportError:
        return None
    try:
        pe = dnfile.dnPE(data=data, fast_load=False)
        net = pe.net
        if net is None or net.mdtables is None:
            return {"metadata_error": "no .NET metadata tables"}
        tables = net.mdtables
        out: dict[str, Any] = {}
        if tables.Assembly and tables.Assembly.rows:
            row = tables.Assembly.rows[0]
            out["assembly_name"] = str(row.Name)
            out["assembly_version"] = ".".join(
                str(v) for v in (row.MajorVersion, row.MinorVersion, row.BuildNumber, row.RevisionNumber))
            if str(row.Culture or ""):
                out["assembly_culture"] = str(row.Culture)
        if tables.Module and tables.Module.rows:
            out["module_name"] = str(tables.Module.rows[0].Name)
        refs = []
        for row in tables.AssemblyRef or ():
            refs.append(f"{row.Name}, Version={row.MajorVersion}.{row.MinorVersion}."
                        f"{row.BuildNumber}.{row.RevisionNumber}")
        out["assembly_references"] = refs
        types = sorted({_type_name(row) for row in tables.TypeRef or ()})
        out["referenced_types"] = types
        members = set()
        for row in tables.MemberRef or ():
            parent = getattr(getattr(row, "Class", None), "row", None)
            if parent is not None and hasattr(parent, "TypeName"):
                members.add(f"{_type_name(parent)}::{row.Name}")
        telling = sorted({t for t in (*types, *members) if _capability(t)})
        out["telling_references"] = telling
        out["capabilities"] = sorted({_capability(t) for t in telling})
        pinvoke = sorted({str(row.ImportName) for row in tables.ImplMap or ()})
        if pinvoke:
            out["pinvoke_imports"] = pinvoke
            out["capabilities"] = sorted({*out["capabilities"], "native_interop"})
        return out
    except Exception as exc:  # noqa: BLE001 - damaged metadata must not stop the parse
        return {"metadata_error": f"{type(exc).__name__}: {exc}"}


def _type_name(row: Any) -> str:
    ns = str(row.TypeNamespace or "")
    return f"{ns}.{row.TypeName}" if ns else str(row.TypeName)


def _capability(name: str) -> str | None:
    """``name`` is ``Namespace.Type`` or ``Namespace.Type::Member``."""
    for prefix, capability in _TELLING_TYPES:
        if prefix.endswith("."):
            if name.startswith(prefix):
                return capability
        elif name == prefix or name.startswith(prefix + "::"):
            return capability
    return None


def describe_assembly(decoded: DecodedBinary) -> dict[str, Any]:
    """Attributes for an assembly's bytes: hashes, size, PE checks, metadata."""
    attrs: dict[str, Any] = {"content_encoding": decoded.encoding}
    if decoded.problems:
        attrs["content_problems"] = list(decoded.problems)
    data = decoded.data
    if data is None:
        attrs["content_captured"] = False
        return attrs
    attrs["content_captured"] = True
    attrs["sha256"] = hashlib.sha256(data).hexdigest()
    # sys.trusted_assemblies stores SHA2_512 of the content: keep it to match.
    attrs["sha512"] = hashlib.sha512(data).hexdigest()
    attrs["size"] = len(data)
    pe = check_pe(data)
    attrs["pe_valid"] = pe.is_pe
    attrs["pe_dotnet"] = pe.is_dotnet
    attrs["pe_complete"] = pe.complete
    if pe.expected_size is not None:
        attrs["pe_expected_size"] = pe.expected_size
    if pe.problems:
        attrs["pe_problems"] = pe.problems
    reasons = []
    if decoded.truncated_reason:
        reasons.append(decoded.truncated_reason)
    if len(data) in TRUNCATING_BYTE_LENGTHS and not (pe.complete and pe.expected_size == len(data)):
        reasons.append(TRUNCATING_BYTE_LENGTHS[len(data)])
    if pe.is_pe and not pe.complete:
        reasons.append("incomplete PE image")
    if reasons:
        attrs["truncated"] = True
        attrs["truncated_at"] = len(data)
        attrs["truncated_reason"] = "; ".join(dict.fromkeys(reasons))
    if pe.is_dotnet and pe.complete:
        meta = dotnet_metadata(data)
        if meta is not None:
            attrs.update(meta)
        else:
            attrs["metadata_error"] = "dnfile not installed: assembly metadata not read"
    return attrs


def extract(data: bytes, sha256: str, directory: str | os.PathLike[str]) -> str:
    """Write ``<sha256>.dll`` into ``directory`` (never executed, never loaded).

    Returns the path written (or already present: identical content has the
    same name, so an existing file is left alone).
    """
    target = Path(directory) / f"{sha256}.dll"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: never overwrite; mode without execute bits.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o444)
    except FileExistsError:
        return str(target)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return str(target)

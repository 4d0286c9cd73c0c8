"""What a Windows system's registry says about its SQL Server instances and
its time zone (needs ``dissect.regf``: the ``images`` extra).

* SOFTWARE: ``Microsoft SQL Server\\Instance Names\\SQL`` (instance name ->
  instance id), and per instance ``Setup`` (``SQLPath``, ``SQLDataRoot``,
  version, edition), ``MSSQLServer\\Parameters`` (``SQLArg0``...: ``-d``
  master, ``-e`` error log, ``-l`` master log), ``SQLServerAgent``
  (``ErrorLogFile``, ``WorkingDirectory``); the same under ``Wow6432Node``.
  The folders these name are where the ERRORLOG, the Agent log and the
  default trace live.
* SYSTEM: the current control set's ``TimeZoneInformation`` (key name,
  bias, daylight rules, ``DynamicDaylightTimeDisabled``), ``ComputerName``
  and ``MountedDevices`` (drive letters of volumes).

The time zone becomes :class:`~forensic.model.TimeAnchor` objects of kind
``registry``: one per offset change between 2005 and next year, so the
engine's time context applies it like any other evidence, checks it against
the ERRORLOG's own ``UTC adjustment`` and lets the ERRORLOG win.
"""

from __future__ import annotations

import calendar
import re
import struct
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from forensic.model import TZ_REGISTRY, TimeAnchor
from forensic.timezones import first_minute_with

ANCHOR_FIRST_YEAR = 2005  # SQL Server 2005: the oldest logs this tool reads

SYSTEM_HIVE = "windows/system32/config/system"
SOFTWARE_HIVE = "windows/system32/config/software"


def regf_available() -> bool:
    try:
        import dissect.regf  # noqa: F401
    except ImportError:
        return False
    return True


def hive_role(inner: str) -> str | None:
    """``system`` / ``software`` for a path ending in the hive's usual place
    (``C/Windows/System32/config/SYSTEM``, Velociraptor's ``C%3A/...``)."""
    low = inner.replace("\\", "/").lower()
    if low.endswith("/" + SYSTEM_HIVE) or low == SYSTEM_HIVE:
        return "system"
    if low.endswith("/" + SOFTWARE_HIVE) or low == SOFTWARE_HIVE:
        return "software"
    return None


class Hive:
    """A registry hive read with dissect.regf; lookups never raise."""

    def __init__(self, stream: BinaryIO):
        from dissect.regf import RegistryHive
        self.hive = RegistryHive(stream)

    def key(self, path: str):
        try:
            return self.hive.open(path)
        except Exception:  # noqa: BLE001 - missing key or damaged hive
            return None

    @staticmethod
    def value(key, name: str, default: Any = None) -> Any:
        if key is None:
            return default
        try:
            return _plain(key.value(name).value)
        except Exception:  # noqa: BLE001
            return default

    @staticmethod
    def values(key) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if key is None:
            return out
        try:
            for v in key.values():
                try:
                    out[str(v.name)] = _plain(v.value)
                except Exception:  # noqa: BLE001, S112
                    continue
        except Exception:  # noqa: BLE001, S110
            pass
        return out

    @staticmethod
    def subkey_names(key) -> list[str]:
        if key is None:
            return []
        try:
            return [str(k.name) for k in key.subkeys()]
        except Exception:  # noqa: BLE001
            return []


def _plain(value: Any) -> Any:
    """Registry values as plain Python objects (dissect's integer types do not pickle)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# SOFTWARE: SQL Server instances


@dataclass
class SqlInstance:
    name: str  # MSSQLSERVER, SQLEXPRESS, ...
    instance_id: str  # MSSQL15.MSSQLSERVER
    wow64: bool = False
    version: str | None = None
    edition: str | None = None
    sql_path: str | None = None
    data_root: str | None = None
    bin_root: str | None = None
    errorlog: str | None = None  # the -e start-up parameter
    master_data: str | None = None  # -d
    master_log: str | None = None  # -l
    agent_log: str | None = None
    agent_working_dir: str | None = None
    parameters: list[str] = field(default_factory=list)

    def log_folders(self) -> list[str]:
        """Windows folders (``C:\\...``) holding this instance's logs."""
        out: list[str] = []
        for path in (self.errorlog, self.agent_log):
            if path and "\\" in path:
                out.append(path.rsplit("\\", 1)[0])
        for root in (self.sql_path, self.data_root):
            if root:
                out.append(root.rstrip("\\") + "\\Log")
        if self.agent_working_dir:
            out.append(self.agent_working_dir.rstrip("\\"))
        seen: dict[str, str] = {}
        for p in out:
            seen.setdefault(p.lower(), p)
        return list(seen.values())

    def bin_folders(self) -> list[str]:
        """Where a bare extended-procedure DLL name is loaded from."""
        out = [self.bin_root] if self.bin_root else []
        if self.sql_path:
            out.append(self.sql_path.rstrip("\\") + "\\Binn")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "")}


def sql_instances(software: Hive) -> list[SqlInstance]:
    out: list[SqlInstance] = []
    for prefix, wow in (("Microsoft\\Microsoft SQL Server", False),
                        ("Wow6432Node\\Microsoft\\Microsoft SQL Server", True)):
        names = Hive.values(software.key(prefix + "\\Instance Names\\SQL"))
        for name, instance_id in sorted(names.items()):
            if not isinstance(instance_id, str) or not instance_id:
                continue
            inst = SqlInstance(name=name, instance_id=instance_id, wow64=wow)
            base = f"{prefix}\\{instance_id}"
            setup = software.key(base + "\\Setup")
            inst.version = Hive.value(setup, "Version")
            inst.edition = Hive.value(setup, "Edition")
            inst.sql_path = Hive.value(setup, "SQLPath")
            inst.data_root = Hive.value(setup, "SQLDataRoot")
            inst.bin_root = Hive.value(setup, "SQLBinRoot")
            params = Hive.values(software.key(base + "\\MSSQLServer\\Parameters"))
            for pname in sorted(params, key=_arg_order):
                arg = params[pname]
                if not isinstance(arg, str):
                    continue
                inst.parameters.append(arg)
                flag, rest = arg[:2].lower(), arg[2:]
                if flag == "-e":
                    inst.errorlog = rest
                elif flag == "-d":
                    inst.master_data = rest
                elif flag == "-l":
                    inst.master_log = rest
            agent = software.key(base + "\\SQLServerAgent")
            inst.agent_log = Hive.value(agent, "ErrorLogFile")
            inst.agent_working_dir = Hive.value(agent, "WorkingDirectory")
            out.append(inst)
    return out


def _arg_order(name: str) -> tuple[int, str]:
    m = re.match(r"SQLArg(\d+)$", name, re.IGNORECASE)
    return (int(m.group(1)), name) if m else (1 << 30, name)


def system_root(software: Hive) -> str | None:
    return Hive.value(software.key("Microsoft\\Windows NT\\CurrentVersion"), "SystemRoot")


# ---------------------------------------------------------------------------
# SYSTEM: control set, computer name, drive letters, time zone


def current_control_set(system: Hive) -> str:
    current = Hive.value(system.key("Select"), "Current")
    if isinstance(current, int) and current > 0:
        return f"ControlSet{current:03d}"
    return "ControlSet001"


def computer_name(system: Hive) -> str | None:
    cs = current_control_set(system)
    return Hive.value(system.key(f"{cs}\\Control\\ComputerName\\ComputerName"), "ComputerName")


def mounted_devices(system: Hive) -> dict[str, bytes]:
    """Drive letter -> the MountedDevices value (MBR signature + offset, or
    ``DMIO:ID:`` + GPT partition GUID)."""
    out: dict[str, bytes] = {}
    for name, data in Hive.values(system.key("MountedDevices")).items():
        m = re.match(r"\\DosDevices\\([A-Za-z]):$", name)
        if m and isinstance(data, bytes | bytearray):
            out[m.group(1).upper()] = bytes(data)
    return out


@dataclass
class RegistryZone:
    """The time zone a SYSTEM hive sets."""

    key_name: str | None
    standard_name: str | None
    bias: int  # minutes, UTC = local + bias (Windows' sign)
    standard_bias: int
    daylight_bias: int
    standard_start: tuple | None  # SYSTEMTIME fields
    daylight_start: tuple | None
    dynamic_dst_disabled: bool
    iana: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def standard_offset(self) -> int:
        return -(self.bias + self.standard_bias)

    @property
    def daylight_offset(self) -> int:
        return -(self.bias + self.daylight_bias)

    @property
    def has_dst(self) -> bool:
        return (not self.dynamic_dst_disabled and self.standard_start is not None and self.daylight_start is not None
                and self.standard_start[1] != 0 and self.daylight_start[1] != 0
                and self.daylight_bias != self.standard_bias)

    def label(self) -> str:
        sign = "-" if self.standard_offset < 0 else "+"
        off = abs(self.standard_offset)
        text = self.key_name or self.standard_name or "custom"
        text += f" (UTC{sign}{off // 60:02d}:{off % 60:02d}"
        text += ", daylight saving" if self.has_dst else ", no daylight saving"
        text += f"; IANA {self.iana})" if self.iana else ")"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"key_name": self.key_name, "standard_name": self.standard_name, "bias_minutes": self.bias,
                "standard_offset": _fmt(self.standard_offset),
                "daylight_offset": _fmt(self.daylight_offset) if self.has_dst else None,
                "dynamic_daylight_time_disabled": self.dynamic_dst_disabled, "iana": self.iana,
                "notes": list(self.notes)}


def _fmt(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _dword(value: Any) -> int:
    if isinstance(value, bytes | bytearray) and len(value) >= 4:
        value = struct.unpack("<I", bytes(value[:4]))[0]
    if not isinstance(value, int):
        return 0
    return value - (1 << 32) if value >= 1 << 31 else value


def _systemtime(value: Any) -> tuple | None:
    if isinstance(value, bytes | bytearray) and len(value) >= 16:
        return struct.unpack("<8H", bytes(value[:16]))
    return None


def windows_to_iana(key_name: str) -> str | None:
    """CLDR's map (shipped with dissect.target) from a Windows time-zone key
    name to an IANA zone."""
    try:
        from dissect.target.helpers.localeutil import WINDOWS_ZONE_MAP
    except Exception:  # noqa: BLE001 - dissect.target missing or broken
        return None
    name = WINDOWS_ZONE_MAP.get(key_name)
    return name if name and name != key_name else ("UTC" if key_name == "UTC" else None)


def registry_zone(system: Hive) -> RegistryZone | None:
    cs = current_control_set(system)
    key = system.key(f"{cs}\\Control\\TimeZoneInformation")
    if key is None:
        return None
    vals = Hive.values(key)
    if "Bias" not in vals:
        return None
    zone = RegistryZone(
        key_name=(vals.get("TimeZoneKeyName") or None) if isinstance(vals.get("TimeZoneKeyName"), str) else None,
        standard_name=vals.get("StandardName") if isinstance(vals.get("StandardName"), str) else None,
        bias=_dword(vals.get("Bias")), standard_bias=_dword(vals.get("StandardBias", 0)),
        daylight_bias=_dword(vals.get("DaylightBias", 0)),
        standard_start=_systemtime(vals.get("StandardStart")), daylight_start=_systemtime(vals.get("DaylightStart")),
        dynamic_dst_disabled=bool(_dword(vals.get("DynamicDaylightTimeDisabled", 0))),
    )
    # Before Windows 7 there is no TimeZoneKeyName; an English StandardName is the same key.
    key = zone.key_name or (zone.standard_name if zone.standard_name and not zone.standard_name.startswith("@")
                            else None)
    if key:
        iana = windows_to_iana(key.strip("\x00"))
        if iana and not zone.dynamic_dst_disabled:
            if _iana_matches(iana, zone):
                zone.iana = iana
            else:
                zone.notes.append(f"the IANA zone {iana} for {key!r} does not match the hive's bias "
                                  f"{_fmt(zone.standard_offset)}; the hive's own rules are used")
        elif iana is None:
            zone.notes.append(f"no IANA zone known for {key!r}; the hive's own rules are used")
    if zone.dynamic_dst_disabled:
        zone.notes.append("automatic daylight saving is off (DynamicDaylightTimeDisabled): a fixed offset")
    return zone


def _iana_matches(iana: str, zone: RegistryZone) -> bool:
    try:
        tz = zoneinfo.ZoneInfo(iana)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    year = datetime.now(UTC).year
    offsets = {int(datetime(year, m, 15, 12, tzinfo=tz).utcoffset().total_seconds() // 60) for m in (1, 7)}
    wanted = {zone.standard_offset, zone.daylight_offset} if zone.has_dst else {zone.standard_offset}
    return offsets == wanted


# -- anchors ----------------------------------------------------------------


def _rule_date(st: tuple, year: int) -> datetime:
    """A SYSTEMTIME transition rule (month, weekday, n-th occurrence; 5 = last)."""
    _y, month, dow, nth, hour, minute, second, _ms = st
    days = _weekday_dates(year, month, dow)
    day = days[-1] if nth >= 5 or nth > len(days) else days[max(nth, 1) - 1]
    return datetime(year, month, day, min(hour, 23), min(minute, 59), min(second, 59))


def _weekday_dates(year: int, month: int, dow: int) -> list[int]:
    """Days of ``month`` falling on Windows weekday ``dow`` (0 = Sunday)."""
    py_dow = (dow - 1) % 7  # Python: Monday = 0
    ndays = calendar.monthrange(year, month)[1]
    return [d for d in range(1, ndays + 1) if datetime(year, month, d).weekday() == py_dow]


def _rule_transitions(zone: RegistryZone, first: int, last: int) -> list[tuple[datetime, int]]:
    """(UTC instant, new offset) for a Windows rule zone."""
    out: list[tuple[datetime, int]] = []
    std, dst = zone.standard_offset, zone.daylight_offset
    for year in range(first, last + 1):
        # DaylightStart is given in standard local time, StandardStart in daylight local time.
        begin = _rule_date(zone.daylight_start, year) - timedelta(minutes=std)
        end = _rule_date(zone.standard_start, year) - timedelta(minutes=dst)
        out.append((begin, dst))
        out.append((end, std))
    out.sort()
    return out


def _iana_transitions(tz: zoneinfo.ZoneInfo, first: int, last: int) -> list[tuple[datetime, int]]:
    out: list[tuple[datetime, int]] = []

    def off(t: datetime) -> int:
        return int(t.replace(tzinfo=UTC).astimezone(tz).utcoffset().total_seconds() // 60)

    t = datetime(first, 1, 1)
    end = datetime(last + 1, 1, 1)
    cur = off(t)
    step = timedelta(days=1)
    while t < end:
        nxt = t + step
        o = off(nxt)
        if o != cur:
            out.append((first_minute_with(off, t, nxt, o), o))
            cur = o
        t = nxt
    return out


def zone_anchors(zone: RegistryZone, source: str, last_year: int | None = None) -> list[TimeAnchor]:
    """TimeAnchors of kind ``registry`` describing ``zone`` from 2005 on.

    Each anchor's local time is the first wall-clock minute of the new offset
    as a naive reading (after a fall-back, the end of the repeated hour), the
    convention the engine's zone checks use.
    """
    last = last_year or datetime.now(UTC).year + 1
    first = ANCHOR_FIRST_YEAR
    desc = f"{source} ({zone.label()})"
    if zone.iana:
        tz = zoneinfo.ZoneInfo(zone.iana)
        start = datetime(first, 1, 1)
        initial = int(start.replace(tzinfo=tz).utcoffset().total_seconds() // 60)
        transitions = _iana_transitions(tz, first, last)
    elif zone.has_dst:
        # From the year before: the offset in force on 1 January is the one
        # set by that year's last change.
        transitions = _rule_transitions(zone, first - 1, last)
        before = [o for t, o in transitions if t < datetime(first, 1, 1)]
        initial = before[-1] if before else zone.standard_offset
    else:
        transitions, initial = [], zone.standard_offset
    anchors = [TimeAnchor(datetime(first, 1, 1), initial, TZ_REGISTRY, desc)]
    prev = initial
    for instant, offset in transitions:
        if offset == prev or instant.year < first:
            prev = offset
            continue
        local = instant + timedelta(minutes=max(prev, offset))
        anchors.append(TimeAnchor(local, offset, TZ_REGISTRY, desc))
        prev = offset
    return anchors


# ---------------------------------------------------------------------------


@dataclass
class MachineInfo:
    """What a container's registry hives say; goes to the manifest, and the
    time-zone anchors to every local-time artifact of the container."""

    system_hive: str | None = None
    software_hive: str | None = None
    computer_name: str | None = None
    zone: RegistryZone | None = None
    anchors: list[TimeAnchor] = field(default_factory=list)
    instances: list[SqlInstance] = field(default_factory=list)
    system_root: str | None = None
    drive_letters: dict[str, str] = field(default_factory=dict)  # letter -> volume label
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "system_hive": self.system_hive, "software_hive": self.software_hive,
            "computer_name": self.computer_name,
            "time_zone": self.zone.as_dict() if self.zone else None,
            "time_zone_label": self.zone.label() if self.zone else None,
            "registry_anchors": len(self.anchors),
            "sql_server_instances": [i.as_dict() for i in self.instances],
            "system_root": self.system_root,
            "drive_letters": dict(self.drive_letters),
            "notes": list(self.notes),
        }


def read_machine(system: BinaryIO | None, system_name: str | None,
                 software: BinaryIO | None, software_name: str | None) -> MachineInfo:
    """Read whichever hives are given; problems become notes."""
    info = MachineInfo(system_hive=system_name, software_hive=software_name)
    if not regf_available():
        info.notes.append("registry hives found but not read: install the 'images' extra "
                          "(pip install 'mssql-forensic[images]') for dissect.regf")
        return info
    if system is not None:
        try:
            hive = Hive(system)
            info.computer_name = computer_name(hive)
            info.zone = registry_zone(hive)
            if info.zone is not None:
                info.anchors = zone_anchors(info.zone, system_name or "SYSTEM hive")
            else:
                info.notes.append("the SYSTEM hive has no TimeZoneInformation")
        except Exception as exc:  # noqa: BLE001 - a damaged hive is a note, never a crash
            info.notes.append(f"cannot read the SYSTEM hive {system_name}: {type(exc).__name__}: {exc}")
    if software is not None:
        try:
            hive = Hive(software)
            info.instances = sql_instances(hive)
            info.system_root = system_root(hive)
        except Exception as exc:  # noqa: BLE001
            info.notes.append(f"cannot read the SOFTWARE hive {software_name}: {type(exc).__name__}: {exc}")
    return info

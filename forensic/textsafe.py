"""Evidence text on a console: never markup, never terminal control.

Evidence is attacker-controlled: file names, log messages and object names can
hold console markup (``[bold]``), format placeholders or terminal escape
sequences (``ESC[2J``, OSC 8 hyperlinks).  Everything shown on a console goes
through :func:`printable` (control characters become ``\\xNN``) inside a rich
``Text`` (never parsed as markup); format strings are never built from it.
"""

from __future__ import annotations

import re

from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all C0/C1 controls but tab and newline


def printable(value: object) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def safe_text(value: object, style: str | None = None) -> Text:
    return Text(printable(value), style=style or "")

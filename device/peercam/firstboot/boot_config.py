"""The boot partition's `peercam.txt`: what a user who never opened a terminal edits.

One setting a line, `key = value`; `#` starts a comment; quotes around a value are
optional. Unknown keys and bad lines are reported with their line number, and the
rest still applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from peercam.service.private_file import write_private

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


@dataclass
class BootConfig:
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # key → line number (1-based)
    problems: list[str] = field(default_factory=list)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    # An unquoted value may carry a trailing comment; a quoted one keeps its '#'.
    return value.split(" #", 1)[0].rstrip()


def parse_boot_config(text: str) -> BootConfig:
    config = BootConfig()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")  # Windows editors add a byte-order mark
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            config.problems.append(f"line {number}: expected `key = value`, got {line[:60]!r}")
            continue
        key = match[1].lower()
        if key in config.values:
            config.problems.append(f"line {number}: {key} is set twice; the last one counts")
        config.values[key] = _unquote(match[2])
        config.lines[key] = number
    return config


def remove_setting(path: Path, key: str, note: str) -> None:
    """Replace the line that sets `key` with a comment, atomically, keeping the rest
    of the file as the user wrote it (a secret must not stay on the card)."""
    text = path.read_text(encoding="utf-8-sig")
    kept = []
    for raw in text.splitlines():
        match = _LINE.match(raw.strip())
        if match is not None and match[1].lower() == key:
            kept.append(f"# {note}")
        else:
            kept.append(raw)
    write_private(path, ("\n".join(kept) + "\n").encode())

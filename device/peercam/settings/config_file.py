"""peercam.toml, changed key by key: by the settings page and by first boot.

The file stays the one source of truth, and stays the user's: it is edited with
tomlkit, so comments, order and sections this version does not know are kept. A
change is checked against the daemon's own model (config.py) before anything is
written: a refused change names each bad key with the same one-line message the
daemon gives at start, and leaves the file as it was. A saved change replaces the
file atomically (old or new after a power cut, never half), the previous version
kept beside it as peercam.toml.bak.

Chosen over tomli-w (writes a whole new file from a dict: every comment gone) and
rtoml/toml (the same, and `toml` is unmaintained): tomlkit is the round-trip TOML
library of Poetry, maintained, pure Python.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table
from tomlkit.toml_document import TOMLDocument

from peercam.config import Config, ConfigError, build_config, with_overrides
from peercam.service.private_file import write_private

# "section.key" → the new value; None puts the key back to its default.
Changes = dict[str, Any]


class SettingsRefused(Exception):
    """Changes the model refuses: dotted key → why, one line each."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {why}" for key, why in errors.items()))
        self.errors = errors


def _known(section: str, key: str) -> bool:
    field = Config.model_fields.get(section)
    model = field.annotation if field is not None else None
    return isinstance(model, type) and key in getattr(model, "model_fields", {})


def _without_none(value: Any) -> Any:
    """TOML has no null: a None in a table is a key left out (its default)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _read_regular(path: Path) -> str:
    """A regular file's text. Root reads this file at boot in a directory the
    service user owns: a FIFO left in its place must not hang the boot."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return file.read().decode("utf-8")


class ConfigFile:
    def __init__(self, path: Path, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        """`overrides`: what the command line set over the file (it wins)."""
        self.path = path
        self.overrides = overrides or {}

    @property
    def backup(self) -> Path:
        return self.path.with_name(self.path.name + ".bak")

    def snapshot(self) -> bytes | None:
        """The file's bytes as they are (None: no file), to put back with `put_back`."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def put_back(self, content: bytes | None) -> None:
        """The file as `snapshot` found it: new settings the daemon could not start on."""
        if content is None:
            self.path.unlink(missing_ok=True)
        else:
            write_private(self.path, content)

    def read(self) -> TOMLDocument:
        """The file as written (empty when there is none). Raises ConfigError."""
        try:
            text = _read_regular(self.path)
        except FileNotFoundError:
            return tomlkit.document()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read config file {self.path}: {error}") from None
        try:
            return tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as error:
            raise ConfigError(f"{self.path} is not valid TOML: {error}") from None

    def load(self) -> Config:
        """What the daemon runs on: the file under the command line's overrides.
        Raises ConfigError."""
        return build_config(with_overrides(self.read().unwrap(), self.overrides))

    def plan(
        self, changes: Changes, base: TOMLDocument | None = None
    ) -> tuple[TOMLDocument, Config]:
        """The file (or `base`, left as it is) with `changes` made, and the config it
        gives; nothing written. Raises SettingsRefused naming each bad key, and
        ConfigError for a file that cannot be read."""
        document = self.read() if base is None else tomlkit.parse(tomlkit.dumps(base))
        errors: dict[str, str] = {}
        for dotted, value in changes.items():
            section, _, key = dotted.partition(".")
            if not key or "." in key or not _known(section, key):
                errors[dotted] = "unknown key"
                continue
            table = document.get(section)
            if value is None:
                if isinstance(table, Table | dict):
                    table.pop(key, None)
                continue
            if not isinstance(table, Table | dict):
                table = tomlkit.table()
                document[section] = table
            table[key] = value
        if errors:
            raise SettingsRefused(errors)
        try:
            config = build_config(with_overrides(document.unwrap(), self.overrides))
            # Written as the model read them ("12" as 12, a size as WIDTHxHEIGHT), and
            # as the file says them, not as the command line overrides them.
            dumped = build_config(document.unwrap()).model_dump(mode="json")
        except ConfigError as error:
            raise SettingsRefused(self._attributed(error, changes)) from None
        for dotted, value in changes.items():
            section, _, key = dotted.partition(".")
            written = _without_none(dumped[section][key])
            if value is None or written is None:
                continue
            try:
                document[section][key] = written
            except tomlkit.exceptions.ConvertError as error:
                raise SettingsRefused({dotted: f"cannot be written as TOML: {error}"}) from None
        return document, config

    @staticmethod
    def _attributed(error: ConfigError, changes: Changes) -> dict[str, str]:
        """Each problem under the changed key it is about; one about a key not
        changed (the file was wrong already, or a combination) under its own."""
        found: dict[str, str] = {}
        for location, why in (error.fields or {"(file)": str(error)}).items():
            owner = next(
                (d for d in changes if location == d or location.startswith(d + ".")), location
            )
            detail = location[len(owner) + 1 :]
            found.setdefault(owner, f"{detail}: {why}" if detail else why)
        return found

    def save(self, document: TOMLDocument) -> None:
        """Replace the file with `document`, keeping the previous one as the backup;
        the file keeps its owner's permissions (the daemon's alone when new)."""
        text = tomlkit.dumps(document)
        tomllib.loads(text)  # what tomlkit wrote must read back as TOML
        try:
            previous = self.path.read_bytes()
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            previous, mode = None, 0o600
        if previous is not None:
            write_private(self.backup, previous)
        write_private(self.path, text.encode())
        if mode != 0o600:
            os.chmod(self.path, mode)

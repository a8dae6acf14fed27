"""What the settings page is generated from: the daemon's own config model.

The page draws each field from the model's JSON schema (type, choices, bounds,
default), its help from the comment above the field in config.py (one text for the
file's readers and the page's), and says what saving it interrupts (impact.py). A
value the page sends is checked by the same model (config_file.py), so the page's
errors are the daemon's.

Secrets (passwords, TURN secrets, tokens) never go to the page: each is sent as
UNCHANGED, and UNCHANGED sent back keeps the file's value.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from peercam.config import Config
from peercam.settings.impact import SAYS, impact_of

# The page's order; sections not named here follow, as the model lists them.
ORDER = (
    "camera", "video", "audio", "recording", "motion", "doorbell", "gpio", "talkback",
    "ringback", "sip", "webrtc", "viewers", "webpush", "mqtt", "rtsp", "onvif", "republish",
    "frame_counter", "remote", "auth", "server",
)  # fmt: skip
SECRET_KEYS = frozenset({"password", "credential", "secret", "token", "page_password"})
# Where a secret is sent: a secret kept as UNCHANGED may not go to a new one (the page
# would be a way to send it to a server of its choosing).
ENDPOINT_KEYS = frozenset(
    {"url", "urls", "host", "port", "broker", "phone_broker", "registrar", "tls_ca_file"}
)
UNCHANGED = "(unchanged)"

_FIELD = re.compile(r"^\s+([a-z_][a-z0-9_]*)\s*:")
_COMMENT = re.compile(r"^\s+#\s?(.*)$")


def _help_of(model: type) -> dict[str, str]:
    """Each field's comment block, from the model's source; none if it has no source."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    comment: list[str] = []
    for line in lines:
        match = _COMMENT.match(line)
        if match:
            comment.append(match[1])
            continue
        field = _FIELD.match(line)
        if field and comment:
            found[field[1]] = " ".join(comment)
        comment = []
    return found


def sections() -> list[str]:
    names = list(Config.model_fields)
    return [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]


def settings_form() -> dict[str, Any]:
    """The page's description of every setting."""
    help_texts: dict[str, str] = {}
    impacts: dict[str, str] = {}
    for section in sections():
        model = Config.model_fields[section].annotation
        fields = getattr(model, "model_fields", {})
        for key, text in _help_of(model).items() if isinstance(model, type) else ():
            help_texts[f"{section}.{key}"] = text
        for key in fields:
            impacts[f"{section}.{key}"] = impact_of(f"{section}.{key}").value
    return {
        "sections": sections(),
        "schema": Config.model_json_schema(),
        "help": help_texts,
        "impact": impacts,
        "says": {impact.value: text for impact, text in SAYS.items()},
        "unchanged": UNCHANGED,
    }


def redacted(value: Any, key: str = "") -> Any:
    """`value` with every secret in it (at any depth) replaced by UNCHANGED."""
    if key in SECRET_KEYS and value is not None:
        return UNCHANGED
    if isinstance(value, dict):
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v, key) for v in value]
    return value


def restored(new: Any, old: Any, key: str = "") -> Any:
    """`new` with each UNCHANGED put back to what `old` holds at the same place: the
    same key, in a table (or a list's item at the same position) that still names the
    same server. Raises KeyError where that is not so."""
    if new == UNCHANGED and key in SECRET_KEYS:
        if old is None:
            raise KeyError(key)
        return old
    if isinstance(new, dict):
        previous = old if isinstance(old, dict) else {}
        moved = any(new.get(k) != previous.get(k) for k in ENDPOINT_KEYS & new.keys())
        return {k: restored(v, None if moved else previous.get(k), k) for k, v in new.items()}
    if isinstance(new, list):
        previous_items = old if isinstance(old, list) else []
        return [
            restored(v, previous_items[i] if i < len(previous_items) else None, key)
            for i, v in enumerate(new)
        ]
    return new

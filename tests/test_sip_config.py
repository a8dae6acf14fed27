"""The [sip] section's checks: a setting that could not work is refused at load, with
the key and the reason."""

from __future__ import annotations

from typing import Any

import pytest

from peercam.config import ConfigError, build_config

DIRECT = {"enabled": True, "call": ["sip:hall@10.0.0.5"]}


@pytest.mark.parametrize(
    ("sections", "why"),
    [
        ({"sip": {"enabled": True}}, "sip.call"),
        ({"sip": {"enabled": True, "call": ["hall"]}}, "needs sip.registrar"),
        ({"sip": {"enabled": True, "registrar": "pbx", "call": ["hall"]}}, "sip.user"),
        ({"sip": {"door_code": "12x"}}, "door_code"),
        (
            {
                "sip": {"enabled": True, "call": ["sip:hall@10.0.0.5"]},
                "talkback": {"enabled": False},
            },
            "needs talkback.enabled",
        ),
    ],
)
def test_settings_that_could_not_work_are_refused(sections: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        build_config(sections)


def test_a_pbx_extension_and_a_direct_uri_are_accepted() -> None:
    config = build_config(
        {"sip": {"enabled": True, "registrar": "fritz.box", "user": "620", "call": ["**610"]}}
    )
    assert config.sip.call == ["**610"] and config.sip.ring_mode == "parallel"
    direct = build_config({"sip": DIRECT})
    assert direct.sip.registrar == "" and direct.sip.codecs[0] == "g722"

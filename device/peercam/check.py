"""`peercam check`: what this board has and what peercam would do with it."""

from __future__ import annotations

import glob
import json
import platform
from pathlib import Path
from typing import Any

from peercam.auth.setup_code import SetupCode, shown
from peercam.auth.store import CredentialError, open_store
from peercam.capture.picamera2_camera import hardware_h264_available, import_picamera2
from peercam.capture.selection import choose_camera, is_usb_camera
from peercam.capture.v4l2_devices import capture_devices
from peercam.config import Config, ConfigError
from peercam.echo.canceller import probe as probe_echo_canceller
from peercam.encode.probe import VIDEO_IMPLEMENTATIONS, probe_opus, probe_video
from peercam.service.board_model import board_model as read_board_model
from peercam.service.state_dir import state_directory


def board_model() -> str:
    return read_board_model() or f"not a Raspberry Pi ({platform.machine()}, {platform.system()})"


def _picamera2_report() -> dict[str, Any]:
    module = import_picamera2()
    if module is None:
        return {
            "available": False,
            "reason": "picamera2 cannot be imported (needs Raspberry Pi OS)",
        }
    cameras = []
    for position, info in enumerate(module.Picamera2.global_camera_info()):
        entry = {key: info.get(key) for key in ("Num", "Model", "Id", "Location", "Rotation")}
        entry["usb"] = is_usb_camera(info)
        try:
            # Picamera2(n) takes the position in this list, not "Num".
            camera = module.Picamera2(position)
            try:
                # A USB camera's modes name only a format (picamera2.py:601-604).
                entry["modes"] = [
                    {
                        "size": list(m["size"]) if "size" in m else None,
                        "fps": m.get("fps"),
                        "format": str(m.get("format")),
                    }
                    for m in camera.sensor_modes
                ]
            finally:
                camera.close()
        except Exception as error:  # a camera in use elsewhere must not end the report
            entry["modes_error"] = str(error)
        cameras.append(entry)
    return {
        "available": True,
        "hardware_h264": hardware_h264_available(module),
        "cameras": cameras,
    }


def _alsa_report() -> dict[str, Any]:
    cards = Path("/proc/asound/cards")
    pcms = Path("/proc/asound/pcm")
    return {
        "cards": [line.strip() for line in cards.read_text().splitlines() if line.strip()]
        if cards.exists()
        else [],
        "pcm": [line.strip() for line in pcms.read_text().splitlines()] if pcms.exists() else [],
    }


def _echo_report(config: Config) -> dict[str, Any]:
    works, detail = probe_echo_canceller(config.audio.rate, config.audio.channels)
    return {
        "configured": config.talkback.echo_cancellation,
        "works": works,
        "detail": detail,
        "half_duplex": config.talkback.half_duplex,
    }


def _gpio_report() -> list[dict[str, str]]:
    chips = []
    for chip in sorted(glob.glob("/dev/gpiochip*")):
        label_file = Path("/sys/bus/gpio/devices") / Path(chip).name / "label"
        label = label_file.read_text().strip() if label_file.exists() else ""
        chips.append({"device": chip, "label": label})
    return chips


def hardware_report(config: Config) -> dict[str, Any]:
    width, height = config.camera.dimensions
    encoders = [probe_video(name, width, height) for name in VIDEO_IMPLEMENTATIONS]
    encoders.append(probe_opus())
    try:
        choice = choose_camera(config)
        auto: dict[str, str | None] = {"source": choice.source, "path": choice.description}
    except ConfigError as error:
        auto = {"source": None, "path": f"error: {error}"}
    h264 = next((e for e in encoders if e.implementation == "h264_v4l2m2m" and e.works), None)
    return {
        "board": board_model(),
        "cameras": {
            "picamera2": _picamera2_report(),
            "v4l2": [
                {
                    "device": d.path,
                    "card": d.card,
                    "driver": d.driver,
                    "formats": d.formats,
                    "modes": [
                        {"format": m.format, "size": [m.width, m.height], "fps": list(m.fps)}
                        for m in d.modes
                    ],
                }
                for d in capture_devices()
            ],
        },
        "encoders": [
            {"name": e.implementation, "codec": e.codec, "works": e.works, "detail": e.detail}
            for e in encoders
        ],
        "software_h264": "h264_v4l2m2m (hardware)" if h264 else "libx264",
        "audio": _alsa_report(),
        "echo_cancellation": _echo_report(config),
        "gpio": _gpio_report(),
        "camera_choice": auto,
        "admin": _admin_report(config),
    }


def _admin_report(config: Config) -> dict[str, Any]:
    """Whether the camera has an admin, and if not the code that lets the first
    visitor of its page become one."""
    state_dir = state_directory(config.server.state_dir)
    try:
        has_admin = open_store(state_dir).has_admin()
    except CredentialError as error:
        return {"set": None, "detail": str(error)}
    if has_admin:
        return {"set": True, "detail": "set"}
    code = SetupCode(state_dir).current()
    if code is None:
        return {"set": False, "detail": "none yet; start the daemon for a setup code"}
    return {
        "set": False,
        "setup_code": shown(code),
        "detail": f"none yet: setup code {shown(code)}",
    }


def _mode_text(mode: dict[str, Any]) -> str:
    text = str(mode.get("format"))
    if mode.get("size"):
        text = f"{mode['size'][0]}x{mode['size'][1]}"
        if mode.get("fps") is not None:
            text += f"@{mode['fps']:.0f}"
    return text


def format_report(report: dict[str, Any]) -> str:
    admin = report["admin"]
    lines = [f"board:    {report['board']}"]
    if admin["set"] is False and "setup_code" in admin:
        lines.append(
            f"admin:    none yet: open the camera's page and enter the setup code "
            f"{admin['setup_code']}"
        )
    else:
        lines.append(f"admin:    {admin['detail']}")
    lines.append("cameras:")
    pi = report["cameras"]["picamera2"]
    if not pi["available"]:
        lines.append(f"  picamera2: {pi['reason']}")
    else:
        hw = "with" if pi["hardware_h264"] else "WITHOUT (Pi 5: libx264 instead)"
        lines.append(f"  picamera2: {len(pi['cameras'])} camera(s), {hw} hardware H.264")
        for position, camera in enumerate(pi["cameras"]):
            modes = ", ".join(_mode_text(m) for m in camera.get("modes", []))
            if "modes_error" in camera:
                modes = f"cannot open: {camera['modes_error']}"
            usb = " (USB: served through V4L2)" if camera.get("usb") else ""
            lines.append(f"    #{position} {camera.get('Model', '?')}{usb}: {modes}")
    if not report["cameras"]["v4l2"]:
        lines.append("  v4l2: no capture devices")
    for device in report["cameras"]["v4l2"]:
        lines.append(
            f"  v4l2: {device['device']} {device['card']} ({', '.join(device['formats'])})"
        )
    lines.append("encoders:")
    for encoder in report["encoders"]:
        state = "works" if encoder["works"] else "no"
        lines.append(
            f"  {encoder['name']:<14} {encoder['codec']:<5} {state:<6} {encoder['detail']}"
        )
    cards = report["audio"]["cards"]
    # /proc/asound/cards gives each card a numbered line and a description line.
    count = sum(1 for line in cards if line[:1].isdigit())
    lines.append(f"audio:    {count} ALSA card(s)")
    lines.extend(f"  {line}" for line in cards)
    echo = report["echo_cancellation"]
    if not echo["configured"]:
        echo_text = "off (talkback.echo_cancellation)"
    else:
        echo_text = ("on: " if echo["works"] else "CANNOT RUN: ") + echo["detail"]
    if echo["half_duplex"]:
        echo_text += "; half duplex"
    lines.append(f"echo:     {echo_text}")
    gpio = report["gpio"]
    lines.append(
        "gpio:     " + (", ".join(f"{c['device']} {c['label']}" for c in gpio) or "no GPIO chip")
    )
    choice = report["camera_choice"]
    lines.append(f"auto:     {choice['path']}")
    lines.append(f"software H.264: {report['software_h264']}")
    return "\n".join(lines)


def run_check(config: Config, as_json: bool) -> int:
    report = hardware_report(config)
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0

"""Config validation and the command line: one-line errors, exit 2, flags win."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peercam.config import ConfigError, load_config
from tests.conftest import StartDaemon


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peercam", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[camera]\nfsp = 30\n", "unknown key camera.fsp"),
        ("[cameras]\nfps = 30\n", "unknown key cameras"),
        ("[camera]\nfps = 0\n", "camera.fps:"),
        ("[camera]\nsize = 'big'\n", "camera.size: expected WIDTHxHEIGHT"),
        ("[camera]\nsource = 'webcam9'\n", "camera.source:"),
        ("[server]\nport = 70000\n", "server.port:"),
        ("[video]\ncodecs = []\n", "video.codecs: at least one codec"),
        ("[[webrtc.ice_servers]]\nurls = ['http://x']\n", "webrtc.ice_servers.0.urls"),
        ("[camera\n", "is not valid TOML"),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "peercam.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_bad_flag_values_exit_2() -> None:
    for args in (["--size", "12x"], ["--fps", "many"], ["--source", "dslr"]):
        result = run_cli("run", *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "peercam.toml"
    path.write_text("[camera]\nsize = '1280x720'\nfps = 30\n[server]\nport = 9000\n")
    config = load_config(path, {"camera": {"size": "640x480"}, "server": {"port": 9100}})
    assert config.camera.dimensions == (640, 480)
    assert config.camera.fps == 30
    assert config.server.port == 9100


def test_defaults_are_720p30_on_auto() -> None:
    config = load_config(None)
    assert config.camera.dimensions == (1280, 720)
    assert config.camera.fps == 30
    assert config.camera.source == "auto"
    assert config.webrtc.ice_servers == []


async def test_size_and_fps_flags_reach_the_stream(start_daemon: StartDaemon) -> None:
    from tests.whep_viewer import WhepViewer

    daemon = start_daemon("", "--size", "320x240", "--fps", "15", "--source", "test")
    async with WhepViewer(daemon.access) as viewer:
        frames = await viewer.video_frames(20)
        assert (frames[-1].width, frames[-1].height) == (320, 240)
    fps = daemon.metric("peercam_encoder_fps", codec="h264")
    assert 10 <= fps <= 17, fps


def test_port_in_use_is_a_clear_error(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    result = run_cli("run", "--host", "127.0.0.1", "--port", str(daemon.port))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr

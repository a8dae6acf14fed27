"""The process ends by _exit() once livekit's native runtime is loaded (its worker
threads can abort a normal exit): what was printed and logged still comes out, and
the exit status is the command's."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from peercam.echo.canceller import probe
    from peercam.service.process_exit import end_process

    logging.basicConfig(stream=sys.stderr, format="%(message)s")
    works, detail = probe(48000, 1)
    sys.stdout.write("canceller: " + detail + "\\n")  # buffered: a pipe, no newline flush
    logging.getLogger("t").warning("logged before the end")
    end_process(int(sys.argv[1]))
    print("never reached")
    """
)


@pytest.mark.parametrize("code", [0, 3])
def test_output_and_status_survive_the_hard_exit(code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    assert done.stdout.startswith("canceller: WebRTC AEC3"), done.stdout
    assert "never reached" not in done.stdout
    assert "logged before the end" in done.stderr


def test_the_peercam_command_ends_through_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "peercam", "check", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"echo_cancellation"' in done.stdout

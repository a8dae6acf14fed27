"""Compile peercam's environment to bytecode on this machine, natively.

The service runs with a read-only /opt (ProtectSystem=strict), so Python could never
cache bytecode there itself: without this, a Pi Zero 2 would compile aiortc, aiohttp
and the rest from source at every start. Compiling inside the image would run under
emulation; CPython 3.11's bytecode is the same on every machine, so it is done here,
with the paths the camera will see."""

from __future__ import annotations

import compileall
import sys
from pathlib import Path


def main() -> None:
    root, tree = Path(sys.argv[1]), sys.argv[2]
    if sys.version_info[:2] != (3, 11):
        sys.exit("compile_bytecode: needs Python 3.11, as on the image (Debian bookworm)")
    ok = compileall.compile_dir(
        root / tree.lstrip("/"), quiet=1, workers=0, stripdir=str(root), prependdir="/"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

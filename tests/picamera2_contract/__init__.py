"""The real picamera2 in this process, with only what needs a Raspberry Pi faked.

picamera2 (0.3.38, the `picamera2-contract` extra) is pure Python, but importing it
imports two C++ bindings that only Raspberry Pi OS has: `libcamera` (the camera) and
`pykms` (kms++, for its DRM preview window). `load` puts the fakes beside it in
sys.modules (libcamera/ and pykms.py here), imports the installed package, and points
its DMA-heap allocator at a memfd-backed heap (dma_heap.py). `unload` takes every
module of theirs out of sys.modules again, so later `import picamera2` fails as on any
machine without libcamera.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from tests.picamera2_contract import pykms
from tests.picamera2_contract.dma_heap import FakeDmaHeap
from tests.picamera2_contract.libcamera import _libcamera

PICAMERA2_VERSION = "0.3.38"
OWNED = ("picamera2", "libcamera", "pykms", "kms")


def _owned(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in OWNED)


def saved_modules() -> dict[str, ModuleType]:
    return {name: module for name, module in sys.modules.items() if _owned(name)}


def load(
    platform: str,
    cameras: Sequence[_libcamera.CameraSpec],
    heap_directory: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[ModuleType, FakeDmaHeap]:
    """The real picamera2 package as on a Pi of this platform ("VC4": Pi 4 and older,
    "PISP": Pi 5), with these cameras attached in this (libcamera's) order."""
    installed = importlib.metadata.version("picamera2")
    assert installed == PICAMERA2_VERSION, f"picamera2 {installed} is installed"
    for name in list(sys.modules):
        if _owned(name):
            del sys.modules[name]
    _libcamera.attach(cameras)
    fake_libcamera = importlib.import_module("tests.picamera2_contract.libcamera")
    sys.modules["libcamera"] = fake_libcamera
    sys.modules["libcamera._libcamera"] = _libcamera
    sys.modules["pykms"] = pykms
    # drm_preview.py:9-14 tries the pure-Python `kms` first; make sure it finds none.
    sys.modules["kms"] = None  # type: ignore[assignment]
    _preset_platform(platform)
    picamera2 = importlib.import_module("picamera2")
    heap = FakeDmaHeap(heap_directory, sys.modules["picamera2.dma_heap"])
    heap.install(
        monkeypatch,
        sys.modules["picamera2.dma_heap"],
        sys.modules["picamera2.allocators.dmaallocator"],
    )
    return picamera2, heap


def _preset_platform(platform: str) -> None:
    """picamera2 decides VC4 or PISP once, at import, by looking for the Pi 5's ISP
    among /dev/video* (platform.py:13-28), and everything imported after it follows
    that module's `_platform`: Picamera2.platform (picamera2.py:161) and which class
    `encoders.H264Encoder` is (encoders/__init__.py:13-18). Here no ISP is found, so
    it says VC4; for a Pi 5 the module is run first and its answer set to PISP before
    the rest of the package imports it."""
    spec = importlib.util.find_spec("picamera2")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "platform.py"
    platform_spec = importlib.util.spec_from_file_location("picamera2.platform", path)
    assert platform_spec is not None and platform_spec.loader is not None
    module = importlib.util.module_from_spec(platform_spec)
    platform_spec.loader.exec_module(module)
    module._platform = module.Platform[platform]  # type: ignore[attr-defined]
    sys.modules["picamera2.platform"] = module


def unload(saved: dict[str, ModuleType]) -> None:
    """Close every camera the real picamera2 still holds, stop the fake libcamera,
    and give sys.modules back its picamera2/libcamera entries from before `load`."""
    module = sys.modules.get("picamera2.picamera2")
    try:
        if module is not None:
            for camera in list(module.Picamera2._cm.cameras.values()):
                camera.close()
    finally:
        _libcamera.reset()
        for name in list(sys.modules):
            if _owned(name):
                del sys.modules[name]
        sys.modules.update(saved)

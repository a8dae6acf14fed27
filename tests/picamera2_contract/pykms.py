"""A fake of kms++'s Python binding (pykms), the other C++ module the real picamera2
imports when it is imported: previews/__init__.py:1 loads drm_preview.py, which
imports pykms (lines 9-14) and names its pixel formats at class level (lines
162-173). Only that DRM preview window ever calls it, and peercam never opens one, so
the formats are all it has."""

from __future__ import annotations

from enum import Enum


class PixelFormat(Enum):
    RGB888 = "RG24"
    BGR888 = "BG24"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    ABGR8888 = "AB24"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"

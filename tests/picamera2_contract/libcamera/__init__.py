"""The fake libcamera binding, laid out as the real package is: its __init__.py only
re-exports the C++ module (raspberrypi/libcamera src/py/libcamera/__init__.py)."""

from ._libcamera import *  # noqa: F403
from ._libcamera import __all__ as __all__

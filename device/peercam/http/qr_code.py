"""QR codes for a phone to scan (pairing for remote access, the camera's address).

Drawn with segno rather than qrcode (both on PyPI, pure Python, py3-none-any wheels,
released in 2025): segno has no dependencies and writes SVG itself, while qrcode's
PNG output needs Pillow or pypng; segno ships type hints (py.typed), qrcode none, so
mypy --strict needs no exception; the price is size, a 76 kB wheel (300 kB
installed) against qrcode's 46 kB.
"""

from __future__ import annotations

import io

import segno


def qr_svg(text: str) -> str:
    """A standalone SVG (with its namespace, so it works as an <img> source), black
    on white with the standard 4-module quiet zone, scaled by its viewBox."""
    buffer = io.BytesIO()
    segno.make(text, error="m").save(
        buffer,
        kind="svg",
        xmldecl=False,
        omitsize=True,
        border=4,
        dark="#000",
        light="#fff",
        svgclass=None,
        lineclass=None,
        nl=False,
    )
    return buffer.getvalue().decode()

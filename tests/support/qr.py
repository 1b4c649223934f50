"""Decode a QR code served as segno's inline SVG: rasterize its one path, then read it with zxing-cpp."""
from __future__ import annotations

import re

import zxingcpp

SCALE = 4  # pixels per module in the raster handed to the decoder


def modules(svg: str) -> tuple[set[tuple[int, int]], int]:
    """The dark modules (x, y) of segno's path ("M x y", "h n", "m dx dy") and the symbol's width in modules."""
    path = re.search(r'<path[^>]*\sd="([^"]+)"', svg)
    assert path, "no QR path in the SVG"
    box = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    scale = re.search(r'<path[^>]*transform="scale\((\d+)\)"', svg)
    size = int(box.group(1)) // (int(scale.group(1)) if scale else 1) if box else 0
    x = y = 0.0
    dark: set[tuple[int, int]] = set()
    for cmd, args in re.findall(r"([MmHhVv])([-0-9. ]+)", path.group(1).replace(",", " ")):
        nums = [float(n) for n in args.split()]
        if cmd == "M":
            x, y = nums[0], nums[1]
        elif cmd == "m":
            x, y = x + nums[0], y + nums[1]
        elif cmd in "hH":
            end = x + nums[0] if cmd == "h" else nums[0]
            for col in range(int(round(x)), int(round(end))):
                dark.add((col, int(y)))
            x = end
    width = size or (max(c for c, _ in dark) + 5)
    return dark, width


def decode_svg(svg: str) -> str:
    """The text of the QR code drawn by the SVG."""
    dark, width = modules(svg)
    px = width * SCALE
    raster = bytearray(b"\xff" * (px * px))
    for col, row in dark:
        for dy in range(SCALE):
            start = (row * SCALE + dy) * px + col * SCALE
            raster[start:start + SCALE] = b"\x00" * SCALE
    found = zxingcpp.read_barcodes(memoryview(bytes(raster)).cast("B", (px, px)), formats=zxingcpp.BarcodeFormat.QRCode)
    assert found, "zxing-cpp found no QR code"
    return str(found[0].text)

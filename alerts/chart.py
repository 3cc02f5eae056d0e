"""Draw an alert's recent history as a small PNG line chart that email clients show inline.

Pure and dependency-free (zlib + struct): email clients do not run scripts, most drop SVG, and a
text sparkline has no scale. The picture is drawn at `width` x `height` pixels; the numbers it
spans (min, max, the threshold) are printed beside it by the template, not inside it.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from itertools import pairwise

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
GRID: RGB = (229, 231, 235)
THRESHOLD: RGB = (75, 85, 99)
_PAD = 6


def line_chart_png(
    values: Sequence[float | None],
    *,
    colour: RGB,
    threshold: float | None = None,
    width: int = 560,
    height: int = 96,
) -> bytes:
    """A PNG of `values` (oldest first; None/NaN is a gap) scaled between their min and max.

    A threshold inside that range is drawn as a dashed line. Raises ValueError when no value is
    finite or the size is too small to draw.
    """
    if width < 4 * _PAD or height < 4 * _PAD:
        raise ValueError("chart size too small")
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        raise ValueError("nothing to draw: no finite value")
    lo, hi = min(finite), max(finite)
    span = hi - lo
    pixels = bytearray(bytes(WHITE) * (width * height))

    def y_of(value: float) -> int:
        if span == 0:
            return height // 2
        return round(_PAD + (hi - value) / span * (height - 1 - 2 * _PAD))

    def x_of(index: int) -> int:
        if len(values) == 1:
            return width // 2
        return round(_PAD + index / (len(values) - 1) * (width - 1 - 2 * _PAD))

    def put(x: int, y: int, rgb: bytes) -> None:
        if 0 <= x < width and 0 <= y < height:
            at = 3 * (y * width + x)
            pixels[at : at + 3] = rgb

    line, grid, dash = bytes(colour), bytes(GRID), bytes(THRESHOLD)
    for y in (_PAD, height - 1 - _PAD):  # the max and min lines the labels refer to
        pixels[3 * y * width : 3 * (y + 1) * width] = grid * width
    if threshold is not None and math.isfinite(threshold) and lo <= threshold <= hi:
        ty = y_of(threshold)
        for x in range(width):
            if (x // 6) % 2 == 0:
                put(x, ty, dash)
    fill = bytes(_blend(colour, WHITE, 0.18))
    points = [
        (x_of(i), y_of(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v)
    ]
    runs: list[list[tuple[int, int]]] = [[]]
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x_of(i), y_of(v)))
    runs = [run for run in runs if run]
    for run in runs:  # a light area under each unbroken stretch
        for (x0, y0), (x1, y1) in pairwise(run):
            for x in range(x0, x1 + 1):
                t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
                top = round(y0 + t * (y1 - y0))
                for y in range(max(top, 0), height - _PAD):
                    at = 3 * (y * width + x)
                    pixels[at : at + 3] = fill
    for run in runs:
        if len(run) == 1:
            (x, y) = run[0]
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    put(x + dx, y + dy, line)
        for (x0, y0), (x1, y1) in pairwise(run):
            for x in range(x0, x1 + 1):
                ta = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
                tb = 1.0 if x1 == x0 else min(1.0, (x + 1 - x0) / (x1 - x0))
                ya, yb = y0 + ta * (y1 - y0), y0 + tb * (y1 - y0)
                for y in range(round(min(ya, yb)) - 1, round(max(ya, yb)) + 2):
                    put(x, y, line)
    if points:  # the newest value, marked
        x, y = points[-1]
        for dx in range(-3, 4):
            for dy in range(-3, 4):
                if dx * dx + dy * dy <= 9:
                    put(x + dx, y + dy, line)
    return _png(width, height, pixels)


def _blend(a: RGB, b: RGB, share_of_a: float) -> RGB:
    return (
        round(a[0] * share_of_a + b[0] * (1 - share_of_a)),
        round(a[1] * share_of_a + b[1] * (1 - share_of_a)),
        round(a[2] * share_of_a + b[2] * (1 - share_of_a)),
    )


def _png(width: int, height: int, rgb: bytes | bytearray) -> bytes:
    stride = 3 * width
    raw = b"".join(b"\x00" + bytes(rgb[y * stride : (y + 1) * stride]) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )

"""The widget's logos and tour pictures, drawn at build time with the standard library alone.

Why drawn and not committed: Kommo wants five logos of exact sizes plus tour pictures; keeping them as
code means no binary in git, every size comes from one drawing (change a colour once, every image
follows), and the build is reproducible byte for byte (same input, same PNG, same archive).

The mark: two speech bubbles (a client's and a manager's) joined by an arch bridge. The tour pictures
carry no text on purpose: the marketplace wants any text in an image in the listing's language, and
the tour's words live in the i18n files (`widget.tour_description`), so one set serves en, es and pt.

Drawing: each shape is a signed distance function; a pixel's coverage is how far inside the edge its
centre lies (`0.5 - distance`, clamped to 0..1), which anti-aliases every edge without supersampling.
PNG: 8-bit RGB, one IDAT chunk, filter 0 per row, zlib level 9 (flat areas compress to almost nothing).
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

Color = tuple[int, int, int]
Distance = Callable[[float, float], float]

# The product's colours.
INK: Color = (0x1E, 0x2B, 0x4F)  # the bridge, headings
BLUE: Color = (0x2F, 0x6B, 0xFF)  # the client's bubble, primary actions
TEAL: Color = (0x14, 0xB8, 0xA6)  # the manager's bubble
VIOLET: Color = (0x7C, 0x5C, 0xF5)  # a third channel in the tour
WHITE: Color = (0xFF, 0xFF, 0xFF)
PAPER: Color = (0xF6, 0xF8, 0xFC)  # logo background
MIST: Color = (0xE6, 0xEC, 0xF7)  # tour background, bottom of the gradient
LINE: Color = (0xD5, 0xDD, 0xEC)  # placeholder text lines, borders
SOFT: Color = (0xEE, 0xF2, 0xF9)  # incoming message bubbles, panels

LOGO_SIZES: dict[str, tuple[int, int]] = {
    "logo.png": (130, 100),
    "logo_main.png": (400, 272),
    "logo_small.png": (108, 108),
    "logo_medium.png": (240, 84),
    "logo_min.png": (84, 84),
}
TOUR_SIZE = (1188, 616)
TOUR_IMAGES = ("tour_1.png", "tour_2.png", "tour_3.png")


class Canvas:
    """An RGB image that shapes are painted onto, then written as PNG."""

    def __init__(self, width: int, height: int, top: Color, bottom: Color | None = None) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(width * height * 3)
        bottom = bottom or top
        for y in range(height):
            t = y / (height - 1) if height > 1 else 0.0
            row = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)) * width
            self.pixels[y * width * 3 : (y + 1) * width * 3] = row

    def paint(
        self,
        box: tuple[float, float, float, float],
        distance: Distance,
        color: Color,
        opacity: float = 1.0,
        softness: float = 1.0,
    ) -> None:
        """Blend `color` wherever `distance` (pixels, negative inside) says the shape is, within `box`."""
        x0 = max(0, math.floor(box[0] - softness))
        y0 = max(0, math.floor(box[1] - softness))
        x1 = min(self.width, math.ceil(box[2] + softness) + 1)
        y1 = min(self.height, math.ceil(box[3] + softness) + 1)
        red, green, blue = color
        solid = bytes(color)
        pixels = self.pixels
        for y in range(y0, y1):
            py = y + 0.5
            base = y * self.width * 3
            for x in range(x0, x1):
                coverage = 0.5 - distance(x + 0.5, py) / softness
                if coverage <= 0.0:
                    continue
                alpha = opacity if coverage >= 1.0 else coverage * opacity
                i = base + 3 * x
                if alpha >= 1.0:
                    pixels[i : i + 3] = solid
                else:
                    pixels[i] = round(pixels[i] + (red - pixels[i]) * alpha)
                    pixels[i + 1] = round(pixels[i + 1] + (green - pixels[i + 1]) * alpha)
                    pixels[i + 2] = round(pixels[i + 2] + (blue - pixels[i + 2]) * alpha)

    # Shapes ------------------------------------------------------------------------------------

    def round_rect(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        radius: float,
        color: Color,
        opacity: float = 1.0,
        softness: float = 1.0,
    ) -> None:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hw, hh = (x1 - x0) / 2, (y1 - y0) / 2
        radius = min(radius, hw, hh)

        def distance(px: float, py: float) -> float:
            qx = abs(px - cx) - (hw - radius)
            qy = abs(py - cy) - (hh - radius)
            outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
            return outside + min(max(qx, qy), 0.0) - radius

        self.paint((x0, y0, x1, y1), distance, color, opacity, softness)

    def circle(self, cx: float, cy: float, r: float, color: Color, opacity: float = 1.0) -> None:
        self.paint((cx - r, cy - r, cx + r, cy + r), lambda px, py: math.hypot(px - cx, py - cy) - r, color, opacity)

    def capsule(self, ax: float, ay: float, bx: float, by: float, r: float, color: Color) -> None:
        """A line from a to b, `2r` thick, with round ends."""
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy or 1e-9

        def distance(px: float, py: float) -> float:
            t = min(1.0, max(0.0, ((px - ax) * dx + (py - ay) * dy) / length2))
            return math.hypot(px - ax - t * dx, py - ay - t * dy) - r

        box = (min(ax, bx) - r, min(ay, by) - r, max(ax, bx) + r, max(ay, by) + r)
        self.paint(box, distance, color)

    def arch(self, cx: float, cy: float, radius: float, thickness: float, color: Color) -> None:
        """The upper half of a circle, `thickness` wide, with round ends."""
        half = thickness / 2

        def distance(px: float, py: float) -> float:
            if py <= cy:
                return abs(math.hypot(px - cx, py - cy) - radius) - half
            return min(math.hypot(px - cx + radius, py - cy), math.hypot(px - cx - radius, py - cy)) - half

        box = (cx - radius - half, cy - radius - half, cx + radius + half, cy + half)
        self.paint(box, distance, color)

    def triangle(self, points: tuple[tuple[float, float], ...], color: Color) -> None:
        """A convex polygon (points in either winding)."""
        area = sum(ax * by - bx * ay for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1], strict=True))
        sign = 1.0 if area > 0 else -1.0
        edges = []
        for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1], strict=True):
            length = math.hypot(bx - ax, by - ay)
            # outward normal for either winding
            edges.append((ax, ay, sign * (by - ay) / length, -sign * (bx - ax) / length))

        def distance(px: float, py: float) -> float:
            return max((px - ax) * nx + (py - ay) * ny for ax, ay, nx, ny in edges)

        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        self.paint((min(xs), min(ys), max(xs), max(ys)), distance, color)

    # Output ------------------------------------------------------------------------------------

    def png(self) -> bytes:
        stride = self.width * 3
        raw = b"".join(b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND")


def _chunk(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# The mark ----------------------------------------------------------------------------------------

MARK_BOX = (0.03, 0.235, 0.97, 0.705)
"""Where the mark's ink lies, in units of its width."""


@dataclass(frozen=True)
class Place:
    """Maps the mark's unit coordinates (x 0..1 across) onto a canvas."""

    left: float
    top: float
    size: float

    def x(self, u: float) -> float:
        return self.left + u * self.size

    def y(self, u: float) -> float:
        return self.top + u * self.size

    def d(self, u: float) -> float:
        return u * self.size


def fit_mark(width: float, height: float, *, x0: float = 0.0, y0: float = 0.0, fill: float = 0.86) -> Place:
    """The largest placement of the mark that fills `fill` of the box and is centred in it."""
    box_w, box_h = MARK_BOX[2] - MARK_BOX[0], MARK_BOX[3] - MARK_BOX[1]
    size = min(width * fill / box_w, height * fill / box_h)
    left = x0 + (width - box_w * size) / 2 - MARK_BOX[0] * size
    top = y0 + (height - box_h * size) / 2 - MARK_BOX[1] * size
    return Place(left, top, size)


def draw_mark(canvas: Canvas, at: Place) -> None:
    """Two speech bubbles, the client's (blue, typing) and the manager's (teal, a reply), joined by an
    arch bridge with its deck and hangers."""
    x, y, d = at.x, at.y, at.d
    deck = 0.56
    for u in (0.41, 0.5, 0.59):  # hangers from the arch down to the deck
        top = 0.56 - math.sqrt(0.30**2 - (u - 0.5) ** 2)
        canvas.capsule(x(u), y(top), x(u), y(deck), d(0.0085), INK)
    canvas.arch(x(0.5), y(0.56), d(0.30), d(0.055), INK)
    canvas.capsule(x(0.3), y(deck), x(0.7), y(deck), d(0.016), INK)
    # the client's bubble, tail bottom-left, three typing dots
    canvas.triangle(((x(0.06), y(0.57)), (x(0.17), y(0.57)), (x(0.045), y(0.705))), BLUE)
    canvas.round_rect(x(0.03), y(0.38), x(0.37), y(0.62), d(0.075), BLUE)
    for u in (0.13, 0.2, 0.27):
        canvas.circle(x(u), y(0.5), d(0.022), WHITE)
    # the manager's bubble, tail bottom-right, two lines of reply
    canvas.triangle(((x(0.94), y(0.57)), (x(0.83), y(0.57)), (x(0.955), y(0.705))), TEAL)
    canvas.round_rect(x(0.63), y(0.38), x(0.97), y(0.62), d(0.075), TEAL)
    canvas.capsule(x(0.7), y(0.465), x(0.9), y(0.465), d(0.017), WHITE)
    canvas.capsule(x(0.7), y(0.535), x(0.83), y(0.535), d(0.017), WHITE)


def logo(width: int, height: int) -> bytes:
    canvas = Canvas(width, height, PAPER)
    draw_mark(canvas, fit_mark(width, height))
    return canvas.png()


# The tour ----------------------------------------------------------------------------------------


def _card(canvas: Canvas, x0: float, y0: float, x1: float, y1: float, radius: float = 18) -> None:
    """A white card with a soft shadow."""
    canvas.round_rect(x0, y0 + 10, x1, y1 + 10, radius + 8, INK, opacity=0.10, softness=28)
    canvas.round_rect(x0, y0, x1, y1, radius, WHITE)


def _bubble(canvas: Canvas, x0: float, y0: float, x1: float, y1: float, color: Color, lines: Color) -> None:
    canvas.round_rect(x0, y0, x1, y1, (y1 - y0) / 2, color)
    mid = (y0 + y1) / 2
    canvas.capsule(x0 + 22, mid, x1 - 22 - (x1 - x0) * 0.25, mid, 5, lines)


def tour_bridge() -> bytes:
    """1: the mark, large."""
    width, height = TOUR_SIZE
    canvas = Canvas(width, height, PAPER, MIST)
    draw_mark(canvas, fit_mark(width, height, fill=0.72))
    return canvas.png()


def tour_flow() -> bytes:
    """2: messenger channels on the left, over the bridge, into a CRM chat on the right."""
    width, height = TOUR_SIZE
    canvas = Canvas(width, height, PAPER, MIST)
    # three channels, each a bubble with a tail
    for i, color in enumerate((BLUE, TEAL, VIOLET)):
        top = 150 + i * 120
        canvas.triangle(((120, top + 60), (160, top + 60), (108, top + 92)), color)
        canvas.round_rect(100, top, 330, top + 76, 30, color)
        for k in range(3):
            canvas.circle(165 + k * 50, top + 38, 9, WHITE)
    # the bridge from the channels to the CRM
    canvas.arch(495, 340, 125, 22, INK)
    canvas.capsule(356, 340, 634, 340, 7, INK)
    for u in (455, 495, 535):
        canvas.capsule(u, 340 - math.sqrt(125**2 - (u - 495) ** 2), u, 340, 3.5, INK)
    # the CRM chat: header, incoming (soft) and outgoing (blue) messages
    _card(canvas, 660, 110, 1090, 510)
    canvas.round_rect(660, 110, 1090, 176, 18, INK)
    canvas.round_rect(660, 150, 1090, 176, 0, INK)
    canvas.circle(702, 143, 17, TEAL)
    canvas.capsule(734, 143, 860, 143, 6, (0x9A, 0xA6, 0xC4))
    _bubble(canvas, 690, 206, 930, 254, SOFT, LINE)
    _bubble(canvas, 850, 274, 1060, 322, BLUE, (0x9C, 0xBA, 0xFF))
    _bubble(canvas, 690, 342, 960, 390, SOFT, LINE)
    _bubble(canvas, 820, 410, 1060, 458, BLUE, (0x9C, 0xBA, 0xFF))
    return canvas.png()


def tour_settings() -> bytes:
    """3: the settings window: channels on the left, a channel's settings and switches on the right."""
    width, height = TOUR_SIZE
    canvas = Canvas(width, height, PAPER, MIST)
    _card(canvas, 170, 70, 1018, 546)
    # title bar with the mark
    draw_mark(canvas, fit_mark(96, 44, x0=196, y0=88, fill=1.0))
    canvas.capsule(316, 110, 470, 110, 7, LINE)
    canvas.capsule(170, 148, 1018, 148, 0.75, LINE)
    # channel list, the first one selected
    canvas.round_rect(190, 168, 430, 226, 12, SOFT)
    for i, color in enumerate((BLUE, TEAL, VIOLET)):
        cy = 197 + i * 72
        canvas.circle(222, cy, 14, color)
        canvas.capsule(250, cy, 250 + (150 - 30 * i), cy, 6, LINE)
    canvas.capsule(450, 168, 450, 526, 0.75, LINE)
    # form: two fields, two switches (one on), a primary button
    for i in range(2):
        top = 180 + i * 84
        canvas.capsule(480, top, 600, top, 6, LINE)
        canvas.round_rect(480, top + 18, 980, top + 60, 8, LINE)
        canvas.round_rect(482, top + 20, 978, top + 58, 7, WHITE)
        canvas.capsule(500, top + 39, 700 - 60 * i, top + 39, 5, SOFT)
    for i, on in enumerate((True, False)):
        cy = 372 + i * 52
        canvas.round_rect(480, cy - 14, 532, cy + 14, 14, TEAL if on else LINE)
        canvas.circle(518 if on else 494, cy, 10, WHITE)
        canvas.capsule(552, cy, 760 - 50 * i, cy, 6, LINE)
    canvas.round_rect(820, 476, 980, 522, 10, BLUE)
    canvas.capsule(860, 499, 940, 499, 6, WHITE)
    return canvas.png()


def images() -> dict[str, bytes]:
    """Every image of the archive, by file name (under `images/`)."""
    return dict(_drawn())


@functools.cache
def _drawn() -> tuple[tuple[str, bytes], ...]:
    """Drawn once per process: the pictures depend on nothing but this module."""
    drawn = {name: logo(width, height) for name, (width, height) in LOGO_SIZES.items()}
    drawn.update(zip(TOUR_IMAGES, (tour_bridge(), tour_flow(), tour_settings()), strict=True))
    return tuple(drawn.items())

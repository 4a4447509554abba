"""Generated PDF fixtures for the reader tests and the PDF benchmark (fpdf2, no files committed).

`write_slide_deck(path, slides)` lays each slide out as lecture slides are: a large title at the
top, bullet lines in a smaller font below, optionally a second column; a slide given as `None`
is a scanned page (a picture of text, no text layer). `password` encrypts the file. Fonts: the
PDF core Helvetica (Latin-1) unless `font` names a TrueType file (DejaVu, for Polish letters).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Slide:
    title: str
    lines: list[str]
    right: list[str] = field(default_factory=list)  # a second column, as on comparison slides


def _scan_image() -> bytes:
    """A PNG of a few dark bars: what a page of scanned text is to a PDF reader (no text layer)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (800, 600), 255)
    draw = ImageDraw.Draw(img)
    for y in range(60, 560, 40):
        draw.rectangle([60, y, 740 - (y % 7) * 30, y + 18], fill=20)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_slide_deck(path: Path, slides: list[Slide | None], password: str | None = None, font: str | None = None):
    from fpdf import FPDF

    pdf = FPDF(orientation="landscape", format="A4")
    pdf.set_auto_page_break(False)
    family = "Helvetica"
    if font:
        pdf.add_font("Deck", "", font)
        family = "Deck"
    scan = None
    for slide in slides:
        pdf.add_page()
        if slide is None:
            scan = scan or _scan_image()
            pdf.image(io.BytesIO(scan), x=20, y=20, w=257)
            continue
        pdf.set_font(family, size=28)
        pdf.set_xy(20, 18)
        pdf.cell(257, 14, slide.title)
        pdf.set_font(family, size=16)
        width = 125 if slide.right else 257
        for column, x in ((slide.lines, 20), (slide.right, 150)):
            y = 45
            for line in column:
                pdf.set_xy(x, y)
                pdf.multi_cell(width, 9, line)
                y = pdf.get_y() + 2
    if password:
        pdf.set_encryption(owner_password=password, user_password=password)
    pdf.output(str(path))
    return Path(path)

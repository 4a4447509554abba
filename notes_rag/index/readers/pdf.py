"""PDF slides and documents as text, page by page (pypdf).

pypdf was chosen over pdfplumber on a generated slide deck (docs/BENCHMARKS.md, "PDF text"): it
keeps each text box's lines together where pdfplumber interleaves a two-column slide line by
line, and it reads a page several times faster; its one flaw there, double spaces in justified
lines, is collapsed here. Each page with text becomes one section of the document:

    # The page's title line

    its other lines, one per line, in the order the PDF draws them

The title is the line set in the page's largest font, when that font is clearly larger than the
body's (slides); else the first line when it reads as a title (short, no closing punctuation);
else the page has no heading. Pages without a text layer (scanned) are left out and named; a PDF
with none at all, an encrypted one and an unreadable one raise `Unreadable`.
"""

from __future__ import annotations

import io
import logging
import math
import re
import statistics
import warnings

from notes_rag.index.readers import Document, Segment, Unreadable

# A title's font is at least this much larger than the body's (slide titles: 1.5-2x).
TITLE_SIZE_RATIO = 1.2
# Without a larger font, a first line of at most this many words can be the title; a title in
# a larger font may wrap onto this many lines, of twice as many words in all.
TITLE_MAX_WORDS = 10
TITLE_MAX_LINES = 3
_SPACES = re.compile(r"[ \t\u00a0]{2,}")
_NOT_TITLE_END = tuple(".,;:")
_BULLETS = tuple("•‣◦▪-–*·")


def _open(data: bytes):
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # files locked only against editing open
            raise Unreadable("encrypted PDF (needs a password)", "encrypted")
        n_pages = len(reader.pages)
    except Unreadable:
        raise
    except PdfReadError as e:
        raise Unreadable(f"corrupt PDF ({str(e).rstrip('.') or type(e).__name__})", "corrupt") from None
    except Exception as e:  # a damaged file can fail anywhere in the parser
        raise Unreadable(f"corrupt PDF ({type(e).__name__}: {e})", "corrupt") from None
    return reader, n_pages


def _page_lines(page) -> tuple[list[str], list[tuple[float, str]]]:
    """The page's text lines (spaces collapsed, blank ones dropped) and its text pieces with
    their font size as drawn (font size times the text and drawing matrices' vertical scale)."""
    sized: list[tuple[float, str]] = []

    def visit(text, cm, tm, font_dict, font_size):
        if text.strip():
            scale = math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3])
            sized.append((float(font_size) * (scale or 1.0), text))

    text = page.extract_text(visitor_text=visit) or ""
    lines = [_SPACES.sub(" ", ln).strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln], sized


def _title_index(lines: list[str], sized: list[tuple[float, str]]) -> tuple[int, int] | None:
    """Line range [first, last) of the page's title, or None."""
    if len(lines) < 2:
        return None
    sizes = [s for s, t in sized for _ in range(len(t.strip()))]  # weighted by characters
    top = max(sizes, default=0.0)
    body = [s for s in sizes if s < 0.95 * top]  # the rest of the page, however long the title
    if body and top >= TITLE_SIZE_RATIO * statistics.median(body):
        big = {w for s, t in sized if s >= 0.95 * top for w in t.split()}
        for i, line in enumerate(lines):
            if any(ch.isalpha() for ch in line) and all(w in big for w in line.split()):
                j = i + 1
                while j < len(lines) and all(w in big for w in lines[j].split()):
                    j += 1  # a long title wraps onto a second line
                if j - i <= TITLE_MAX_LINES and sum(len(ln.split()) for ln in lines[i:j]) <= 2 * TITLE_MAX_WORDS:
                    return i, j
                break  # the page's body in a font larger than a small footer's: no title by size
    first = lines[0]
    if (
        len(first.split()) <= TITLE_MAX_WORDS
        and any(ch.isalpha() for ch in first)  # a page number or a date is not a title
        and not first.endswith(_NOT_TITLE_END)
        and not first.startswith(_BULLETS)
    ):
        return 0, 1
    return None


def _body_line(line: str) -> str:
    # A line opening with "#" would become a markdown heading the page does not have.
    return "\\" + line if line.startswith("#") else line


def page_text(lines: list[str], sized: list[tuple[float, str]]) -> str:
    """One page as markdown: `# title` (when it has one), a blank line, the other lines."""
    span = _title_index(lines, sized)
    if span is None:
        return "\n".join(_body_line(ln) for ln in lines)
    title = " ".join(lines[span[0] : span[1]])
    body = [_body_line(ln) for k, ln in enumerate(lines) if not span[0] <= k < span[1]]
    return f"# {title}\n\n" + "\n".join(body) if body else f"# {title}"


def read_pdf(data: bytes) -> Document:
    """The PDF's pages with text as one markdown document, a `Segment` per page."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its warnings about damaged files become our one-line reasons
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read(data)
    finally:
        logger.setLevel(level)


def _read(data: bytes) -> Document:
    reader, n_pages = _open(data)
    parts: list[str] = []
    segments: list[Segment] = []
    blank: list[int] = []
    failed: list[int] = []
    line = 1
    for number in range(1, n_pages + 1):
        try:
            lines, sized = _page_lines(reader.pages[number - 1])
        except Exception:  # one damaged page; the others may still read
            failed.append(number)
            continue
        if not lines:
            blank.append(number)
            continue
        text = page_text(lines, sized)
        n_lines = text.count("\n") + 1
        segments.append(Segment(number, line, line + n_lines - 1))
        parts.append(text)
        line += n_lines + 1  # the blank line between pages
    if not segments:
        if failed:
            raise Unreadable(f"corrupt PDF (none of its {n_pages} pages could be read)", "corrupt")
        why = f"no text layer: 0 pages indexed (of {n_pages}; a scan? OCR it first)"
        raise Unreadable(why, "no text layer")
    notes = []
    if blank:
        notes.append(f"no text layer on {_pages(blank)} (left out)")
    if failed:
        notes.append(f"could not read {_pages(failed)} (left out)")
    return Document("\n\n".join(parts) + "\n", "page", tuple(segments), separate=True, notes=tuple(notes))


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(f"p{n}" for n in numbers[:8])
    return f"{shown}, ... ({len(numbers)} pages)" if len(numbers) > 8 else shown

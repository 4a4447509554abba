"""What a note file reads as: its text for the chunker and the places a citation names.

A reader turns a file's bytes into a `Document`: markdown text the chunker parses like any note,
plus, for files that are not read by line, the `Segment`s of that text (a PDF's pages, a
notebook's cells) that citations name instead of lines (`slides.pdf:p12`, `nb.ipynb:cell 7`).
A file a reader cannot use raises `Unreadable` with the one-line reason the index run reports.

Readers: `.md`, `.markdown`, `.txt` (index/notes.py decodes them), `.pdf` (`readers.pdf`, pypdf),
`.ipynb` (`readers.notebook`, nbformat). The PDF and notebook libraries are imported only when
such a file is read.
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
PDF_SUFFIX = ".pdf"
NOTEBOOK_SUFFIX = ".ipynb"
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, PDF_SUFFIX, NOTEBOOK_SUFFIX)


class Unreadable(Exception):
    """A file that is not indexed; the message is the reason, one line, `kind` its category
    (binary, empty, no text layer, encrypted, corrupt, unreadable) for the skipped-files report."""

    def __init__(self, reason: str, kind: str = "unreadable"):
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Segment:
    number: int  # 1-based page or cell number, as a viewer counts them
    line_start: int  # 1-based, inclusive, in `Document.text`
    line_end: int


@dataclass(frozen=True)
class Document:
    text: str
    unit: str = ""  # "page" | "cell": what `segments` are; "" for notes cited by line
    segments: tuple[Segment, ...] = ()
    # Pages are chunked one by one (a citation names one page); cells are packed together like
    # a note's blocks (a cell is often one line), so a chunk may span cells.
    separate: bool = False
    notes: tuple[str, ...] = ()  # what the index run should tell about the file (pages left out)


def location(unit: str, first: int, last: int) -> str:
    """The citation's place: `p12`, `p12-13`, `cell 7`, `cells 7-9`."""
    if unit == "page":
        return f"p{first}" if first == last else f"p{first}-{last}"
    return f"cell {first}" if first == last else f"cells {first}-{last}"

"""Chunk a read file (`readers.Document`) and label each chunk with the place a citation names.

Notes are chunked as they are (`chunker.chunk_note`), cited by lines. A PDF is chunked page by
page, so that every chunk lies on one page and is cited `slides.pdf:p12`; its line numbers are
those of the document's text, all pages in order. A notebook is chunked whole, its cells packed
like a note's blocks (a cell is often a line or two), and cited by the cells a chunk covers:
`nb.ipynb:cell 7`, `nb.ipynb:cells 7-9`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import replace

from notes_rag.index.chunker import Chunk, chunk_note
from notes_rag.index.config import IndexConfig
from notes_rag.index.readers import Document, location


def _lines(text: str, first: int, last: int) -> str:
    return "\n".join(text.split("\n")[first - 1 : last])


def chunk_document(
    doc: Document,
    file: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    cfg: IndexConfig = IndexConfig(),
) -> list[Chunk]:
    """The file's chunks, each with its `location` when the file is cited by page or cell."""
    if not doc.unit:
        return chunk_note(doc.text, file, count_tokens, max_tokens, cfg)
    if doc.separate:
        chunks = []
        for seg in doc.segments:
            page = _lines(doc.text, seg.line_start, seg.line_end)
            shift = seg.line_start - 1
            for c in chunk_note(page, file, count_tokens, max_tokens, cfg, markdown=True):
                where = location(doc.unit, seg.number, seg.number)
                chunks.append(replace(c, line_start=c.line_start + shift, line_end=c.line_end + shift, location=where))
        return chunks
    starts = [s.line_start for s in doc.segments]
    out = []
    for c in chunk_note(doc.text, file, count_tokens, max_tokens, cfg, markdown=True):
        # The segments a chunk overlaps: from the last one starting at or before its first line
        # to the last one starting at or before its last line (chunks never start between cells).
        first = doc.segments[max(0, bisect.bisect_right(starts, c.line_start) - 1)]
        last = doc.segments[max(0, bisect.bisect_right(starts, c.line_end) - 1)]
        out.append(replace(c, location=location(doc.unit, first.number, last.number)))
    return out

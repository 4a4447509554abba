"""Jupyter notebooks (`.ipynb`, read with nbformat) as markdown text, cell by cell.

Markdown cells are taken as written (their headings give the chunks' heading paths), code cells
become fenced code blocks in the notebook's language, raw cells and every output are left out:
outputs are results, often long or binary, not the student's notes. Cells are numbered as the
notebook lists them, from 1, empty ones included, so `nb.ipynb:cell 7` is the seventh cell in
Jupyter whatever the others hold.
"""

from __future__ import annotations

import re

from notes_rag.index.readers import Document, Segment, Unreadable

_FENCE = re.compile(r"^ {0,3}(`{3,})", re.M)  # what could close a fence: CommonMark


def _fenced(source: str, language: str) -> str:
    # A fence longer than any backtick run inside the cell, so the cell's own ``` stays code.
    longest = max((len(m.group(1)) for m in _FENCE.finditer(source)), default=2)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{source}\n{fence}"


def read_notebook(data: bytes) -> Document:
    import nbformat

    try:
        nb = nbformat.reads(data.decode("utf-8-sig"), as_version=4)
        cells = list(nb.cells)
        meta = nb.get("metadata", {})
    except Exception as e:  # nbformat raises JSON, validation and version errors of many types
        first = (str(e).splitlines() or [""])[0][:120]
        raise Unreadable(f"not a readable notebook ({type(e).__name__}: {first})", "corrupt") from None
    language = (meta.get("language_info") or {}).get("name") or (meta.get("kernelspec") or {}).get("language") or ""
    parts: list[str] = []
    segments: list[Segment] = []
    line = 1
    for number, cell in enumerate(cells, start=1):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        source = source.replace("\r\n", "\n").strip("\n")
        if not source.strip() or cell.get("cell_type") not in ("markdown", "code"):
            continue
        text = source if cell["cell_type"] == "markdown" else _fenced(source, language)
        n_lines = text.count("\n") + 1
        segments.append(Segment(number, line, line + n_lines - 1))
        parts.append(text)
        line += n_lines + 1  # the blank line between cells
    if not segments:
        raise Unreadable("empty notebook (no markdown or code cells)", "empty")
    return Document("\n\n".join(parts) + "\n", "cell", tuple(segments))

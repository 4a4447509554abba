"""The PDF and notebook readers and their chunk locations, on fixtures generated here (fpdf2, nbformat).

PDF: text per page, slide titles as headings, lines kept, scanned pages left out and named, a
fully scanned file, an encrypted one, a corrupt one. Notebooks: markdown as text, code fenced,
outputs left out, cells numbered as in Jupyter. Chunks: a PDF chunk lies on one page, a notebook
chunk names the cells it covers.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from slide_deck import Slide, write_slide_deck

from notes_rag.index.chunker import chunk_note
from notes_rag.index.config import IndexConfig
from notes_rag.index.documents import chunk_document
from notes_rag.index.readers import Unreadable, location
from notes_rag.index.readers.notebook import read_notebook
from notes_rag.index.readers.pdf import read_pdf
from notes_rag.text import words

DECK = [
    Slide("Mechanism of attention", ["- queries are compared with keys", "- softmax turns scores into weights"]),
    Slide(
        "BPE versus WordPiece",
        ["BPE merges the most frequent pair of symbols", "until the vocabulary is full"],
        ["WordPiece picks the merge that raises the likelihood"],
    ),
    None,  # a scanned page
    Slide("Layer normalization", ["keeps activations at a stable scale across depth"]),
]


def _count(text: str) -> int:
    return len(text.split()) + 2  # a stand-in for the encoder's tokens: words plus special tokens


def _pdf(tmp_path, slides, name="deck.pdf", **kw) -> bytes:
    return write_slide_deck(tmp_path / name, slides, **kw).read_bytes()


def test_pdf_pages_titles_and_lines(tmp_path, capfd):
    doc = read_pdf(_pdf(tmp_path, DECK))
    assert doc.unit == "page" and doc.separate
    assert [s.number for s in doc.segments] == [1, 2, 4]  # the scanned page is left out ...
    assert doc.notes == ("no text layer on p3 (left out)",)  # ... and named
    lines = doc.text.split("\n")
    pages = ["\n".join(lines[s.line_start - 1 : s.line_end]) for s in doc.segments]
    assert pages[0] == "\n".join(["# Mechanism of attention", "", *DECK[0].lines])
    # the second column stays after the first, whole lines, not interleaved line by line
    assert pages[1].startswith("# BPE versus WordPiece\n\n")
    assert words(pages[1]) == words("BPE versus WordPiece " + " ".join(DECK[1].lines + DECK[1].right))
    assert capfd.readouterr().err == ""


def test_pdf_title_by_font_size_even_when_drawn_last(tmp_path):
    from notes_rag.index.readers.pdf import page_text

    lines = ["a footer line drawn first", "the body of the slide, a sentence.", "Real Title"]
    sized = [(10.0, lines[0]), (12.0, lines[1]), (28.0, "Real Title")]
    assert page_text(lines, sized).startswith("# Real Title\n\na footer line drawn first\n")
    # no larger font: a first line that reads as a title is one; a sentence is not
    assert page_text(["Short title", "body text."], [(12.0, "Short title"), (12.0, "body text.")]).startswith("# ")
    assert not page_text(["A sentence, not a title.", "more."], [(12.0, "x")]).startswith("#")


def test_pdf_chunks_lie_on_one_page_and_name_it(tmp_path):
    long = Slide("A long slide", [f"- point {i} about gradient descent and its step size" for i in range(30)])
    doc = read_pdf(_pdf(tmp_path, [DECK[0], long, DECK[3]]))
    chunks = chunk_document(doc, "deck.pdf", _count, 64, IndexConfig(chunk_words=40, min_chunk_words=10))
    by_page = {}
    for c in chunks:
        by_page.setdefault(c.location, []).append(c)
        seg = doc.segments[int(c.location[1:]) - 1]
        assert seg.line_start <= c.line_start <= c.line_end <= seg.line_end
        assert c.text in doc.text
    assert sorted(by_page) == ["p1", "p2", "p3"]
    assert len(by_page["p2"]) > 1 and all(c.heading_path == ("A long slide",) for c in by_page["p2"])
    assert by_page["p1"][0].heading_path == ("Mechanism of attention",)


def test_scanned_encrypted_and_corrupt_pdfs(tmp_path, capfd):
    with pytest.raises(Unreadable, match="no text layer: 0 pages indexed") as e:
        read_pdf(_pdf(tmp_path, [None, None], "scan.pdf"))
    assert e.value.kind == "no text layer"
    with pytest.raises(Unreadable, match="encrypted") as e:
        read_pdf(_pdf(tmp_path, DECK[:1], "locked.pdf", password="secret"))
    assert e.value.kind == "encrypted"
    good = _pdf(tmp_path, DECK[:2], "good.pdf")
    for bad in (good[: len(good) // 3], b"%PDF-1.7\nnot really a pdf", b""):
        with pytest.raises(Unreadable, match="corrupt PDF") as e:
            read_pdf(bad)
        assert e.value.kind == "corrupt" and "\n" not in str(e.value)
    assert capfd.readouterr().err == ""  # pypdf's own warnings do not reach the terminal


def _notebook() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python"}
    code = nbformat.v4.new_code_cell("loss = model(x)\nloss.backward()")
    code.outputs = [nbformat.v4.new_output("stream", text="OUTPUT TEXT 0.123")]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Training loop\n\nWe compute the loss, then its gradients."),
        code,
        nbformat.v4.new_markdown_cell(""),  # empty: skipped, but still counted
        nbformat.v4.new_raw_cell("raw nbconvert text"),
        nbformat.v4.new_markdown_cell("## Optimizer\n\nAdamW decouples weight decay."),
        nbformat.v4.new_code_cell('doc = """\n```\nexample\n```\n"""'),
    ]
    return nbformat.writes(nb).encode()


def test_notebook_cells_as_markdown_and_code(tmp_path):
    doc = read_notebook(_notebook())
    assert doc.unit == "cell" and not doc.separate
    assert [s.number for s in doc.segments] == [1, 2, 5, 6]
    assert "```python\nloss = model(x)\nloss.backward()\n```" in doc.text
    assert "OUTPUT TEXT" not in doc.text and "raw nbconvert" not in doc.text
    assert '````python\ndoc = """\n```\nexample\n```\n"""\n````' in doc.text  # longer than the cell's own fences
    lines = doc.text.split("\n")
    assert lines[doc.segments[2].line_start - 1] == "## Optimizer"


def test_notebook_chunks_name_their_cells():
    doc = read_notebook(_notebook())
    whole = chunk_document(doc, "nb.ipynb", _count, 512)
    assert [c.location for c in whole] == ["cells 1-6"]
    small = chunk_document(doc, "nb.ipynb", _count, 512, IndexConfig(chunk_words=12, min_chunk_words=3))
    assert small[0].location.startswith("cell") and small[-1].location.endswith("6")
    assert [c.heading_path[-1] for c in small][-1] == "Optimizer"
    for c in small:
        first = int(c.location.split()[1].split("-")[0])
        seg = next(s for s in doc.segments if s.number == first)
        assert seg.line_start <= c.line_start <= seg.line_end


def test_broken_notebooks():
    with pytest.raises(Unreadable, match="not a readable notebook") as e:
        read_notebook(b'{"cells": [')
    assert e.value.kind == "corrupt"
    empty = nbformat.v4.new_notebook()
    with pytest.raises(Unreadable, match="empty notebook"):
        read_notebook(nbformat.writes(empty).encode())
    assert json.loads(_notebook())["cells"]  # the fixture itself is a valid notebook


def test_location_labels_and_plain_notes_unchanged():
    assert [location("page", 3, 3), location("page", 3, 4), location("cell", 7, 7), location("cell", 7, 9)] == [
        "p3",
        "p3-4",
        "cell 7",
        "cells 7-9",
    ]
    from notes_rag.index.readers import Document

    text = "# Notes\n\nA plain note about embeddings.\n"
    assert chunk_document(Document(text), "a.md", _count, 64) == chunk_note(text, "a.md", _count, 64)
    assert chunk_document(Document(text), "a.md", _count, 64)[0].location == ""


def test_a_big_page_number_is_not_the_title():
    from notes_rag.index.readers.pdf import page_text

    lines = ["Attention heads", "each head attends on its own", "12"]
    sized = [(20.0, "Attention heads"), (12.0, lines[1]), (40.0, "12")]
    assert page_text(lines, sized).startswith("# Attention heads\n\neach head")
    assert not page_text(["12", "a page of running text."], [(12.0, "12"), (12.0, "x")]).startswith("#")


def test_a_wrapped_title_is_one_heading():
    from notes_rag.index.readers.pdf import page_text

    lines = ["Why residual connections", "help deep networks train", "- gradients flow through the skip path"]
    sized = [(28.0, "Why residual connections"), (28.0, "help deep networks train"), (16.0, lines[2])]
    assert page_text(lines, sized) == "# Why residual connections help deep networks train\n\n" + lines[2]
    # a page of running text over a small footer: its body is not a title, whatever its font
    body = ["Gradient descent moves the weights against", "the gradient, by a step the learning", "rate sets,"]
    body += ["and repeats until the loss stops falling.", "page 3"]
    text = page_text(body, [(12.0, " ".join(body[:4])), (8.0, "page 3")])
    assert text.startswith("# Gradient descent moves the weights against\n\nthe gradient")  # its first line only


def test_unchanged_pdfs_are_parsed_once(tmp_path, monkeypatch):
    from notes_rag.index import notes as notes_mod
    from notes_rag.index.readers import pdf as pdf_mod

    calls = []
    real = pdf_mod.read_pdf
    monkeypatch.setattr(pdf_mod, "read_pdf", lambda data: calls.append(1) or real(data))
    monkeypatch.setattr(notes_mod, "_parsed", {})
    folder = tmp_path / "notes"
    folder.mkdir()
    write_slide_deck(folder / "deck.pdf", DECK[:2])
    first = notes_mod.scan_notes(folder)[0]
    assert notes_mod.scan_notes(folder)[0] == first and len(calls) == 1
    write_slide_deck(folder / "deck.pdf", DECK[3:])  # changed: read again
    assert notes_mod.scan_notes(folder)[0][0].doc.segments[0].number == 1 and len(calls) == 2

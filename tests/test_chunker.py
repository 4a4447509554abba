"""Chunking: heading paths, splits, code blocks, the token bound, line ranges, slide-like .txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from notes_rag.index.chunker import chunk_note, is_markdown
from notes_rag.index.config import IndexConfig

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def words_counter(text: str) -> int:
    """A stand-in tokenizer: one token per word plus two special tokens."""
    return len(text.split()) + 2


def chunks_of(text: str, name: str = "note.md", max_tokens: int = 512, **cfg):
    return chunk_note(text, name, words_counter, max_tokens, IndexConfig(**cfg))


def test_heading_paths_follow_the_outline():
    text = (
        "# Title\n\nIntro paragraph here.\n\n## Part A\n\nAlpha text.\n\n### Detail\n\nDeep text.\n\n"
        "## Part B\n\nBeta text.\n"
    )
    chunks = chunks_of(text, min_chunk_words=0)
    by_text = {c.text.splitlines()[-1]: c.heading_path for c in chunks}
    assert by_text["Intro paragraph here."] == ("Title",)
    assert by_text["Alpha text."] == ("Title", "Part A")
    assert by_text["Deep text."] == ("Title", "Part A", "Detail")
    assert by_text["Beta text."] == ("Title", "Part B")
    # the heading path is what the encoder sees first
    assert chunks[1].embed_text.startswith("Title > Part A\n")


def test_small_sections_merge_but_never_end_a_chunk_with_a_heading():
    sections = "".join(f"## S{i}\n\n" + " ".join(["word"] * 30) + ".\n\n" for i in range(8))
    chunks = chunks_of("# Doc\n\n" + sections, chunk_words=70, min_chunk_words=40)
    for c in chunks:
        assert not c.text.rstrip().splitlines()[-1].startswith("#")
    assert all(len(c.text.split()) <= 80 for c in chunks)


def test_long_paragraph_splits_at_sentences_with_overlap():
    sentences = [f"Sentence number {i} talks about topic {i} in detail." for i in range(60)]
    text = "# T\n\n" + " ".join(sentences) + "\n"
    chunks = chunks_of(text, chunk_words=60, max_block_words=90, overlap_words=20)
    assert len(chunks) > 3
    for c in chunks:
        assert c.text.rstrip().endswith("."), c.text[-40:]  # cut at a sentence end
        assert len(c.text.split()) <= 60
    # neighbours share their boundary sentence(s)
    for a, b in zip(chunks[1:], chunks[2:]):
        assert a.text.split(". ")[-1].rstrip(".") in b.text
    # nothing is lost
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_lists_split_between_top_level_items():
    items = [f"* item {i} " + " ".join(["x"] * 12) + f"\n\t* sub of {i}\n" for i in range(20)]
    chunks = chunks_of("# L\n\n" + "".join(items), chunk_words=60, max_block_words=80)
    assert len(chunks) > 2
    for c in chunks:
        body = [ln for ln in c.text.splitlines() if ln.strip() and not ln.startswith("#")]
        assert body[0].startswith("* item"), body[0]  # a chunk never starts inside an item
        for i in range(20):
            if f"* item {i} " in c.text:
                assert f"sub of {i}" in c.text  # an item keeps its sub-items


def test_code_block_kept_whole_when_it_fits():
    code = "```python\n" + "\n".join(f"x{i} = compute({i}) + other({i})" for i in range(30)) + "\n```\n"
    text = "# C\n\nSome intro words before the code.\n\n" + code + "\nAfter the code.\n"
    chunks = chunks_of(text, chunk_words=40, max_block_words=60, max_tokens=300)
    holding = [c for c in chunks if "x0 = compute" in c.text]
    assert len(holding) == 1 and "x29 = compute(29)" in holding[0].text and holding[0].text.count("```") == 2


def test_code_block_over_the_limit_splits_on_lines():
    code = "```\n" + "\n".join(f"line {i} a b c d e f" for i in range(100)) + "\n```\n"
    chunks = chunks_of("# C\n\n" + code, max_tokens=120)
    assert len(chunks) > 1
    for c in chunks:
        assert words_counter(c.embed_text) <= 120
        for ln in c.text.splitlines():
            assert not ln or ln.startswith(("line", "```", "# C")), ln  # whole lines only


def test_no_chunk_over_the_token_limit_and_lines_are_right_on_the_corpus():
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        chunks = chunk_note(text, path.name, words_counter, 80, IndexConfig())
        assert chunks, path
        for c in chunks:
            assert words_counter(c.embed_text) <= 80
            assert 1 <= c.line_start <= c.line_end <= len(lines)
            source = "\n".join(lines[c.line_start - 1 : c.line_end])
            assert c.text in source  # the chunk is a slice of exactly those lines ...
            assert c.text.splitlines()[0] in lines[c.line_start - 1]  # ... starting on the first
            assert c.text.splitlines()[-1] in lines[c.line_end - 1]  # ... and ending on the last
        covered = set()
        for c in chunks:
            covered.update(range(c.line_start, c.line_end + 1))
        # every line is in some chunk, except heading lines left out of a chunk too full for
        # them: those are in the chunk's heading path instead
        paths = {h for c in chunks for h in c.heading_path}
        missing = [
            i + 1
            for i, ln in enumerate(lines)
            if ln.strip() and i + 1 not in covered and ln.lstrip("# ").strip() not in paths
        ]
        assert not missing, (path.name, missing[:5])


def test_markdown_txt_detected_and_slide_titles_become_headings():
    assert is_markdown((CORPUS / "000_19438b7bc823741f.txt").read_text(encoding="utf-8"), "000.txt")
    slides = (CORPUS / "004_c37a24b139456986.txt").read_text(encoding="utf-8")
    assert not is_markdown(slides, "004.txt")
    chunks = chunk_note(slides, "004.txt", words_counter, 512, IndexConfig())
    neuron = next(c for c in chunks if "Warren McCulloch" in c.text)
    assert neuron.heading_path == ("Model matematyczny neuronu",)
    # URLs and formulas are not titles
    assert not any(p.startswith(("<http", "$")) for c in chunks for p in c.heading_path)


@pytest.mark.parametrize("text", ["", "\n\n   \n"])
def test_empty_note_has_no_chunks(text):
    assert chunks_of(text) == []


def test_a_heading_longer_than_half_the_limit_is_cut_so_every_chunk_fits():
    heading = "# " + " ".join(f"słowo{i}" for i in range(60)) + "\n\n"
    chunks = chunks_of(heading + "Krótka treść notatki pod bardzo długim nagłówkiem.\n", max_tokens=40)
    assert chunks and all(words_counter(c.embed_text) <= 40 for c in chunks)
    assert chunks[0].heading_path[0].startswith("słowo0")  # the heading's first words are kept


def test_a_long_note_parsed_by_sections_gives_the_chunks_of_one_parse(monkeypatch):
    import notes_rag.index.chunker as chunker

    tricky = (
        "# Top\n\nIntro line.\n\n```python\n# not a heading\nx = 1\n\nA line in code\n```\n\n"
        "- loose item one\n\n- loose item two\n\n  continued inside the item\n\n> quoted\n\nAfter the list.\n\n"
        "## Second\n\n    indented code\n\nPlain paragraph.\n"
    )
    notes = [p for p in sorted(CORPUS.glob("*")) if p.is_file()]
    texts = [(p.name, p.read_text(encoding="utf-8")) for p in notes] + [("t.md", tricky * 20)]
    whole = [chunks_of(t, n) for n, t in texts]
    monkeypatch.setattr(chunker, "SECTION_CHARS", 300)
    assert len(chunker._sections(tricky * 20, chunker.line_starts(tricky * 20))) > 10
    assert [chunks_of(t, n) for n, t in texts] == whole

"""Which files a notes folder contributes, and what `index` says about the rest.

Ignore rules (.notes-ragignore, .gitignore, nested, negation, precedence), hidden entries and
the index's own folder; the skipped-file reasons; `index --dry-run` (lists, writes nothing, loads
no encoder); an index over a mixed folder (notes, a slide deck, a notebook, a scan, an encrypted
and a corrupt PDF, a picture) cited by page and cell through search, `ask --json` and the
answer pipeline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from slide_deck import Slide, write_slide_deck
from typer.testing import CliRunner

from notes_rag.cli.index_listing import print_skipped, reported_skips
from notes_rag.index.ignore import IgnoreRules
from notes_rag.index.notes import SkippedFile, scan_notes, walk_folder

REPO = Path(__file__).resolve().parents[1]

DECK = [
    Slide("Course overview", ["- lectures on Mondays", "- labs on Thursdays"]),
    Slide("Gradient clipping", ["- rescales the gradient when its norm exceeds 1.0", "- keeps training stable"]),
    Slide("Learning rate warmup", ["- grows the step size linearly over the first 2000 steps"]),
]


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def _reasons(skipped: list[SkippedFile]) -> dict[str, str]:
    return {s.path: s.reason for s in skipped}


def test_ignore_rules_gitignore_syntax_nesting_and_precedence(tmp_path):
    root = _tree(
        tmp_path / "notes",
        {
            ".gitignore": "# build output\n*.log\ndrafts/\n/exports/\nnotes-private.md\n",
            ".notes-ragignore": "!notes-private.md\nscratch*.md\n",
            "sub/.gitignore": "local.md\n!keep.log\n",
            "a.md": "x",
            "notes-private.md": "x",
            "scratch1.md": "x",
            "run.log": "x",
            "drafts/wip.md": "x",
            "exports/out.md": "x",
            "sub/exports/kept.md": "x",
            "sub/local.md": "x",
            "sub/keep.log": "x",
            "sub/deep/local.md": "x",
            ".obsidian/workspace.md": "x",
        },
    )
    found, skipped = walk_folder(root)
    assert found == ["a.md", "notes-private.md", "sub/exports/kept.md"]  # /exports/ is anchored to its folder
    why = _reasons(skipped)
    assert why["run.log"] == "ignored by .gitignore:2 (*.log)"  # line numbers count comments
    assert why["drafts/"] == "ignored by .gitignore:3 (drafts/)"  # a folder is reported once, not walked
    assert not any(p.startswith("drafts/wip") for p in why)
    assert why["scratch1.md"] == "ignored by .notes-ragignore:2 (scratch*.md)"
    assert why["sub/local.md"] == why["sub/deep/local.md"] == "ignored by sub/.gitignore:1 (local.md)"
    assert why[".obsidian/"] == "hidden folder" and why[".gitignore"] == "hidden file"
    # sub/keep.log is re-included by sub/.gitignore's "!keep.log" (deeper rules win): it then
    # counts as an unsupported type, not as ignored
    assert why["sub/keep.log"] == "unsupported type (.log)"


def test_the_index_folder_is_never_read_or_reported(tmp_path):
    root = _tree(tmp_path / "notes", {"a.md": "x", "idx/gen-1/chunks.md": "x", ".notes-rag/x.md": "x"})
    found, skipped = walk_folder(root, index_dir=root / "idx")
    assert found == ["a.md"] and "idx/" not in _reasons(skipped)
    assert IgnoreRules(root, root / "idx").reason("idx", is_dir=True) == ("index", "the index's own folder")
    found, _ = walk_folder(root)  # without --out the index folder is hidden anyway
    assert found == ["a.md", "idx/gen-1/chunks.md"]


def _notebook() -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Backpropagation\n\nThe chain rule gives every weight its gradient."),
        nbformat.v4.new_code_cell("loss.backward()"),
    ]
    return nbformat.writes(nb).encode()


@pytest.fixture()
def mixed(tmp_path):
    """A notes folder as students keep them: notes, slides, a notebook, and things not to index."""
    root = _tree(
        tmp_path / "notes",
        {
            "intro.md": "# Intro\n\nNotes on optimization for the exam.\n",
            "lab.ipynb": _notebook(),
            "photo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
            "essay.docx": b"PK\x03\x04" + bytes(64),
            "notes.org": "* an org-mode note\n",
            "broken.pdf": b"%PDF-1.7\n1 0 obj garbage",
            "empty.md": "  \n",
            ".notes-ragignore": "old/\n",
            "old/2019.md": "# Old\n\nnot indexed\n",
        },
    )
    write_slide_deck(root / "slides.pdf", DECK)
    write_slide_deck(root / "mixed.pdf", [DECK[0], None])
    write_slide_deck(root / "scan.pdf", [None, None])
    write_slide_deck(root / "locked.pdf", DECK[:1], password="pw")
    return root


def test_scan_names_every_file_left_out_and_why(mixed):
    notes, skipped = scan_notes(mixed)
    assert sorted(n.path for n in notes) == ["intro.md", "lab.ipynb", "mixed.pdf", "slides.pdf"]
    kinds = {s.path: s.kind for s in skipped}
    assert kinds == {
        ".notes-ragignore": "hidden",
        "broken.pdf": "corrupt",
        "empty.md": "empty",
        "essay.docx": "binary",
        "locked.pdf": "encrypted",
        "mixed.pdf": "partial",
        "notes.org": "unsupported",
        "old/": "ignored",
        "photo.png": "binary",
        "scan.pdf": "no text layer",
    }
    why = _reasons(skipped)
    assert why["scan.pdf"].startswith("no text layer: 0 pages indexed")
    assert why["mixed.pdf"] == "no text layer on p2 (left out)"
    assert why["notes.org"] == "unsupported type (.org)" and why["photo.png"] == "binary (.png)"
    assert len(reported_skips(skipped)) == 8  # hidden and partly indexed files are not counted


def test_skipped_report_lines_and_cap(tmp_path):
    from rich.console import Console

    console = Console(record=True, width=200)
    many = [SkippedFile(f"img{i:02}.png", "binary (.png)", "binary") for i in range(13)]
    partial = SkippedFile("mixed.pdf", "no text layer on p2 (left out)", "partial")
    print_skipped(console, [SkippedFile(".git/", "hidden folder", "hidden"), partial, *many])
    out = console.export_text()
    assert "partly indexed mixed.pdf: no text layer on p2 (left out)" in out
    assert "img00.png: binary (.png)" in out and "img09.png" in out and "img10.png" not in out
    assert "3 more (binary)" in out and ".git" not in out


def test_dry_run_lists_and_writes_nothing(mixed):
    from notes_rag.cli.main import app

    result = CliRunner().invoke(app, ["index", str(mixed), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Would index (4 files)" in out and "Not indexed (9)" in out
    assert "PDF, 3 pages" in out and "notebook, 2 cells" in out and "PDF, 1 page; no text layer on p2" in out
    assert "no text layer: 0 pages indexed" in out and "encrypted PDF" in out and "ignored by .notes-ragignore:1" in out
    assert not (mixed / ".notes-rag").exists()


def test_index_with_nothing_readable_says_why_before_loading_the_encoder(tmp_path, monkeypatch):
    from notes_rag.cli.main import app
    from notes_rag.index import encoder

    monkeypatch.setattr(encoder, "load_encoder", lambda *a: pytest.fail("the encoder was loaded"))
    folder = tmp_path / "scans"
    folder.mkdir()
    write_slide_deck(folder / "handout.pdf", [None])
    result = CliRunner().invoke(app, ["index", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "no readable notes" in str(result.exception)
    assert "handout.pdf: no text layer: 0 pages indexed" in result.output


def test_dry_run_path_imports_no_torch(mixed):
    """What --dry-run runs (the listing: walk, readers, ignore rules) loads no torch, FAISS or encoder."""
    code = (
        "import sys; from pathlib import Path; from rich.console import Console\n"
        "from notes_rag.cli.index_listing import dry_run_listing\n"
        f"Console().print(dry_run_listing(Path({str(mixed)!r}), None))\n"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "slides.pdf" in run.stdout


@pytest.fixture(scope="module")
def tiny_enc(tmp_path_factory):
    from tiny_encoder import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("enc"))


def test_index_cites_pages_and_cells(mixed, tiny_enc):
    from notes_rag.eval.matching import evidence_files
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder
    from notes_rag.index.search import Retriever

    enc = load_encoder(tiny_enc)
    report = update_index(mixed, None, enc, str(tiny_enc))
    assert sorted(report.added) == ["intro.md", "lab.ipynb", "mixed.pdf", "slides.pdf"]
    assert {s.path for s in report.skipped} >= {"scan.pdf", "locked.pdf", "broken.pdf", "photo.png"}
    r = Retriever(mixed / ".notes-rag", encoder=enc)
    try:
        hits = r.search("gradient clipping norm", k=3, mode="bm25").hits
        assert hits[0].citation == "slides.pdf:p2" and hits[0].heading_path == ("Gradient clipping",)
        assert hits[0].to_dict()["location"] == "p2"
        cell = r.search("chain rule backpropagation", k=1, mode="bm25").hits[0]
        # the tiny encoder's 64 tokens may not hold both cells in one chunk
        assert cell.citation in ("lab.ipynb:cells 1-2", "lab.ipynb:cell 1")
        assert r.search("optimization exam", k=1, mode="bm25").hits[0].citation == "intro.md:1-3"  # notes: lines
        # eval's evidence matching reads PDF chunks like any other
        assert evidence_files("grows the step size linearly over the first 2000 steps", r.chunks()) == ["slides.pdf"]
    finally:
        r.close()


def test_ask_cites_the_pdf_page_with_the_evidence(mixed, tiny_enc, tmp_path, tok, monkeypatch):
    import torch

    from notes_rag.chat.assistant import AnswerConfig, Assistant
    from notes_rag.cli.main import app
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder
    from notes_rag.index.search import Retriever
    from notes_rag.model.checkpoint import load_model, write_checkpoint
    from notes_rag.model.gpt import GPT, preset

    update_index(mixed, None, load_encoder(tiny_enc), str(tiny_enc))
    torch.manual_seed(0)
    ckpt = tmp_path / "model"
    model = GPT(preset("tiny", vocab_size=tok.vocab_size, seq_len=512, copy_head=True, relevance=True, structure=True))
    write_checkpoint(ckpt, model, tok, meta={"stage": "test", "step": 1})
    question = "How many steps does the learning rate warmup take?"
    result = CliRunner().invoke(
        app, ["ask", question, "--json", "--index", str(mixed / ".notes-rag"), "--model", str(ckpt), "--mode", "bm25"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["sources"][0]["citation"] == "slides.pdf:p3" and out["sources"][0]["location"] == "p3"
    # the answer pipeline itself, its model copying the page's line: the answer cites the page
    model, tok2, _ = load_model(ckpt)
    retriever = Retriever(mixed / ".notes-rag", encoder=load_encoder(tiny_enc))

    def writes(model, prompt, copy_mask=None, match=None, cfg=None, stop_ids=(), constraint=None, on_first=None):
        yield from tok2.encode("grows the step size linearly over the first 2000 steps [1]")

    monkeypatch.setattr("notes_rag.model.engine.generate_copy", writes)
    cfg = AnswerConfig(abstain_bias=-100.0, mode="bm25")
    ans = Assistant(retriever, model, tok2, cfg, "m", "i").ask([], question)
    assert ans.cited and ans.sources[ans.cited[0] - 1].citation == "slides.pdf:p3"
    assert "2000 steps" in ans.text
    assert ans.to_dict()["sources"][ans.cited[0] - 1]["citation"] == "slides.pdf:p3"
    retriever.close()
    # the chat's sources table and /sources name the page too
    from rich.console import Console

    from notes_rag.cli.repl import source_text, sources_table

    console = Console(record=True, width=120)
    console.print(sources_table(ans))
    console.print(source_text(ans, ans.cited[0]))
    shown = console.export_text()
    assert "slides.pdf:p3" in shown and not re.search(r"slides\.pdf:\d", shown)  # pages, never lines


def test_an_index_from_before_page_citations(tmp_path, tiny_enc):
    """An index of the previous format (no chunks.location, schema 1, no manifest): search says
    how to update it in one line, and the next `index` run rebuilds it."""
    import sqlite3

    from notes_rag.errors import NotesRagError
    from notes_rag.index import store
    from notes_rag.index.build import update_index
    from notes_rag.index.encoder import load_encoder
    from notes_rag.index.search import Retriever

    folder = _tree(tmp_path / "notes", {"a.md": "# A\n\nZebras have stripes.\n"})
    enc = load_encoder(tiny_enc)
    update_index(folder, None, enc, str(tiny_enc))
    gen = store.current_generation(folder / ".notes-rag")
    with sqlite3.connect(gen / "chunks.sqlite") as conn:
        conn.executescript(
            "CREATE TABLE old AS SELECT id, file, heading_path, line_start, line_end, text, lang FROM chunks;"
            "DROP TABLE chunks; ALTER TABLE old RENAME TO chunks;"
        )
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    (gen / "MANIFEST.json").unlink(missing_ok=True)
    with pytest.raises(NotesRagError, match="older format; update it with: notes-rag index"):
        Retriever(folder / ".notes-rag", encoder=enc)
    report = update_index(folder, None, enc, str(tiny_enc))
    assert report.rebuild_reason == "index format changed" and report.added == ["a.md"]
    r = Retriever(folder / ".notes-rag", encoder=enc)
    assert r.search("zebras", k=1, mode="bm25").hits[0].citation == "a.md:1-3"
    r.close()

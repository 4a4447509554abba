"""What `ask`, `chat` and `search` print: notes' markdown rendered, sources tables that keep every
number and file:lines whole at 80 columns, and the `ask --json` schema as docs/CHAT.md gives it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from notes_rag.chat.answer import Answer, Source, Timings
from notes_rag.cli.index import search_listing
from notes_rag.cli.main import app
from notes_rag.cli.markup import note_text
from notes_rag.cli.repl import sources_table, sources_text
from notes_rag.index.search import Hit

DOCS = Path(__file__).resolve().parents[1] / "docs" / "CHAT.md"
NOTE = (
    "## Słownik tokenów\n"
    "Słownik to **tabela odwzorowań (lookup table)**, która zawiera *tokeny*, np. `ran` i `kiem`.\n"
    "Macierz **Input\nEmbedding** i ** spacje ** oraz snake_case_name zostają.\n"
    "Zobacz [kurs](https://example.org/kurs) ![schemat](img/s.png)"
)
PLACES = ["004_c37a24b139456986.txt", "lectures/week-03/transformers-attention-notes.md", "b.md"]
HEADING = "LLM - uczenie - AI Engineering › Fazy przetwarzania modelu › " + "bardzo długi nagłówek slajdu " * 3


def shown(renderable, width: int = 80) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def answer(text: str = "Słownik to **tabela** [1]") -> Answer:
    sources = [Source(i, PLACES[i % 3], 5 * i, 5 * i + 41, HEADING, 0.9, NOTE) for i in range(1, 13)]
    timings = Timings(1, 1, None, 1)
    return Answer("q", text, False, None, "pl", sources, [1], [], 0.9, 0.8, timings, read_passages=2)


def test_markdown_is_rendered_and_lines_are_kept():
    text = note_text(NOTE)
    assert text.plain.split("\n") == [
        "Słownik tokenów",
        "Słownik to tabela odwzorowań (lookup table), która zawiera tokeny, np. ran i kiem.",
        "Macierz Input",
        "Embedding i ** spacje ** oraz snake_case_name zostają.",  # not emphasis in CommonMark
        "Zobacz kurs (https://example.org/kurs) [schemat]",
    ]
    styled = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
    assert styled["Słownik tokenów"] == "bold" and styled["tabela odwzorowań (lookup table)"] == "bold"
    assert styled["tokeny"] == "italic" and "bold" in styled["ran"] and "underline" in styled["kurs"]
    assert note_text("plain [1]").plain == "plain [1]" and note_text("").plain == ""


def test_sources_table_at_80_columns_keeps_every_number_and_place():
    out = shown(sources_table(answer()))
    for s in answer().sources:
        assert re.search(rf"^ *{s.rank}  {re.escape(s.file)}:{s.lines} ", out, re.M), s.rank
    assert "…" not in out


def test_sources_listing_renders_each_passage_whole():
    out = shown(sources_text(answer()))
    for s in answer().sources:
        assert f"[{s.rank}] {s.file}:{s.lines} · 0.900" in out
    assert "**tabela" not in out and "tabela odwzorowań (lookup table)" in out


def test_search_listing_at_80_columns_keeps_every_rank_and_place():
    path = tuple(HEADING.split(" › "))
    hits = [Hit(i, 2.0 / i, i, PLACES[i % 3], 5 * i, 5 * i + 41, path, NOTE) for i in range(1, 8)]
    out = shown(search_listing("hybrid search: q", hits))
    for h in hits:
        assert re.search(rf"^ *{h.rank}  {h.score:.3f}  {re.escape(h.citation)} *$", out, re.M), h.rank
    assert "**tabela" not in out and "tabela odwzorowań" in out


def _documented_fields() -> list[str]:
    doc = DOCS.read_text(encoding="utf-8")
    table = doc.split("<!-- ask-json-schema -->")[1].split("<!-- /ask-json-schema -->")[0]
    return re.findall(r"^\s*\| `(\w+)` \|", table, re.M)


def test_ask_json_is_the_documented_schema(tiny_index, tiny_ckpt, monkeypatch, tok):
    args = ["ask", "Kto zaproponował model neuronu?", "--index", str(tiny_index), "--model", str(tiny_ckpt)]

    def writes(model, prompt, copy_mask=None, match=None, cfg=None, stop_ids=(), constraint=None, on_first=None):
        yield from tok.encode("model neuronu [1]")  # what the trained model would copy

    monkeypatch.setattr("notes_rag.model.numpy_decode.generate_copy", writes)  # the chat's torch-free path
    out = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert sorted(out) == sorted(_documented_fields())
    assert out["answered_by"] == "model" and out["answer"] == "model neuronu [1]" and out["cited"] == [1]
    assert out["read_passages"] >= 1
    printed = CliRunner().invoke(app, args).output  # the same answer on the terminal
    assert out["answer"].split()[0] in printed


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, capsys):
    import sys

    import pytest

    from notes_rag.cli import app as app_mod

    def boom():
        raise ValueError("bad shape (3,)")

    monkeypatch.setattr(app_mod, "app", boom)
    monkeypatch.setattr(sys, "argv", ["notes-rag", "ask", "x"])
    with pytest.raises(SystemExit) as e:
        app_mod.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "ValueError: bad shape (3,)" in err and "--debug" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(sys, "argv", ["notes-rag", "--debug", "ask", "x"])
    with pytest.raises(ValueError):
        app_mod.main()

"""Unit vectors: stored at index time, equal to fresh ones, read by the chat; one unit split and one
text normalization shared by the index, training items and the chat input."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.chat.answer import Source, sources_of
from notes_rag.chat.format import Turn
from notes_rag.chat.turn_input import read_passages, turn_input, unit_cosines
from notes_rag.errors import NotesRagError
from notes_rag.index import store
from notes_rag.index.build import update_index
from notes_rag.index.encoder import encode_passages, encode_queries, load_encoder
from notes_rag.index.search import Retriever
from notes_rag.model.constants import AFTER_SHIFT, N_REL, RANK_SHIFT
from notes_rag.model.reader import encode, relevance_codes
from notes_rag.sft.notes_qa import NotesQuestion, target_answer, variant
from notes_rag.text import clean_markup, unit_spans

NOTE = (
    "# Positions embeddings\n\n"
    "![Image](images/pos.png)\n"
    "* token embedding **plus** position embedding\n"
    "* the sum goes to the first [block](https://example.org/block)\n"
    "* RoPE rotates <b>queries</b> and keys instead\n"
)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    enc_dir = build_tiny_encoder(root / "enc")
    folder = root / "notes"
    folder.mkdir()
    (folder / "pos.md").write_text(NOTE, encoding="utf-8")
    (folder / "other.md").write_text("# Other\n\nZebras have stripes.\nLions have manes.\n", encoding="utf-8")
    enc = load_encoder(enc_dir)
    update_index(folder, None, enc, str(enc_dir))
    return folder, enc


def test_markup_is_cleaned_line_for_line():
    clean = clean_markup(NOTE)
    assert clean.count("\n") == NOTE.count("\n")
    for mark in ("![", "](", "**", "<b>", "https://"):
        assert mark not in clean
    assert "token embedding plus position embedding" in clean and "the first block" in clean


def test_stored_unit_vectors_equal_fresh_ones(indexed):
    folder, enc = indexed
    gen = store.current_generation(folder / ".notes-rag")
    with sqlite3.connect(gen / "chunks.sqlite") as conn:
        rows = conn.execute("SELECT id, text FROM chunks").fetchall()
        dim = int(conn.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()[0])
        stored = store.fetch_unit_vectors(conn, [cid for cid, _ in rows], dim)
    for cid, text in rows:
        units = store.chunk_units(text)
        assert len(stored[cid]) == len(units) > 0
        np.testing.assert_allclose(stored[cid], encode_passages(enc, units), atol=1e-5)


def test_the_chat_reads_stored_vectors_without_encoding_units(indexed, monkeypatch):
    folder, enc = indexed
    r = Retriever(folder / ".notes-rag", encoder=enc)
    res = r.search("How are position embeddings combined?", k=2, mode="bm25")
    passages = read_passages(sources_of(res.hits))
    calls = []
    monkeypatch.setattr("notes_rag.index.search.encode_passages", lambda *a, **k: calls.append(a) or 1 / 0)
    cos = unit_cosines(r, "How are position embeddings combined?", passages)
    assert not calls and [len(c) for c in cos] == [len(store.chunk_units(t)) for _, t in passages]
    q = encode_queries(enc, ["How are position embeddings combined?"])[0]
    fresh = encode_passages(enc, store.chunk_units(passages[0][1])) @ q
    np.testing.assert_allclose(cos[0], fresh, atol=1e-5)
    r.close()


def test_a_training_item_and_a_chat_input_read_the_same_units(indexed, tok):
    """sft/notes_qa.py and the chat build the input with the same functions: same units, same
    relevance codes on the same tokens."""
    folder, enc = indexed
    r = Retriever(folder / ".notes-rag", encoder=enc)
    hits = r.search("position embedding", k=2, mode="bm25").hits
    chat_passages = read_passages(
        [Source(h.rank, h.file, h.line_start, h.line_end, " › ".join(h.heading_path), h.score, h.text) for h in hits]
    )
    train_passages = read_passages(sources_of(hits))
    assert chat_passages == train_passages
    a = turn_input(tok, r, "position embedding?", (), chat_passages, None, 512)
    b = turn_input(tok, r, "position embedding?", (), train_passages, None, 512)
    assert a.ids == b.ids and a.match == b.match
    ranks = [(m >> RANK_SHIFT) % N_REL for m in a.match]
    assert ranks.count(1) > 0  # the top unit's tokens carry rank 1
    for _, text in chat_passages:  # units are text.unit_spans of the cleaned text
        assert "**" not in text and len(unit_spans(text)) >= 1
    r.close()


def test_relevance_codes_mark_the_most_similar_unit(tok):
    passages = [("a.md › A", "First line here.\nSecond line here.\nThird line here.")]
    inp = encode(tok, "q?", passages, relevance=[[0.80, 0.95, 0.85]])
    rank_of_token = [(m >> RANK_SHIFT) % N_REL for m in inp.match]
    second = passages[0][1].index("Second")
    tokens_rank1 = [i for i, r in enumerate(rank_of_token) if r == 1]
    assert tokens_rank1 and all(inp.offsets[i][1] >= second - 1 for i in tokens_rank1)
    assert all(inp.offsets[i][2] <= passages[0][1].index("Third") for i in tokens_rank1)


def test_relevance_codes_mark_the_units_after_the_top_ones_in_their_passage():
    """The answer under a heading that echoes the question: the units after the top-ranked ones
    are marked, within their own passage only."""
    cosines = [[0.10, 0.90, 0.20, 0.25, 0.05], [0.50, 0.15]]  # ranks: p0u1 1st, p1u0 2nd, p0u3 3rd
    after = [[(c >> AFTER_SHIFT) % N_REL for c in codes] for codes in relevance_codes(cosines)]
    # p0: u2 right after the 1st, u3 second after it, u4 right after the 3rd; p1: u1 after the 2nd,
    # and p1u0 is not "after" p0's last unit (another passage)
    assert after == [[0, 0, 1, 2, 3], [0, 3]]
    ranks = [[(c >> RANK_SHIFT) % N_REL for c in codes] for codes in relevance_codes(cosines)]
    assert ranks == [[6, 1, 4, 3, 6], [2, 5]]  # 6: the 6th-10th


def test_the_code_ablation_strips_only_the_codes_it_names():
    from notes_rag.sft.generator_data import GeneratorItem
    from notes_rag.train.generator import keep_codes

    flags, rank, cos, after = 0b0101, 2 << RANK_SHIFT, 3 << 7, 1 << AFTER_SHIFT
    item = GeneratorItem(
        np.arange(3, dtype=np.int32), np.array([flags | rank | cos | after, 0, flags], np.int16), 2, True, "pl", "t"
    )
    assert keep_codes([item], "all")[0].match.tolist() == item.match.tolist()
    assert keep_codes([item], "relevance")[0].match.tolist() == [flags | rank | cos, 0, flags]
    assert keep_codes([item], "none")[0].match.tolist() == [flags, 0, flags]


def test_a_training_variant_keeps_the_evidence_and_cites_its_new_place():
    """notes_qa's extra items read the evidence passage among other retrieved ones: the answer's
    citation follows the evidence passage to its new place."""
    sources = [Source(i + 1, f"n{i}.md", 1, 2, f"n{i}", 1.0, f"text {i}") for i in range(10)]
    nq = NotesQuestion({"qa": []}, {"q": "q?", "answer": "the answer [1]"}, (), sources, 2, 2)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        v = variant(nq, rng)
        assert len(v.sources) == 3 and v.sources[v.gold - 1].file == "n1.md"
        assert len({s.file for s in v.sources}) == 3
        assert target_answer(v) == f"the answer [{v.gold}]"
        seen.add(v.gold)
    assert seen == {1, 2, 3}  # the evidence takes every read place
    una = variant(NotesQuestion({"qa": []}, {"q": "q?", "answer": ""}, (), sources, None, None), rng)
    assert una.gold is None and len(una.sources) == 3


def test_an_index_without_unit_vectors_is_one_line_and_index_adds_them(tmp_path, indexed):
    _, enc = indexed
    enc_dir = tmp_path / "enc"
    enc = load_encoder(build_tiny_encoder(enc_dir))
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nZebras have stripes.\n", encoding="utf-8")
    update_index(folder, None, enc, str(enc_dir))
    gen = store.current_generation(folder / ".notes-rag")
    with sqlite3.connect(gen / "chunks.sqlite") as conn:
        conn.execute("DROP TABLE unit_vectors")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    (gen / "MANIFEST.json").unlink(missing_ok=True)
    with pytest.raises(NotesRagError, match="older format; update it with: notes-rag index"):
        Retriever(folder / ".notes-rag", encoder=enc)
    report = update_index(folder, None, enc, str(enc_dir))
    assert report.rebuild_reason == "index format changed"
    r = Retriever(folder / ".notes-rag", encoder=enc)
    assert store.fetch_unit_vectors(
        r.conn, [h.chunk_id for h in r.search("zebras", k=1, mode="bm25").hits], r.meta["dim"]
    )
    r.close()


def test_a_follow_up_is_read_with_the_question_before_it_an_unrelated_one_alone():
    from notes_rag.chat.turn_input import relevance_query

    first = "Kto zaproponował matematyczny model neuronu?"
    assert relevance_query("A w którym roku?", (first,)) == f"{first} A w którym roku?"
    unrelated = "Ile warstw ma zwykle enkoder transformera?"
    assert relevance_query(unrelated, (first,)) == unrelated


def test_a_chat_answer_never_shows_markup(tiny_chat_parts):
    """The tiny random model copies whatever it likes from passages full of markup: what it
    can copy is the cleaned text, so no answer shows image, link or emphasis syntax."""
    assistant = tiny_chat_parts
    for q in ("Co to jest token?", "What is an embedding?", "Jak działa **uwaga**?"):
        pieces = list(assistant.stream([], q))
        answer = pieces[-1]
        assert "".join(pieces[:-1]).strip() == answer.text  # streamed text is the answer
        for mark in ("![", "](", "**", "<b>", "http"):
            assert mark not in answer.text


def test_a_turn_reads_the_units_once_for_its_codes_and_its_prior(tiny_chat_parts, monkeypatch):
    """The relevance codes and the unit scorer's prior read one view of the units: one encoder
    lookup a turn, a follow-up's too (its query, the question before it and it, is no search's)."""
    assistant = tiny_chat_parts
    assert assistant.cfg.unit_prior_weight > 0
    calls, marked = [], type(assistant.retriever)
    original = marked.vectors
    monkeypatch.setattr(marked, "vectors", lambda self, q, t: calls.append(q) or original(self, q, t))
    assistant.ask([], "Co to jest token?")
    assistant.ask([Turn("user", "Co to jest token?"), Turn("assistant", "Token [1]")], "A embedding?")
    assert len(calls) == 2 and calls[1] == "Co to jest token? A embedding?"


@pytest.fixture()
def tiny_chat_parts(tmp_path, tok):
    from tiny_chat import write_tiny_checkpoint

    from notes_rag.chat.assistant import AnswerConfig, Assistant
    from notes_rag.index.search import Hit, SearchResult
    from notes_rag.model.checkpoint import load_model

    marked = [
        "![Image](images/tok.png) · Token to **kawałek** tekstu, patrz [słownik](https://x.org/s).",
        "<b>Embedding</b> to *wektor* liczb przypisany tokenowi ![Image](e.png)",
        "**Uwaga** liczy podobieństwo [zapytań](http://a.b/c) do kluczy.",
    ]

    class Marked:
        index_dir = tmp_path
        abstain_threshold = None

        def search_conversation(self, turns, k=5, mode="hybrid"):
            hits = [Hit(i, 1.0 / i, i, f"n{i}.md", 1, 3, ("Notes",), t) for i, t in enumerate(marked, 1)]
            return SearchResult(hits[:k], 0.9)

        def translations(self, query):
            return []

        def similarity(self, query, texts):
            return np.linspace(0.9, 0.8, len(texts))

        def vectors(self, query, texts):
            cos = np.linspace(0.9, 0.8, len(texts))
            return np.array([1.0, 0.0]), np.stack([cos, np.sqrt(1 - cos**2)], axis=1)

    model, tok2, _ = load_model(write_tiny_checkpoint(tmp_path / "m", tok))
    return Assistant(Marked(), model, tok2, AnswerConfig(max_new_tokens=24), "m", "i")

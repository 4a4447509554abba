"""Both languages in the candidates: over mixed notes, the other language's best passage reaches
the reranker however many same-language passages outscore it (tiny random encoder)."""

from __future__ import annotations

import dataclasses

import pytest
from tiny_encoder import build_tiny_index

from notes_rag.index.bilingual import with_translations
from notes_rag.index.search import RetrievalConfig, Retriever

# Twenty English notes about attention and one Polish note: an English question's dense and
# BM25 rankings are all English.
NOTES = {
    f"en_{i:02d}.md": f"# Attention {i}\n\nAttention layer {i} compares queries with keys and values in block {i}.\n"
    for i in range(20)
}
NOTES["pl_uwaga.md"] = "# Mechanizm uwagi\n\nMechanizm uwagi liczy podobieństwo zapytania do klucza i normalizuje je.\n"
QUESTION = "How does the attention layer compare queries with keys?"
# Small lists, so that twenty English chunks are more than the first stage keeps.
SMALL = RetrievalConfig(bilingual=False, candidates=3, rerank_depth=3, per_language=0, per_language_rerank=0)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return build_tiny_index(tmp_path_factory.mktemp("mixed"), NOTES)


def _files(r: Retriever, k: int) -> list[str]:
    return [h.file for h in r.search(QUESTION, k=k)]


def test_english_question_over_mixed_notes_gets_the_polish_passage_in_the_top_k(mixed):
    index_dir, encoder = mixed
    off = Retriever(index_dir, encoder, SMALL)
    assert "pl_uwaga.md" not in _files(off, k=4)  # outscored by English passages on the topic
    on = Retriever(index_dir, encoder, dataclasses.replace(SMALL, per_language=2, per_language_rerank=1))
    assert "pl_uwaga.md" in _files(on, k=4)  # the reranker saw it: it is among its 3 + 1 candidates
    signals, _ = on.first_stage([QUESTION], 4, "hybrid")
    ids, _x = on.rerank_features(signals)
    assert {on.lang_of([c])[0] for c in ids} == {"en", "pl"}


def test_one_language_notes_are_searched_as_before(tmp_path):
    english = {name: text for name, text in NOTES.items() if name.startswith("en_")}
    index_dir, encoder = build_tiny_index(tmp_path, english)
    off = Retriever(index_dir, encoder, SMALL)
    on = Retriever(index_dir, encoder, dataclasses.replace(SMALL, per_language=2, per_language_rerank=1))
    assert on._lang_params == {}  # nothing to restrict: a single language
    assert [(h.chunk_id, h.score) for h in on.search(QUESTION, k=5)] == [
        (h.chunk_id, h.score) for h in off.search(QUESTION, k=5)
    ]


def test_dense_mode_stays_the_exact_cosine_order(mixed):
    index_dir, encoder = mixed
    on = Retriever(index_dir, encoder, dataclasses.replace(SMALL, per_language=5))
    scores = [h.score for h in on.search(QUESTION, k=5, mode="dense")]
    assert scores == sorted(scores, reverse=True)
    exact = Retriever(index_dir, encoder, dataclasses.replace(SMALL, candidates=50))
    # scores, not ids: the tiny encoder reads the notes' numbers as one unknown token, so
    # several English chunks tie exactly and FAISS may list any of them
    assert [h.score for h in on.search(QUESTION, k=3, mode="dense")] == [
        h.score for h in exact.search(QUESTION, k=3, mode="dense")
    ]


def _chunks_of(r: Retriever, lang: str) -> list[int]:
    return [int(c) for c, x in zip(r._ids, r._langs) if x == lang]


def test_each_language_cosines_are_normalized_apart(mixed):
    index_dir, encoder = mixed
    r = Retriever(index_dir, encoder, SMALL)
    en, pl = _chunks_of(r, "en")[:3], _chunks_of(r, "pl")
    raw = {en[0]: 0.90, en[1]: 0.85, en[2]: 0.80, pl[0]: 0.70}
    z = r._by_language(raw)
    # the Polish chunk's low cosine is not held against it: it is the best of its language
    assert z[pl[0]] > z[en[1]] > z[en[2]]  # above the English mean, though below every English cosine
    assert r._by_language({en[0]: 0.9, en[1]: 0.8}) == {en[0]: 0.9, en[1]: 0.8}  # one language: unchanged


def test_reranker_words_count_translations(mixed):
    index_dir, encoder = mixed
    r = Retriever(index_dir, encoder, SMALL)
    words = r.lexical.query_words("attention")
    polish = set(_chunks_of(r, "pl"))
    assert not polish & set(words[0].chunks)
    both = with_translations(r.lexical, words, [["uwagi", "attention span"]])  # phrases are left out
    assert polish <= set(both[0].chunks) and set(words[0].chunks) <= set(both[0].chunks)
    assert all(c in both[0].chunks for c in polish) and -1 not in both[0].chunks
    assert both[0].chunks.holding([*polish, -1]).tolist() == [True] * len(polish) + [False]
    assert both[0].idf < words[0].idf  # found in more chunks: a less telling word

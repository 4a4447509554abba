"""Rare terms and the reranker: padded BM25 z-scores, reranking features and order, and a rare
exact match beating its dense neighbours end to end (tiny random encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_encoder import build_tiny_index

from notes_rag.errors import NotesRagError
from notes_rag.index import rerank
from notes_rag.index.lexical import LexicalIndex
from notes_rag.index.rerank import FEATURES, Reranker, Signals
from notes_rag.index.search import RetrievalConfig, Retriever, _zscores


def test_a_short_lexical_list_is_scored_against_the_chunks_it_did_not_list():
    z, floor = _zscores({1: 5.0, 2: 4.0})
    assert z[1] == pytest.approx(1.0) and floor == pytest.approx(-1.0)
    z, floor = _zscores({1: 5.0, 2: 4.0}, listed=50)
    assert z[1] > 4 and floor < 0 < z[2]  # two matches among fifty chunks stand out


def _signals(lex: LexicalIndex, query: str, fused: dict[int, float]) -> Signals:
    return Signals(fused, {c: 0.8 for c in fused}, {}, {}, {}, lex.query_words(query))


def test_features_see_coverage_rare_words_heading_and_one_sentence():
    texts = {
        1: "Rotary embeddings (RoPE) rotate queries and keys. Attention then compares them.",
        2: "Attention compares queries with keys. Softmax normalizes the scores.",
        3: "Queries. Rotary. Something else entirely about keys.",
    }
    lex = LexicalIndex.build(list(texts), list(texts.values()))
    sig = _signals(lex, "How does RoPE rotate the queries?", {1: 0.0, 2: 2.0, 3: 1.0})
    x = rerank.features(sig, [1, 2, 3], texts, {1: "Positions", 2: "Attention", 3: "Rotate"})
    f = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert f["coverage"][0] == pytest.approx(1.0) and f["coverage"][0] > f["coverage"][1]
    assert f["rare"][0] > f["rare"][1]  # "rope" is in chunk 1 only
    assert f["sentence"][0] == pytest.approx(1.0) and f["sentence"][0] > f["sentence"][2]  # 3 spreads its words
    assert f["heading"][2] > 0 == f["heading"][1]
    assert f["fused"][1] > f["fused"][0]


def test_reranker_puts_the_chunk_holding_the_question_first():
    texts = {1: "RoPE rotates query and key vectors by position.", 2: "Embeddings map tokens to vectors."}
    lex = LexicalIndex.build(list(texts), list(texts.values()))
    sig = _signals(lex, "What does RoPE rotate?", {1: -0.5, 2: 0.5})  # first stage prefers chunk 2
    x = rerank.features(sig, [1, 2], texts, {})
    scores = Reranker.load().scores(x)  # the packaged weights
    assert scores[0] > scores[1]


def test_weights_for_other_features_are_a_readable_error(tmp_path):
    path = tmp_path / "w.json"
    path.write_text('{"features": ["fused"], "weights": [1.0]}', encoding="utf-8")
    with pytest.raises(NotesRagError, match="fitted for features"):
        Reranker.load(path)
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(NotesRagError, match="cannot read"):
        Reranker.load(path)


NOTES = {
    "rope.md": "# Pozycje\n\nRoPE obraca wektory zapytań i kluczy o kąt zależny od pozycji.\n",
    "att.md": "# Atencja\n\nAtencja porównuje zapytania z kluczami i miesza wartości tokenów.\n",
    "emb.md": "# Embeddingi\n\nEmbedding zamienia identyfikator tokenu na wektor liczb.\n",
    "pos.md": "# Pozycje bezwzględne\n\nKażda pozycja w sekwencji ma własny wektor dodawany do embeddingu.\n",
}


def test_rare_term_beats_dense_neighbours(tmp_path):
    index_dir, encoder = build_tiny_index(tmp_path, NOTES)
    # dense alone weighted up: the random tiny encoder must not outvote the one exact match
    cfg = RetrievalConfig(dense_weight=2.0)
    r = Retriever(index_dir, encoder, cfg)
    assert r.search("Czym jest RoPE?", k=4)[0].file == "rope.md"
    ids, x = r.rerank_features(r.first_stage(["Czym jest RoPE?"], 20, "hybrid")[0])
    assert x.shape == (len(ids), len(FEATURES)) and np.isfinite(x).all()


def test_more_results_than_the_reranker_reorders_keep_the_first_stage_order(tmp_path):
    notes = {f"n{i}.md": f"# Notatka {i}\n\nModel numer {i} uczy się wag sieci neuronowej.\n" for i in range(30)}
    index_dir, encoder = build_tiny_index(tmp_path, notes)
    r = Retriever(index_dir, encoder, RetrievalConfig(rerank_depth=5))
    hits = r.search("Jak model uczy się wag?", k=12)
    assert len(hits) == 12 and len({h.chunk_id for h in hits}) == 12
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

"""The unit scorer (model/unit_scorer.py): its features, the packaged weights, the chat's unit prior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from notes_rag.chat.turn_input import unit_prior, unit_view
from notes_rag.errors import NotesRagError
from notes_rag.model import unit_scorer
from notes_rag.model.unit_scorer import FEATURES, UnitScorer, unit_features

UNITS = [["Positional embeddings", "They are added to the token embeddings.", "---"], ["Other note line."]]
COS = [[0.90, 0.80, 0.10], [0.70]]


def test_features_see_the_title_line_and_the_units_around():
    f = unit_features("How are positional embeddings combined?", UNITS, COS)
    col = {name: f[:, i] for i, name in enumerate(FEATURES)}
    assert f.shape == (4, len(FEATURES))
    assert col["is_title"].tolist() == [1, 0, 0, 0]  # a short line without closing punctuation
    assert col["after_title"].tolist() == [0, 1, 0, 0]
    assert col["cos_title"][1] == pytest.approx(0.90)  # the answer line reads its title's cosine
    assert col["prev_rank1"].tolist() == [0, 1, 0, 0]  # the unit after the top-ranked one
    assert col["cos_prev"][3] == pytest.approx(0.10)  # no unit before it in its passage: the lowest cosine
    assert col["passage2"].tolist() == [0, 0, 0, 1]
    assert col["lexical"][0] > col["lexical"][1]  # the title echoes the question's words


def test_the_packaged_scorer_loads_and_scores_the_product_encoders_vectors():
    scorer = unit_scorer.packaged()
    assert scorer.agree is not None and len(scorer.agree) == 384 and scorer.w1.shape[0] == len(FEATURES)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4, 384)).astype(np.float32)
    s = scorer.scores(unit_features("q?", UNITS, COS), vectors[0], vectors)
    assert s.shape == (4,) and np.isfinite(s).all()
    assert unit_scorer.for_width(384) is scorer


def test_another_encoder_width_ranks_by_cosine():
    scorer = unit_scorer.for_width(32)
    s = scorer.scores(unit_features("q?", UNITS, COS), np.zeros(32), np.zeros((4, 32)))
    assert np.argsort(-s).tolist() == np.argsort(-np.array([0.90, 0.80, 0.10, 0.70])).tolist()
    with pytest.raises(NotesRagError, match="fitted for 384-d"):
        unit_scorer.packaged().scores(unit_features("q?", UNITS, COS), np.zeros(32), np.zeros((4, 32)))


def test_damaged_weights_are_one_clear_error(tmp_path):
    bad = tmp_path / "w.json"
    bad.write_text("{not json")
    with pytest.raises(NotesRagError, match="cannot read the unit scorer weights"):
        UnitScorer.load(bad)
    data = json.loads(unit_scorer.PACKAGED.read_text())
    data["features"] = data["features"][:-1]
    bad.write_text(json.dumps(data))
    with pytest.raises(NotesRagError, match="fitted for features"):
        UnitScorer.load(bad)


def test_the_unit_prior_is_a_distribution_over_the_worded_units():
    class Wide:  # an encoder of the product's width: the packaged scorer applies
        def vectors(self, query, texts):
            rng = np.random.default_rng(len(texts))
            v = rng.normal(size=(len(texts), 384)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            return v[0], v

    passages = [("a.md › A", "\n".join(UNITS[0])), ("b.md › B", UNITS[1][0])]
    query = "How are positional embeddings combined?"
    prior = unit_prior(unit_view(Wide(), query, passages), query)
    assert [len(p) for p in prior] == [3, 1]
    flat = np.array([x for p in prior for x in p])
    assert flat[2] == -np.inf  # "---": no letter, never an answer's unit
    assert np.exp(flat[np.isfinite(flat)]).sum() == pytest.approx(1.0)

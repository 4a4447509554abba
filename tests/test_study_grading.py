"""Study mode grading: key terms with Polish inflection, numbers, the encoder's similarity, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from notes_rag.study.config import GradeConfig
from notes_rag.study.grading import grade, key_share, parse_override, stem_match


@pytest.mark.parametrize(
    "typed",
    [
        "pustą siecią neuronową",  # instrumental
        "pustej sieci neuronowej",  # genitive
        "pusta siec neuronowa",  # typed without diacritics
        "to pusta sieć neuronowa z losowymi wagami",  # the answer within a sentence
    ],
)
def test_inflected_polish_answers_are_accepted(typed):
    g = grade(typed, "pusta sieć neuronowa", "Czym jest model przed treningiem?")
    assert g.accepted and g.rating in ("good", "hard")


@pytest.mark.parametrize("typed", ["wytrenowany model językowy", "nie wiem", "", "?", "sieć"])
def test_wrong_or_empty_answers_are_rejected(typed):
    g = grade(typed, "pusta sieć neuronowa", "Czym jest model przed treningiem?")
    assert not g.accepted and g.rating == "again"


def test_numbers_must_match_exactly():
    assert grade("w 1943 roku", "1943").accepted
    assert not grade("w 1944 roku", "1943").accepted
    assert not grade("175 mln", "175 mld parametrów").accepted  # the unit is a key term


def test_terms_the_question_gives_are_no_evidence():
    # "słownik" is in the question: typing it back proves nothing
    share, missing = key_share("słownik", "słownik tokenów i identyfikatorów", "Czym jest słownik?")
    assert share < 0.6 and "tokenow" in missing


def test_stem_match_covers_inflection_not_other_words():
    assert stem_match("siec", "sieci") and stem_match("pusta", "puste") and stem_match("model", "model")
    assert not stem_match("token", "tabel") and not stem_match("wagi", "wektor")


def test_paraphrase_accepted_by_the_encoder_similarity():
    calls = []

    def similarity(query, texts):
        calls.append((query, texts))
        return np.array([0.95])

    g = grade("a table that maps tokens to numbers", "lookup table of token identifiers", "", similarity)
    assert g.accepted and calls and g.similarity == pytest.approx(0.95)
    far = grade("a kind of neural network", "lookup table of token identifiers", "", lambda q, t: np.array([0.5]))
    assert not far.accepted


def test_similarity_alone_needs_the_higher_bar():
    cfg = GradeConfig()
    below = grade("completely other words", "lookup table", "", lambda q, t: np.array([cfg.sim_alone - 0.01]))
    above = grade("completely other words", "lookup table", "", lambda q, t: np.array([cfg.sim_alone + 0.01]))
    assert not below.accepted and above.accepted


@pytest.mark.parametrize(
    ("text", "rating"), [("1", "again"), ("2", "hard"), ("g", "good"), ("Easy", "easy"), ("", None), ("x", None)]
)
def test_override_keys(text, rating):
    assert parse_override(text) == rating

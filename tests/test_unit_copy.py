"""Whole-unit answers (model/unit_copy.py): the first token moves to the start of the unit the
model points at, a copy run may not stop or turn before its unit's last word, the citation
names the passage the copied line is in, abstentions and stops stand; the numpy and torch
decoders write the same answer under it."""

from __future__ import annotations

import numpy as np
import pytest
from test_numpy_gpt import NO_FEATURES, RELEVANCE, _models

from notes_rag.model import engine, numpy_decode
from notes_rag.model.constraint import WordConstraint
from notes_rag.model.reader import copy_sources, encode
from notes_rag.model.sampling import SamplingConfig
from notes_rag.model.tokenizer import SPECIAL_TOKENS
from notes_rag.model.unit_copy import UnitCopy, prior_by_unit

PASSAGES = [
    ("a.md › Sieć", "Sieć neuronowa uczy się wag na podstawie danych.\nDane treningowe dzielimy na partie."),
    ("b.md", "Tokenizacja dzieli tekst na tokeny.\nSłownik przypisuje tokenom identyfikatory."),
]
QUESTION = "Czego uczy się sieć neuronowa?"


def _setup(tok):
    inp = encode(tok, QUESTION, PASSAGES, max_len=400)
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    words = WordConstraint.for_sources(tok, [t for _, t in PASSAGES] + [QUESTION], stop_ids=specials)
    abstain = [tok.encode("Nie")[0]]
    opens, numbers = {tok.encode(" [")[-1]}, {p: tok.encode(str(p))[0] for p in (1, 2)}
    return inp, specials, UnitCopy(tok.token_bytes, inp, words, abstain, specials, opens, numbers), abstain


def _text(tok, inp, unit) -> str:
    return tok.decode(inp.ids[unit.first : unit.last + 1]).strip()


def _onehot(tok, token: int) -> np.ndarray:
    logp = np.full(tok.vocab_size, -30.0, np.float32)
    logp[token] = 0.0
    return logp


def _pointer(inp, at: int):
    src = np.arange(len(inp.ids))
    attn = np.zeros(len(src), np.float32)
    attn[at] = 1.0
    return src, attn


def test_the_answer_starts_at_the_pointed_units_start_and_copies_it_whole(tok):
    inp, specials, rule, _ = _setup(tok)
    unit = inp.units[1]  # "Dane treningowe dzielimy na partie."
    mid = unit.last - 2  # the model points inside the line
    out = rule.candidates(_onehot(tok, inp.ids[mid]), True, _pointer(inp, mid))
    assert out == [inp.ids[rule.starts[1]]]
    while out[-1] not in specials:  # from then on the model wants to stop: it finishes the line first
        rule.push(out[-1])
        out += rule.candidates(_onehot(tok, specials[0]), True, None)
        assert len(out) < 40
    assert tok.decode(out[:-1]).strip() == _text(tok, inp, unit).rstrip(".")  # its last word ends it


def test_at_a_units_end_the_model_may_stop(tok):
    inp, specials, rule, _ = _setup(tok)
    unit = inp.units[0]
    start = rule.starts[0]
    for j in range(start, unit.last + 1):
        assert rule.candidates(_onehot(tok, inp.ids[j]), True, _pointer(inp, j)) == [inp.ids[j]]
        rule.push(inp.ids[j])
    assert rule.candidates(_onehot(tok, specials[0]), True, None) == [specials[0]]


def test_the_citation_names_the_passage_the_line_was_copied_from(tok):
    inp, specials, rule, _ = _setup(tok)
    unit = next(u for u in inp.units if u.passage == 2)
    for j in range(rule.unit_start[unit.first], unit.last + 1):
        rule.push(rule.candidates(_onehot(tok, inp.ids[j]), True, _pointer(inp, j))[0])
    for t in tok.encode(" ["):
        rule.push(t)
    # the model would write [1]; the words it copied are in passage 2
    assert rule.candidates(_onehot(tok, tok.encode("1")[0]), True, None) == [tok.encode("2")[0]]


def test_a_bracket_inside_the_copied_line_is_copied_not_taken_for_a_citation(tok):
    passages = [("a.md", "Token [PAD] wyrównuje krótsze sekwencje do jednej długości.")]
    inp = encode(tok, "Do czego służy [PAD]?", passages, max_len=400)
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    opens = {tok.encode(s)[-1] for s in ("[", " [")}
    rule = UnitCopy(tok.token_bytes, inp, None, [], specials, opens, {1: tok.encode("1")[0]})
    unit = inp.units[0]
    out = rule.candidates(_onehot(tok, inp.ids[unit.last]), True, _pointer(inp, unit.last))
    while out[-1] not in specials:  # the model would cite at once: the line is copied whole first
        rule.push(out[-1])
        out += rule.candidates(_onehot(tok, specials[0]), True, None)
        assert len(out) < 80
    assert tok.decode(out[:-1]).strip() == _text(tok, inp, unit).rstrip(".")


def _with_prior(tok, inp, logps: list[float], weight: float):
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    prior = {(u.passage, u.start): lp for u, lp in zip(inp.units, logps)}
    return UnitCopy(tok.token_bytes, inp, None, [tok.encode("Nie")[0]], specials, (), {}, prior, weight)


def _spread(inp, weights: dict[int, float]):
    """Copy attention spread evenly over the tokens of units (index: attention mass)."""
    src = np.arange(len(inp.ids))
    attn = np.zeros(len(src), np.float32)
    for i, mass in weights.items():
        u = inp.units[i]
        attn[u.first : u.last + 1] = mass / (u.last - u.first + 1)
    return src, attn


def test_the_scorer_prior_weighs_the_units_the_model_attends_to(tok):
    inp = encode(tok, QUESTION, PASSAGES, max_len=400)
    assert len(inp.units) == 4
    pointer = _spread(inp, {0: 0.6, 1: 0.4})  # the model leans to unit 0
    token = inp.ids[inp.units[0].first]
    logps = list(np.log([0.1, 0.7, 0.1, 0.1]))  # the scorer to unit 1
    # alone, the attention mass decides; with the prior, 0.6 * 0.1**w < 0.4 * 0.7**w once w > ~0.21
    for weight, want in ((1e-6, 0), (0.5, 1), (1.0, 1)):
        rule = _with_prior(tok, inp, logps, weight)
        assert rule.candidates(_onehot(tok, token), True, pointer) == [inp.ids[rule.starts[want]]]
    # a unit the model gives no attention is not chosen however sure the scorer is
    rule = _with_prior(tok, inp, list(np.log([0.01, 0.01, 0.97, 0.01])), 0.5)
    assert rule.candidates(_onehot(tok, token), True, pointer) == [inp.ids[rule.starts[0]]]


def test_the_chats_per_passage_prior_reaches_the_right_unit(tok):
    """`prior_by_unit` keys the scorer's per-passage list (over `text.unit_spans`) as the reader's
    units are, so the unit it favours is the one the rule starts at."""
    inp = encode(tok, QUESTION, PASSAGES, max_len=400)
    per_passage = [[-30.0, -30.0], [-30.0, 0.0]]  # passage 2, second line
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    prior = prior_by_unit(PASSAGES, per_passage)
    rule = UnitCopy(tok.token_bytes, inp, None, [], specials, (), {}, prior, 1.0)
    pointer = _spread(inp, {0: 0.4, 1: 0.3, 2: 0.2, 3: 0.1})
    start = rule.candidates(_onehot(tok, inp.ids[inp.units[0].first]), True, pointer)
    unit = next(u for u in inp.units if rule.unit_start[u.first] == rule.starts[3])
    assert start == [inp.ids[rule.starts[3]]] and _text(tok, inp, unit) == "Słownik przypisuje tokenom identyfikatory."


def test_the_prior_leaves_abstentions_and_stops_to_the_model(tok):
    inp = encode(tok, QUESTION, PASSAGES, max_len=400)
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    for token in (tok.encode("Nie")[0], specials[0]):
        rule = _with_prior(tok, inp, [0.0, -9.0, -9.0, -9.0], 1.0)
        assert rule.candidates(_onehot(tok, token), True, _spread(inp, {0: 1.0})) == [token]


@pytest.mark.parametrize("first", ["abstain", "stop", "question"])
def test_abstentions_stops_and_copies_outside_units_stand(tok, first):
    inp, specials, rule, abstain = _setup(tok)
    if first == "question":  # a token the model points at in the question, not in a unit
        at = inp.ids.index(tok.encode(" neuronowa")[0]) if tok.encode(" neuronowa")[0] in inp.ids else None
        if at is None or any(u.first <= at <= u.last for u in inp.units):
            pytest.skip("the tokenizer splits the word differently")
        token, pointer = inp.ids[at], _pointer(inp, at)
    else:
        token, pointer = (abstain[0] if first == "abstain" else specials[0]), _pointer(inp, 0)
    assert rule.candidates(_onehot(tok, token), True, pointer) == [token]


@pytest.mark.parametrize("overrides", [RELEVANCE, NO_FEATURES])
def test_numpy_and_torch_write_the_same_whole_unit_answer(tok, tmp_path, overrides):
    torch_model, np_model = _models(tok, tmp_path, seq_len=160, **overrides)
    inp = encode(tok, QUESTION, PASSAGES, max_len=np_model.config.seq_len - 40)
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    mask = copy_sources(inp.ids, set(specials))

    # with the chat's prior too: the numpy path (the chat's) and torch (the benchmarks') agree
    prior = prior_by_unit(PASSAGES, [[-0.5, -2.0], [-1.0, -3.0]])

    def answer(generate_copy, model, with_prior):
        words = WordConstraint.for_sources(tok, [t for _, t in PASSAGES] + [QUESTION], stop_ids=specials)
        extra = (prior, 0.5) if with_prior else ()
        rule = UnitCopy(tok.token_bytes, inp, words, [], specials, (), {}, *extra)
        cfg = SamplingConfig(max_new_tokens=30)
        return list(generate_copy(model, inp.ids, mask, inp.match, cfg, stop_ids=specials, constraint=rule))

    for with_prior in (False, True):
        ours = answer(numpy_decode.generate_copy, np_model, with_prior)
        theirs = answer(engine.generate_copy, torch_model, with_prior)
        assert ours == theirs and ours

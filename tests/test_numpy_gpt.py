"""The numpy model (model/numpy_gpt.py, numpy_decode.py) equals the torch model: logits, the copy
head's first step, the no-answer score, each cached decode step and the greedy answer (with and
without the word constraint), on random tiny models; it never imports torch; folders it cannot
run fall back."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from notes_rag.chat.writer import no_answer_score
from notes_rag.model import engine, kernels, numpy_decode, numpy_gpt
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.constants import AFTER_SHIFT, COPY_FEATURES, COS_SHIFT, RANK_SHIFT
from notes_rag.model.constraint import WordConstraint
from notes_rag.model.engine import CopyDecoder
from notes_rag.model.gpt import GPT, GPTConfig
from notes_rag.model.numpy_gpt import NumpyCopyDecoder, NumpyGPT, load_numpy_gpt
from notes_rag.model.reader import copy_sources, encode
from notes_rag.model.sampling import SamplingConfig
from notes_rag.model.tokenizer import SPECIAL_TOKENS
from notes_rag.text import lowercase_words

TOL = 1e-4
# every copy feature and the relevance tables (rank and cosine bin above the match flags); none
RELEVANCE = {"relevance": True, "structure": True, "copy_features": COPY_FEATURES}
NO_FEATURES = {"copy_features": ()}


def test_eps_is_the_torch_kernels():
    # the other shared numbers are imported from model/constants.py by both; eps is torch's own
    assert numpy_gpt.EPS == kernels.EPS


def _random_checkpoint(tok, tmp_path, seed=0, **overrides):
    """A tiny copy-head GPT with every weight random (none left at its zero init), saved."""
    torch.manual_seed(seed)
    cfg = dict(vocab_size=tok.vocab_size, seq_len=96, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, copy_head=True)
    model = GPT(GPTConfig(**{**cfg, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)
    write_checkpoint(tmp_path / "ck", model, tok)
    return tmp_path / "ck"


def _models(tok, tmp_path, **overrides):
    folder = _random_checkpoint(tok, tmp_path, **overrides)
    loaded = load_numpy_gpt(folder)
    assert loaded is not None
    return load_model(folder)[0], loaded[0]


def _prompt(n: int, vocab: int, seed: int):
    """ids, copy mask and match codes: flag bits, and a unit rank, cosine bin and place after the
    top units above them."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 40, n).tolist()  # a small range, so tokens repeat and runs form
    ids[-1] = ids[n // 2]  # the last token occurs earlier: `follows_last` fires
    codes = rng.integers(0, 16, n) | rng.integers(0, 8, n) << RANK_SHIFT | rng.integers(0, 8, n) << COS_SHIFT
    codes |= rng.integers(0, 5, n) << AFTER_SHIFT
    return ids, (rng.random(n) < 0.7).tolist(), codes.tolist()


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": False, "n_kv_head": 4}, NO_FEATURES, RELEVANCE])
def test_logits_and_first_step_equal_torch(tok, tmp_path, overrides):
    torch_model, np_model = _models(tok, tmp_path, **overrides)
    for seed, n in ((1, 7), (2, 60)):
        ids, mask, match = _prompt(n, tok.vocab_size, seed)
        with torch.no_grad():
            logits = torch_model(torch.tensor([ids]))[0].numpy()
        assert np.abs(np_model.logits(ids) - logits).max() < TOL
        want = CopyDecoder(torch_model, ids, mask, match).prefill().numpy()
        got = np_model.first_logprobs(ids, mask, match)
        assert got.shape == want.shape and np.abs(got - want).max() < TOL
        assert np.isclose(np.exp(got).sum(), 1.0, atol=1e-4)  # a distribution over the vocabulary


def test_no_source_position_uses_the_vocabulary_alone(tok, tmp_path):
    torch_model, np_model = _models(tok, tmp_path)
    ids, _, match = _prompt(20, tok.vocab_size, 3)
    none = [False] * len(ids)
    want = CopyDecoder(torch_model, ids, none, match).prefill().numpy()
    assert np.abs(np_model.first_logprobs(ids, none, match) - want).max() < TOL


def test_no_answer_score_is_the_same_on_a_real_input(tok, tmp_path):
    torch_model, np_model = _models(tok, tmp_path)
    passages = [("a.md › Sieć", "Sieć neuronowa uczy się wag na podstawie danych."), ("b.md", "Tokenizacja.")]
    inp = encode(tok, "Czego uczy się sieć?", passages, max_len=90)
    assert abs(no_answer_score(np_model, tok, inp) - no_answer_score(torch_model, tok, inp)) < TOL


def test_folders_it_cannot_run_fall_back_to_torch(tok, tmp_path):
    assert load_numpy_gpt(tmp_path / "missing") is None
    torch.manual_seed(0)
    plain = GPT(GPTConfig(vocab_size=tok.vocab_size, seq_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=16))
    write_checkpoint(tmp_path / "plain", plain, tok)  # no copy head: nothing for the numpy path
    assert load_numpy_gpt(tmp_path / "plain") is None
    folder = _random_checkpoint(tok, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["tokenizer"] = "0" * 16  # the torch loader reports this mismatch; numpy just declines
    (folder / "config.json").write_text(json.dumps(config))
    assert load_numpy_gpt(folder) is None


def test_writing_an_answer_switches_to_the_torch_model(tok, tmp_path):
    folder = _random_checkpoint(tok, tmp_path)
    np_model = load_numpy_gpt(folder)[0]
    assert isinstance(np_model, NumpyGPT) and isinstance(np_model.torch_model(), GPT)


@pytest.mark.parametrize("overrides", [RELEVANCE, NO_FEATURES, {"n_kv_head": 1}])
def test_each_cached_decode_step_equals_torch(tok, tmp_path, monkeypatch, overrides):
    torch_model, np_model = _models(tok, tmp_path, **overrides)
    monkeypatch.setattr(numpy_gpt, "ATTN_BLOCK", 16)  # the prompt pass in 4 blocks, the last one short
    ids, mask, match = _prompt(50, tok.vocab_size, 4)
    ours, theirs = NumpyCopyDecoder(np_model, ids, mask, match), CopyDecoder(torch_model, ids, mask, match)
    got, want = ours.prefill(), theirs.prefill().numpy()
    assert np.abs(got - want).max() < TOL
    # continue a span of the prompt, so follows_last(_two) and longest_run fire, then a stray token
    for token in [*ids[10:16], 39]:
        got, want = ours.step(token), theirs.step(token).numpy()
        assert got.dtype == np.float32 and np.abs(got - want).max() < TOL


def _question(tok, np_model):
    """A real model input (question, passages) with relevance codes on its tokens."""
    passages = [
        ("a.md › Sieć", "Sieć neuronowa uczy się wag na podstawie danych. Zażółć gęślą jaźń."),
        ("b.md", "Tokenizacja dzieli tekst na tokeny; słownik przypisuje im identyfikatory 749 i 750."),
        ("c.md", "Mechanizm uwagi (attention) liczy podobieństwo zapytania do klucza."),
    ]
    question = "Czego uczy się sieć neuronowa?"
    inp = encode(tok, question, passages, max_len=np_model.config.seq_len - 40)
    rank, cos, after = np.random.default_rng(7).integers(0, 5, (3, len(inp.ids)))
    match = (np.asarray(inp.match) | rank << RANK_SHIFT | cos << COS_SHIFT | after << AFTER_SHIFT).tolist()
    specials = [tok.special(s) for s in SPECIAL_TOKENS]
    sources = [*(text for _, text in passages), question]
    return inp.ids, copy_sources(inp.ids, set(specials)), match, specials, sources


@pytest.mark.parametrize("overrides", [RELEVANCE, NO_FEATURES])
@pytest.mark.parametrize("constrained", [False, True])
def test_greedy_answer_is_the_torch_one(tok, tmp_path, overrides, constrained):
    torch_model, np_model = _models(tok, tmp_path, seq_len=160, **overrides)
    ids, mask, match, specials, sources = _question(tok, np_model)
    cfg = SamplingConfig(max_new_tokens=30)

    def answer(generate_copy, model):
        constraint = WordConstraint.for_sources(tok, sources, stop_ids=specials) if constrained else None
        return list(generate_copy(model, ids, mask, match, cfg, stop_ids=specials, constraint=constraint))

    ours, theirs = answer(numpy_decode.generate_copy, np_model), answer(engine.generate_copy, torch_model)
    assert ours == theirs and len(ours) > 3


def test_first_step_hook_gets_an_array_and_steers(tok, tmp_path):
    _, np_model = _models(tok, tmp_path, seq_len=160)
    ids, mask, match, specials, _ = _question(tok, np_model)
    seen = []

    def force(logp):
        seen.append(logp)
        logp = logp.copy()
        logp[5] += 1e3  # the writer adds its abstention bias the same way
        return logp

    out = list(numpy_decode.generate_copy(np_model, ids, mask, match, SamplingConfig(max_new_tokens=3), on_first=force))
    assert isinstance(seen[0], np.ndarray) and seen[0].shape == (tok.vocab_size,) and out[0] == 5


def test_sampling_is_seeded_and_stays_in_the_constraint(tok, tmp_path):
    _, np_model = _models(tok, tmp_path, seq_len=160)
    ids, mask, match, specials, sources = _question(tok, np_model)

    def sample(seed):
        cfg = SamplingConfig(temperature=1.0, top_k=50, top_p=0.9, max_new_tokens=25, seed=seed)
        constraint = WordConstraint.for_sources(tok, sources, stop_ids=specials)
        return list(numpy_decode.generate_copy(np_model, ids, mask, match, cfg, specials, constraint))

    draws = [sample(seed) for seed in (1, 1, 2, 3)]
    assert draws[0] == draws[1] and len({tuple(d) for d in draws}) > 1
    allowed = WordConstraint.for_sources(tok, sources, stop_ids=specials).word_set
    assert all(set(lowercase_words(tok.decode(d))) <= allowed for d in draws)


def test_answering_never_imports_torch(tok, tmp_path):
    folder = _random_checkpoint(tok, tmp_path, **RELEVANCE)
    script = f"""
import sys
from pathlib import Path
from notes_rag.model.constraint import WordConstraint
from notes_rag.model.numpy_decode import generate_copy
from notes_rag.model.numpy_gpt import load_numpy_gpt
from notes_rag.model.sampling import SamplingConfig, stream_text
model, tok, _ = load_numpy_gpt(Path({str(folder)!r}))
ids = tok.encode("Sieć neuronowa uczy się wag.")
constraint = WordConstraint.for_sources(tok, ["Sieć neuronowa uczy się wag."])
cfg = SamplingConfig(max_new_tokens=5)
out = generate_copy(model, ids, [True] * len(ids), [1] * len(ids), cfg, constraint=constraint)
print("".join(stream_text(tok.token_bytes, out)))
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)

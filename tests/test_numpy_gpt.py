"""The numpy prompt pass (model/numpy_gpt.py) equals the torch model: logits, the copy head's
first step and the no-answer score, on random tiny models; folders it cannot run fall back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from notes_rag.chat.writer import no_answer_score
from notes_rag.model import kernels, numpy_gpt
from notes_rag.model.checkpoint import load_model, write_checkpoint
from notes_rag.model.engine import CopyDecoder
from notes_rag.model.gpt import GPT, GPTConfig
from notes_rag.model.numpy_gpt import NumpyGPT, load_numpy_gpt
from notes_rag.model.reader import encode

TOL = 1e-4


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
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 40, n).tolist()  # a small range, so tokens repeat and runs form
    ids[-1] = ids[n // 2]  # the last token occurs earlier: `follows_last` fires
    return ids, (rng.random(n) < 0.7).tolist(), rng.integers(0, 16, n).tolist()


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": False, "n_kv_head": 4}, {"copy_features": ()}])
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

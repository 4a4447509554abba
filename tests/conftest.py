"""Shared fixtures: a throwaway tokenizer trained in-process and a tiny GPT."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from notes_rag.model.gpt import GPT, preset
from notes_rag.model.tokenizer import train_tokenizer

# Tests embed with the reference torch fp32 path; tests/test_fast_encoder.py turns the fast
# path (index/fast_encoder.py) on where it tests it.
os.environ.setdefault("NOTES_RAG_FAST_ENCODER", "off")

SAMPLE_TEXT = [
    "Sieć neuronowa uczy się wag na podstawie danych. Zażółć gęślą jaźń, źdźbło, łódź.",
    "A transformer uses self-attention to mix information between tokens in a sequence.",
    "Tokenizacja dzieli tekst na tokeny; słownik przypisuje im identyfikatory 749, 750 i 751.",
    "Embeddings map token ids to vectors; positional embeddings add order information.",
    "Mechanizm uwagi (attention) liczy podobieństwo zapytania do klucza i normalizuje je softmaxem.",
] * 20


@pytest.fixture(scope="session")
def tok():
    return train_tokenizer(iter(SAMPLE_TEXT), vocab_size=400)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tok):
    """A tiny copy-head generator checkpoint folder (tests/tiny_chat.py), written once a run;
    tests read it, never write to it."""
    from tiny_chat import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "best", tok)


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    """tests/tiny_chat.py's NOTES indexed with the tiny encoder, once a test module (a module that
    needs other notes defines its own `tiny_index`)."""
    from tiny_chat import NOTES, build_tiny_index

    return build_tiny_index(tmp_path_factory.mktemp("notes"), NOTES)


@pytest.fixture()
def tiny_model(tok):
    torch.manual_seed(0)
    model = GPT(preset("tiny", vocab_size=tok.vocab_size))
    # random (not zero) output projections, so tests exercise every path
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


@pytest.fixture()
def interrupt_at(monkeypatch):
    """Deliver a real SIGINT (Ctrl-C) during the N-th optimizer step, once."""

    def arm(n: int):
        real = torch.nn.utils.clip_grad_norm_
        calls = {"n": 0}

        def clip(params, max_norm):
            calls["n"] += 1
            if calls["n"] == n:
                signal.raise_signal(signal.SIGINT)
            return real(params, max_norm)

        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)

    return arm

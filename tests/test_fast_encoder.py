"""The fast index-time encoder (index/fast_encoder.py): its vectors are the torch encoder's within
the guard (cosine >= 0.995), and without onnxruntime the encoder falls back with one line.

The tiny encoder (tests/tiny_encoder.py) everywhere but the one slow test of the real model.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.index import encoder as E
from notes_rag.index import fast_encoder as F

TEXTS = [
    "Sieć neuronowa uczy się wag na podstawie danych.",
    "A transformer uses self-attention to mix information between tokens in a sequence.",
    "Tokenizacja dzieli tekst na tokeny; słownik przypisuje im identyfikatory 749, 750 i 751. " * 3,
    "x",
    "Embeddings map token ids to vectors; positional embeddings add order information. " * 8,
]


@pytest.fixture
def fast_on(monkeypatch):
    monkeypatch.setenv(F.FAST_ENV, "auto")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-fast"))


def assert_within_guard(fast, reference) -> None:
    for encode in (E.encode_passages, E.encode_queries):
        a, b = encode(fast, TEXTS), encode(reference, TEXTS)
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
        assert (a * b).sum(axis=1).min() >= F.GUARD, encode.__name__


def test_fast_path_vectors_equal_the_reference_within_the_guard(fast_on, tiny_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    reference = E.load_encoder(tiny_folder)
    fast = E.load_encoder(tiny_folder)
    assert F.attach(fast, tiny_folder, cache_dir=tmp_path)
    assert isinstance(fast.notes_rag_fast, F.OnnxEncoder)
    assert_within_guard(fast, reference)
    assert E.encode_passages(fast, []).shape == (0, 32)
    # the export is built once: a second encoder takes it from the cache
    (built,) = [p for p in tmp_path.glob("*-onnx-int8-r*") if p.is_dir()]
    stamp = (built / "model.onnx").stat().st_mtime_ns
    again = E.load_encoder(tiny_folder)
    assert F.attach(again, tiny_folder, cache_dir=tmp_path)
    assert (built / "model.onnx").stat().st_mtime_ns == stamp
    assert np.array_equal(E.encode_passages(again, TEXTS), E.encode_passages(fast, TEXTS))


def test_without_onnxruntime_falls_back_with_one_line(fast_on, tiny_folder, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    reference = E.load_encoder(tiny_folder)
    encoder = E.load_encoder(tiny_folder)
    with caplog.at_level(logging.WARNING, logger=F.__name__):
        assert not F.attach(encoder, tiny_folder, cache_dir=tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == F.__name__]
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0] and "torch" in lines[0]
    assert getattr(encoder, "notes_rag_fast", None) is None
    assert_within_guard(encoder, reference)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # nothing built


def test_bf16_fallback_stays_within_the_guard(tiny_folder):
    """The torch path in bf16 (what a CPU with native bf16 and no onnxruntime embeds with)."""
    reference = E.load_encoder(tiny_folder)
    encoder = E.load_encoder(tiny_folder)
    encoder.notes_rag_bf16 = True
    assert_within_guard(encoder, reference)


def test_off_means_the_torch_reference(tiny_folder, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(F.FAST_ENV, "off")
    encoder = E.load_encoder(tiny_folder)
    with caplog.at_level(logging.WARNING, logger=F.__name__):
        assert not F.attach(encoder, tiny_folder, cache_dir=tmp_path)
    assert not caplog.records  # asked for: nothing to report


def test_batches_by_length_cover_every_text_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 512, size=300).tolist()
    batches = F.batches_by_length(lengths, budget=4096, max_rows=64)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        assert len(b) <= 64 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 4096)
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest, reverse=True)


@pytest.mark.slow
def test_real_encoder_fast_path_within_the_guard(fast_on, tmp_path, monkeypatch):
    """The default e5 (plain conversion, in a private cache) through the whole fast path."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("NOTES_RAG_CACHE", str(tmp_path))
    monkeypatch.setenv("NOTES_RAG_ENCODER_DELTA", "none")
    fast = E.load_encoder()
    assert isinstance(getattr(fast, "notes_rag_fast", None), F.OnnxEncoder)
    monkeypatch.setenv(F.FAST_ENV, "off")
    assert_within_guard(fast, E.load_encoder())

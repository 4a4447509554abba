"""The aligned encoder: fine-tuning brings translations together, and the encoder delta that ships
it loads the same into the index-time and query-time encoders, or fails with one line.

Training runs on the tiny random encoder of tests/tiny_encoder.py; the shipped delta
(models/encoder-delta.safetensors) is checked against the converted multilingual-e5-small when
this machine's cache holds it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.errors import NotesRagError
from notes_rag.index import encoder as E
from notes_rag.index import encoder_cache as C
from notes_rag.index.align_data import AlignDataConfig, Pair, _clean_message, align_paragraphs, page_key
from notes_rag.index.align_train import AlignTrainConfig, heldout_scores, train_alignment
from notes_rag.index.bert_encoder import BertEncoder
from notes_rag.index.encoder_delta import header_path, read_delta, write_delta

PAIRS = [
    ("The tokenizer splits text into tokens.", "Tokenizer dzieli tekst na tokeny."),
    ("Attention mixes information between tokens.", "Mechanizm uwagi miesza informacje między tokenami."),
    ("Embeddings map token ids to vectors.", "Osadzenia odwzorowują identyfikatory tokenów na wektory."),
    ("The network learns weights from data.", "Sieć neuronowa uczy się wag na podstawie danych."),
    ("A vocabulary is a lookup table.", "Słownik to tabela odwzorowań."),
    ("Cross entropy is the loss function.", "Funkcja straty to entropia krzyżowa."),
    ("Code blocks are kept whole.", "Bloki kodu są zachowywane w całości."),
    ("Positional embeddings add order.", "Osadzenia pozycyjne dodają kolejność."),
]


def _cosine_of_pairs(encoder) -> float:
    en = E.encode_passages(encoder, [e for e, _ in PAIRS])
    pl = E.encode_passages(encoder, [p for _, p in PAIRS])
    return float((en * pl).sum(1).mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(tiny base folder, the model after fine-tuning, its delta file, cosine before)."""
    root = tmp_path_factory.mktemp("align")
    base = build_tiny_encoder(root / "base")
    model = E.load_encoder(base, trainable=True)
    before = _cosine_of_pairs(model)
    pairs = [Pair(e, p, "test", "kit") for e, p in PAIRS]
    cfg = AlignTrainConfig(layers=2, lr=1e-2, batch_size=8, epochs=6, max_seq_length=64, en_share=0.5)
    delta = train_alignment(model, pairs, cfg, root / "run", C.encoder_id(base))
    return base, model, delta, before


def test_fine_tuning_brings_a_translation_closer(trained):
    base, model, delta, before = trained
    after = _cosine_of_pairs(model)
    # a random tiny encoder already puts every text near every other: the distance is what shrinks
    assert 1 - after < 0.75 * (1 - before), (before, after)
    header = json.loads(header_path(delta).read_text())
    assert header["layers"] == [0, 1] and header["base_encoder"] == C.encoder_id(base)
    # only transformer layers ship: never the word-embedding table
    tensors, _ = read_delta(delta)
    assert tensors and all(n.startswith("encoder.layer.") for n in tensors)


def test_applied_delta_loads_the_same_at_index_and_query_time(trained, tmp_path):
    base, model, delta, _ = trained
    aligned = tmp_path / "aligned"
    C.build_aligned_model(base, delta, aligned)
    index_time, query_time = E.load_encoder(aligned), E.load_query_encoder(aligned)
    assert isinstance(query_time, BertEncoder)
    texts = [t for pair in PAIRS for t in pair]
    for encode in (E.encode_queries, E.encode_passages):
        a, b = encode(index_time, texts), encode(query_time, texts)
        assert (a * b).sum(1).min() >= 0.9999
        # and they are the fine-tuned model's vectors (up to the delta's fp16 rounding)
        assert (a * encode(model, texts)).sum(1).min() >= 0.999
    assert C.encoder_id(aligned) != C.encoder_id(base)


def test_corrupt_or_mismatched_delta_is_one_line_error(trained, tmp_path):
    base, _, delta, _ = trained
    bad = tmp_path / "bad.safetensors"
    shutil.copyfile(delta, bad)
    shutil.copyfile(header_path(delta), header_path(bad))
    data = bytearray(bad.read_bytes())
    data[-5] ^= 0xFF
    bad.write_bytes(bytes(data))
    for case in ("corrupt", "no header", "other base", "shape"):
        if case == "no header":
            header_path(bad).unlink()
        elif case == "other base":
            write_delta(bad, read_delta(delta)[0], "another-encoder-0123456789abcdef", {})
        elif case == "shape":
            tensors = read_delta(delta)[0]
            name = next(iter(tensors))
            write_delta(bad, {**tensors, name: np.zeros((3, 3), np.float16)}, C.encoder_id(base), {})
        with pytest.raises(NotesRagError) as err:
            C.build_aligned_model(base, bad, tmp_path / f"out-{case.replace(' ', '-')}")
        assert "\n" not in str(err.value) and str(bad) in str(err.value), case
        assert not (tmp_path / f"out-{case.replace(' ', '-')}").exists()


def test_delta_file_choice(monkeypatch, tmp_path):
    monkeypatch.setenv(C.DELTA_ENV, "none")
    assert C.encoder_delta_file() is None
    monkeypatch.setenv(C.DELTA_ENV, str(tmp_path / "missing.safetensors"))
    with pytest.raises(NotesRagError, match="no such encoder delta"):
        C.encoder_delta_file()


class _OneHot:
    """An encoder giving each known text its own axis (texts mapped to one name share it)."""

    prompts: dict = {}

    def __init__(self, axis: dict[str, int]):
        self.axis = axis

    def encode(self, texts, **_):
        out = np.zeros((len(texts), max(self.axis.values()) + 1), np.float32)
        out[np.arange(len(texts)), [self.axis[t] for t in texts]] = 1.0
        return out


def test_heldout_scores_find_each_texts_partner():
    pairs = [Pair(e, p, "test", "kit") for e, p in PAIRS]
    # each translation on its original's vector: found, and the original itself never counts
    aligned = _OneHot({t: i for i, pair in enumerate(PAIRS) for t in pair})
    assert heldout_scores(aligned, pairs) == {
        "pairs": len(PAIRS),
        "en_to_pl@1": 1.0,
        "pl_to_en@1": 1.0,
        "en_mixed@1": 1.0,
        "pl_mixed@1": 1.0,
    }
    # every Polish text on the next pair's English vector: never found
    shifted = _OneHot(
        {**{e: i for i, (e, _) in enumerate(PAIRS)}, **{p: (i + 1) % len(PAIRS) for i, (_, p) in enumerate(PAIRS)}}
    )
    scores = heldout_scores(shifted, pairs)
    assert scores["en_to_pl@1"] == scores["pl_to_en@1"] == 0.0


def test_paragraph_alignment_keeps_confident_pairs_and_skips_untranslated_ones():
    en = [
        "Run apt-get update to refresh the package lists from /etc/apt/sources.list.",
        "Click the Settings button in the top bar to open the panel.",
        "Version 3.11 adds the tomllib module.",
    ]
    pl = [
        "Uruchom apt-get update, aby odświeżyć listy pakietów z /etc/apt/sources.list.",
        "Kliknij przycisk Ustawienia na górnym pasku, aby otworzyć panel.",
        "Wersja 3.11 dodaje moduł tomllib.",
    ]
    cfg = AlignDataConfig()
    # the unanchored middle pair is trusted inside a 1-1 run between anchored pairs
    assert align_paragraphs(en, pl, cfg) == [(0, 0), (1, 1), (2, 2)]
    # an untranslated English paragraph makes the run uneven: only the anchored pairs stay
    untranslated = "This paragraph was never translated into Polish, so it has no partner at all."
    assert align_paragraphs(en[:1] + [untranslated] + en[1:], pl, cfg) == [(0, 0), (3, 2)]
    assert page_key("debian:gnome-user-docs=43.0-2 (pl):gnome-help/a11y.page") == "gnome-help/a11y"
    assert page_key("github:python/python-docs-pl@c306d49:c-api/abstract.po") == "c-api/abstract"
    assert _clean_message("_Open %s file…\\n") == "Open file…"


SHIPPED = Path(__file__).resolve().parents[1] / "models" / C.DELTA_FILE


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="no encoder delta in models/")
@pytest.mark.skipif(
    C._cache_problem(C.default_model_dir(), None) is not None, reason="no converted default encoder in the cache"
)
def test_shipped_delta_loads_and_both_encoders_agree(tmp_path):
    tensors, header = read_delta(SHIPPED)
    assert header["base_encoder"] == C.encoder_id(C.default_model_dir())
    assert SHIPPED.stat().st_size <= 50 * 2**20 and header["sha256"]
    aligned = tmp_path / "aligned"
    C.build_aligned_model(C.default_model_dir(), SHIPPED, aligned)
    texts = ["What is a token vocabulary?", "Słownik to tabela odwzorowań (lookup table).", "funkcja straty"]
    index_time, query_time = E.load_encoder(aligned), E.load_query_encoder(aligned)
    assert isinstance(query_time, BertEncoder)
    for encode in (E.encode_queries, E.encode_passages):
        a, b = encode(index_time, texts), encode(query_time, texts)
        assert (a * b).sum(1).min() >= 0.9999

"""The numpy query-time encoder (index/bert_encoder.py) gives the sentence-transformers vectors.

Compared on the tiny random encoder of tests/tiny_encoder.py (mean pooling with Normalize, and a
CLS-pooled copy without it) and, when this machine's cache holds it, on the converted default
multilingual-e5-small the indexes are built with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_encoder import TINY_MAX_SEQ, build_tiny_encoder

from notes_rag.index import encoder as E
from notes_rag.index import encoder_cache as C
from notes_rag.index.bert_encoder import BertEncoder, unsupported

CORPUS = Path(__file__).resolve().parents[1] / "corpus"

TEXTS = [
    "Mechanizm uwagi (attention) liczy ważoną sumę wektorów wartości dla każdego tokena.",
    "What is attention in a transformer, and why does it scale quadratically?",
    "Zażółć gęślą jaźń. ŁÓDŹ, Świętokrzyskie, żółw — źdźbło trawy.",
    "Über naïve café: NFKC turns ﬁ, ① and ＡＢＣ into plain letters.",
    "  leading spaces,\ttabs\nand newlines  collapse  ",
    "",
    "Kto zaproponował matematyczny model neuronu?",
    "tokens " * 100,  # past the tiny encoder's 64 tokens: truncated the same way
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same_vectors(ours, reference, texts) -> None:
    for encode in (E.encode_queries, E.encode_passages):
        a, b = encode(ours, texts), encode(reference, texts)
        assert a.shape == b.shape and a.dtype == np.float32
        assert cosines(a, b).min() >= 0.9999, encode.__name__
        assert np.allclose(a, b, atol=1e-5), encode.__name__


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def test_tiny_encoder_vectors_match_sentence_transformers(tiny):
    ours = E.load_query_encoder(tiny)
    assert isinstance(ours, BertEncoder) and unsupported(tiny) is None
    assert ours.max_seq_length == TINY_MAX_SEQ and ours.prompts["query"] == "query: "
    assert_same_vectors(ours, E.load_encoder(tiny), TEXTS)
    # each text alone gives what it gives in a padded batch
    alone = np.concatenate([E.encode_queries(ours, [t]) for t in TEXTS])
    assert np.allclose(alone, E.encode_queries(ours, TEXTS), atol=1e-6)
    assert C.encoder_id(ours) == C.encoder_id(tiny)  # the index checks the encoder by content


def test_cls_pooling_without_normalize(tiny, tmp_path):
    folder = tmp_path / "cls"
    shutil.copytree(tiny, folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "cls"}))
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:2]))
    ours = BertEncoder(folder)
    assert ours.pooling == "cls" and not ours.normalize
    assert_same_vectors(ours, E.load_encoder(folder), TEXTS)


def test_other_models_are_loaded_with_sentence_transformers(tiny, tmp_path):
    folder = tmp_path / "max"
    shutil.copytree(tiny, folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "max"}))
    assert "pooling" in unsupported(folder)
    fallback = E.load_query_encoder(folder)
    assert not isinstance(fallback, BertEncoder)
    assert np.allclose(E.encode_queries(fallback, TEXTS[:2]), E.encode_queries(E.load_encoder(folder), TEXTS[:2]))

    shutil.copy(tiny / "1_Pooling" / "config.json", folder / "1_Pooling" / "config.json")
    config = json.loads((tiny / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    assert "roberta" in unsupported(folder)
    assert "unreadable" in unsupported(tmp_path)  # no modules.json


def test_query_encoder_imports_neither_torch_nor_sentence_transformers(tiny):
    code = (
        "import sys\n"
        "from notes_rag.index.encoder import encode_queries, load_query_encoder\n"
        f"print(encode_queries(load_query_encoder({str(tiny)!r}), ['BPE merges']).shape)\n"
        "print(sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["(1, 32)", "[]"], out.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    C._cache_problem(C.default_model_dir(), None) is not None, reason="no converted default encoder in the cache"
)
def test_default_encoder_vectors_match_sentence_transformers():
    """The encoder the bundled index was built with, on questions and on every chunk of a note."""
    ours = E.load_query_encoder()
    assert isinstance(ours, BertEncoder)
    note = (CORPUS / "004_c37a24b139456986.txt").read_text(encoding="utf-8")
    chunks = [c for c in note.split("\n\n") if c.strip()][:40]
    assert_same_vectors(ours, E.load_encoder(), TEXTS[:-1] + chunks)


def test_preloaded_encoder_is_taken_over_with_its_errors(tiny, tmp_path):
    E.preload_query_encoder(str(tiny))
    taken = E.load_query_encoder(str(tiny))
    assert isinstance(taken, BertEncoder) and str(tiny) not in E._preloads
    assert np.allclose(E.encode_queries(taken, TEXTS[:2]), E.encode_queries(BertEncoder(tiny), TEXTS[:2]))
    E.preload_query_encoder(tmp_path / "missing")
    with pytest.raises(E.NotesRagError, match="encoder folder not found"):
        E.load_query_encoder(tmp_path / "missing")

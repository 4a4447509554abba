"""Indexing and search: incremental updates, atomicity, encodings, lock, errors, CLI, real search.

Most tests use a tiny random sentence-transformers encoder (tests/tiny_encoder.py), so they check
the machinery, not retrieval quality; the slow test at the end uses the real default encoder.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from tiny_encoder import TINY_MAX_SEQ, build_tiny_encoder

from notes_rag.errors import NotesRagError
from notes_rag.index import build as indexer
from notes_rag.index import store as index_store
from notes_rag.index.build import token_counter, update_index
from notes_rag.index.chunker import chunk_note
from notes_rag.index.config import IndexConfig
from notes_rag.index.encoder import load_encoder
from notes_rag.index.search import Retriever, resolve_index

REPO = Path(__file__).resolve().parents[1]

NOTE_A = (
    "# Sieci\n\n## Neuron\n\nModel neuronu zaproponowano w 1943 roku.\n\n## Uwaga\n\n"
    "Mechanizm uwagi liczy iloczyn skalarny zapytania i klucza, potem stosuje się softmax.\n"
)
NOTE_B = "# Tokens\n\nA tokenizer splits text into tokens.\n\n* BPE merges pairs\n* WordPiece scores pieces\n"
NOTE_C = "Plain text note about embeddings.\n\nPositional embeddings add order information.\n"


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def enc(tiny_path):
    return load_encoder(tiny_path)


@pytest.fixture()
def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text(NOTE_A, encoding="utf-8")
    (folder / "b.md").write_text(NOTE_B, encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "c.txt").write_text(NOTE_C, encoding="utf-8")
    return folder


def db_chunks(index_dir: Path) -> list[tuple[int, str, str]]:
    gen = index_store.current_generation(index_dir)
    conn = sqlite3.connect(gen / "chunks.sqlite")
    try:
        return conn.execute("SELECT id, file, text FROM chunks ORDER BY id").fetchall()
    finally:
        conn.close()


def expected_texts(folder: Path, enc) -> dict[str, list[str]]:
    count, limit = token_counter(enc)
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".md", ".txt") and not any(p.startswith(".") for p in path.relative_to(folder).parts):
            rel = path.relative_to(folder).as_posix()
            text = path.read_bytes().decode("utf-8")
            out[rel] = [c.text for c in chunk_note(text, rel, count, limit, IndexConfig())]
    return out


def assert_index_matches(folder: Path, index_dir: Path, enc) -> list[tuple[int, str, str]]:
    rows = db_chunks(index_dir)
    got: dict[str, list[str]] = {}
    for _, file, text in rows:
        got.setdefault(file, []).append(text)
    assert got == expected_texts(folder, enc)  # exactly the current files' chunks, no duplicates
    gen = index_store.current_generation(index_dir)
    dense = faiss.read_index(str(gen / "dense.faiss"))
    assert sorted(faiss.vector_to_array(dense.id_map).tolist()) == sorted(r[0] for r in rows)
    bm25_ids = np.load(gen / "bm25" / "ids.npy", allow_pickle=False)
    assert sorted(bm25_ids.tolist()) == sorted(r[0] for r in rows)
    return rows


def test_index_then_search_every_mode(notes, enc):
    report = update_index(notes, None, enc)
    assert report.added == ["a.md", "b.md", "sub/c.txt"] and report.rebuild_reason == "new index"
    index_dir = notes / ".notes-rag"
    rows = assert_index_matches(notes, index_dir, enc)
    r = Retriever(index_dir, encoder=enc)
    for mode in ("hybrid", "dense", "bm25"):
        res = r.search("iloczyn skalarny zapytania", k=2, mode=mode)
        assert 1 <= len(res) <= 2 and [h.rank for h in res] == list(range(1, len(res) + 1))
        assert -1.0 <= res.top_cosine <= 1.0 + 1e-5
    top = r.search("iloczyn skalarny zapytania", k=1, mode="bm25")[0]
    assert top.file == "a.md" and top.heading_path == ("Sieci", "Uwaga") and "iloczyn" in top.text
    assert (top.line_start, top.line_end) == (7, 9)
    assert top.citation == "a.md:7-9"
    assert len(r.chunks()) == len(rows) and r.file_langs()["a.md"] == "pl"
    with pytest.raises(NotesRagError, match="unknown search mode"):
        r.search("x", mode="fuzzy")


def test_incremental_add_modify_delete(notes, enc):
    update_index(notes, None, enc)
    index_dir = notes / ".notes-rag"
    before = {file: cid for cid, file, _ in db_chunks(index_dir)}
    (notes / "b.md").write_text(NOTE_B + "\n## More\n\nSentencePiece works on raw text.\n", encoding="utf-8")
    (notes / "sub" / "c.txt").unlink()
    (notes / "d.md").write_text("# New\n\nA brand new note about LoRA.\n", encoding="utf-8")
    calls = []
    report = update_index(notes, None, enc, on_progress=lambda d, t: calls.append((d, t)))
    assert (report.added, report.changed, report.removed, report.unchanged) == (["d.md"], ["b.md"], ["sub/c.txt"], 1)
    assert report.rebuild_reason is None
    rows = assert_index_matches(notes, index_dir, enc)
    after = {file: cid for cid, file, _ in rows}
    assert after["a.md"] == before["a.md"]  # unchanged file: same chunks, not re-embedded
    assert report.chunks_embedded == sum(1 for _, f, _ in rows if f in ("b.md", "d.md"))
    assert calls[-1] == (report.chunks_embedded, report.chunks_embedded)
    # nothing changed: no new generation is written
    gen = index_store.current_generation(index_dir)
    again = update_index(notes, None, enc)
    assert again.chunks_embedded == 0 and index_store.current_generation(index_dir) == gen
    assert [p.name for p in index_dir.glob("gen-*")] == [gen.name]  # replaced generations are gone


def test_changed_encoder_rebuilds_everything(notes, enc, tmp_path):
    update_index(notes, None, enc)
    other = load_encoder(build_tiny_encoder(tmp_path / "other", seed=1))
    report = update_index(notes, None, other)
    assert report.rebuild_reason.startswith("encoder changed")
    assert report.chunks_embedded == report.chunks_total
    with pytest.raises(NotesRagError, match="built with encoder"):
        Retriever(notes / ".notes-rag", encoder=enc)


def test_crash_mid_index_keeps_old_index_usable(notes, enc, monkeypatch):
    update_index(notes, None, enc)
    index_dir = notes / ".notes-rag"
    old_rows = db_chunks(index_dir)
    old_hits = [h.chunk_id for h in Retriever(index_dir, encoder=enc).search("tokens", k=3)]
    (notes / "b.md").write_text("# Changed\n\nCompletely different content now.\n", encoding="utf-8")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while embedding

    monkeypatch.setattr(indexer, "encode_passages", boom)
    with pytest.raises(KeyboardInterrupt):
        update_index(notes, None, enc)
    assert len(list(index_dir.glob("gen-*"))) == 2  # the half-built generation is left behind ...
    assert db_chunks(index_dir) == old_rows  # ... but the live one is untouched
    assert [h.chunk_id for h in Retriever(index_dir, encoder=enc).search("tokens", k=3)] == old_hits
    monkeypatch.undo()
    update_index(notes, None, enc)  # the next run cleans up and completes
    assert len(list(index_dir.glob("gen-*"))) == 1
    assert_index_matches(notes, index_dir, enc)


def test_cp1250_file_indexed_and_binary_skipped(notes, enc):
    (notes / "legacy.txt").write_bytes("Zażółć gęślą jaźń: notatka w kodowaniu Windows.\n".encode("cp1250"))
    (notes / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    report = update_index(notes, None, enc)
    assert [(s.path, s.reason) for s in report.skipped] == [("image.md", "binary or undecodable")]
    rows = db_chunks(notes / ".notes-rag")
    assert any(f == "legacy.txt" and "Zażółć gęślą jaźń" in t for _, f, t in rows)
    assert not any(f == "image.md" for _, f, _ in rows)
    gen = index_store.current_generation(notes / ".notes-rag")
    conn = sqlite3.connect(gen / "chunks.sqlite")
    assert conn.execute("SELECT encoding FROM files WHERE path='legacy.txt'").fetchone() == ("cp1250",)
    conn.close()
    hit = Retriever(notes / ".notes-rag", encoder=enc).search("gęślą", k=1, mode="bm25")[0]
    assert hit.file == "legacy.txt"
    # BM25 also matches without diacritics
    assert Retriever(notes / ".notes-rag", encoder=enc).search("zazolc gesla", k=1, mode="bm25")[0].file == "legacy.txt"


def test_lock_stops_a_concurrent_run(notes, enc):
    with index_store.IndexLock(notes / ".notes-rag"):
        with pytest.raises(NotesRagError, match="already updating"):
            update_index(notes, None, enc)
    update_index(notes, None, enc)  # released: works


def test_empty_missing_and_unreadable_folders(tmp_path, enc):
    with pytest.raises(NotesRagError, match="not found"):
        update_index(tmp_path / "nope", None, enc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotesRagError, match="no readable notes"):
        update_index(tmp_path / "empty", None, enc)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.txt").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(NotesRagError, match="1 skipped"):
        update_index(tmp_path / "bin", None, enc)


def test_no_chunk_exceeds_the_encoder_limit(enc, tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(REPO / "corpus", folder, ignore=shutil.ignore_patterns(".notes-rag"))
    update_index(folder, None, enc)
    count, limit = token_counter(enc)
    assert limit == TINY_MAX_SEQ
    r = Retriever(folder / ".notes-rag", encoder=enc)
    rows = r.conn.execute("SELECT heading_path, text FROM chunks").fetchall()
    assert len(rows) > 100
    from notes_rag.index.chunker import embed_text

    assert max(count(embed_text(tuple(json.loads(hp)), t)) for hp, t in rows) <= TINY_MAX_SEQ


def test_resolve_index(tmp_path, notes, enc, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotesRagError, match="notes-rag index corpus/"):
        resolve_index(None)
    update_index(notes, None, enc)
    assert resolve_index(notes / ".notes-rag") == notes / ".notes-rag"
    with pytest.raises(NotesRagError, match="notes-rag index"):
        resolve_index(tmp_path / "elsewhere")
    (tmp_path / "corpus").mkdir()
    shutil.copytree(notes / ".notes-rag", tmp_path / "corpus" / ".notes-rag")
    assert resolve_index(None) == Path("corpus") / ".notes-rag"
    shutil.copytree(notes / ".notes-rag", tmp_path / ".notes-rag")
    assert resolve_index(None) == Path(".notes-rag")


def test_an_index_records_the_notes_folder_it_indexes(notes, enc, tmp_path):
    update_index(notes, tmp_path / "elsewhere", enc)  # index --out: citations still point at notes/
    assert Retriever(tmp_path / "elsewhere", encoder=enc).meta["notes"] == str(notes.resolve())


def test_conversation_uses_earlier_turns(notes, enc):
    update_index(notes, None, enc)
    r = Retriever(notes / ".notes-rag", encoder=enc)
    res = r.search_conversation(["Kto zaproponował model neuronu?", "W którym roku?"], k=3, mode="bm25")
    assert res[0].file == "a.md" and "1943" in res[0].text


def test_cli_index_and_search(notes, tiny_path, tmp_path):
    env_cmd = [sys.executable, "-m", "notes_rag"]
    out = subprocess.run(
        env_cmd + ["index", str(notes), "--encoder", str(tiny_path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "chunks in index" in out.stdout and "files added" in out.stdout
    out = subprocess.run(
        env_cmd + ["search", "BPE merges", "-k", "2", "--json", "--index", str(notes / ".notes-rag")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert len(res["hits"]) == 2 and {"file", "line_start", "heading_path", "score"} <= res["hits"][0].keys()
    out = subprocess.run(env_cmd + ["index", str(tmp_path / "missing")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1
    # one message (rich may wrap a long path over several terminal lines)
    assert out.stderr.replace("\n", "") == f"error: notes folder not found: {tmp_path / 'missing'}"


@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a GPU")
def test_gpu_search_matches_cpu():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(10, 1010, dtype=np.int64)
    cpu = index_store.build_dense(ids, vecs, IndexConfig())
    gpu = index_store.to_gpu_if_available(cpu)
    _, a = cpu.search(vecs[:5], 5)
    _, b = gpu.search(vecs[:5], 5)
    assert (a == b).all()


# -- the real default encoder --------------------------------------------------------------------

QUESTIONS = [  # (question, file that holds the answer, text the right chunk contains)
    ("Ile wynosi identyfikator tokenu ran w przykładowym słowniku?", "000_19438b7bc823741f.txt", "757"),
    ("Kiedy Frank Rosenblatt zaproponował perceptron?", "004_c37a24b139456986.txt", "1957 Frank Rosenblatt"),
    (
        "What does the stride parameter mean when sampling training batches?",
        "003_b68687d5cb2b3d2e.txt",
        "number of positions the inputs shift",
    ),
    ("How many points is the course project worth?", "002_444d8e60dfa4dc1e.txt", "Projekt"),
]


@pytest.mark.slow
def test_real_encoder_finds_the_evidence(tmp_path):
    folder = tmp_path / "corpus"
    shutil.copytree(REPO / "corpus", folder, ignore=shutil.ignore_patterns(".notes-rag"))
    update_index(folder, None, load_encoder())
    r = Retriever(folder / ".notes-rag")
    for question, file, evidence in QUESTIONS:
        hits = r.search(question, k=5)
        assert any(h.file == file and evidence in h.text for h in hits), (question, [h.citation for h in hits])
    follow = r.search_conversation(["Who proposed the mathematical model of the neuron?", "In which year?"], k=5)
    assert any("1943" in h.text for h in follow)
    assert r.search("Jak upiec sernik?").top_cosine < r.search("Czym jest perceptron?").top_cosine


def test_large_collections_get_an_ivf_index_that_finds_neighbours(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    vecs = centres[rng.integers(0, 20, 2000)] + 0.1 * rng.standard_normal((2000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(5, 2005, dtype=np.int64)
    cfg = IndexConfig(approx_threshold=1000, ivf_nprobe=8)
    index = index_store.build_dense(ids, vecs, cfg)
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexIVFFlat)
    index_store.save_dense(index, tmp_path / "dense.faiss")
    loaded = index_store.load_dense(tmp_path / "dense.faiss", nprobe=8)
    assert faiss.downcast_index(loaded.index).nprobe == 8
    _, found = loaded.search(vecs[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() >= 0.95  # each vector is its own nearest neighbour
    small = index_store.build_dense(ids[:999], vecs[:999], cfg)
    assert isinstance(faiss.downcast_index(small.index), faiss.IndexFlatIP)

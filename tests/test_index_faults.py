"""Index faults: damaged files, a damaged pointer, concurrent runs, a full disk, --rebuild.

Each case does what a user's machine does (truncate a file, flip its bytes, run two `index`
processes, hit a file size limit) and checks the user gets one line naming the fix, that `index`
repairs it without anyone deleting `.notes-rag/`, and that the old index answers meanwhile.
Tiny random encoder (tests/tiny_encoder.py): these check the machinery, not retrieval quality.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.errors import NotesRagError
from notes_rag.index import integrity
from notes_rag.index import store as index_store
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
from notes_rag.index.search import Retriever

REPO = Path(__file__).resolve().parents[1]
NOTES = {
    "a.md": "# Sieci\n\n## Neuron\n\nModel neuronu zaproponowano w 1943 roku.\n\n## Uwaga\n\n"
    "Mechanizm uwagi liczy iloczyn skalarny zapytania i klucza, potem softmax.\n",
    "b.md": "# Tokens\n\nA tokenizer splits text into tokens.\n\n* BPE merges pairs\n* WordPiece scores pieces\n",
    "c.txt": "Plain text note about embeddings.\n\nPositional embeddings add order information.\n",
}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def enc(tiny_path):
    return load_encoder(tiny_path)


@pytest.fixture()
def indexed(tmp_path, enc):
    """A notes folder indexed into its .notes-rag; (folder, index folder)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text, encoding="utf-8")
    update_index(folder, None, enc)
    return folder, folder / ".notes-rag"


def live(index_dir: Path) -> Path:
    return index_store.current_generation(index_dir)


def top_file(index_dir: Path, enc, query: str = "BPE merges pairs") -> str:
    r = Retriever(index_dir, encoder=enc)
    try:
        return r.search(query, k=1, mode="bm25")[0].file
    finally:
        r.close()


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize("part", ["dense.faiss", "bm25/ids.npy"])
def test_damaged_dense_or_bm25_is_named_then_repaired_from_the_stored_vectors(indexed, enc, part):
    folder, index_dir = indexed
    before = top_file(index_dir, enc)
    truncate(live(index_dir) / part, 40)
    with pytest.raises(NotesRagError, match=rf"damaged \({part}: 40 bytes where .* rebuild it with: notes-rag index"):
        Retriever(index_dir, encoder=enc)
    with pytest.raises(NotesRagError, match="damaged"):  # `search` asks this first
        index_store.encoder_path(index_dir)
    report = update_index(folder, None, enc)
    assert report.repaired and part in report.repaired and report.rebuild_reason is None
    assert report.chunks_embedded == 0  # nothing re-embedded: rebuilt from SQLite's vectors
    assert integrity.check_generation(live(index_dir)) == {}
    assert top_file(index_dir, enc) == before


def test_damaged_sqlite_means_a_full_rebuild(indexed, enc):
    folder, index_dir = indexed
    db = live(index_dir) / "chunks.sqlite"
    truncate(db, db.stat().st_size // 2)
    with pytest.raises(NotesRagError, match=r"damaged \(chunks.sqlite: .*notes-rag index"):
        Retriever(index_dir, encoder=enc)
    report = update_index(folder, None, enc)
    assert report.rebuild_reason.startswith("the index was damaged (chunks.sqlite")
    assert report.chunks_embedded == report.chunks_total > 0
    assert top_file(index_dir, enc) == "b.md"
    assert [p.name for p in index_dir.glob("gen-*")] == [live(index_dir).name]  # the damaged one is gone


def test_changed_bytes_of_the_same_size_are_caught_by_the_hash(indexed, enc):
    folder, index_dir = indexed
    path = live(index_dir) / "dense.faiss"
    data = bytearray(path.read_bytes())
    data[-100:] = bytes(100)  # the last vectors zeroed: FAISS would read it without complaint
    path.write_bytes(bytes(data))
    with pytest.raises(NotesRagError, match="dense.faiss: its content changed after it was written"):
        Retriever(index_dir, encoder=enc)
    assert update_index(folder, None, enc).repaired


def test_a_copy_without_file_times_still_opens(indexed, enc, tmp_path):
    """A copy that does not keep mtimes is hashed on open (and matches), not refused."""
    _, index_dir = indexed
    copy = tmp_path / "copied"
    shutil.copytree(index_dir, copy, copy_function=shutil.copyfile)
    assert top_file(copy, enc) == "b.md"


def test_damaged_or_dangling_pointer(indexed, enc):
    folder, index_dir = indexed
    (index_dir / index_store.CURRENT).write_text("{not json", encoding="utf-8")
    with pytest.raises(NotesRagError, match=r"CURRENT.json unreadable.*notes-rag index"):
        Retriever(index_dir, encoder=enc)
    assert update_index(folder, None, enc).rebuild_reason.startswith("the index was damaged (CURRENT.json")
    assert top_file(index_dir, enc) == "b.md"
    shutil.rmtree(live(index_dir))
    with pytest.raises(NotesRagError, match=r"is missing\); rebuild it with"):
        Retriever(index_dir, encoder=enc)
    assert "missing" in update_index(folder, None, enc).rebuild_reason


def test_an_index_without_manifest_opens_and_gets_one(indexed, enc):
    folder, index_dir = indexed
    (live(index_dir) / integrity.MANIFEST).unlink()  # as an index written before manifests
    assert top_file(index_dir, enc) == "b.md"
    report = update_index(folder, None, enc)
    assert report.repaired.startswith("no integrity record") and report.chunks_embedded == 0
    assert integrity.has_manifest(live(index_dir))


def test_rebuild_reembeds_everything(indexed, enc):
    folder, _ = indexed
    report = update_index(folder, None, enc, rebuild=True)
    assert report.rebuild_reason == "asked for (--rebuild)"
    assert report.chunks_embedded == report.chunks_total > 0


def test_cli_prints_one_line_without_traceback(indexed, tiny_path, tmp_path):
    folder, index_dir = indexed
    truncate(live(index_dir) / "dense.faiss", 10)
    cmd = [sys.executable, "-m", "notes_rag"]
    out = subprocess.run(
        [*cmd, "search", "tokens", "--index", str(index_dir)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    message = out.stderr.replace("\n", "")  # rich wraps a long line at the terminal width
    assert message.startswith(f"error: the index at {index_dir} is damaged (dense.faiss")
    assert f"rebuild it with: notes-rag index {folder}" in message
    out = subprocess.run(
        [*cmd, "index", str(folder), "--encoder", str(tiny_path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "repaired:" in out.stdout and "dense.faiss" in out.stdout


# -- two runs at once ------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from notes_rag.index.store import IndexLock
with IndexLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_run_is_told_the_folder_is_being_indexed_or_waits(indexed, enc):
    folder, index_dir = indexed
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(index_dir), "3"], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (folder / "d.md").write_text("# New\n\nA note about LoRA adapters.\n", encoding="utf-8")
        with pytest.raises(NotesRagError, match="already updating"):
            update_index(folder, None, enc)
        report = update_index(folder, None, enc, lock_wait_s=30)  # waits for the holder to exit
        assert report.added == ["d.md"]
    finally:
        holder.wait(timeout=30)
    assert top_file(index_dir, enc, "LoRA adapters") == "d.md"


RUN_INDEX = """
import sys
from notes_rag.errors import NotesRagError
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
try:
    update_index(sys.argv[1], None, load_encoder(sys.argv[2]), rebuild=True)
    print("indexed")
except NotesRagError as e:
    print("refused:", e)
"""


def test_two_index_processes_never_corrupt_the_index(indexed, enc, tiny_path):
    folder, index_dir = indexed
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_INDEX, str(folder), str(tiny_path)], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in runs]
    assert all(o == "indexed" or "already updating" in o for o in outputs), outputs
    assert "indexed" in outputs
    assert integrity.check_generation(live(index_dir)) == {}
    assert [p.name for p in index_dir.glob("gen-*")] == [live(index_dir).name]
    assert top_file(index_dir, enc) == "b.md"


# -- a full disk ---------------------------------------------------------------------------------------


def test_disk_full_is_one_line_and_the_old_index_still_answers(indexed, enc, tiny_path, tmp_path):
    folder, index_dir = indexed
    old_gen = live(index_dir)
    (folder / "b.md").write_text("# Changed\n\n" + "Completely different words now. " * 400, encoding="utf-8")

    def small_files():  # as `ulimit -f 16`: no file may grow past 16 KB (the database is larger)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))

    out = subprocess.run(
        [sys.executable, "-m", "notes_rag", "index", str(folder), "--encoder", str(tiny_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        preexec_fn=small_files,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.returncode != -signal.SIGXFSZ and "Traceback" not in out.stderr
    message = out.stderr.replace("\n", "")
    assert message.startswith(f"error: could not write the index to {index_dir} (")
    assert "the previous index is unchanged" in message
    assert live(index_dir) == old_gen and [p.name for p in index_dir.glob("gen-*")] == [old_gen.name]
    assert top_file(index_dir, enc) == "b.md"  # the old content still answers
    assert update_index(folder, None, enc).changed == ["b.md"]  # with room again, it completes


def test_failed_write_in_process_leaves_no_generation(indexed, enc, monkeypatch):
    folder, index_dir = indexed
    (folder / "c.txt").write_text("Changed text about attention heads.\n", encoding="utf-8")

    def full(*args, **kwargs):
        raise OSError(28, os.strerror(28))  # ENOSPC

    monkeypatch.setattr(index_store, "save_lexical", full)
    with pytest.raises(NotesRagError, match=r"could not write the index .*\(No space left on device\)"):
        update_index(folder, None, enc)
    assert [p.name for p in index_dir.glob("gen-*")] == [live(index_dir).name]
    assert json.loads((index_dir / index_store.CURRENT).read_text())["generation"] == live(index_dir).name
    r = Retriever(index_dir, encoder=enc)
    assert all("attention heads" not in h.text for h in r.search("attention heads", k=3, mode="bm25"))
    r.close()


def test_an_unwritable_index_folder_is_one_line(indexed, enc, tmp_path):
    folder, _ = indexed
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(NotesRagError, match=r"cannot write the index folder .*--out DIR"):
        update_index(folder, blocker / ".notes-rag", enc)

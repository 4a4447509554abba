"""The live index: `index --watch` re-indexes added, changed and deleted notes, and a running
retriever (the chat's) answers from the new generation before its next question.

The watcher runs in a thread with a stop event; every wait is bounded, so a watcher that
misses an event fails the test instead of hanging it. Tiny random encoder, BM25 searches.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest
from tiny_encoder import build_tiny_encoder

from notes_rag.index import store as index_store
from notes_rag.index.build import update_index
from notes_rag.index.encoder import load_encoder
from notes_rag.index.search import Retriever
from notes_rag.index.watch import WatchConfig, watch_index

WAIT_S = 60  # generous for a loaded 2-core machine; an idle one takes about a second


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    return load_encoder(build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder")))


@pytest.fixture()
def watched(tmp_path, enc):
    """A notes folder, indexed, with a watcher thread on it; yields (folder, reports queue)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# Neuron\n\nModel neuronu zaproponowano w 1943 roku.\n", encoding="utf-8")
    (folder / "b.md").write_text("# Tokens\n\nA tokenizer splits text into tokens.\n", encoding="utf-8")
    update_index(folder, None, enc)
    reports, stop = queue.Queue(), threading.Event()
    thread = threading.Thread(
        target=watch_index,
        args=(folder, None, enc),
        kwargs={
            "wcfg": WatchConfig(debounce_ms=200, first_check_ms=100),
            "on_update": reports.put,
            "on_error": reports.put,
            "stop": stop,
        },
        daemon=True,
    )
    thread.start()
    yield folder, reports
    stop.set()
    thread.join(timeout=WAIT_S)
    assert not thread.is_alive()


def files(folder: Path) -> set[str]:
    gen = index_store.current_generation(folder / ".notes-rag")
    conn = index_store.open_db(gen / "chunks.sqlite")
    try:
        return {f for (f,) in conn.execute("SELECT path FROM files")}
    finally:
        conn.close()


def next_report(reports: queue.Queue):
    report = reports.get(timeout=WAIT_S)
    assert not isinstance(report, Exception), report
    return report


def test_watch_adds_changes_and_deletes(watched, enc):
    folder, reports = watched
    retriever = Retriever(folder / ".notes-rag", encoder=enc)  # opened before: as a running chat
    assert retriever.search("LoRA adapters", k=1, mode="bm25").hits == []

    (folder / "sub").mkdir()
    (folder / "sub" / "c.md").write_text("# LoRA\n\nLoRA adapters train low-rank updates.\n", encoding="utf-8")
    assert next_report(reports).added == ["sub/c.md"]
    assert files(folder) == {"a.md", "b.md", "sub/c.md"}
    assert retriever.search("LoRA adapters", k=1, mode="bm25")[0].file == "sub/c.md"  # reopened itself

    (folder / "b.md").write_text("# Tokens\n\nSentencePiece works on raw bytes.\n", encoding="utf-8")
    assert next_report(reports).changed == ["b.md"]
    assert retriever.search("SentencePiece raw bytes", k=1, mode="bm25")[0].file == "b.md"

    (folder / "a.md").unlink()
    report = next_report(reports)
    assert report.removed == ["a.md"] and report.chunks_embedded == 0
    assert files(folder) == {"b.md", "sub/c.md"}
    assert all(h.file != "a.md" for h in retriever.search("neuronu 1943", k=3, mode="bm25"))
    assert len(list((folder / ".notes-rag").glob("gen-*"))) == 1  # each update replaced the last
    retriever.close()


def test_watch_reports_a_failed_update_and_goes_on(watched, enc):
    folder, reports = watched
    for name in ("a.md", "b.md"):
        (folder / name).unlink()
    while not isinstance(item := reports.get(timeout=WAIT_S), Exception):
        pass  # the two deletions may arrive as two updates: the first one still has a note left
    assert "no readable notes" in str(item)
    assert files(folder)  # the last good index stays live and searchable
    Retriever(folder / ".notes-rag", encoder=enc).close()
    (folder / "new.md").write_text("# Back\n\nNotes again.\n", encoding="utf-8")
    report = next_report(reports)
    assert report.added == ["new.md"] and files(folder) == {"new.md"}

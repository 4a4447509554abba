"""Build or incrementally update the index of a notes folder (`notes-rag index`).

`update_index(folder, index_dir, encoder)` compares the folder with the live generation by content
hash: unchanged files keep their chunks and vectors, changed and new files are re-chunked and
re-embedded, chunks of deleted files are dropped. A different encoder or chunking config than the
one the index was built with means a full rebuild. The result is written as a new generation and
swapped in atomically (see `index.store`); nothing changes on disk when nothing changed.

Before building on the live generation every file of it is checked against its manifest
(`index.integrity`): a damaged `dense.faiss` or BM25 folder is rebuilt from the vectors stored in
SQLite, a damaged `chunks.sqlite` or pointer means a full rebuild, as does `rebuild=True`. A
failed write (full disk, file size limit) removes the half-written generation and raises one
NotesRagError line; the live generation is untouched.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.index import integrity, store
from notes_rag.index.chunker import Chunk
from notes_rag.index.config import IndexConfig
from notes_rag.index.documents import chunk_document
from notes_rag.index.encoder import encode_passages
from notes_rag.index.encoder_cache import encoder_id
from notes_rag.index.notes import NOTE_SUFFIXES, NoteFile, SkippedFile, scan_notes
from notes_rag.lang import detect_lang

INDEX_DIRNAME = ".notes-rag"
# Chunks per encode_passages call: the fast encoder sorts a call's passages by length and packs
# them to a token budget, so a larger call pads less (corpus/: 73% padding at 32 a call, 15% at
# 128, docs/BENCHMARKS.md); memory holds one call's chunks; the progress bar moves once a call.
EMBED_BATCH = 128


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    rebuild_reason: str | None = None  # why everything was re-embedded, None when incremental
    repaired: str | None = None  # what of the live generation was damaged and rebuilt without re-embedding
    seconds: float = 0.0


def default_index_dir(folder: Path) -> Path:
    return Path(folder) / INDEX_DIRNAME


def token_counter(encoder) -> tuple[Callable[[str], int], int]:
    """Count a passage's tokens exactly as the encoder will see it: prompt and special tokens."""
    prompt = (getattr(encoder, "prompts", None) or {}).get("passage", "")
    tok = encoder.tokenizer

    def count(text: str) -> int:
        return len(tok(prompt + text, add_special_tokens=True, verbose=False)["input_ids"])

    return count, int(encoder.max_seq_length)


def _rebuild_reason(old_meta: dict | None, meta: dict) -> str | None:
    if old_meta is None:
        return "new index"
    if old_meta.get("schema") != meta["schema"]:
        return "index format changed"
    if old_meta.get("encoder") != meta["encoder"]:
        return f"encoder changed ({old_meta.get('encoder')} -> {meta['encoder']})"
    if old_meta.get("chunking") != meta["chunking"] or old_meta.get("max_tokens") != meta["max_tokens"]:
        return "chunking settings changed"
    return None


@dataclass
class _Embedding:
    """How this run chunks and embeds notes."""

    encoder: object
    count_tokens: Callable[[str], int]
    max_tokens: int
    cfg: IndexConfig
    on_progress: Callable[[int, int], None] | None


def _index_meta(encoder, encoder_path: str | None, cfg: IndexConfig, max_tokens: int, folder: Path) -> dict:
    """What the index records about how it was built (a change of schema, encoder or chunking
    means a full rebuild) and the notes folder it indexes (where citations point: an index put
    elsewhere with --out is not beside its notes)."""
    return {
        "schema": store.SCHEMA_VERSION,
        "notes": str(Path(folder).resolve()),
        "encoder": encoder_id(encoder),
        "encoder_path": str(Path(encoder_path).resolve()) if encoder_path else None,
        "dim": int((getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension)()),
        "chunking": cfg.chunking_key(),
        "max_tokens": max_tokens,
        "config": cfg.to_dict(),
    }


def _compare(report: IndexReport, live: Path | None, meta: dict, current: dict[str, NoteFile]) -> None:
    """Fill `report` with the files added, changed, removed and unchanged since the live generation
    (all of them count as added when it must be rebuilt)."""
    old_meta = old_files = None
    if live is not None:
        with closing(store.open_db(live / "chunks.sqlite")) as conn:
            old_meta = store.read_meta(conn)
            old_files = dict(conn.execute("SELECT path, sha256 FROM files"))
    report.rebuild_reason = _rebuild_reason(old_meta, meta)
    if report.rebuild_reason is not None:
        old_files = {}
    report.added = sorted(p for p in current if p not in old_files)
    report.changed = sorted(p for p in current if p in old_files and old_files[p] != current[p].sha256)
    report.removed = sorted(p for p in old_files if p not in current)
    report.unchanged = len(current) - len(report.added) - len(report.changed)


def _live_state(index_dir: Path, rebuild: bool) -> tuple[Path | None, str | None, str | None]:
    """(the generation to build on or None, why everything must be rebuilt, what must be
    repaired): a damaged dense or BM25 part is rebuilt from the vectors SQLite holds; damage to
    SQLite, its manifest or the pointer leaves nothing to build on."""
    try:
        live = store.current_generation(index_dir)
    except integrity.DamagedIndex as e:
        return None, f"the index was damaged ({e.what})", None
    if live is None:
        return None, None, None
    if rebuild:
        return None, "asked for (--rebuild)", None
    problems = integrity.check_generation(live)
    if not problems:
        # An index written before manifests existed gets one the cheap way: a new generation.
        return live, None, None if integrity.has_manifest(live) else "no integrity record (older index): added"
    if all(p == "dense.faiss" or p.startswith("bm25") or p == "index" for p in problems):
        return live, None, f"{integrity.describe(problems)}: rebuilt from the stored vectors"
    return None, f"the index was damaged ({integrity.describe(problems)})", None


def _write_error(index_dir: Path, e: BaseException) -> NotesRagError:
    reason = (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__
    return NotesRagError(
        f"could not write the index to {index_dir} ({reason}); the previous index is unchanged: "
        "free some disk space and run again"
    )


def _write_generation(
    gen: Path, live: Path | None, report: IndexReport, todo: list[NoteFile], meta: dict, emb: _Embedding
) -> None:
    """Write generation `gen`: the live one's chunks (unless rebuilding) updated with `todo`."""
    db_path = gen / "chunks.sqlite"
    if report.rebuild_reason is None:
        conn = store.copy_db(live / "chunks.sqlite", db_path)
    else:
        conn = store.create_db(db_path)
    try:
        _drop_files(conn, report.changed + report.removed)
        report.chunks_embedded = _add_files(conn, todo, emb)
        store.write_meta(conn, meta)
        conn.commit()
        dense = store.dense_from_db(conn, meta["dim"], emb.cfg)
        report.chunks_total = dense.ntotal
        store.save_dense(dense, gen / "dense.faiss")
        del dense  # before BM25 is built: the two largest structures need not coexist
        store.save_lexical(conn, gen / "bm25")
    finally:
        conn.close()


def update_index(
    folder: Path,
    index_dir: Path | None,
    encoder,
    encoder_path: str | None = None,
    cfg: IndexConfig = IndexConfig(),
    on_progress: Callable[[int, int], None] | None = None,
    rebuild: bool = False,
    lock_wait_s: float = 0.0,
) -> IndexReport:
    """Index `folder` into `index_dir` (default `folder/.notes-rag`). `encoder_path` is recorded so
    searches load the same encoder (None: the default one). `on_progress(done, total)` is called
    as chunks are embedded (`total` is an estimate until every note is chunked).
    `rebuild` re-embeds everything; `lock_wait_s` waits that long for another run to finish."""
    start = time.perf_counter()
    folder = Path(folder)
    index_dir = Path(index_dir) if index_dir else default_index_dir(folder)
    notes, skipped = scan_notes(folder, index_dir)
    if not notes:
        kinds = ", ".join(NOTE_SUFFIXES)
        why = f"{len(skipped)} skipped as unreadable" if skipped else f"no {kinds} files"
        raise NotesRagError(f"no readable notes in {folder} ({why})")
    count_tokens, max_tokens = token_counter(encoder)
    meta = _index_meta(encoder, encoder_path, cfg, max_tokens, folder)
    report = IndexReport(skipped=skipped)
    current = {n.path: n for n in notes}
    with store.IndexLock(index_dir, lock_wait_s):
        store.remove_stale_generations(index_dir)
        live, forced, report.repaired = _live_state(index_dir, rebuild)
        _compare(report, live, meta, current)
        report.rebuild_reason = forced or report.rebuild_reason
        if report.rebuild_reason is None and not (report.repaired or report.added or report.changed or report.removed):
            with closing(store.open_db(live / "chunks.sqlite")) as conn:  # nothing to do
                report.chunks_total = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        else:
            todo = [current[p] for p in report.added + report.changed]
            emb = _Embedding(encoder, count_tokens, max_tokens, cfg, on_progress)
            gen = None
            try:
                gen = store.new_generation(index_dir)
                _write_generation(gen, live, report, todo, meta, emb)
                store.commit_generation(index_dir, gen)
            except (OSError, sqlite3.Error) as e:
                # Free the space the half-written generation took, unless it went live.
                if gen is not None and store.live_generation_name(index_dir) != gen.name:
                    shutil.rmtree(gen, ignore_errors=True)
                raise _write_error(index_dir, e) from e
    report.seconds = time.perf_counter() - start
    return report


def _drop_files(conn: sqlite3.Connection, paths: list[str]) -> None:
    for path in paths:
        conn.execute("DELETE FROM vectors WHERE chunk_id IN (SELECT id FROM chunks WHERE file = ?)", (path,))
        conn.execute("DELETE FROM unit_vectors WHERE chunk_id IN (SELECT id FROM chunks WHERE file = ?)", (path,))
        conn.execute("DELETE FROM chunks WHERE file = ?", (path,))
        conn.execute("DELETE FROM files WHERE path = ?", (path,))


def _add_files(conn: sqlite3.Connection, notes: list[NoteFile], emb: _Embedding) -> int:
    """Chunk, embed and insert `notes`, one batch of chunks at a time, so memory holds a batch,
    not every chunk of a large folder; the number of chunks. `on_progress(done, total)` counts
    chunks; until the last note is chunked `total` is an estimate (the notes left times the
    chunks per character so far), so the bar and its ETA move from the first batch."""
    chars_left = sum(len(n.text) for n in notes)
    chars_seen, chunks_seen, embedded = 0, 0, 0
    pending: list[Chunk] = []
    for note in notes:
        conn.execute(
            "INSERT INTO files(path, sha256, mtime, encoding) VALUES (?, ?, ?, ?)",
            (note.path, note.sha256, note.mtime, note.encoding),
        )
        chunks = chunk_document(note.doc, note.path, emb.count_tokens, emb.max_tokens, emb.cfg)
        pending += chunks
        chars_seen, chunks_seen, chars_left = (
            chars_seen + len(note.text),
            chunks_seen + len(chunks),
            chars_left - len(note.text),
        )
        while len(pending) >= EMBED_BATCH or (note is notes[-1] and pending):
            batch, pending = pending[:EMBED_BATCH], pending[EMBED_BATCH:]
            _insert_chunks(conn, batch, emb)
            embedded += len(batch)
            if emb.on_progress:
                emb.on_progress(embedded, chunks_seen + round(chars_left * chunks_seen / max(chars_seen, 1)))
    return embedded


def _insert_chunks(conn: sqlite3.Connection, batch: list[Chunk], emb: _Embedding) -> None:
    """Embed and insert a batch of chunks with their unit vectors (store.chunk_units), in one
    encoder call (the encoder sorts the texts by length, so short units batch together)."""
    units = [store.chunk_units(c.text) for c in batch]
    texts = [c.embed_text for c in batch] + [u for us in units for u in us]
    vectors = np.asarray(encode_passages(emb.encoder, texts), dtype=np.float32)
    unit_vectors, at = [], len(batch)
    for us in units:
        unit_vectors.append(vectors[at : at + len(us)])
        at += len(us)
    for chunk, vector, uv in zip(batch, vectors[: len(batch)], unit_vectors):
        cur = conn.execute(
            "INSERT INTO chunks(file, heading_path, line_start, line_end, text, lang, location)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                chunk.file,
                json.dumps(list(chunk.heading_path), ensure_ascii=False),
                chunk.line_start,
                chunk.line_end,
                chunk.text,
                detect_lang(chunk.embed_text),
                chunk.location,
            ),
        )
        conn.execute("INSERT INTO vectors(chunk_id, vector) VALUES (?, ?)", (cur.lastrowid, vector.tobytes()))
        conn.execute(
            "INSERT INTO unit_vectors(chunk_id, vectors) VALUES (?, ?)",
            (cur.lastrowid, np.ascontiguousarray(uv, dtype=np.float32).tobytes()),
        )

"""On-disk layout of an index: generations, the lock, SQLite metadata, FAISS and BM25 files.

An index folder (`notes/.notes-rag/`) holds complete, immutable *generations*:

    .notes-rag/
      CURRENT.json        {"generation": "gen-20261123-101500-ab12"}  (atomic pointer)
      index.lock          held with flock while an `index` run works
      gen-.../MANIFEST.json   size, mtime, sha256 of each file below (index/integrity.py)
      gen-.../chunks.sqlite   files + chunks + their vectors + meta
      gen-.../dense.faiss     IndexIDMap over inner product (flat, or IVF when large)
      gen-.../bm25/           bm25s arrays/json + ids.npy

An `index` run builds a new generation in a fresh folder and only then swaps `CURRENT.json`
(write-to-temp + rename), so a crash, Ctrl-C or full disk at any point leaves the previous
generation untouched and loadable; leftovers of interrupted runs are removed by the next run.
The manifest is written before the swap, so every read of a generation can be checked against it.
Nothing here is loaded with pickle: sqlite, `faiss.read_index`, numpy with allow_pickle=False, json.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json
from notes_rag.index import integrity
from notes_rag.index.config import IndexConfig
from notes_rag.index.lexical import LexicalIndex

# 2: chunks.location (PDF page, notebook cells); 3: unit_vectors (each chunk's units, what our GPT
# reads with relevance codes: chat/turn_input.py). An index of an older format is rebuilt by `index`.
SCHEMA_VERSION = 3
CURRENT = "CURRENT.json"
LOCK = "index.lock"

_SCHEMA = """
CREATE TABLE files (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, mtime REAL NOT NULL, encoding TEXT NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file TEXT NOT NULL REFERENCES files(path),
    heading_path TEXT NOT NULL,   -- JSON list
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    text TEXT NOT NULL,
    lang TEXT NOT NULL,           -- pl | en, of the chunk's text
    location TEXT NOT NULL DEFAULT ''  -- 'p12', 'cells 3-5'; '' when cited by lines
);
CREATE INDEX chunks_file ON chunks(file);
CREATE TABLE vectors (            -- kept apart so chunk lookups at query time stay small
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id),
    vector BLOB NOT NULL          -- float32, normalized
);
CREATE TABLE unit_vectors (       -- the chunk's units (text.unit_spans of text.clean_markup(text)) with a
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id),   -- letter or digit, in order
    vectors BLOB NOT NULL         -- float32 (units, dim), normalized, embedded as passages
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ChunkRow:
    id: int
    file: str
    heading_path: tuple[str, ...]
    line_start: int
    line_end: int
    text: str
    lang: str
    location: str = ""  # see chunker.Chunk.location


class IndexLock:
    """Exclusive lock on an index folder; the OS drops it if the process dies, so it never goes
    stale. By default a second `index` run fails at once with a clear message instead of
    waiting; `wait_s` waits that long for the lock first (the watcher, whose updates can wait)."""

    def __init__(self, index_dir: Path, wait_s: float = 0.0):
        self.path = Path(index_dir) / LOCK
        self.wait_s = wait_s
        self._fd: int | None = None

    def __enter__(self) -> IndexLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only notes folder, a full disk
            raise NotesRagError(
                f"cannot write the index folder {self.path.parent} ({e.strerror or e}); "
                "put the index elsewhere with --out DIR"
            ) from None
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise NotesRagError(
                        f"another `notes-rag index` is already updating {self.path.parent} "
                        f"(lock {self.path}); wait for it to finish and run again"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# -- generations ---------------------------------------------------------------------------------


def live_generation_name(index_dir: Path) -> str | None:
    """The name CURRENT.json points to (None without an index): one small read, cheap enough
    to ask before every search whether the index was replaced."""
    pointer = Path(index_dir) / CURRENT
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["generation"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise integrity.damaged_error(index_dir, f"{CURRENT} unreadable: {e}") from None
    if not isinstance(name, str) or not name.startswith("gen-") or "/" in name:
        raise integrity.damaged_error(index_dir, f"{CURRENT} names no generation")
    return name


def current_generation(index_dir: Path) -> Path | None:
    name = live_generation_name(index_dir)
    if name is None:
        return None
    gen = Path(index_dir) / name
    if not gen.is_dir():
        raise integrity.damaged_error(index_dir, f"its generation {name} is missing")
    return gen


def index_id(index_dir: Path, generation: Path | None = None) -> str:
    """`<index folder>:<generation>`: names the index in reports (the live generation unless
    `generation`, the one a reader has open, is given)."""
    gen = generation or current_generation(Path(index_dir))
    return f"{Path(index_dir).resolve()}:{gen.name if gen else '?'}"


def new_generation(index_dir: Path) -> Path:
    name = f"gen-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    gen = Path(index_dir) / name
    gen.mkdir(parents=True)
    return gen


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def commit_generation(index_dir: Path, gen: Path) -> None:
    """Record `gen`'s files in its manifest, make it the live index (one atomic rename), then
    delete the generations it replaced."""
    _fsync_tree(gen)
    integrity.write_manifest(gen)
    atomic_write_json(Path(index_dir) / CURRENT, {"generation": gen.name})
    remove_stale_generations(index_dir)


def remove_stale_generations(index_dir: Path) -> None:
    """Delete every generation but the current one: replaced ones and interrupted runs' leftovers.
    Call only while holding the lock. With a damaged pointer nothing is deleted: the run that
    repairs it commits a new generation and cleans up then."""
    try:
        live = current_generation(index_dir)
    except NotesRagError:
        return
    for path in Path(index_dir).glob("gen-*"):
        if path.is_dir() and path != live:
            shutil.rmtree(path, ignore_errors=True)


# -- SQLite --------------------------------------------------------------------------------------


def create_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA)
    return conn


def copy_db(src: Path, dst: Path) -> sqlite3.Connection:
    """A private copy of a generation's database to update incrementally."""
    conn = sqlite3.connect(dst)
    with closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as source:
        source.backup(conn)
    return conn


def open_db(path: Path) -> sqlite3.Connection:
    """Read-only; usable from any thread (the chat UI may search from a worker)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def read_meta(conn: sqlite3.Connection) -> dict:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def encoder_path(index_dir: Path) -> str | None:
    """The encoder folder the live generation was built with (`notes-rag index --encoder`);
    None for the default encoder."""
    gen = current_generation(Path(index_dir))
    if gen is None:
        raise NotesRagError(f"no index at {index_dir}; build it with: notes-rag index NOTES_FOLDER")
    problems = integrity.damage(gen)
    if problems:
        raise integrity.damaged_error(index_dir, integrity.describe(problems))
    try:
        with closing(open_db(gen / "chunks.sqlite")) as conn:
            return read_meta(conn).get("encoder_path")
    except integrity.READ_ERRORS as e:
        raise integrity.damaged_error(index_dir, f"chunks.sqlite: {e}") from None


def write_meta(conn: sqlite3.Connection, meta: dict) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [(k, json.dumps(v, ensure_ascii=False)) for k, v in meta.items()],
    )


def chunk_units(text: str) -> list[str]:
    """The units of a chunk that get a stored vector: what the model reads of it, unit by unit
    (chat/turn_input.py), those with a letter or digit."""
    from notes_rag.text import clean_markup, unit_texts

    return [u for u in unit_texts(clean_markup(text)) if any(c.isalnum() for c in u)]


def fetch_unit_vectors(conn: sqlite3.Connection, ids: list[int], dim: int) -> dict[int, np.ndarray]:
    """The stored unit vectors (units, dim) of chunks `ids`."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT chunk_id, vectors FROM unit_vectors WHERE chunk_id IN ({marks})", ids)
    return {cid: np.frombuffer(blob, dtype=np.float32).reshape(-1, dim) for cid, blob in rows}


def fetch_chunks(conn: sqlite3.Connection, ids: list[int]) -> dict[int, ChunkRow]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT id, file, heading_path, line_start, line_end, text, lang, location FROM chunks WHERE id IN ({marks})",
        [int(i) for i in ids],
    )
    return {r[0]: ChunkRow(r[0], r[1], tuple(json.loads(r[2])), *r[3:]) for r in rows}


# -- FAISS ---------------------------------------------------------------------------------------


def _dense_shell(dim: int, n: int, cfg: IndexConfig, rows: Callable[[np.ndarray], np.ndarray]) -> faiss.Index:
    """An empty (trained) index for `n` vectors; `rows(positions)` gives the training sample."""
    if n >= cfg.approx_threshold:
        nlist = int(round(n**0.5))
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # k-means needs ~40-60 points per list; a sample that size trains as well as all of them
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)
        inner.train(rows(np.sort(sample)))
        inner.nprobe = cfg.ivf_nprobe
    else:
        inner = faiss.IndexFlatIP(dim)
    return faiss.IndexIDMap(inner)


def build_dense(ids: np.ndarray, vectors: np.ndarray, cfg: IndexConfig) -> faiss.Index:
    """Exact inner-product search for small collections, IVF above `cfg.approx_threshold`."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _dense_shell(vectors.shape[1], len(ids), cfg, lambda pos: vectors[pos])
    if len(ids):
        index.add_with_ids(vectors, ids)
    return index


def _vectors_of(conn: sqlite3.Connection, ids: np.ndarray, dim: int) -> np.ndarray:
    out = np.empty((len(ids), dim), dtype=np.float32)
    where = {int(c): i for i, c in enumerate(ids)}
    for start in range(0, len(ids), 900):  # SQLite's limit on query parameters is 999
        part = [int(c) for c in ids[start : start + 900]]
        marks = ",".join("?" * len(part))
        for cid, blob in conn.execute(f"SELECT chunk_id, vector FROM vectors WHERE chunk_id IN ({marks})", part):
            out[where[cid]] = np.frombuffer(blob, dtype=np.float32)
    return out


def dense_from_db(conn: sqlite3.Connection, dim: int, cfg: IndexConfig, batch: int = 8192) -> faiss.Index:
    """`build_dense` over the vectors SQLite holds, read a batch at a time: the FAISS index holds
    the only full copy (a 140k-chunk folder's vectors are 215 MB)."""
    ids = np.fromiter((r[0] for r in conn.execute("SELECT chunk_id FROM vectors ORDER BY chunk_id")), dtype=np.int64)
    index = _dense_shell(dim, len(ids), cfg, lambda pos: _vectors_of(conn, ids[pos], dim))
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        index.add_with_ids(_vectors_of(conn, part, dim), part)
    return index


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """With a GPU, search exactly over all vectors on it (a flat GPU scan of a million vectors
    takes about a millisecond, and is exact)."""
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0 or index.ntotal == 0:
        return index
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map()  # IVF stores vectors by list; reconstructing by position needs the map
    vectors = inner.reconstruct_n(0, index.ntotal)
    flat = faiss.IndexIDMap(faiss.IndexFlatIP(index.d))
    flat.add_with_ids(vectors, faiss.vector_to_array(index.id_map))
    return faiss.index_cpu_to_all_gpus(flat)


def save_dense(index: faiss.Index, path: Path) -> None:
    try:
        faiss.write_index(index, str(path))
    except RuntimeError as e:  # faiss reports a failed write (full disk) as RuntimeError
        # its message ends with the OS's reason in parentheses: "... (No space left on device)"
        reason = str(e).rstrip().rpartition("(")[2].rstrip(")") or integrity.short_error(e)
        raise OSError(f"writing {path.name} failed: {reason}") from e


def load_dense(path: Path, nprobe: int) -> faiss.Index:
    index = faiss.read_index(str(path))
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexIVF):
        inner.nprobe = nprobe
    return index


def save_lexical(conn: sqlite3.Connection, folder: Path) -> None:
    ids = [r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")]
    rows = conn.execute("SELECT heading_path, text FROM chunks ORDER BY id")
    # Headings take part in BM25 like in the embedding: a chunk is about its section's topic.
    # The texts stream from SQLite: all of a large folder's would be one more copy of it in memory.
    texts = (" ".join(json.loads(hp)) + "\n" + text for hp, text in rows)
    folder.mkdir()
    LexicalIndex.build(ids, texts).save(folder)

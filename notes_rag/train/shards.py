"""Token shards and batches for pretraining: documents -> cached uint16 shards -> windows.

Documents (train/pretrain_data.py) stream through worker processes that tokenize them into
uint16 shards (one `<|bos|>` before each document), written under `<out>/data/<key>/`, where
`key` hashes the input files' contents, the tokenizer and the split settings, so a second run
reuses them. `TokenWindows` serves fixed-length windows in a seeded per-epoch order from
memory-mapped shards; its position is part of the training checkpoint, so resume continues
exactly.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import shutil
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.train.pretrain_data import DataConfig, files_digest, is_validation, iter_corpus

SHARD_TOKENS = 8_000_000  # ~16 MB per uint16 shard


_worker_tok: Tokenizer | None = None


def _init_worker(tok_path: str) -> None:
    global _worker_tok
    from notes_rag.model.tokenizer import load_tokenizer

    _worker_tok = load_tokenizer(tok_path)


def _encode_docs(texts: list[str]) -> list[np.ndarray]:
    bos = _worker_tok.special("bos")
    return [np.asarray([bos] + ids, dtype=np.uint16) for ids in _worker_tok.encode_batch(texts, num_threads=1)]


class ShardWriter:
    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.shards: list[dict] = []
        self.n_docs = 0

    def add(self, arr: np.ndarray) -> None:
        self.buf.append(arr)
        self.buffered += len(arr)
        self.n_docs += 1
        if self.buffered >= SHARD_TOKENS:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        name = f"{self.split}_{len(self.shards):04d}.bin"
        np.concatenate(self.buf).tofile(self.folder / name)
        self.shards.append({"file": name, "tokens": self.buffered})
        self.buf, self.buffered = [], 0


def _doc_batches(files: list[Path]) -> Iterator[list[tuple[str, str]]]:
    """(text, lang) documents of `files` in batches of 64, one batch per worker task."""
    batch: list[tuple[str, str]] = []
    for doc in iter_corpus(files):
        batch.append(doc)
        if len(batch) == 64:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_shards(files: list[Path], tok_path: Path, cfg: DataConfig, writers: dict, progress) -> dict:
    """Tokenize every document in worker processes into the split's writer (upsampled in
    training); document and byte counts."""
    stats = {"docs": 0, "bytes": {"train": 0, "val": 0}}
    # Bounded waves, not Pool.imap: imap's feeder thread would read the whole corpus ahead.
    docs_iter = _doc_batches(files)
    with mp.get_context("spawn").Pool(cfg.workers, initializer=_init_worker, initargs=(str(tok_path),)) as pool:
        while wave := list(islice(docs_iter, 8 * cfg.workers)):
            encoded = pool.map(_encode_docs, [[t for t, _ in b] for b in wave])
            for docs, arrs in zip(wave, encoded):
                for (text, lang), arr in zip(docs, arrs):
                    split = "val" if is_validation(text, cfg.val_fraction) else "train"
                    repeats = cfg.upsample.get(lang, 1) if split == "train" else 1
                    for _ in range(repeats):
                        writers[split].add(arr)
                    stats["docs"] += 1
                    stats["bytes"][split] += len(text.encode("utf-8")) * repeats
                    if progress:
                        progress(len(text))
    return stats


def prepare_shards(
    files: list[Path], tok: Tokenizer, tok_path: Path, out: Path, cfg: DataConfig, progress=None
) -> Path:
    """Tokenize `files` into shards under `out/data/<key>/` (reused when it exists)."""
    if tok.vocab_size > 65535:
        raise NotesRagError("vocabularies above 65535 tokens need wider shards than uint16")
    key = hashlib.sha256(
        json.dumps([files_digest(files), tok.fingerprint, cfg.val_fraction, sorted(cfg.upsample.items())]).encode()
    ).hexdigest()[:16]
    folder = Path(out) / "data" / key
    if (folder / "meta.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writers = {"train": ShardWriter(tmp, "train"), "val": ShardWriter(tmp, "val")}
    stats = _write_shards(files, tok_path, cfg, writers, progress)
    for w in writers.values():
        w.flush()
    if not writers["train"].shards:
        raise NotesRagError("no usable text found in the data files")
    if not writers["val"].shards:
        # a corpus too small to hold out a document validates on its training split; meta says so
        stats["val_is_train"] = True
    meta = {
        "tokenizer": tok.fingerprint,
        "files": [str(f) for f in files],
        "train": writers["train"].shards,
        "val": writers["val"].shards or writers["train"].shards,
        "docs": stats["docs"],
        "train_bytes": stats["bytes"]["train"],
        "val_bytes": stats["bytes"]["val"] or stats["bytes"]["train"],
        "val_is_train": stats.get("val_is_train", False),
        "upsample": cfg.upsample,
    }
    atomic_write_json(tmp / "meta.json", meta)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def read_shards(folder: Path, split: str) -> list[np.memmap]:
    meta = json.loads((folder / "meta.json").read_text())
    return [np.memmap(folder / s["file"], dtype=np.uint16, mode="r") for s in meta[split]]


class TokenWindows:
    """Seeded, resumable stream of (B, T+1) windows from memory-mapped shards.

    Windows are non-overlapping spans of T+1 tokens inside a shard; each epoch visits them all
    in a fresh permutation. With several ranks, rank r takes every world-th window.
    """

    def __init__(
        self,
        shards: list[np.memmap],
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        min_windows: int | None = None,
    ):
        self.shards, self.T, self.B = shards, seq_len, batch_size
        self.seed, self.rank, self.world = seed, rank, world
        span = seq_len + 1
        counts = [max(0, (len(s) - 1) // seq_len) if len(s) > span else 0 for s in shards]
        self.index = [(si, wi) for si, c in enumerate(counts) for wi in range(c)]
        need = world * batch_size if min_windows is None else min_windows
        if len(self.index) < need:
            raise NotesRagError(f"too little data: {len(self.index)} windows of {span} tokens, need at least {need}")
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        perm = np.random.default_rng(self.seed + 1000003 * self.epoch).permutation(len(self.index))
        return perm[self.rank :: self.world]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation()

    def next_batch(self) -> np.ndarray:
        rows = []
        for _ in range(self.B):
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation()
            si, wi = self.index[self._order[self.cursor]]
            self.cursor += 1
            start = wi * self.T
            rows.append(np.asarray(self.shards[si][start : start + self.T + 1], dtype=np.int64))
        return np.stack(rows)

    def all_batches(self, max_batches: int | None = None) -> Iterator[np.ndarray]:
        """Every window once, in order (validation)."""
        rows = []
        n = 0
        for si, wi in self.index[self.rank :: self.world]:
            start = wi * self.T
            rows.append(np.asarray(self.shards[si][start : start + self.T + 1], dtype=np.int64))
            if len(rows) == self.B:
                yield np.stack(rows)
                rows, n = [], n + 1
                if max_batches and n >= max_batches:
                    return
        if rows:
            yield np.stack(rows)

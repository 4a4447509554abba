"""Pretraining data: raw text files -> cached binary token shards -> batches.

Inputs are files or folders of .txt/.md/.jsonl (the `text` field) and their .gz/.xz forms.
Documents stream through worker processes that tokenize them into uint16 shards (one
`<|bos|>` before each document), written under `<out>/data/<key>/`, where `key` hashes the
input files' contents, the tokenizer and the split settings, so a second run reuses them.
Documents are split into train/validation by a hash of their text (document-level split);
languages listed in `upsample` are repeated in the training split (the kit is English-heavy).

`TokenWindows` serves fixed-length windows in a seeded per-epoch order from memory-mapped
shards; its position is part of the training checkpoint, so resume continues exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import multiprocessing as mp
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json, decode_text
from notes_rag.model.tokenizer import Tokenizer

TEXT_SUFFIXES = (".txt", ".md", ".jsonl")
COMPRESSED = {".gz": gzip.open, ".xz": lzma.open}
SHARD_TOKENS = 8_000_000  # ~16 MB per uint16 shard


@dataclass
class DataConfig:
    val_fraction: float = 0.01  # share of documents held out for validation
    upsample: dict[str, int] = field(default_factory=lambda: {"pl": 3})  # lang -> repeats in train
    workers: int = 2


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _kind(path: Path) -> tuple[str, object]:
    """(base suffix, opener) for a data file, e.g. ('.jsonl', lzma.open)."""
    suffixes = path.suffixes
    opener = None
    if suffixes and suffixes[-1] in COMPRESSED:
        opener = COMPRESSED[suffixes[-1]]
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), opener


def find_data_files(paths: list[Path]) -> list[Path]:
    """Expand files/folders into the sorted list of usable data files; clear error if none."""
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise NotesRagError(f"data path not found: {p}")
        candidates = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in candidates:
            if _kind(q)[0] in TEXT_SUFFIXES:
                files.append(q)
            elif not p.is_dir():
                raise NotesRagError(f"unsupported data file {q} (use .txt, .md, .jsonl, optionally .gz/.xz)")
    if not files:
        raise NotesRagError(f"no .txt/.md/.jsonl files found in {', '.join(map(str, paths))}")
    return files


def _guess_lang(path: Path) -> str:
    name = path.name.lower()
    return "pl" if name.startswith("pl_") or "_pl." in name else "en"


def iter_documents(path: Path) -> Iterator[tuple[str, str]]:
    """Yield (text, lang) from one data file; bad files are skipped with a warning."""
    suffix, opener = _kind(path)
    try:
        raw = opener(path, "rb").read() if opener else path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError) as e:
        warn(f"skipping unreadable file {path}: {e}")
        return
    decoded = decode_text(raw)
    if decoded is None:
        warn(f"skipping binary or undecodable file {path}")
        return
    text = decoded[0]
    if suffix != ".jsonl":
        if text.strip():
            yield text, _guess_lang(path)
        return
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            doc = obj["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            bad += 1
            continue
        if isinstance(doc, str) and doc.strip():
            yield doc, obj.get("lang") or _guess_lang(path)
    if bad:
        warn(f"{path}: skipped {bad} lines without a JSON 'text' field")


def iter_corpus(files: list[Path]) -> Iterator[tuple[str, str]]:
    for f in files:
        yield from iter_documents(f)


def is_validation(text: str, val_fraction: float) -> bool:
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return (h % 1_000_000) < val_fraction * 1_000_000


def files_digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


# Worker-process state: each worker loads the tokenizer once.
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
    stats = {"docs": 0, "bytes": {"train": 0, "val": 0}}

    def batches() -> Iterator[list[tuple[str, str]]]:
        batch: list[tuple[str, str]] = []
        for doc in iter_corpus(files):
            batch.append(doc)
            if len(batch) == 64:
                yield batch
                batch = []
        if batch:
            yield batch

    # Bounded waves, not Pool.imap: imap's feeder thread would read the whole corpus ahead.
    docs_iter = batches()
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


def tokenizer_texts(files: list[Path], max_chars: int, upsample: dict[str, int]) -> Iterator[str]:
    """Texts for tokenizer training, up to `max_chars` characters, upsampled like training."""
    seen = 0
    for text, lang in iter_corpus(files):
        for _ in range(upsample.get(lang, 1)):
            yield text
        seen += len(text) * upsample.get(lang, 1)
        if seen >= max_chars:
            return

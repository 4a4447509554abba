"""Pretraining data: raw text files -> documents (text, language), and how they are split.

Inputs are files or folders of .txt/.md/.jsonl (the `text` field) and their .gz/.xz forms.
Documents are split into train/validation by a hash of their text (document-level split);
languages listed in `DataConfig.upsample` are repeated in the training split (the kit is
English-heavy). train/shards.py turns the documents into cached token shards and batches.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from notes_rag.errors import NotesRagError
from notes_rag.fileio import decode_text

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
def tokenizer_texts(files: list[Path], max_chars: int, upsample: dict[str, int]) -> Iterator[str]:
    """Texts for tokenizer training, up to `max_chars` characters, upsampled like training."""
    seen = 0
    for text, lang in iter_corpus(files):
        for _ in range(upsample.get(lang, 1)):
            yield text
        seen += len(text) * upsample.get(lang, 1)
        if seen >= max_chars:
            return

"""Our own byte-level BPE tokenizer: trained with rustbpe, served by tiktoken.

Training (`train_tokenizer`) runs the Rust BPE trainer over a stream of texts; the result is
stored as one JSON file (split pattern, base64 mergeable ranks, special tokens) and loaded as a
`tiktoken.Encoding`, which does all encoding and decoding at run time.

Special tokens mark the chat format (see `chat/format.py`). `Tokenizer.encode` never produces
them from text: a note that literally contains ``<|user|>`` is encoded as ordinary bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tiktoken

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_text

# GPT-4 style split, with two changes: letters are \p{L} runs (Polish words with diacritics stay
# whole) and digits are split in groups of at most two (nanochat measured 1-2 as better than 3 at
# small vocabularies: fewer rare number tokens).
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

SPECIAL_TOKENS = (
    "<|bos|>",  # beginning of a document / conversation
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|passage|>",  # one retrieved note passage
    "<|end|>",  # end of a turn or passage
)

TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(NotesRagError):
    """A tokenizer file is missing, corrupt or does not match."""


@dataclass
class Tokenizer:
    """A trained vocabulary wrapped around a `tiktoken.Encoding`."""

    encoding: tiktoken.Encoding
    pattern: str
    fingerprint: str  # sha256 of the saved file: checkpoints record it to detect mismatches

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def special_ids(self) -> dict[str, int]:
        return {s: self.encoding.encode_single_token(s) for s in SPECIAL_TOKENS}

    def special(self, name: str) -> int:
        """Id of a special token, given as ``"user"`` or ``"<|user|>"``."""
        token = name if name.startswith("<|") else f"<|{name}|>"
        return self.encoding.encode_single_token(token)

    def encode(self, text: str) -> list[int]:
        """Plain text to ids; special-token spellings inside `text` stay ordinary text."""
        return self.encoding.encode(text, allowed_special=set(), disallowed_special=())

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        return self.encoding.encode_batch(texts, num_threads=num_threads, allowed_special=set(), disallowed_special=())

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token_id)

    def save(self, path: str | Path) -> None:
        save_tokenizer_file(path, self.pattern, _ranks_of(self.encoding))


def _ranks_of(encoding: tiktoken.Encoding) -> dict[bytes, int]:
    return dict(encoding._mergeable_ranks)  # tiktoken keeps them; no public getter


def _serialize(pattern: str, ranks: dict[bytes, int]) -> str:
    ordered = sorted(ranks.items(), key=lambda kv: kv[1])
    return json.dumps(
        {
            "format": "notes-rag-bpe/1",
            "pattern": pattern,
            "special_tokens": list(SPECIAL_TOKENS),
            "ranks": [base64.b64encode(tok).decode("ascii") for tok, _ in ordered],
        }
    )


def save_tokenizer_file(path: str | Path, pattern: str, ranks: dict[bytes, int]) -> None:
    atomic_write_text(Path(path), _serialize(pattern, ranks))


def _build(pattern: str, ranks: dict[bytes, int], fingerprint: str) -> Tokenizer:
    n = len(ranks)
    specials = {tok: n + i for i, tok in enumerate(SPECIAL_TOKENS)}
    enc = tiktoken.Encoding(name="notes-rag", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    return Tokenizer(encoding=enc, pattern=pattern, fingerprint=fingerprint)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer file written by `Tokenizer.save`; clear error if it is unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise TokenizerError(f"tokenizer file not found: {path}")
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        if data.get("format") != "notes-rag-bpe/1":
            raise TokenizerError(f"{path} is not a notes-rag tokenizer file")
        if list(data["special_tokens"]) != list(SPECIAL_TOKENS):
            raise TokenizerError(f"{path} has special tokens {data['special_tokens']}, expected {list(SPECIAL_TOKENS)}")
        ranks = {base64.b64decode(tok): i for i, tok in enumerate(data["ranks"])}
        pattern = data["pattern"]
    except (KeyError, TypeError, ValueError) as e:
        raise TokenizerError(f"corrupt tokenizer file {path}: {e}") from None
    if len(ranks) < 256:
        raise TokenizerError(f"corrupt tokenizer file {path}: only {len(ranks)} tokens")
    return _build(pattern, ranks, hashlib.sha256(raw).hexdigest()[:16])


def train_tokenizer(texts: Iterator[str], vocab_size: int, pattern: str = SPLIT_PATTERN) -> Tokenizer:
    """Train a byte-level BPE of `vocab_size` ids in total (special tokens included)."""
    import rustbpe

    n_merged = vocab_size - len(SPECIAL_TOKENS)
    if n_merged < 256:
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)}")
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(texts, n_merged, pattern=pattern)
    ranks = {bytes(tok): rank for tok, rank in trainer.get_mergeable_ranks()}
    text = _serialize(pattern, ranks)
    return _build(pattern, ranks, hashlib.sha256(text.encode()).hexdigest()[:16])

"""The index-time encoder's word embeddings read from its folder's file, not held in memory.

e5's word-embedding table is 96M of its 118M parameters: 384 MB as float32 once
sentence-transformers has loaded it, while indexing a folder reads a few thousand of its
250k rows. `map_word_embeddings` swaps the loaded `nn.Embedding` for `MappedWords`, which reads
the rows a batch needs from the memory-mapped model.safetensors (bert_encoder.table_rows, as
the query-time encoder does). The rows are the floats the loaded table held, so the vectors are
unchanged (tests/test_encoder.py). Training (`align-train`) keeps the ordinary table.
"""

from __future__ import annotations

from pathlib import Path

import torch

from notes_rag.index.bert_encoder import table_rows

_NAMES = ("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight")


class MappedWords(torch.nn.Module):
    """`nn.Embedding`'s forward over a memory-mapped safetensors table (CPU, inference)."""

    def __init__(self, table, dim: int):
        super().__init__()
        self.table, self.embedding_dim = table, dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(table_rows(self.table, ids.cpu().numpy()))


def map_word_embeddings(encoder, folder: Path) -> bool:
    """Swap a BERT-style sentence-transformers encoder's word table for `MappedWords` over
    `folder`/model.safetensors; False, nothing changed, when either is not of that shape."""
    from safetensors import safe_open

    embeddings = getattr(getattr(encoder[0], "auto_model", None), "embeddings", None)
    words = getattr(embeddings, "word_embeddings", None)
    path = Path(folder) / "model.safetensors"
    if not isinstance(words, torch.nn.Embedding) or not path.is_file():
        return False
    file = safe_open(str(path), framework="numpy")
    name = next((n for n in _NAMES if n in file.keys()), None)
    if name is None or tuple(file.get_slice(name).get_shape()) != tuple(words.weight.shape):
        return False
    embeddings.word_embeddings = MappedWords(file.get_slice(name), words.embedding_dim)
    return True

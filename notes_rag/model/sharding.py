"""Weights in safetensors shards: a release small enough per file for any git host or upload.

    model-00001-of-00003.safetensors ...   the tensors, packed in name order, each file ≤ max_bytes
    model.safetensors.index.json           {"format", "dtype", "weight_map": {tensor name: file}}

A GPU-trained release is written in fp16 this way (at most `MAX_SHARDS` files); loading casts
the tensors back to the model's fp32. A checkpoint folder holds either `model.safetensors` or
the shards with their index; `read_weights` reads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_json

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
INDEX_FORMAT = "notes-rag-shards/1"
MAX_SHARDS = 8
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# A safetensors file is its tensors plus a JSON header: 8 bytes of length, then per tensor its
# name, dtype, shape and offsets (~70 bytes besides the name at these shapes); counted so that a
# shard's *file* stays within max_bytes.
HEADER_BYTES, HEADER_PER_TENSOR = 8 + 16, 96


def pack(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors in name order, greedily packed into files of at most `max_bytes` each (header
    included)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = HEADER_BYTES
    for name in sorted(state):
        t = state[name]
        nbytes = t.numel() * t.element_size() + HEADER_PER_TENSOR + len(name.encode())
        if nbytes > max_bytes:
            raise NotesRagError(f"tensor {name} ({nbytes:,} bytes) does not fit a shard of {max_bytes:,} bytes")
        if size + nbytes > max_bytes and groups[-1]:
            groups.append({})
            size = HEADER_BYTES
        groups[-1][name] = t
        size += nbytes
    return groups


def write_shards(folder: Path, state: dict[str, torch.Tensor], dtype: str, max_bytes: int) -> list[str]:
    """`state` cast to `dtype` as shards plus their index in `folder`; the file names written."""
    if dtype not in DTYPES:
        raise NotesRagError(f"unknown weights dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    cast = {k: v.to(DTYPES[dtype]).contiguous() for k, v in state.items()}
    groups = pack(cast, max_bytes)
    if len(groups) > MAX_SHARDS:
        raise NotesRagError(
            f"the weights need {len(groups)} shards of ≤ {max_bytes:,} bytes; at most {MAX_SHARDS} are allowed"
        )
    names = [f"model-{i:05d}-of-{len(groups):05d}.safetensors" for i in range(1, len(groups) + 1)]
    for name, group in zip(names, groups):
        save_file(group, str(Path(folder) / name), metadata={"format": "pt"})
    weight_map = {tensor: name for name, group in zip(names, groups) for tensor in group}
    atomic_write_json(Path(folder) / INDEX_FILE, {"format": INDEX_FORMAT, "dtype": dtype, "weight_map": weight_map})
    return [*names, INDEX_FILE]


def weight_files(folder: Path) -> list[Path]:
    """The files holding a checkpoint's weights: the single file, or the shards and their index."""
    folder = Path(folder)
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    if not (folder / INDEX_FILE).is_file():
        return []
    shards = sorted(set(json.loads((folder / INDEX_FILE).read_text())["weight_map"].values()))
    return [folder / INDEX_FILE, *(folder / s for s in shards)]


def read_weights(folder: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder, from `model.safetensors` or from its shards.

    Raises FileNotFoundError when neither is there, ValueError for an index that is not ours;
    safetensors raises its own errors for a truncated file (the caller turns both into one line)."""
    folder = Path(folder)
    if (folder / SINGLE_FILE).is_file() or not (folder / INDEX_FILE).is_file():
        return load_file(str(folder / SINGLE_FILE), device=device)
    index = json.loads((folder / INDEX_FILE).read_text())
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ValueError(f"{folder / INDEX_FILE} is not a {INDEX_FORMAT} index")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        state.update(load_file(str(folder / shard), device=device))
    missing = set(index["weight_map"]) - set(state)
    if missing:
        raise ValueError(f"shards lack {sorted(missing)[:3]} listed in {INDEX_FILE}")
    return state

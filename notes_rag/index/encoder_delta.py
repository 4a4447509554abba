"""The encoder delta: the fine-tuned layers of the retrieval encoder, shipped as one small file.

`models/encoder-delta.safetensors` holds the transformer layers `align-train` changed (fp16,
named as in transformers' BertModel); `models/encoder-delta.json` beside it says which base
encoder they belong to (`encoder_id` of the converted multilingual-e5-small), the layers, the
file's sha256 and how it was trained. index/encoder_cache.py applies it when it builds the cached
model folder, so the index-time (sentence-transformers) and the query-time (numpy) encoders
read the same weights from the same folder.

A delta whose bytes do not match its sha256, whose header is unreadable, or whose tensors or
base do not fit the base model is refused with one NotesRagError line: vectors from a wrong
encoder would silently search badly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_bytes, atomic_write_json

FORMAT = 1


def header_path(delta: Path) -> Path:
    return Path(delta).with_suffix(".json")


def layer_names(layers: Iterable[int], state: Mapping) -> list[str]:
    """The state-dict names of the given transformer layers, in order."""
    wanted = tuple(f"encoder.layer.{i}." for i in layers)
    return [n for n in state if n.startswith(wanted)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_delta(path: Path, tensors: Mapping, base_id: str, meta: dict) -> None:
    """Write `tensors` (torch or numpy, any float dtype) as fp16 safetensors, then the header."""
    from safetensors.numpy import save

    arrays = {
        n: np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, np.float16) for n, t in tensors.items()
    }
    atomic_write_bytes(path, save(arrays, metadata={"base_encoder": base_id}))
    layers = sorted({int(n.split(".")[2]) for n in arrays if n.startswith("encoder.layer.")})
    atomic_write_json(
        header_path(path),
        {
            "format": FORMAT,
            "base_encoder": base_id,
            "layers": layers,
            "tensors": len(arrays),
            "parameters": int(sum(a.size for a in arrays.values())),
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
            **meta,
        },
    )


def read_header(path: Path, what: str = "encoder delta") -> dict:
    """The delta's JSON header; a one-line error naming it as `what` when it is missing or unreadable."""
    head = header_path(path)
    try:
        header = json.loads(head.read_text(encoding="utf-8"))
        if header.get("format") != FORMAT or not isinstance(header.get("sha256"), str):
            raise ValueError("not an encoder-delta header")
        return header
    except FileNotFoundError:
        raise NotesRagError(f"{what} {path} has no header {head.name}; restore both files") from None
    except (OSError, ValueError, AttributeError) as e:
        raise NotesRagError(f"{what} header {head} is unreadable ({e}); restore it") from None


def read_delta(path: Path, what: str = "encoder delta") -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, header) of a delta whose bytes match the header's sha256; errors name it as
    `what` (the unit reranker ships in this format too)."""
    from safetensors.numpy import load

    header = read_header(path, what)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise NotesRagError(f"cannot read the {what} {path}: {e}") from None
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise NotesRagError(f"{what} {path} is corrupt (its sha256 differs from {header_path(path).name})")
    try:
        tensors = load(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise NotesRagError(f"{what} {path} is not a safetensors file ({e})") from None
    return tensors, header


def apply_delta(model_file: Path, tensors: Mapping[str, np.ndarray], out_file: Path, what: str) -> None:
    """Write `model_file` with `tensors` in place of its own into `out_file`; every delta tensor
    must exist in the base with the same shape (else one NotesRagError naming the first that does not)."""
    from safetensors.numpy import load_file, save_file

    state = load_file(str(model_file))
    prefix = "" if "embeddings.word_embeddings.weight" in state else "bert."
    for name, value in tensors.items():
        base = state.get(prefix + name)
        if base is None or base.shape != value.shape:
            found = "missing" if base is None else f"shape {tuple(base.shape)}"
            raise NotesRagError(
                f"encoder delta {what} does not fit the base encoder: {name} {tuple(value.shape)} vs {found}"
            )
        state[prefix + name] = value.astype(base.dtype)
    save_file(state, str(out_file), metadata={"format": "pt"})

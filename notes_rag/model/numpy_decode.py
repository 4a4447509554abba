"""Writing a copy-head answer without torch: engine.py `generate_copy` on the numpy model.

Importing torch costs the chat 2-3 s on a slow CPU before its first token; this path imports
numpy only. The decoder is model/numpy_gpt.py `NumpyCopyDecoder` (the KV-cached prompt pass
and steps, one BLAS thread), the loop sampling.py `decode_copy`, shared with the torch engine, so
the two write the same greedy answer (tests/test_numpy_gpt.py). Sampling (temperature > 0) draws
from numpy's generator: seeded it repeats itself, but not the torch engine's draws.

    from notes_rag.model.numpy_decode import generate_copy
    ids = generate_copy(np_model, prompt, copy_mask, match, SamplingConfig(), stop_ids=[end])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from notes_rag.model.constraint import WordConstraint
from notes_rag.model.numpy_gpt import NumpyCopyDecoder, NumpyGPT
from notes_rag.model.sampling import SamplingConfig, decode_copy


def sample_next(logp: np.ndarray, cfg: SamplingConfig, rng: np.random.Generator) -> int:
    """Pick the next id from log-probabilities or logits (V,) (engine.py `sample_next`)."""
    if cfg.temperature <= 0:
        return int(np.argmax(logp))
    logits = np.asarray(logp, np.float64) / cfg.temperature
    if cfg.top_k:
        kth = np.partition(logits, -min(cfg.top_k, logits.size))[-min(cfg.top_k, logits.size)]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if cfg.top_p is not None and cfg.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_p = probs[order]
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        sorted_p[np.cumsum(sorted_p) - sorted_p > cfg.top_p] = 0.0
        probs = np.zeros_like(probs)
        probs[order] = sorted_p
    cum = np.cumsum(probs)
    # a zero-probability id never holds the draw: its cumulative mass equals its predecessor's
    return int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), len(cum) - 1))


def generate_copy(
    model: NumpyGPT,
    prompt: list[int],
    copy_mask: list[bool] | None = None,
    match: list[int] | None = None,
    cfg: SamplingConfig | None = None,
    stop_ids: Iterable[int] = (),
    constraint: WordConstraint | None = None,
    on_first: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[int]:
    """engine.py `generate_copy` on a NumpyGPT: the same arguments and ids; `on_first` gets and
    returns a float32 numpy array (V,) (copy it before changing it)."""
    cfg = cfg or SamplingConfig()
    decoder = NumpyCopyDecoder(model, prompt, copy_mask, match)
    rng = np.random.default_rng(cfg.seed)
    yield from decode_copy(decoder, cfg, lambda logp: sample_next(logp, cfg, rng), stop_ids, constraint, on_first)

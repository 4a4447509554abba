"""Our GPT in numpy: the chat's prompt pass and answer decode without torch.

A chat turn runs the model to read the passages once and score abstention (chat/writer.py
`no_answer_score`: the first step's log-probabilities after the prompt), then, when it writes the
answer, one token per step. Importing torch alone takes 2-3 s on a slow CPU, longer than that
whole pass, so `ask` and `chat` run both here: the same forward as model/gpt.py (RMSNorm without
gain, rotary embedding then QK-norm, causal attention with grouped KV heads, ReLU² MLP, tied or
untied head, match-flag and relevance embeddings) and the copy head's steps (model/copy_head.py
`step_logprobs` with its `features`), in float32. `NumpyCopyDecoder` is engine.py's
`CopyDecoder` (KV cache, copy keys of the source positions computed once); numpy_decode.py
drives it as engine.py `generate_copy`. tests/test_numpy_gpt.py keeps them equal to the torch
model (logits and every step's log-probabilities to ~1e-5, the same greedy ids, on random tiny
models).

`load_numpy_gpt` reads a checkpoint folder that the torch loader would accept; anything else (an
old weight layout, shards, a config it does not know) returns None, and the caller loads the
torch model, whose loader reports what is wrong (model/checkpoint.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from notes_rag.model.constants import (
    AFTER_SHIFT,
    COS_SHIFT,
    FEATURE_GAIN,
    LOG_EPS,
    MATCH_MASK,
    N_MATCH_FLAGS,
    N_REL,
    RANK_SHIFT,
    RUN_CAP,
)
from notes_rag.model.constants import COPY_FEATURES as FEATURES
from notes_rag.model.folder import CONFIG_FILE, FORMAT, WEIGHTS_FILE, resolve_folder
from notes_rag.model.tokenizer import TOKENIZER_FILE, Tokenizer, TokenizerError, load_tokenizer

# Query rows per attention block of a prompt pass: a block reads only the keys up to its last row,
# so the masked half of the T×T scores is mostly never computed nor exponentiated.
ATTN_BLOCK = 128
# kernels.py's rms_norm eps (torch's default for float32); tests/test_numpy_gpt.py checks it.
EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class NumpyShape:
    """The config fields the forward needs (GPTConfig's names)."""

    vocab_size: int
    seq_len: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    mlp_ratio: int
    rope_base: float
    copy_head: bool
    copy_features: tuple[str, ...]
    relevance: bool = False
    structure: bool = False

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def of(cls, model: dict) -> NumpyShape | None:
        """From config.json's "model"; None unless it is a copy-head model this module runs."""
        try:
            flags = ("copy_features", "relevance", "structure")
            fields = {f: model[f] for f in cls.__dataclass_fields__ if f not in flags}
            shape = cls(
                **fields,
                copy_features=tuple(model["copy_features"]),
                relevance=bool(model.get("relevance")),
                structure=bool(model.get("structure")),
            )
        except (KeyError, TypeError):
            return None
        if model.get("reader") or not shape.copy_head or set(shape.copy_features) - set(FEATURES):
            return None
        if shape.n_embd % shape.n_head or shape.n_head % shape.n_kv_head or shape.head_dim % 2:
            return None
        return shape


def rms_norm(x: np.ndarray) -> np.ndarray:
    # sum / n, not np.mean: the same float32 numbers without mean's ~20 µs of Python per call,
    # which a decode step pays 17 times
    return x / np.sqrt((x * x).sum(-1, keepdims=True) / x.shape[-1] + EPS)


def softmax(x: np.ndarray) -> np.ndarray:
    e = x - x.max(-1, keepdims=True)
    np.exp(e, out=e)  # in place: the prompt pass's attention rows are its largest arrays
    e /= e.sum(-1, keepdims=True)
    return e


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def log_sigmoid(z: float) -> float:
    return float(-np.logaddexp(np.float32(0.0), np.float32(-z)))


def run_lengths(ids: np.ndarray, t: int, cap: int = RUN_CAP) -> np.ndarray:
    """(T,) for each source position j: how many of the tokens ids[t−k] (k = 0, 1, …) equal
    ids[j−1−k] in a row, at most `cap` (copy_head.py `run_lengths`, one row)."""
    j = np.arange(len(ids))
    alive = np.ones(len(ids), bool)
    run = np.zeros(len(ids), np.int64)
    for k in range(cap):
        if t - k < 0:
            break
        alive &= (j - 1 - k >= 0) & (ids[np.maximum(j - 1 - k, 0)] == ids[t - k])
        if not alive.any():
            break
        run += alive
    return run


def features(names: tuple[str, ...], ids: np.ndarray, valid: np.ndarray, match: np.ndarray | None) -> np.ndarray:
    """Copy-score features (T, F) at the last position (copy_head.py `features`, one row)."""
    cap = RUN_CAP if "longest_run" in names else 2 if "follows_last_two" in names else 1
    run = run_lengths(ids, len(ids) - 1, cap)
    cols = []
    for name in names:
        if name == "follows_last":
            cols.append(run >= 1)
        elif name == "follows_last_two":
            cols.append(run >= 2)
        elif name == "question_match":
            cols.append((match & MATCH_MASK) != 0 if match is not None else np.zeros(len(ids), bool))
        elif name in ("top_unit", "top3_unit"):
            rank = (match >> RANK_SHIFT) % N_REL if match is not None else np.zeros(len(ids), np.int64)
            cols.append((rank == 1) if name == "top_unit" else (rank >= 1) & (rank <= 3))
        elif name in ("after_top", "after_top3"):
            after = (match >> AFTER_SHIFT) % N_REL if match is not None else np.zeros(len(ids), np.int64)
            cols.append((after == 1) if name == "after_top" else (after >= 1) & (after <= 4))
        else:  # longest_run
            best = np.where(valid, run, 0).max()
            cols.append((run == best) & (best >= 1))
    return np.stack(cols, -1).astype(np.float32)


class NumpyGPT:
    """The copy-head GPT's prompt pass; `config` answers what a chat turn asks of a model."""

    def __init__(self, shape: NumpyShape, weights: dict[str, np.ndarray], folder: Path | None = None):
        self.config, self.w, self.folder = shape, weights, folder
        half = shape.head_dim // 2
        inv_freq = np.float32(shape.rope_base) ** (-np.arange(half, dtype=np.float32) / np.float32(half))
        freqs = np.outer(np.arange(shape.seq_len, dtype=np.float32), inv_freq)
        self.cos, self.sin = np.cos(freqs)[:, None, :], np.sin(freqs)[:, None, :]  # (T, 1, half)

    def _rope_norm(self, x: np.ndarray, start: int) -> np.ndarray:
        """x (T, H, D) at positions start… rotated by position, then RMS-normalised per head
        (gpt.py QK-norm)."""
        d = x.shape[-1] // 2
        cos, sin = self.cos[start : start + len(x)], self.sin[start : start + len(x)]
        x1, x2 = x[..., :d], x[..., d:]
        return rms_norm(np.concatenate((x1 * cos + x2 * sin, x2 * cos - x1 * sin), axis=-1))

    def _attention(self, layer: int, x: np.ndarray, cache: NumpyKVCache | None) -> np.ndarray:
        c = self.config
        T, H, Hk, D = len(x), c.n_head, c.n_kv_head, c.head_dim
        start = cache.pos if cache is not None else 0
        qkv = (x @ self.w[f"blocks.{layer}.attn.c_qkv.weight"].T).reshape(T, H + 2 * Hk, D)
        qk = self._rope_norm(qkv[:, : H + Hk], start)
        k, v = qk[:, H:].transpose(1, 0, 2), qkv[:, H + Hk :].transpose(1, 0, 2)  # (Hk, T, D)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (Hk, S, D), S = start + T
        # query head h reads kv head h // rep (grouped-query attention): the rep query heads of a
        # kv head are one batch of rep·T rows, so the cache is never repeated per head
        rep = H // Hk
        q = qk[:, :H].reshape(T, Hk, rep, D).transpose(1, 2, 0, 3)  # (Hk, rep, T, D)
        y = np.empty((Hk, rep, T, D), np.float32)
        for a in range(0, T, ATTN_BLOCK):
            b = min(a + ATTN_BLOCK, T)
            end = start + b  # row t of the block sees positions up to start + t
            s = (q[:, :, a:b].reshape(Hk, rep * (b - a), D) @ k[:, :end].transpose(0, 2, 1)).reshape(
                Hk, rep, b - a, end
            )
            s /= np.float32(np.sqrt(D))
            if b - a > 1:  # causal within the block; every earlier position is visible
                s[..., start + a :] += np.triu(np.full((b - a, b - a), -np.inf, np.float32), 1)
            y[:, :, a:b] = (softmax(s).reshape(Hk, rep * (b - a), end) @ v[:, :end]).reshape(Hk, rep, b - a, D)
        return y.transpose(2, 0, 1, 3).reshape(T, H * D) @ self.w[f"blocks.{layer}.attn.c_proj.weight"].T

    def hidden(self, ids, match=None, cache: NumpyKVCache | None = None) -> np.ndarray:
        """ids (T,) -> normalised last hidden states (T, C) (gpt.py `hidden`); with a `cache`,
        ids continue the positions it holds and their keys/values are added to it."""
        start = cache.pos if cache is not None else 0
        if start + len(ids) > self.config.seq_len:
            raise ValueError(f"sequence of {start + len(ids)} tokens exceeds the context of {self.config.seq_len}")
        x = self.w["wte.weight"][np.asarray(ids)]
        if match is not None:
            bits = (np.asarray(match)[:, None] >> np.arange(N_MATCH_FLAGS)) & 1
            x = x + bits.astype(np.float32) @ self.w["match_emb"]
            code = np.asarray(match, dtype=np.int64)
            if self.config.relevance:
                x = (
                    x
                    + self.w["rank_emb"][(code >> RANK_SHIFT) % N_REL]
                    + self.w["cos_emb"][(code >> COS_SHIFT) % N_REL]
                )
            if self.config.structure:
                x = x + self.w["after_emb"][(code >> AFTER_SHIFT) % N_REL]
        for layer in range(self.config.n_layer):
            x = x + self._attention(layer, rms_norm(x), cache)
            h = np.maximum(rms_norm(x) @ self.w[f"blocks.{layer}.mlp.c_fc.weight"].T, 0)
            x = x + (h * h) @ self.w[f"blocks.{layer}.mlp.c_proj.weight"].T
        if cache is not None:
            cache.pos += len(ids)
        return rms_norm(x)

    def logits(self, ids: list[int]) -> np.ndarray:
        """(T, V) output-head logits (gpt.py `forward` without targets)."""
        return self.hidden(ids) @ self.w["lm_head.weight"].T

    def first_logprobs(self, ids: list[int], copy_mask: list[bool], match: list[int] | None) -> np.ndarray:
        """Log-probabilities (V,) of the answer's first token after the prompt `ids`: the mix of
        the vocabulary and the copy attention over the `copy_mask` positions (engine.py
        `CopyDecoder.prefill`)."""
        return NumpyCopyDecoder(self, ids, copy_mask, match).prefill()

    def copy_logprobs(
        self, h: np.ndarray, keys: np.ndarray | None, src_ids: np.ndarray, feats: np.ndarray | None, pointer=None
    ):
        """Next-token log-probabilities (V,) at one decode step: hidden state h (C,), the cached
        source keys (S, C), their ids (S,), features (S, F) (copy_head.py `step_logprobs`);
        `pointer` (a list) receives the copy attention (S,)."""
        lm_logp = log_softmax(h @ self.w["lm_head.weight"].T)
        if not len(src_ids):
            return lm_logp
        s = keys @ (self.w["copy.query.weight"] @ h) / np.float32(np.sqrt(self.config.n_embd))
        if feats is not None:
            s = s + feats @ (self.w["copy.feature_weight"] * np.float32(FEATURE_GAIN))
        a = softmax(s)
        if pointer is not None:
            pointer.append(a)
        copy_p = np.bincount(src_ids, weights=a, minlength=len(lm_logp)).astype(np.float32)
        z = float(self.w["copy.gate.weight"][0] @ h + self.w["copy.gate.bias"][0])
        mixed = np.logaddexp(log_sigmoid(z) + lm_logp, log_sigmoid(-z) + np.log(np.maximum(copy_p, LOG_EPS)))
        return mixed.astype(np.float32)

    def torch_model(self):
        """The torch GPT of the same folder, for a caller that needs the torch model."""
        from notes_rag.model.checkpoint import load_model

        return load_model(self.folder)[0]


class NumpyKVCache:
    """Keys/values of every layer for positions [0, pos) of one sequence (engine.py `KVCache`)."""

    def __init__(self, shape: NumpyShape):
        size = (shape.n_layer, shape.n_kv_head, shape.seq_len, shape.head_dim)
        self.k, self.v = np.empty(size, np.float32), np.empty(size, np.float32)
        self.pos = 0

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store the new positions' k/v (Hk, T, D) of `layer`; return all k/v so far."""
        end = self.pos + k.shape[1]
        self.k[layer, :, self.pos : end], self.v[layer, :, self.pos : end] = k, v
        return self.k[layer, :, :end], self.v[layer, :, :end]


@cache
def _blas() -> ThreadpoolController:
    """Built once: a ThreadpoolController scans the loaded libraries (~0.5 ms), too slow per step."""
    return ThreadpoolController()


class NumpyCopyDecoder:
    """engine.py `CopyDecoder` in numpy: one answer, token by token over a KV cache.

    `prefill()` runs the prompt once and returns the first step's log-probabilities (V,);
    `step(token)` feeds one token and returns the next step's. The copy keys of the `copy_mask`
    positions are computed once; the copy-score features are recomputed each step from the token
    comparisons, generated tokens carrying match code 0 (no flags, no relevance).
    """

    def __init__(self, model: NumpyGPT, prompt: list[int], copy_mask=None, match=None):
        if not len(prompt):
            raise ValueError("decoding needs a non-empty prompt")
        T = model.config.seq_len
        self.room = T - len(prompt)
        if self.room <= 0:
            raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in a {T}-token context")
        self.model, self.cache, self.n = model, NumpyKVCache(model.config), len(prompt)
        self.ids = np.zeros(T, np.int64)
        self.ids[: self.n] = prompt
        self.match = None
        if match is not None:
            self.match = np.zeros(T, np.int64)
            self.match[: self.n] = match
        self.src = np.flatnonzero(np.asarray(copy_mask, bool)) if copy_mask is not None else np.zeros(0, np.int64)
        self.valid = np.zeros(T, bool)
        self.valid[self.src] = True
        self.keys: np.ndarray | None = None
        self.pointer = None  # (source positions, copy attention) of the last step

    def prefill(self) -> np.ndarray:
        # One BLAS thread, as the query encoder (index/bert_encoder.py): OpenBLAS's threads spin
        # while they wait; on the busy 2-core machine an 899-token pass took 0.56 s with one
        # thread and 1.65 s with two (p50 of 6, 2026-12-02).
        with _blas().limit(limits=1, user_api="blas"):
            match = None if self.match is None else self.match[: self.n]
            h = self.model.hidden(self.ids[: self.n], match, self.cache)
            if len(self.src):
                self.keys = h[self.src] @ self.model.w["copy.key.weight"].T  # (S, C), never recomputed
            return self._logprobs(h[-1])

    def step(self, token: int) -> np.ndarray:
        if self.n >= len(self.ids):
            raise ValueError(f"the answer fills the {len(self.ids)}-token context")
        self.ids[self.n] = token
        self.n += 1
        with _blas().limit(limits=1, user_api="blas"):
            match = None if self.match is None else self.match[self.n - 1 : self.n]
            return self._logprobs(self.model.hidden(self.ids[self.n - 1 : self.n], match, self.cache)[-1])

    def _logprobs(self, h: np.ndarray) -> np.ndarray:
        if self.keys is None:
            return self.model.copy_logprobs(h, None, self.src, None)
        names, n = self.model.config.copy_features, self.n
        feats = None
        if names:
            match = None if self.match is None else self.match[:n]
            feats = features(names, self.ids[:n], self.valid[:n], match)[self.src]
        out: list = []
        logp = self.model.copy_logprobs(h, self.keys, self.ids[self.src], feats, out)
        self.pointer = (self.src, out[0])
        return logp


def _read_weights(path: Path) -> dict[str, np.ndarray] | None:
    """A safetensors file's float32/float16 tensors as float32 arrays; None for anything else."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError):
        return None
    if any(a.dtype not in (np.float32, np.float16) for a in state.values()):
        return None
    return {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in state.items()}


def _expected_shapes(c: NumpyShape) -> dict[str, tuple[int, ...]]:
    C, D, V, M = c.n_embd, c.head_dim, c.vocab_size, c.mlp_ratio * c.n_embd
    out = {"wte.weight": (V, C), "lm_head.weight": (V, C), "match_emb": (N_MATCH_FLAGS, C)}
    for i in range(c.n_layer):
        out[f"blocks.{i}.attn.c_qkv.weight"] = ((c.n_head + 2 * c.n_kv_head) * D, C)
        out[f"blocks.{i}.attn.c_proj.weight"] = (C, C)
        out[f"blocks.{i}.mlp.c_fc.weight"] = (M, C)
        out[f"blocks.{i}.mlp.c_proj.weight"] = (C, M)
    out |= {"copy.query.weight": (C, C), "copy.key.weight": (C, C), "copy.gate.weight": (1, C), "copy.gate.bias": (1,)}
    out["copy.feature_weight"] = (len(c.copy_features),)
    if c.relevance:
        out |= {"rank_emb": (N_REL, C), "cos_emb": (N_REL, C)}
    if c.structure:
        out["after_emb"] = (N_REL, C)
    return out


def load_numpy_gpt(folder: Path) -> tuple[NumpyGPT, Tokenizer, dict] | None:
    """(model, tokenizer, config dict) like checkpoint.load_model, or None when this folder is
    not one the numpy model runs as it is (the caller then loads the torch model)."""
    folder = resolve_folder(Path(folder))  # its .old twin after an interrupted swap
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        tok = load_tokenizer(folder / TOKENIZER_FILE)
    except (OSError, ValueError, TokenizerError):
        return None
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("model"), dict):
        return None
    shape = NumpyShape.of(config["model"])
    if shape is None or tok.fingerprint != config.get("tokenizer") or tok.vocab_size != shape.vocab_size:
        return None
    weights = _read_weights(folder / WEIGHTS_FILE)
    if weights is None:
        return None
    if config["model"].get("tie_embeddings", True):
        weights.setdefault("lm_head.weight", weights["wte.weight"])
    expected = _expected_shapes(shape)
    if set(weights) != set(expected) or any(weights[k].shape != s for k, s in expected.items()):
        return None
    return NumpyGPT(shape, weights, folder), tok, config

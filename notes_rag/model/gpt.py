"""The GPT: a small modern decoder-only transformer, sized for 2-core CPUs.

Architecture (nanochat / modded-nanogpt lineage, our own code):
- token embedding, optional tied output head; no biases anywhere;
- rotary position embeddings (no learned position table, so context can grow at finetune time);
- pre-norm RMSNorm without learned gain (fewer tiny elementwise ops, which dominate on CPU);
- QK-norm: queries and keys are RMS-normalised after RoPE, which keeps attention logits bounded
  and lets us train with a higher learning rate;
- causal attention through `F.scaled_dot_product_attention` (fused kernels on CPU and GPU),
  optional grouped-query attention (`n_kv_head < n_head`) to shrink the KV cache;
- ReLU² MLP (one matmul fewer than SwiGLU at equal width; cheap on CPU).

Training runs the norms, rotary embedding, activation and output-head loss through the
hand-written autograd functions in kernels.py (1.3× faster eager CPU steps, same numbers).

`forward` accepts a `KVCache` (see engine.py) for incremental decoding. With `copy_head=True`
the model carries the match-flag embeddings (reader.py, the model input) and a pointer-generator
copy head (copy_head.py; its loss `copy_loss`, its cached decode engine.CopyDecoder). `reader=True`
is the old reader (pointer heads, removed 2026-12-01): its checkpoints, the release among them,
still load; train-generator turns one into a generator (train/generator.py `with_copy_head`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from notes_rag.model.constants import AFTER_SHIFT, COS_SHIFT, N_MATCH_FLAGS, N_REL, RANK_SHIFT
from notes_rag.model.copy_head import CopyHead, copy_loss, step_logprobs
from notes_rag.model.kernels import linear_cross_entropy, relu_squared, rms_norm, rope_rms_norm


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 8192
    seq_len: int = 1024  # longest sequence the model is trained/used for (RoPE table size)
    n_layer: int = 6
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 256
    mlp_ratio: int = 4
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    # The old reader: question-match flag embeddings on the input and pointer heads on the last
    # hidden states (removed; its checkpoints load, the heads unused). Older configs load as off.
    reader: bool = False
    # Copy head (copy_head.py): answers mix the vocabulary with attention over the source tokens;
    # it brings the match-flag embeddings too. `copy_features`: the copy-score features it uses.
    copy_head: bool = False
    copy_features: tuple[str, ...] = ("follows_last", "follows_last_two", "question_match", "longest_run")
    # The retrieval encoder's view of each unit (its rank and cosine bin among the units read,
    # reader.py `relevance_codes`) as two learned tables added to the unit's tokens.
    relevance: bool = False
    # The unit's place after its passage's top-ranked units (reader.py `relevance_codes`, bits
    # 10-12) as a third table: a heading echoing the question ranks first, its answer follows.
    structure: bool = False

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def validate(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} not divisible by n_kv_head {self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for rotary embeddings")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {sorted(unknown)}")
        if "copy_features" in d:  # JSON has lists; the frozen config keeps a tuple
            d = {**d, "copy_features": tuple(d["copy_features"])}
        return cls(**d)


# Named shapes. `vocab_size` is overwritten by the tokenizer's at build time.
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(seq_len=128, n_layer=2, n_head=2, n_kv_head=1, n_embd=64),
    "small": GPTConfig(n_layer=4, n_head=4, n_kv_head=4, n_embd=192),  # ~3M params at 8k vocab
    "base": GPTConfig(n_layer=6, n_head=4, n_kv_head=4, n_embd=256),  # ~7M
    "medium": GPTConfig(n_layer=8, n_head=6, n_kv_head=6, n_embd=384),  # ~17M
    "large": GPTConfig(n_layer=8, n_head=8, n_kv_head=8, n_embd=512),  # ~29M: the GPU speedrun's shape
}


def preset(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def rotary_tables(cfg: GPTConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_base ** (-torch.arange(half, dtype=torch.float32, device=device) / half)
    t = torch.arange(cfg.seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)  # (T, half)
    return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]  # (1, T, 1, half)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        # q, k and v heads from one GEMM; q and k are then rotated and normalised in one call
        self.c_qkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, kv_cache=None):
        B, T, C = x.shape
        H, Hk = self.n_head, self.n_kv_head
        qkv = self.c_qkv(x).view(B, T, H + 2 * Hk, self.head_dim)
        qk, v = qkv.split([H + Hk, Hk], dim=2)  # split, not slicing: its backward is one cat
        q, k = rope_rms_norm(qk, cos, sin).split([H, Hk], dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        gqa = self.n_kv_head != self.n_head
        if kv_cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            start = kv_cache.pos
            k, v = kv_cache.update(self.layer, k, v)
            if T == 1:  # one new token sees the whole cache
                y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
            elif start == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            else:  # a chunk appended to a non-empty cache: causal within the chunk
                mask = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(start)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(relu_squared(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, kv_cache=None):
        x = x + self.attn(rms_norm(x), cos, sin, kv_cache)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if cfg.reader or cfg.copy_head:
            # one learned vector per match flag, summed over the flags a token has (zero at start:
            # the base model's behaviour is unchanged until training learns to use them)
            self.match_emb = nn.Parameter(torch.zeros(N_MATCH_FLAGS, cfg.n_embd))
        if cfg.relevance:  # zero at start, as the match flags
            self.rank_emb = nn.Parameter(torch.zeros(N_REL, cfg.n_embd))
            self.cos_emb = nn.Parameter(torch.zeros(N_REL, cfg.n_embd))
        if cfg.structure:
            self.after_emb = nn.Parameter(torch.zeros(N_REL, cfg.n_embd))
        if cfg.reader:  # old reader checkpoints load; their heads are unused
            self.read_tok = nn.Linear(cfg.n_embd, 3, bias=False)
            self.read_pool = nn.Linear(cfg.n_embd, 1, bias=False)
            self.read_cls = nn.Linear(cfg.n_embd, 4, bias=False)
        if cfg.copy_head:
            self.copy = CopyHead(cfg.n_embd, cfg.copy_features)
        cos, sin = rotary_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = 1.0 / math.sqrt(self.config.n_embd)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # residual branches start at zero: each block begins as the identity
                nn.init.zeros_(p)
            elif p.dim() == 2:
                nn.init.normal_(p, std=std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=0.02 * std)
        for name in ("match_emb", "rank_emb", "cos_emb", "after_emb"):  # flags and relevance start as no-ops
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name))
        if self.config.copy_head:
            self.copy.reset_parameters()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights counted once

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6 × matmul params + attention scores (fwd + bwd)."""
        cfg = self.config
        T = seq_len or cfg.seq_len
        # the output head is a matmul, the embedding lookup is not (tied or not)
        matmul = sum(p.numel() for p in self.blocks.parameters()) + cfg.vocab_size * cfg.n_embd
        attn = 12 * cfg.n_layer * cfg.n_embd * T / 2  # causal: half the score matrix
        return 6 * matmul + attn

    def hidden(self, idx, kv_cache=None, match=None):
        """idx (B, T) -> normalised last hidden states (B, T, C); `match` (B, T) holds each
        token's match-flag bits (copy-head and old reader models only)."""
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.config.seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context of {self.config.seq_len}")
        cos, sin = self.rope_cos[:, start : start + T], self.rope_sin[:, start : start + T]
        x = self.wte(idx)
        if match is not None:
            bits = (match.unsqueeze(-1).long() >> torch.arange(N_MATCH_FLAGS, device=idx.device)) & 1
            x = x + bits.to(x.dtype) @ self.match_emb
            code = match.long()
            if self.config.relevance:
                x = x + self.rank_emb[(code >> RANK_SHIFT) % N_REL] + self.cos_emb[(code >> COS_SHIFT) % N_REL]
            if self.config.structure:
                x = x + self.after_emb[(code >> AFTER_SHIFT) % N_REL]
        for block in self.blocks:
            x = block(x, cos, sin, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        return rms_norm(x)

    def forward(self, idx, targets=None, kv_cache=None, last_only: bool = False):
        """idx (B, T) -> logits (B, T, V), or the mean loss over targets != -1 when given."""
        B, T = idx.shape
        x = self.hidden(idx, kv_cache)
        if targets is not None and x.requires_grad and not torch.is_autocast_enabled(x.device.type):
            return linear_cross_entropy(x.view(B * T, -1), self.lm_head.weight, targets.reshape(-1))
        if targets is not None:
            logits = self.lm_head(x).float()
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(x).float()

    def copy_loss(self, idx, targets, copy_mask, match=None):
        """Mean −log p(target) of the copy head's mixture over targets != −1 (copy_head.py);
        `copy_mask` (B, T) marks the source positions an answer may copy from."""
        if not self.config.copy_head:
            raise ValueError("copy_loss needs a model with copy_head=True")
        return copy_loss(self, idx, targets, copy_mask, match)

    def copy_logprobs(self, h, keys, src_ids, feats=None, pointer=None):
        """Next-token log-probabilities (V,) at one decode step: hidden state h (C,), the cached
        source keys (S, C) = `self.copy.key(h_j)`, their ids (S,), features (S, F); `pointer`
        (a list) receives the copy attention (S,)."""
        return step_logprobs(self, h, keys, src_ids, feats, pointer=pointer)

"""Text generation: prefill + incremental decode over a preallocated KV cache.

The engine knows nothing about chat: it takes prompt ids and yields new ids (`generate`), and
turns an id stream into text pieces that are always whole UTF-8 characters (`stream_text`).
Sampling: greedy when temperature is 0, else temperature with optional top-k / top-p, seeded.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from notes_rag.model.gpt import GPT


class KVCache:
    """Keys/values of every layer for positions [0, pos), preallocated to `max_len`."""

    def __init__(self, model: GPT, batch_size: int = 1, max_len: int | None = None):
        cfg = model.config
        p = next(model.parameters())
        self.max_len = max_len or cfg.seq_len
        shape = (cfg.n_layer, batch_size, cfg.n_kv_head, self.max_len, cfg.head_dim)
        self.k = torch.empty(shape, dtype=p.dtype, device=p.device)
        self.v = torch.empty(shape, dtype=p.dtype, device=p.device)
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this step's k/v (B, H, T, D) for `layer`; return all k/v so far."""
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} > {self.max_len} positions")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.pos += n


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 200
    seed: int | None = None


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> int:
    """Pick the next id from logits (V,)."""
    if cfg.temperature <= 0:
        return int(logits.argmax())
    logits = logits / cfg.temperature
    if cfg.top_k:
        kth = torch.topk(logits, min(cfg.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if cfg.top_p is not None and cfg.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = sorted_p.cumsum(-1) - sorted_p > cfg.top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return int(torch.multinomial(probs, 1, generator=generator))


class CopyBias:
    """Logit bonus for continuing a span of the source text (an explicit copy mechanism).

    After the answer's last tokens match a place in `source` (longest match of up to `ngram`
    tokens), the token that follows that place gets `boost` added to its logit. A small model
    trained to answer by copying a passage sentence knows *where* to start far better than it can
    reproduce twenty tokens in a row; the bonus keeps it on the sentence it chose, and its own
    logits still decide where to start and when to stop (`<|end|>`, citations).
    """

    def __init__(self, source: list[int], boost: float, ngram: int = 3):
        self.boost, self.ngram = boost, ngram
        self.next: dict[tuple[int, ...], set[int]] = {}
        for n in range(1, ngram + 1):
            for i in range(len(source) - n):
                self.next.setdefault(tuple(source[i : i + n]), set()).add(source[i + n])

    def __call__(self, logits: torch.Tensor, generated: list[int]) -> torch.Tensor:
        for n in range(min(self.ngram, len(generated)), 0, -1):
            follow = self.next.get(tuple(generated[-n:]))
            if follow:
                logits = logits.clone()
                logits[list(follow)] += self.boost
                return logits
        return logits


@torch.inference_mode()
def generate(
    model: GPT,
    prompt: list[int],
    cfg: SamplingConfig | None = None,
    stop_ids: Iterable[int] = (),
    logit_bias: Callable[[torch.Tensor, list[int]], torch.Tensor] | None = None,
) -> Iterator[int]:
    """Yield new token ids after `prompt`, stopping at a stop id (not yielded) or the limit.

    `logit_bias(logits, generated_so_far)` may adjust each step's logits (e.g. `CopyBias`).
    """
    cfg = cfg or SamplingConfig()
    if not prompt:
        raise ValueError("generate needs a non-empty prompt")
    room = model.config.seq_len - len(prompt)
    if room <= 0:
        raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in a {model.config.seq_len}-token context")
    stop = set(stop_ids)
    device = next(model.parameters()).device
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    cache = KVCache(model)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    generated: list[int] = []
    for _ in range(min(cfg.max_new_tokens, room)):
        logits = model(ids, kv_cache=cache, last_only=True)[0, -1]
        if logit_bias is not None:
            logits = logit_bias(logits, generated)
        nxt = sample_next(logits, cfg, generator)
        if nxt in stop:
            return
        generated.append(nxt)
        yield nxt
        ids = torch.tensor([[nxt]], dtype=torch.long, device=device)


@torch.inference_mode()
def generate_no_cache(model: GPT, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy decoding that recomputes the whole sequence every step (reference and benchmark)."""
    device = next(model.parameters()).device
    ids = list(prompt)
    for _ in range(min(max_new_tokens, model.config.seq_len - len(prompt))):
        logits = model(torch.tensor([ids], device=device), last_only=True)[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def stream_text(token_bytes, ids: Iterable[int]) -> Iterator[str]:
    """Turn ids into text pieces that never split a multi-byte character.

    `token_bytes(id) -> bytes` (e.g. `Tokenizer.token_bytes`). Bytes of a character that spans
    tokens are held back until it is complete; invalid sequences become U+FFFD.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for i in ids:
        piece = decoder.decode(token_bytes(i))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail

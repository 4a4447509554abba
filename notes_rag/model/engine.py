"""Text generation: prefill + incremental decode over a preallocated KV cache.

The engine knows nothing about chat: it takes prompt ids and yields new ids (`generate`), and
turns an id stream into text pieces that are always whole UTF-8 characters (`stream_text`).
Sampling: greedy when temperature is 0, else temperature with optional top-k / top-p, seeded.
`SamplingConfig` and `stream_text` live in sampling.py (no torch) and are re-exported here.

Copy-head models (copy_head.py) decode through `CopyDecoder`: the prompt is run once, the copy
keys of its source positions are cached next to the KV cache, then one token per step;
`generate_copy` drives it, optionally under a `WordConstraint` (constraint.py). The same decode
without torch, for the chat's cold start, is model/numpy_decode.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from notes_rag.model.constraint import WordConstraint
from notes_rag.model.copy_head import features
from notes_rag.model.gpt import GPT
from notes_rag.model.sampling import SamplingConfig, decode_copy
from notes_rag.model.sampling import stream_text as stream_text  # re-exported: callers import it from here


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


class CopyDecoder:
    """One answer of a copy-head model, token by token over a KV cache.

    `prefill()` runs the prompt once and returns the first step's log-probabilities (V,) (the
    mass on an abstention's first token is a no-answer score); `step(token)` feeds one token and
    returns the next step's. `copy_mask` marks the prompt positions the answer may copy from
    (default: none, so a plain model or an empty mask decodes with the vocabulary alone);
    `match` holds the prompt's match-flag bits (generated tokens get none).
    """

    def __init__(
        self, model: GPT, prompt: list[int], copy_mask: list[bool] | None = None, match: list[int] | None = None
    ):
        if not prompt:
            raise ValueError("decoding needs a non-empty prompt")
        self.room = model.config.seq_len - len(prompt)
        if self.room <= 0:
            raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in a {model.config.seq_len}-token context")
        self.model, self.device = model, next(model.parameters()).device
        self.cache = KVCache(model)
        self.ids = torch.zeros(1, model.config.seq_len, dtype=torch.long, device=self.device)
        self.ids[0, : len(prompt)] = torch.tensor(prompt)
        self.n = len(prompt)
        self.prompt_match = None if match is None else torch.tensor([match], dtype=torch.long, device=self.device)
        mask = copy_mask if copy_mask is not None and model.config.copy_head else [False] * len(prompt)
        self.src = torch.tensor(mask, dtype=torch.bool, device=self.device).nonzero()[:, 0]
        self.keys: torch.Tensor | None = None
        self.pointer = None  # (source positions, copy attention) of the last step

    @torch.inference_mode()
    def prefill(self) -> torch.Tensor:
        h = self.model.hidden(self.ids[:, : self.n], kv_cache=self.cache, match=self.prompt_match)[0]
        if self.src.numel():
            self.keys = self.model.copy.key(h[self.src])  # (S, C), never recomputed
        return self._logprobs(h[-1])

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        if self.n >= self.model.config.seq_len:
            raise ValueError(f"the answer fills the {self.model.config.seq_len}-token context")
        self.ids[0, self.n] = token
        self.n += 1
        match = None if self.prompt_match is None else torch.zeros(1, 1, dtype=torch.long, device=self.device)
        return self._logprobs(
            self.model.hidden(self.ids[:, self.n - 1 : self.n], kv_cache=self.cache, match=match)[0, -1]
        )

    def _logprobs(self, h: torch.Tensor) -> torch.Tensor:
        if self.keys is None:
            return self.model.lm_head(h).float().log_softmax(-1)
        names = self.model.copy.features
        ids = self.ids[:, : self.n]
        valid = torch.zeros(1, self.n, dtype=torch.bool, device=self.device)
        valid[0, self.src] = True
        match = None
        if self.prompt_match is not None:
            match = torch.zeros(1, self.n, dtype=torch.long, device=self.device)
            match[:, : self.prompt_match.size(1)] = self.prompt_match
        f = features(names, ids, torch.tensor([self.n - 1], device=self.device), valid, match)
        out: list = []
        logp = self.model.copy_logprobs(h, self.keys, ids[0, self.src], None if f is None else f[0, self.src], out)
        self.pointer = (self.src, out[0])  # tensors: unit_copy.py reads them at the first step only
        return logp


def generate_copy(
    model: GPT,
    prompt: list[int],
    copy_mask: list[bool] | None = None,
    match: list[int] | None = None,
    cfg: SamplingConfig | None = None,
    stop_ids: Iterable[int] = (),
    constraint: WordConstraint | None = None,
    on_first: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[int]:
    """Yield new ids of a copy-head answer (see `CopyDecoder`), stopping at a stop id (not
    yielded) or the limit. With a `constraint`, only tokens it allows are chosen (it is advanced
    with each one); it decides the stop ids too, so a word never ends unfinished. `on_first`
    sees the first step's log-probabilities and returns the ones to decode with (the chat reads
    its no-answer score there and adds its calibrated bias). The loop is sampling.py
    `decode_copy`, shared with the numpy decoder (numpy_decode.py)."""
    cfg = cfg or SamplingConfig()
    decoder = CopyDecoder(model, prompt, copy_mask, match)
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator(device=decoder.device).manual_seed(cfg.seed)
    yield from decode_copy(decoder, cfg, lambda logp: sample_next(logp, cfg, generator), stop_ids, constraint, on_first)


@torch.inference_mode()
def generate_no_cache(model: GPT, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Greedy decoding that recomputes the whole sequence every step (reference and benchmark)."""
    device = next(model.parameters()).device
    ids = list(prompt)
    for _ in range(min(max_new_tokens, model.config.seq_len - len(prompt))):
        logits = model(torch.tensor([ids], device=device), last_only=True)[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt) :]

"""The copy head: a pointer-generator (See et al. 2017) on the GPT's last hidden states.

At an answer step t the next-token distribution mixes the language-model head with attention
over the source positions j (the passage and question tokens, `copy_mask`):

    score(t, j) = q_t · k_j / sqrt(C) + Σ_f w_f · feat_f(t, j)      (j < t, copy_mask[j])
    a_t = softmax_j(score)
    p(w) = p_gen · softmax(lm_logits)(w) + (1 − p_gen) · Σ_{j: ids[j] = w} a_tj,
    p_gen = sigmoid(g · h_t + b)

A 1M-parameter GPT cannot learn to copy twenty tokens in a row through its vocabulary head in
our compute (no induction heads yet); pointing at a source position is one attention lookup.
The copy-score features are token comparisons that the attention would otherwise have to learn:

- `follows_last`: ids[j−1] equals the input token at t (the last one generated), i.e. j
  continues a place where the answer's last token occurs;
- `follows_last_two`: ids[j−2 : j] equals ids[t−1 : t+1];
- `question_match`: j carries a reader match flag (the question names that word);
- `longest_run`: j continues the longest run of source tokens equal to the answer's recent
  tokens (up to `RUN_CAP`), the span being copied, when shorter matches are ambiguous;
- `top_unit` / `top3_unit`: j is in the unit (sentence or line) the retrieval encoder finds most
  similar to the question / among its 3 most similar (reader.py `relevance_codes`);
- `after_top` / `after_top3`: j is in the unit right after the most similar one / in the first or
  second unit after one of the 3 most similar, in the same passage (the answer under a heading
  that echoes the question).

Which features a model uses is `GPTConfig.copy_features`; benchmarks/copy_synthetic.py measured
which earn their place (docs/GENERATOR.md). The loss (`copy_loss`) computes the copy attention
only at the target rows and p_copy(target) as Σ_j a_tj·[ids_j = target], never a (B, T, V) tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from notes_rag.model.constants import AFTER_SHIFT, FEATURE_GAIN, LOG_EPS, MATCH_MASK, N_REL, RANK_SHIFT, RUN_CAP
from notes_rag.model.constants import COPY_FEATURES as FEATURES


class CopyHead(nn.Module):
    """Query/key projections, the generation gate and the copy-score feature weights."""

    def __init__(self, n_embd: int, features: tuple[str, ...]):
        super().__init__()
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown copy features {sorted(unknown)}; choose from {', '.join(FEATURES)}")
        self.features = tuple(features)
        self.query = nn.Linear(n_embd, n_embd, bias=False)
        self.key = nn.Linear(n_embd, n_embd, bias=False)
        self.gate = nn.Linear(n_embd, 1)
        self.feature_weight = nn.Parameter(torch.zeros(len(features)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = 1.0 / math.sqrt(self.query.in_features)
        nn.init.normal_(self.query.weight, std=std)
        nn.init.normal_(self.key.weight, std=std)
        # p_gen = 0.5 everywhere: a fresh head trusts the vocabulary and the copy equally
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        # features start at a mild positive score (e^1 ≈ 2.7× the attention of a plain position)
        self.feature_weight.fill_(1.0 / FEATURE_GAIN)

    def scores(self, dots: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        """Copy scores (n, S) from the query·key products (n, S) and the features (n, S, F)."""
        s = dots / math.sqrt(self.query.in_features)
        if feats is not None and self.features:
            s = s + feats @ (self.feature_weight * FEATURE_GAIN)
        return s


def run_lengths(ids: torch.Tensor, t: torch.Tensor, cap: int = RUN_CAP) -> torch.Tensor:
    """(n, T) long: for row r and source position j, how many of the tokens ids[r, t−k] (k = 0,
    1, …) equal ids[r, j−1−k] in a row, at most `cap`. ids (n, T), t (n,) current positions."""
    n, T = ids.shape
    j = torch.arange(T, device=ids.device)
    alive = torch.ones(n, T, dtype=torch.bool, device=ids.device)
    run = torch.zeros(n, T, dtype=torch.long, device=ids.device)
    for k in range(cap):
        src_pos, ans_pos = j - 1 - k, t - k
        src = ids[:, src_pos.clamp(min=0)]
        ans = ids.gather(1, ans_pos.clamp(min=0)[:, None])
        alive = alive & (src == ans) & (src_pos >= 0)[None] & (ans_pos >= 0)[:, None]
        if not alive.any():
            break
        run += alive
    return run


def features(
    names: tuple[str, ...], ids: torch.Tensor, t: torch.Tensor, valid: torch.Tensor, match: torch.Tensor | None
) -> torch.Tensor | None:
    """Copy-score features (n, T, F) of the rows' sequences ids (n, T) at positions t (n,);
    `valid` (n, T) marks the positions that may be copied, `match` (n, T) the flag bits."""
    if not names:
        return None
    cap = RUN_CAP if "longest_run" in names else 2 if "follows_last_two" in names else 1
    run = run_lengths(ids, t, cap) if {"follows_last", "follows_last_two", "longest_run"} & set(names) else None
    cols = []
    for name in names:
        if name == "follows_last":
            cols.append(run >= 1)
        elif name == "follows_last_two":
            cols.append(run >= 2)
        elif name == "question_match":
            cols.append((match & MATCH_MASK) != 0 if match is not None else torch.zeros_like(valid))
        elif name in ("top_unit", "top3_unit"):
            rank = (match >> RANK_SHIFT) % N_REL if match is not None else torch.zeros_like(ids)
            cols.append((rank == 1) if name == "top_unit" else (rank >= 1) & (rank <= 3))
        elif name in ("after_top", "after_top3"):
            after = (match >> AFTER_SHIFT) % N_REL if match is not None else torch.zeros_like(ids)
            cols.append((after == 1) if name == "after_top" else (after >= 1) & (after <= 4))
        else:  # longest_run
            best = run.masked_fill(~valid, 0).amax(1, keepdim=True)
            cols.append((run == best) & (best >= 1))
    return torch.stack(cols, -1).float()


def mix_logprob(
    head: CopyHead, h: torch.Tensor, lm_logp: torch.Tensor, copy_p: torch.Tensor, has_src: torch.Tensor
) -> torch.Tensor:
    """log(p_gen·p_vocab + (1 − p_gen)·p_copy), elementwise; h (n, C), lm_logp/copy_p (n, …).
    Rows without any source position fall back to the vocabulary alone."""
    z = head.gate(h).float()
    if lm_logp.dim() == 1:
        z = z[:, 0]
    has = has_src.view(-1, *([1] * (lm_logp.dim() - 1)))
    log_gen = torch.where(has, F.logsigmoid(z), torch.zeros_like(z))
    log_copy = torch.where(has, F.logsigmoid(-z), torch.full_like(z, -math.inf))
    return torch.logaddexp(log_gen + lm_logp, log_copy + copy_p.clamp_min(LOG_EPS).log())


def attention(head: CopyHead, dots: torch.Tensor, feats: torch.Tensor | None, valid: torch.Tensor) -> torch.Tensor:
    """Copy attention (n, S) from query·key products (n, S); zero outside `valid` (n, S)."""
    s = head.scores(dots.float(), feats).masked_fill(~valid, torch.finfo(torch.float32).min)
    # a row with no valid position softmaxes to uniform over nothing: the product zeroes it
    return s.softmax(-1) * valid


def copy_loss(
    model, idx: torch.Tensor, targets: torch.Tensor, copy_mask: torch.Tensor, match: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean −log p_mix(target) over targets != −1; idx/targets/copy_mask/match (B, T)."""
    h = model.hidden(idx, match=match)  # (B, T, C)
    b, t = (targets != -1).nonzero(as_tuple=True)
    if b.numel() == 0:
        return h.sum() * 0.0
    head: CopyHead = model.copy
    tgt = targets[b, t]
    h_rows = h[b, t]  # (n, C)
    B, T, C = h.shape
    # each row's query against every key of the batch, then its own sequence's block: (n, T)
    # costs n×B×T products but never gathers an (n, T, C) tensor of keys
    dots = (head.query(h_rows) @ head.key(h).view(B * T, C).T).view(-1, B, T)[torch.arange(b.numel()), b]
    valid = copy_mask[b] & (torch.arange(T, device=idx.device)[None] < t[:, None])
    feats = features(head.features, idx[b], t, valid, match[b] if match is not None else None)
    a = attention(head, dots, feats, valid)
    copy_p = (a * (idx[b] == tgt[:, None])).sum(-1)  # Σ_j a_tj·[ids_j = target]
    lm_logp = model.lm_head(h_rows).float().log_softmax(-1).gather(1, tgt[:, None])[:, 0]
    return -mix_logprob(head, h_rows, lm_logp, copy_p, valid.any(-1)).mean()


def step_logprobs(
    model,
    h: torch.Tensor,
    keys: torch.Tensor,
    src_ids: torch.Tensor,
    feats: torch.Tensor | None,
    valid: torch.Tensor | None = None,
    pointer: list | None = None,
) -> torch.Tensor:
    """Log-probabilities (V,) of the next token from the hidden state h (C,) of the current
    step, the source keys (S, C), their ids (S,) and features (S, F) (see `features`). A
    `pointer` list receives the copy attention (S,) (model/unit_copy.py reads where it points)."""
    lm_logp = model.lm_head(h).float().log_softmax(-1)
    if src_ids.numel() == 0:
        return lm_logp
    valid = valid if valid is not None else torch.ones(src_ids.shape, dtype=torch.bool, device=h.device)
    dots = (keys @ model.copy.query(h))[None]
    a = attention(model.copy, dots, None if feats is None else feats[None], valid[None])[0]
    if pointer is not None:
        pointer.append(a)
    copy_p = torch.zeros_like(lm_logp).scatter_add_(0, src_ids, a)
    return mix_logprob(model.copy, h[None], lm_logp[None], copy_p[None], valid.any()[None])[0]

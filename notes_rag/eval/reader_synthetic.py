"""The synthetic lookup task: can a model point at the sentence that answers a question?

A passage of `n_sentences` sentences of random tokens; the question names two key tokens; the
answer is the one sentence holding both keys, and its span the 3 tokens after the second key.
Every other sentence holds at most one of the keys, so a single matching word decides nothing.
A generated answer stays at chance on this task for millions of tokens on a small GPT; the
reader (match flags + pointer heads) learns it in a few hundred steps. Used by the reader's unit
test (tiny size) and by benchmarks/reader_synthetic.py (8 and 32 sentences).
"""

from __future__ import annotations

import numpy as np
import torch

from notes_rag.model.gpt import GPT
from notes_rag.model.reader import EXACT, ReaderLossConfig, heads, reader_loss
from notes_rag.sft.reader_data import ReaderItem, batch_of

SPECIAL = 4  # ids 0..3 play bos, user/end, passage, assistant; random tokens come after


def lookup_item(
    rng: np.random.Generator, vocab: int, n_sentences: int = 8, sentence_len: int = 8, flags: bool = True
) -> ReaderItem:
    bos, sep, passage, cls = 0, 1, 2, 3
    k1, k2 = rng.choice(np.arange(SPECIAL, vocab), 2, replace=False)
    pool = np.setdiff1d(np.arange(SPECIAL, vocab), [k1, k2])
    gold = int(rng.integers(n_sentences))
    ids, firsts, lasts = [bos, sep, int(k1), int(k2), sep, passage], [], []
    start = end = -1
    for s in range(n_sentences):
        sent = rng.choice(pool, sentence_len).tolist()
        if s == gold:
            a, b = sorted(rng.choice(sentence_len - 3, 2, replace=False))
            sent[a], sent[b] = int(k1), int(k2)
            start, end = len(ids) + b + 1, len(ids) + b + 3
        elif rng.random() < 0.8:  # a hard negative: one key only
            sent[int(rng.integers(sentence_len))] = int(k1 if rng.random() < 0.5 else k2)
        firsts.append(len(ids))
        ids += sent
        lasts.append(len(ids) - 1)
    ids += [sep, cls]
    arr = np.asarray(ids, dtype=np.int32)
    match = np.where((arr == k1) | (arr == k2), EXACT, 0).astype(np.int8)
    match[:6] = 0  # only passage tokens carry flags
    if not flags:  # ablation: the model must find the keys by attention alone
        match[:] = 0
    return ReaderItem(
        arr,
        match,
        np.asarray(firsts, np.int32),
        np.asarray(lasts, np.int32),
        gold,
        0,
        start,
        end,
        "xx",
        "synthetic",
        "",
        "",
    )


def lookup_accuracy(model: GPT, items: list[ReaderItem]) -> float:
    """Share of items whose chosen sentence is the gold one."""
    model.eval()
    with torch.no_grad():
        x, _ = batch_of(items, lm_frac=0.0)
        _, _, _, ptr = heads(model, x)
    model.train()
    gold = torch.tensor([it.unit + 1 for it in items])
    return float((ptr.argmax(-1) == gold).float().mean())


def train_lookup(
    model: GPT,
    steps: int,
    n_sentences: int = 8,
    batch: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    flags: bool = True,
    log=None,
) -> list[tuple[int, float]]:
    """Train `model` on fresh lookup items; returns (step, held-out accuracy) every 25 steps."""
    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    test = [lookup_item(rng, vocab, n_sentences, flags=flags) for _ in range(256)]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    # short warmup, then linear decay to zero: a constant rate keeps the last steps noisy
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * (1 - s / steps))
    cfg = ReaderLossConfig(lm_weight=0.0)
    curve = []
    model.train()
    for step in range(1, steps + 1):
        x, y = batch_of([lookup_item(rng, vocab, n_sentences, flags=flags) for _ in range(batch)], lm_frac=0.0)
        loss = reader_loss(model, x, y, cfg)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == steps:
            curve.append((step, lookup_accuracy(model, test)))
            if log:
                log(step, float(loss.detach()), curve[-1][1])
    return curve

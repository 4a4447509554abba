"""The synthetic copy task: can a small GPT answer by copying a span of its prompt?

Eight sentences of random tokens; the question names a type and two adjacent key tokens of one
sentence; the answer is a frame of 2–3 tokens chosen by the type, then every token after the
keys up to the sentence end (its DOT included), then END. Laid out like the reader input (question first)::

    BOS QUESTION type k1 k2 END  s1 … DOT  s2 … DOT … s8 … DOT  ASSISTANT  frame… copied… END

Passage tokens equal to a key carry match flag 1 (the reader's exact-match bit). Content tokens
come from a small alphabet (64 by default), so single tokens repeat across sentences the way
words do in notes, and only the key bigram is guaranteed unique.

Used by benchmarks/copy_synthetic.py (LM head vs copy head vs copy head + features) and, tiny,
by tests/test_copy_head.py. `train` and `exact_match` take any GPT: with `copy_head` it trains
`copy_loss` and decodes with engine.generate_copy; without, the LM head with the match flags.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from notes_rag.model.engine import SamplingConfig, generate_copy
from notes_rag.model.gpt import GPT

BOS, QUESTION, ASSISTANT, END, DOT = 0, 1, 2, 3, 4
N_TYPES = 4
FRAMES = ((5, 6), (7, 8, 9), (10, 11), (12, 13, 14))  # the answer frame of each type
TYPE0 = 15  # type tokens 15..18
CONTENT0 = 19  # content tokens CONTENT0 .. CONTENT0 + n_content - 1


@dataclass(frozen=True)
class CopyTask:
    n_content: int = 64
    sentences: int = 8
    min_len: int = 4  # content tokens per sentence
    max_len: int = 8

    @property
    def vocab_size(self) -> int:
        return CONTENT0 + self.n_content

    @property
    def seq_len(self) -> int:
        return 6 + self.sentences * (self.max_len + 1) + 1 + 3 + self.max_len + 2


@dataclass
class Example:
    prompt: list[int]
    answer: list[int]  # ends with DOT, END
    copy_mask: list[bool]
    match: list[int]


def make_example(task: CopyTask, rng: random.Random) -> Example:
    while True:
        sents = [
            [CONTENT0 + rng.randrange(task.n_content) for _ in range(rng.randint(task.min_len, task.max_len))]
            for _ in range(task.sentences)
        ]
        s = sents[rng.randrange(task.sentences)]
        p = rng.randrange(len(s) - 2)  # keys s[p], s[p+1], at least one token after them
        keys = (s[p], s[p + 1])
        if sum(tuple(x[i : i + 2]) == keys for x in sents for i in range(len(x) - 1)) == 1:
            break
    kind = rng.randrange(N_TYPES)
    prompt = [BOS, QUESTION, TYPE0 + kind, *keys, END]
    match = [0] * len(prompt)
    for x in sents:
        prompt += [*x, DOT]
        match += [int(t in keys) for t in x] + [0]
    copy_mask = [False, False, True, True, True, False] + [True] * (len(prompt) - 6)  # question + passages
    prompt.append(ASSISTANT)
    match.append(0)
    copy_mask.append(False)
    return Example(prompt, [*FRAMES[kind], *s[p + 2 :], DOT, END], copy_mask, match)


def collate(examples: list[Example]) -> dict[str, torch.Tensor]:
    """Teacher-forced batch: ids, targets (answer tokens only, else -1), copy_mask, match."""
    T = max(len(e.prompt) + len(e.answer) for e in examples) - 1
    B = len(examples)
    out = {
        "ids": torch.full((B, T), END, dtype=torch.long),
        "targets": torch.full((B, T), -1, dtype=torch.long),
        "copy_mask": torch.zeros(B, T, dtype=torch.bool),
        "match": torch.zeros(B, T, dtype=torch.long),
    }
    for b, e in enumerate(examples):
        seq = e.prompt + e.answer
        n, P = len(seq) - 1, len(e.prompt)
        out["ids"][b, :n] = torch.tensor(seq[:-1])
        out["targets"][b, P - 1 : n] = torch.tensor(e.answer)
        out["copy_mask"][b, :P] = torch.tensor(e.copy_mask)
        out["match"][b, :P] = torch.tensor(e.match)
    return out


def answer_loss(model: GPT, x: dict[str, torch.Tensor]) -> torch.Tensor:
    if model.config.copy_head:
        return model.copy_loss(x["ids"], x["targets"], x["copy_mask"], x["match"])
    logits = model.lm_head(model.hidden(x["ids"], match=x["match"])).float()
    return F.cross_entropy(logits.transpose(1, 2), x["targets"], ignore_index=-1)


@torch.no_grad()
def exact_match(model: GPT, examples: list[Example]) -> float:
    """Share of examples whose greedy answer (up to END) is exactly the gold answer."""
    model.eval()
    cfg = SamplingConfig(max_new_tokens=max(len(e.answer) for e in examples) + 2)
    hits = 0
    for e in examples:
        out = list(generate_copy(model, e.prompt, e.copy_mask, e.match, cfg, stop_ids=[END]))
        hits += out == e.answer[:-1]
    model.train()
    return hits / len(examples)


@dataclass
class TrainSetup:
    steps: int = 1000
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 50
    eval_every: int = 100
    eval_examples: int = 200
    seed: int = 0


def train(model: GPT, task: CopyTask, setup: TrainSetup, log=None) -> list[dict]:
    """Train on fresh examples every step (AdamW, warmup then constant lr); exact match on a fixed
    held-out set every `eval_every` steps. Returns one row per evaluation."""
    rng = random.Random(setup.seed)
    held_out = [make_example(task, random.Random(10**6 + i)) for i in range(setup.eval_examples)]
    opt = torch.optim.AdamW(model.parameters(), lr=setup.lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    rows, start, losses = [], time.perf_counter(), []
    for step in range(1, setup.steps + 1):
        for g in opt.param_groups:
            g["lr"] = setup.lr * min(1.0, step / setup.warmup)
        loss = answer_loss(model, collate([make_example(task, rng) for _ in range(setup.batch)]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % setup.eval_every == 0:
            row = {
                "step": step,
                "loss": sum(losses) / len(losses),
                "exact_match": exact_match(model, held_out),
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            losses = []
            if log:
                log(row)
    return rows

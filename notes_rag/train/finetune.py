"""`notes-rag finetune`: instruction-tune a pretrained GPT into a grounded, citing chat model.

    notes-rag finetune --base runs/base/best --data data/sft --out runs/sft --time-budget 40m

Reads conversations (JSONL of `chat.format.Conversation` dicts; a folder means its
`train.jsonl` + `val.jsonl`), renders them with the shared chat format, and trains with loss on
the assistant's tokens only, through the same loop as pretraining (train/loop.py). Batches hold
conversations of similar length padded to a fixed token budget, so no compute is spent on
attention across unrelated conversations and little on padding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from notes_rag.chat.format import Conversation, render, render_prompt
from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model
from notes_rag.model.engine import SamplingConfig, generate
from notes_rag.model.gpt import GPT
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.train.batching import LengthBatches
from notes_rag.train.distributed import setup_distributed
from notes_rag.train.loop import TrainConfig, train


@dataclass
class FinetuneConfig:
    seq_len: int = 1024  # longest rendered conversation kept (longer ones are dropped)
    micro_tokens: int = 8192  # padded tokens per micro-batch
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=5e-4, warmup_steps=20, decay_frac=0.4, batch_tokens=16384, eval_every=100
        )
    )


def read_conversations(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                Conversation.from_dict(rec)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise NotesRagError(f"{path}:{n}: not a conversation record ({e})") from None
            records.append(rec)
    return records


def load_sft_files(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """(train, val) records from files or folders holding train.jsonl/val.jsonl."""
    train_recs, val_recs = [], []
    for p in map(Path, paths):
        if p.is_dir():
            if not (p / "train.jsonl").is_file():
                raise NotesRagError(f"{p} has no train.jsonl (build one with `notes-rag sft-data --out {p}`)")
            train_recs += read_conversations(p / "train.jsonl")
            if (p / "val.jsonl").is_file():
                val_recs += read_conversations(p / "val.jsonl")
        elif p.is_file():
            train_recs += read_conversations(p)
        else:
            raise NotesRagError(f"finetune data not found: {p}")
    if not train_recs:
        raise NotesRagError("no training conversations in " + ", ".join(map(str, paths)))
    if not val_recs:  # hold out a deterministic 5% when no validation file is given
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(train_recs))
        cut = max(1, len(train_recs) // 20)
        val_recs = [train_recs[i] for i in idx[:cut]]
        train_recs = [train_recs[i] for i in idx[cut:]]
    return train_recs, val_recs


def encode_all(records: list[dict], tok: Tokenizer, seq_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Render each conversation to (ids, mask); drop those longer than `seq_len` + 1."""
    out = []
    for rec in records:
        ids, mask = render(Conversation.from_dict(rec), tok)
        if len(ids) <= seq_len + 1 and any(mask):
            out.append((np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.bool_)))
    return out


class ConversationBatches(LengthBatches):
    """Seeded, resumable batches of padded conversations (x, y with -1 where not learned)."""

    def __init__(
        self,
        examples: list[tuple[np.ndarray, np.ndarray]],
        micro_tokens: int,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        if not examples:
            raise NotesRagError("no conversation fits the context; check --seq-len and the data")
        self.examples = examples
        super().__init__([len(ids) - 1 for ids, _ in examples], micro_tokens, seed, rank, world)

    def collate(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(len(self.examples[i][0]) for i in idx) - 1
        x = np.zeros((len(idx), T), dtype=np.int64)
        y = np.full((len(idx), T), -1, dtype=np.int64)
        for r, i in enumerate(idx):
            ids, mask = self.examples[i]
            n = len(ids) - 1
            x[r, :n] = ids[:-1]
            y[r, :n] = np.where(mask[1:], ids[1:], -1)
        return torch.from_numpy(x), torch.from_numpy(y)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.collate(self.next_indices())

    def all_batches(self):
        for idx in self.all_indices():
            yield self.collate(idx)


@torch.no_grad()
def masked_val_loss(model, batches: ConversationBatches, max_batches: int, device) -> dict:
    total, count = 0.0, 0
    for n, (x, y) in enumerate(batches.all_batches()):
        if n >= max_batches:
            break
        logits = model(x.to(device))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), y.to(device).reshape(-1), ignore_index=-1, reduction="sum"
        )
        total += float(loss)
        count += int((y != -1).sum())
    if torch.distributed.is_initialized():
        t = torch.tensor([total, count], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        total, count = t.tolist()
    return {"val_loss": total / max(count, 1)}


def answer_sample(model: GPT, tok: Tokenizer, record: dict, max_new_tokens: int = 60) -> str:
    """Greedy answer of the model to one held-out conversation's first question."""
    conv = Conversation.from_dict(record)
    first_user = next(i for i, t in enumerate(conv.turns) if t.role == "user")
    conv = replace(conv, turns=conv.turns[: first_user + 1])
    prompt = render_prompt(conv, tok)
    if len(prompt) >= model.config.seq_len:
        return ""
    ids = generate(model, prompt, SamplingConfig(max_new_tokens=max_new_tokens), stop_ids=[tok.special("end")])
    return f"Q: {conv.turns[-1].content[:80]} -> {tok.decode(list(ids))}"


def finetune(base: Path, data: list[Path], out: Path, cfg: FinetuneConfig, resume: bool = False, console=None) -> dict:
    from rich.console import Console

    console = console or Console(stderr=True)
    d, device = setup_distributed()
    model, tok, base_config = load_model(base, device=device)
    if cfg.seq_len > model.config.seq_len:
        raise NotesRagError(f"--seq-len {cfg.seq_len} exceeds the base model's context of {model.config.seq_len}")
    model.train()
    train_recs, val_recs = load_sft_files(data)
    train_ex = encode_all(train_recs, tok, cfg.seq_len)
    val_ex = encode_all(val_recs, tok, cfg.seq_len)
    if d.master:
        n_tok = sum(len(i) for i, _ in train_ex)
        n_learn = sum(int(m.sum()) for _, m in train_ex)
        console.print(
            f"finetune data: {len(train_ex):,} train conversations ({len(train_recs) - len(train_ex)} too long, "
            f"dropped), {n_tok:,} tokens, {n_learn:,} answer tokens; {len(val_ex):,} validation"
        )
    tc = cfg.train
    source = ConversationBatches(train_ex, cfg.micro_tokens, tc.seed, d.rank, d.world)
    val = ConversationBatches(val_ex, cfg.micro_tokens, 0, d.rank, d.world)
    sample_rec = next((r for r in val_recs if r.get("passages")), val_recs[0])
    meta = {
        "stage": "finetune",
        "base": str(base),
        "base_meta": base_config.get("meta", {}),
        "data": [str(p) for p in data],
        "conversations": len(train_ex),
    }
    return train(
        model,
        tok,
        source,
        tc,
        out,
        evaluate=lambda m: masked_val_loss(m, val, tc.eval_batches, device),
        sample=lambda m: answer_sample(m, tok, sample_rec),
        meta=meta,
        resume=resume,
        dist_info=d,
        device=device,
        console=console,
    )

"""`notes-rag train-reader`: teach a GPT to read — pointer heads over the retrieved passages.

    notes-rag train-reader --base models/ --data data/sft --out runs/reader --time-budget 70m

Starts from a chat or base checkpoint (or a reader checkpoint, to continue), adds the reader's
match-flag embeddings and heads (model/reader.py), and trains every weight on the reader items
of the finetuning conversations (sft/reader_data.py) through the shared loop (train/loop.py):
same schedule, checkpoints, `--resume`, Ctrl-C and loss curve. Validation reports the reader's
loss and what a user notices: the right sentence chosen, no-answer when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model, unwrap
from notes_rag.model.reader import ReaderLossConfig, best_span, heads, heads_loss, reader_loss, with_reader_heads
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.reader_data import ReaderBatches, ReaderItem, batch_of, build_items
from notes_rag.train.finetune import load_sft_files
from notes_rag.train.loop import TrainConfig, setup_distributed, train


@dataclass
class ReaderTrainConfig:
    seq_len: int = 1024  # reader inputs are fitted into this many tokens
    micro_tokens: int = 8192  # padded tokens per micro-batch
    lm_frac: float = 0.25  # share of input positions with an auxiliary LM target
    val_items: int = 400  # validation items scored at every eval
    loss: ReaderLossConfig = field(default_factory=ReaderLossConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=1e-3, warmup_steps=30, decay_frac=0.3, batch_tokens=16384, eval_every=100
        )
    )


@torch.no_grad()
def reader_metrics(
    model: torch.nn.Module, items: list[ReaderItem], loss_cfg: ReaderLossConfig, batch_size: int = 8
) -> dict:
    """Validation loss, sentence accuracy (answerable items with a known sentence), abstention
    on unanswerable items, false abstention on answerable ones, yes/no accuracy, and span F1
    over tokens (0 when the wrong sentence was chosen)."""
    model = unwrap(model)
    total, n = 0.0, 0
    sent_ok = sent_n = abst_ok = abst_n = false_abst = ans_n = kind_ok = kind_n = 0
    f1s: list[float] = []
    for lo in range(0, len(items), batch_size):
        chunk = items[lo : lo + batch_size]
        x, y = batch_of(chunk, lm_frac=0.0)
        out = heads(model, x)  # one forward for the loss and the choices
        total += float(heads_loss(model, out, x, y, loss_cfg)) * len(chunk)
        n += len(chunk)
        _, tok_scores, cls, ptr = out
        pick = ptr.argmax(-1)
        for b, it in enumerate(chunk):
            if it.unit == -1:
                abst_n += 1
                abst_ok += int(pick[b] == 0)
                continue
            ans_n += 1
            false_abst += int(pick[b] == 0)
            if it.unit >= 0:
                sent_n += 1
                sent_ok += int(pick[b] == it.unit + 1)
            if it.start >= 0:
                hit = pick[b] == it.unit + 1
                lo, hi = int(it.unit_first[it.unit]), int(it.unit_last[it.unit])
                f1s.append(
                    _span_f1(best_span(tok_scores[b, lo : hi + 1]), (it.start - lo, it.end - lo)) if hit else 0.0
                )
            if it.kind >= 0:
                kind_n += 1
                kind_ok += int(cls[b, 1:].argmax() == it.kind)
    return {
        "val_loss": total / max(n, 1),
        "sentence_acc": sent_ok / max(sent_n, 1),
        "abstain_acc": abst_ok / max(abst_n, 1),
        "false_abstain": false_abst / max(ans_n, 1),
        "kind_acc": kind_ok / max(kind_n, 1),
        "span_f1": sum(f1s) / max(len(f1s), 1),
    }


def _span_f1(pred: tuple[int, int], gold: tuple[int, int]) -> float:
    """F1 of two inclusive token ranges."""
    common = min(pred[1], gold[1]) - max(pred[0], gold[0]) + 1
    if common <= 0:
        return 0.0
    p, r = common / (pred[1] - pred[0] + 1), common / (gold[1] - gold[0] + 1)
    return 2 * p * r / (p + r)


def _val_subset(items: list[ReaderItem], n: int) -> list[ReaderItem]:
    """A fixed sample of validation items, every source represented."""
    rng = np.random.default_rng(0)
    return [items[i] for i in sorted(rng.permutation(len(items))[:n])]


def load_reader_base(base: Path, device) -> tuple[torch.nn.Module, Tokenizer, dict]:
    model, tok, config = load_model(base, device=device)
    return with_reader_heads(model), tok, config


def train_reader(
    base: Path, data: list[Path], out: Path, cfg: ReaderTrainConfig, resume: bool = False, console=None
) -> dict:
    from rich.console import Console

    console = console or Console(stderr=True)
    d, device = setup_distributed()
    if d.world > 1:
        raise NotesRagError("train-reader runs on one process")
    model, tok, base_config = load_reader_base(base, device)
    if cfg.seq_len > model.config.seq_len:
        raise NotesRagError(f"--seq-len {cfg.seq_len} exceeds the base model's context of {model.config.seq_len}")
    model.train()
    train_recs, val_recs = load_sft_files(data)
    with console.status("encoding reader items"):
        train_items = build_items(train_recs, tok, cfg.seq_len)
        val_items = _val_subset(build_items(val_recs, tok, cfg.seq_len), cfg.val_items)
    if not train_items:
        raise NotesRagError("no reader items in the data: it needs grounded QA conversations (notes-rag sft-data)")
    n_unans = sum(it.unit == -1 for it in train_items)
    console.print(
        f"reader data: {len(train_items):,} train items ({n_unans:,} unanswerable, "
        f"{sum(len(it.ids) for it in train_items):,} tokens) from {len(train_recs):,} conversations; "
        f"{len(val_items)} validation items"
    )
    source = ReaderBatches(train_items, cfg.micro_tokens, cfg.train.seed, cfg.lm_frac)
    meta = {
        "stage": "reader",
        "base": str(base),
        "base_meta": base_config.get("meta", {}),
        "data": [str(p) for p in data],
        "items": len(train_items),
    }
    return train(
        model,
        tok,
        source,
        cfg.train,
        out,
        evaluate=lambda m: reader_metrics(m, val_items, cfg.loss),
        meta=meta,
        resume=resume,
        dist_info=d,
        device=device,
        console=console,
        loss_fn=lambda m, x, y: reader_loss(m, x, y, cfg.loss),
    )

"""`notes-rag train-generator`: teach our GPT to write the answer, copying from the passages.

    notes-rag train-generator --base models/ --data data/sft --out runs/generator --time-budget 70m

Starts from a chat, reader or generator checkpoint, adds the copy head (model/copy_head.py) and
the match-flag embeddings where missing (a reader's are kept), and trains every weight on the generator items
of the finetuning conversations (sft/generator_data.py) through the shared loop (train/loop.py):
same schedule, checkpoints, `--resume`, Ctrl-C and loss curve. Validation reports the mixture
loss and what a user notices: greedy answers that contain the gold answer, and abstention.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from notes_rag.chat.format import is_abstention
from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model, unwrap
from notes_rag.model.gpt import GPT
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.generator_data import GeneratorBatches, GeneratorItem, batch_of, build_items, special_ids
from notes_rag.text import fold
from notes_rag.train.finetune import load_sft_files
from notes_rag.train.loop import TrainConfig, setup_distributed, train


@dataclass
class GeneratorTrainConfig:
    seq_len: int = 1024  # prompt + answer fitted into this many tokens
    micro_tokens: int = 8192  # padded tokens per micro-batch
    val_items: int = 300  # validation items scored (loss) at every eval
    val_generate: int = 60  # of which this many are also answered greedily
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=1e-3, warmup_steps=30, decay_frac=0.3, batch_tokens=16384, eval_every=100
        )
    )


def with_copy_head(model: GPT) -> GPT:
    """A generator holding `model`'s weights: its match flags kept (a reader's), the copy head
    new; a reader's pointer heads are dropped (the generator answers, nothing points)."""
    cfg = model.config
    if cfg.copy_head:
        return model
    gen = GPT(replace(cfg, copy_head=True, reader=False)).to(next(model.parameters()).device)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("read_")}
    missing, unexpected = gen.load_state_dict(state, strict=False)
    new = {k for k in missing if k.startswith("copy.") or k == "match_emb"}
    if unexpected or set(missing) - new:
        raise NotesRagError(f"cannot add a copy head to this checkpoint: missing {missing}, unexpected {unexpected}")
    return gen


def generator_loss(model: torch.nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    return unwrap(model).copy_loss(x["ids"], y, x["copy_mask"], match=x["match"])


@torch.no_grad()
def generator_metrics(model: torch.nn.Module, tok: Tokenizer, items: list[GeneratorItem], n_generate: int) -> dict:
    """Validation loss over `items`; for the first `n_generate`, greedy answers: the share of
    answerable ones whose answer holds the gold answer's words (folded), abstention on
    unanswerable ones, false abstention on answerable ones."""
    from notes_rag.model.engine import SamplingConfig, generate_copy

    model = unwrap(model)
    specials = special_ids(tok)
    total = n = 0
    for lo in range(0, len(items), 8):
        chunk = items[lo : lo + 8]
        x, y = batch_of(chunk, specials)
        total += float(generator_loss(model, x, y)) * len(chunk)
        n += len(chunk)
    hit = ans = abst_ok = unans = false_abst = 0
    end = tok.special("end")
    for it in items[:n_generate]:
        x, _ = batch_of([it], specials)
        p = it.prompt_len
        out = list(
            generate_copy(
                model,
                x["ids"][0, :p].tolist(),
                x["copy_mask"][0, :p].tolist(),
                x["match"][0, :p].tolist(),
                SamplingConfig(max_new_tokens=80),
                stop_ids=[int(s) for s in specials],
            )
        )
        text = tok.decode(out)
        gold = tok.decode([i for i in it.ids[p:].tolist() if i != end])
        if it.answerable:
            ans += 1
            false_abst += is_abstention(text)
            hit += not is_abstention(text) and _holds(text, gold)
        else:
            unans += 1
            abst_ok += is_abstention(text)
    return {
        "val_loss": total / max(n, 1),
        "answer_hit": hit / max(ans, 1),
        "abstain_acc": abst_ok / max(unans, 1),
        "false_abstain": false_abst / max(ans, 1),
    }


def _holds(text: str, gold: str, share: float = 0.6) -> bool:
    """Most of the gold answer's words (its citation aside) are in the generated text."""
    g = [w for w in fold(gold).split() if not w.startswith("[")]
    have = set(fold(text).split())
    return bool(g) and sum(w in have for w in g) >= share * len(g)


def _val_subset(items: list[GeneratorItem], n: int) -> list[GeneratorItem]:
    rng = np.random.default_rng(0)
    return [items[i] for i in sorted(rng.permutation(len(items))[:n])]


def train_generator(
    base: Path, data: list[Path], out: Path, cfg: GeneratorTrainConfig, resume: bool = False, console=None
) -> dict:
    from rich.console import Console

    console = console or Console(stderr=True)
    d, device = setup_distributed()
    if d.world > 1:
        raise NotesRagError("train-generator runs on one process")
    model, tok, base_config = load_model(base, device=device)
    model = with_copy_head(model)
    if cfg.seq_len > model.config.seq_len:
        raise NotesRagError(f"--seq-len {cfg.seq_len} exceeds the base model's context of {model.config.seq_len}")
    model.train()
    train_recs, val_recs = load_sft_files(data)
    with console.status("encoding generator items"):
        train_items = build_items(train_recs, tok, cfg.seq_len, cfg.train.seed)
        val_items = _val_subset(build_items(val_recs, tok, cfg.seq_len, cfg.train.seed), cfg.val_items)
    if not train_items:
        raise NotesRagError("no generator items in the data: it needs grounded QA conversations (notes-rag sft-data)")
    console.print(
        f"generator data: {len(train_items):,} train items "
        f"({sum(not it.answerable for it in train_items):,} unanswerable, "
        f"{sum(len(it.ids) for it in train_items):,} tokens) from {len(train_recs):,} conversations; "
        f"{len(val_items)} validation items"
    )
    source = GeneratorBatches(train_items, special_ids(tok), cfg.micro_tokens, cfg.train.seed)
    meta = {
        "stage": "generator",
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
        evaluate=lambda m: generator_metrics(m, tok, val_items, cfg.val_generate),
        meta=meta,
        resume=resume,
        dist_info=d,
        device=device,
        console=console,
        loss_fn=generator_loss,
    )

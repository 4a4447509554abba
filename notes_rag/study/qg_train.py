"""Fine-tune the released generator to write quiz questions while it keeps answering.

    notes-rag train-qg --base models/ --data data/sft --out runs/qg --time-budget 40m

The training items are a mix: the question-generation items of the kit's QA reversed
(sft/question_data.py) and the generator's own answer items (sft/generator_data.py), the latter
at `answer_share` of the mix, so the model does not forget how to answer. It runs through the
shared loop (train/loop.py: checkpoints, `--resume`, Ctrl-C, loss curve) into its own run folder;
it never writes models/ (a candidate becomes the release only by `notes-rag promote`). Validation
reports the answer metrics of train-generator plus the question items' loss.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model, unwrap
from notes_rag.sft.generator_data import GeneratorBatches, GeneratorItem, batch_of, build_items, special_ids
from notes_rag.sft.question_data import build_qg_items
from notes_rag.study.config import QGTrainConfig
from notes_rag.train.finetune import load_sft_files
from notes_rag.train.generator import generator_loss, generator_metrics, with_copy_head
from notes_rag.train.loop import TrainConfig, setup_distributed, train


def mix(qg: list[GeneratorItem], answers: list[GeneratorItem], answer_share: float, seed: int) -> list[GeneratorItem]:
    """All question items and a seeded sample of answer items making `answer_share` of the mix."""
    if not 0 <= answer_share < 1:
        raise NotesRagError(f"answer share must be in [0, 1), got {answer_share}")
    n = min(len(answers), round(len(qg) * answer_share / (1 - answer_share)))
    pick = np.random.default_rng(seed).permutation(len(answers))[:n]
    return qg + [answers[i] for i in sorted(pick)]


def _loss_of(model, tok, items: list[GeneratorItem]) -> float:
    import torch

    specials, total = special_ids(tok), 0.0
    with torch.no_grad():
        for lo in range(0, len(items), 8):
            x, y = batch_of(items[lo : lo + 8], specials)
            total += float(generator_loss(model, x, y)) * len(items[lo : lo + 8])
    return total / max(1, len(items))


def train_config(cfg: QGTrainConfig, **changes) -> TrainConfig:
    """The loop's settings of a QG run (`changes`: the command's step limit or time budget)."""
    base = TrainConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps, batch_tokens=cfg.batch_tokens)
    base = replace(base, eval_every=cfg.eval_every, seed=cfg.seed)
    return replace(base, **changes)


def train_question_generator(
    base: Path, data: list[Path], out: Path, cfg: QGTrainConfig, tc: TrainConfig, resume: bool = False
) -> dict:
    from rich.console import Console

    console = Console(stderr=True)
    d, device = setup_distributed()
    if d.world > 1:
        raise NotesRagError("train-qg runs on one process")
    if Path(out).resolve() == Path("models").resolve():
        raise NotesRagError("train-qg writes a candidate run folder, never models/; use --out runs/qg")
    model, tok, base_config = load_model(base, device=device)
    model = with_copy_head(model)
    model.train()
    train_recs, val_recs = load_sft_files(data)
    rng = np.random.default_rng(tc.seed)
    with console.status("encoding question and answer items"):
        qg = build_qg_items(train_recs, tok, cfg.seq_len, tc.seed)
        answers = build_items(train_recs, tok, cfg.seq_len, tc.seed)
        val_qg = build_qg_items(val_recs, tok, cfg.seq_len, tc.seed)
        val_ans = build_items(val_recs, tok, cfg.seq_len, tc.seed)
    if not qg:
        raise NotesRagError("no question items in the data: it needs the kit's SQuAD/PoQuAD/XQuAD conversations")
    items = mix(qg, answers, cfg.answer_share, tc.seed)
    val_qg = [val_qg[i] for i in sorted(rng.permutation(len(val_qg))[: cfg.val_items])]
    val_ans = [val_ans[i] for i in sorted(rng.permutation(len(val_ans))[: cfg.val_items])]
    console.print(
        f"train-qg: {len(qg):,} question items + {len(items) - len(qg):,} answer items "
        f"({sum(len(it.ids) for it in items):,} tokens); validation {len(val_qg)} + {len(val_ans)}"
    )

    def evaluate(m) -> dict:
        metrics = generator_metrics(m, tok, val_ans, cfg.val_generate)
        metrics["qg_val_loss"] = _loss_of(unwrap(m), tok, val_qg)
        return metrics

    meta = {
        "stage": "question-generator",
        "base": str(base),
        "base_meta": base_config.get("meta", {}),
        "data": [str(p) for p in data],
        "items": len(items),
        "qg_items": len(qg),
    }
    return train(
        model,
        tok,
        GeneratorBatches(items, special_ids(tok), cfg.micro_tokens, tc.seed),
        tc,
        out,
        evaluate=evaluate,
        meta=meta,
        resume=resume,
        dist_info=d,
        device=device,
        console=console,
        loss_fn=generator_loss,
    )

"""`notes-rag train-generator`: teach our GPT to write the answer, copying from the passages.

    notes-rag train-generator --base models/ --data data/sft --notes-qa ../shared/data/notes_qa \
        --out runs/generator --time-budget 3h

Every item is read as the chat reads it: the passages with the retrieval encoder's relevance
codes (chat/turn_input.py). Two sources are mixed: notes_qa's training notes (sft/notes_qa.py:
student-style notes indexed and retrieved by the product's own code; its `val` notes validate)
and the kit's grounded conversations (sft/generator_data.py, passages rendered as notes), the
kit cut to `kit_share` of the notes items so that note structure is what is learned.

Starts from a chat, reader or generator checkpoint, adds the copy head (model/copy_head.py) and
the match-flag embeddings where missing (a reader's are kept), and trains every weight on the generator items
of the finetuning conversations (sft/generator_data.py) through the shared loop (train/loop.py):
same schedule, checkpoints, `--resume`, Ctrl-C and loss curve. Validation reports the mixture
loss and what a user notices: greedy answers that contain the gold answer, and abstention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from notes_rag.chat.format import is_abstention
from notes_rag.errors import NotesRagError
from notes_rag.fileio import atomic_write_text
from notes_rag.model.checkpoint import load_model, unwrap
from notes_rag.model.constants import COPY_FEATURES as FEATURES
from notes_rag.model.gpt import GPT
from notes_rag.model.reader import CODE_SETS
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.sft.generator_data import (
    GeneratorBatches,
    GeneratorItem,
    batch_of,
    build_items,
    load_items,
    save_items,
    special_ids,
)
from notes_rag.text import fold
from notes_rag.train.finetune import load_sft_files
from notes_rag.train.loop import TrainConfig, setup_distributed, train


@dataclass
class GeneratorTrainConfig:
    seq_len: int = 1024  # prompt + answer fitted into this many tokens
    notes_qa: Path | None = None  # ../shared/data/notes_qa: student-style notes (sft/notes_qa.py)
    # Kit items per notes_qa item: the kit teaches copying and abstaining on other text; the notes
    # teach note structure (the release's kit-only training answered 0.17 of notes_qa-style key
    # facts, issue 29's experiment). 0.3: the releases of 2026-12-07 (chosen, not fitted; without
    # notes_qa the whole kit is read).
    kit_share: float = 0.3
    # Items a notes_qa question gives per pass over the mix: as retrieved, then with other
    # retrieved passages in other orders (sft/notes_qa.py `variant`).
    notes_variants: int = 4
    # Which relevance codes the items keep (model/reader.py CODE_SETS): "all"; "relevance" (rank and
    # cosine bin, no structure); "none" (match flags only). The ablation of issue 29, checkpoint 1.
    codes: str = "all"
    # Which weights learn (`LEARN`): "all"; "top": the input tables (match flags, relevance), the
    # copy head and the last block; "head": the tables and the copy head only. Fewer weights
    # cannot learn 172 training notes by heart (the whole model did in two passes, issue 29).
    learn: str = "all"
    notes_qa_work: Path | None = None  # where notes_qa's notes are indexed (default: the run folder)
    micro_tokens: int = 8192  # padded tokens per micro-batch
    val_items: int = 300  # validation items scored (loss) at every eval
    val_generate: int = 60  # of which this many are also answered greedily
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            lr=1e-3, warmup_steps=30, decay_frac=0.3, batch_tokens=16384, eval_every=100
        )
    )


def with_copy_head(model: GPT) -> GPT:
    """A generator holding `model`'s weights, reading relevance codes with every copy feature:
    its match flags kept (a reader's), its copy head kept with the new features' weights added
    (at a fresh head's value), or a copy head made new; a reader's pointer heads are dropped (the
    generator answers, nothing points); the relevance tables start at zero."""
    cfg = model.config
    if cfg.copy_head and cfg.relevance and cfg.structure and cfg.copy_features == FEATURES:
        return model
    gen = GPT(replace(cfg, copy_head=True, reader=False, relevance=True, structure=True, copy_features=FEATURES))
    gen = gen.to(next(model.parameters()).device)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("read_")}
    if "copy.feature_weight" in state:  # the old features' weights by name, the new ones fresh
        old = dict(zip(cfg.copy_features, state["copy.feature_weight"].tolist()))
        fresh = gen.copy.feature_weight.detach().clone()
        state["copy.feature_weight"] = torch.tensor([old.get(f, float(fresh[i])) for i, f in enumerate(FEATURES)])
    missing, unexpected = gen.load_state_dict(state, strict=False)
    new = {k for k in missing if k.startswith("copy.") or k in ("match_emb", "rank_emb", "cos_emb", "after_emb")}
    if unexpected or set(missing) - new:
        raise NotesRagError(f"cannot add a copy head to this checkpoint: missing {missing}, unexpected {unexpected}")
    return gen


LEARN = ("all", "top", "head")


def set_learning(model: GPT, learn: str) -> int:
    """Freeze all but the weights `learn` names (GeneratorTrainConfig.learn); the count left."""
    if learn not in LEARN:
        raise NotesRagError(f"--learn {learn!r}: choose from {', '.join(LEARN)}")
    top = f"blocks.{model.config.n_layer - 1}."
    for name, p in model.named_parameters():
        head = name.startswith("copy.") or name in ("match_emb", "rank_emb", "cos_emb", "after_emb")
        p.requires_grad_(learn == "all" or head or (learn == "top" and name.startswith(top)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def keep_codes(items: list[GeneratorItem], codes: str) -> list[GeneratorItem]:
    """`items` reading only the `codes` set of relevance codes (model/reader.py CODE_SETS)."""
    keep = CODE_SETS[codes]
    return [replace(it, match=it.match & keep) for it in items]


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


def _items(
    data: list[Path], cfg: GeneratorTrainConfig, tok: Tokenizer, out: Path, console
) -> tuple[list[GeneratorItem], list[GeneratorItem], dict]:
    """(train, validation) items and the mix, kept in `out/items` so a resumed run reads the same
    items without encoding them again."""
    cached = out / "items"
    if (cached / "train.npz").is_file():
        return (
            load_items(cached / "train.npz"),
            load_items(cached / "val.npz"),
            json.loads((cached / "mix.json").read_text()),
        )
    from notes_rag.chat.turn_input import PlainUnits, UnitCollector
    from notes_rag.index.encoder import load_encoder

    encoder = load_encoder()
    units = PlainUnits(encoder)
    train_recs, val_recs = load_sft_files(data)
    notes_train: list[GeneratorItem] = []
    notes_val: list[GeneratorItem] = []
    mix: dict = {}
    if cfg.notes_qa is not None:
        from notes_rag.sft import notes_qa

        with console.status("indexing and reading notes_qa's training notes"):
            notes_train, counts = notes_qa.build(
                cfg.notes_qa, out / "notes_qa" / "train", tok, cfg.seq_len, "train", encoder, cfg.notes_variants
            )
            notes_val, _ = notes_qa.build(cfg.notes_qa, out / "notes_qa" / "val", tok, cfg.seq_len, "val", encoder)
        mix["notes_qa"] = counts
    rng = np.random.default_rng(cfg.train.seed)
    n_kit = int(cfg.kit_share * len(notes_train)) if notes_train else len(train_recs)
    # records, not items, are drawn: ~1 item per record, and each drawn record is encoded once
    picked = [train_recs[i] for i in sorted(rng.permutation(len(train_recs))[:n_kit])]
    with console.status(f"reading {len(picked):,} kit conversations with relevance codes"):
        collect = UnitCollector()  # a dry pass names every unit, embedded in one batched call
        build_items(picked + val_recs[: cfg.val_items], tok, cfg.seq_len, cfg.train.seed, units=collect)
        units.warm(collect.texts)
        kit = build_items(picked, tok, cfg.seq_len, cfg.train.seed, units=units)
        kit_val = _val_subset(
            build_items(val_recs[: 4 * cfg.val_items], tok, cfg.seq_len, cfg.train.seed, units=units),
            cfg.val_items // 2,
        )
    mix |= {"kit_items": len(kit), "notes_items": len(notes_train), "notes_variants": cfg.notes_variants}
    train_items = kit + notes_train
    # validation: the val notes first (the benchmark's kind of item), then the kit's
    val_items = notes_val + kit_val
    if not train_items:
        raise NotesRagError("no generator items in the data: it needs grounded QA conversations (notes-rag sft-data)")
    cached.mkdir(parents=True, exist_ok=True)
    save_items(cached / "train.npz", train_items)
    save_items(cached / "val.npz", val_items)
    atomic_write_text(cached / "mix.json", json.dumps(mix))
    return train_items, val_items, mix


def train_generator(
    base: Path, data: list[Path], out: Path, cfg: GeneratorTrainConfig, resume: bool = False, console=None
) -> dict:
    from rich.console import Console

    console = console or Console(stderr=True)
    d, device = setup_distributed()
    if d.world > 1:
        raise NotesRagError("train-generator runs on one process")
    if cfg.codes not in CODE_SETS:
        raise NotesRagError(f"--codes {cfg.codes!r}: choose from {', '.join(CODE_SETS)}")
    model, tok, base_config = load_model(base, device=device)
    model = with_copy_head(model)
    learning = set_learning(model, cfg.learn)
    if cfg.seq_len > model.config.seq_len:
        raise NotesRagError(f"--seq-len {cfg.seq_len} exceeds the base model's context of {model.config.seq_len}")
    model.train()
    train_items, val_items, mix = _items(data, cfg, tok, out, console)
    if cfg.codes != "all":
        train_items, val_items = keep_codes(train_items, cfg.codes), keep_codes(val_items, cfg.codes)
        mix = {**mix, "codes": cfg.codes}
    console.print(
        f"generator data: {len(train_items):,} train items "
        f"({sum(not it.answerable for it in train_items):,} unanswerable, "
        f"{sum(len(it.ids) for it in train_items):,} tokens; {mix}); {len(val_items)} validation items"
    )
    source = GeneratorBatches(train_items, special_ids(tok), cfg.micro_tokens, cfg.train.seed)
    meta = {
        "stage": "generator",
        "base": str(base),
        "base_meta": base_config.get("meta", {}),
        "data": [str(p) for p in data],
        "items": len(train_items),
        "mix": mix,
        "learn": cfg.learn,
        "learning_params": learning,
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

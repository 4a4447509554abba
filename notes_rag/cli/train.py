"""`notes-rag pretrain`, `finetune`, `train-generator`: options into configs, then the library."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import torch
import typer

from notes_rag.cli.app import app
from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import load_model
from notes_rag.model.gpt import GPT, preset
from notes_rag.train.finetune import FinetuneConfig, finetune
from notes_rag.train.generator import GeneratorTrainConfig, train_generator
from notes_rag.train.loop import TrainConfig
from notes_rag.train.precision import MEASURE, PRECISIONS, measured_precision
from notes_rag.train.pretrain import PretrainConfig, pretrain

# Every option's default is read from these configs, so each default is written once.
_PRE, _FT, _GEN = PretrainConfig(), FinetuneConfig(), GeneratorTrainConfig()


def parse_duration(text: str | None) -> float | None:
    """'90m', '2h', '1h30m', '45s' or plain seconds -> seconds."""
    if text is None:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text.strip())
    if not m or not any(m.groups()):
        raise NotesRagError(f"cannot read duration {text!r}; use e.g. 90m, 2h, 1h30m")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mnt * 60 + s


def parse_upsample(text: str) -> dict[str, int]:
    """'pl=3,en=1' -> {'pl': 3, 'en': 1}."""
    out = {}
    for part in filter(None, text.split(",")):
        lang, _, n = part.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise NotesRagError(f"bad --upsample entry {part!r}; use e.g. pl=3")
        out[lang.strip()] = int(n)
    return out


def train_config(base: TrainConfig, *, steps: int | None, time_budget: str | None, **changes) -> TrainConfig:
    """`base` with a command's options; a run needs a step limit or a time budget."""
    if steps is None and time_budget is None:
        raise NotesRagError("give --steps or --time-budget")
    return replace(base, max_steps=steps, time_budget=parse_duration(time_budget), **changes)


_STEPS = typer.Option(None, "--steps", help="Stop after this many optimizer steps.")
# the loop's progress is the run's elapsed training time over the budget (train/loop.py)
_TOTAL = "With --resume it is the run's total, the time trained before included."
_RESUME = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped.")
_COMPILE = typer.Option(TrainConfig.compile, "--compile/--no-compile", help="torch.compile the model.")
_PRECISION = typer.Option(
    TrainConfig.precision,
    "--precision",
    help="auto (bf16 on a GPU, fp32 on a CPU), fp32, bf16, or measure (time both on this run's model; the faster).",
)


def resolve_precision(precision: str, model_factory) -> str:
    """The precision a run trains in. "measure" times bf16 against fp32 on the run's model
    (`model_factory()`), so a CPU with AMX or AVX512-BF16 trains in bf16 only where it pays."""
    if precision != MEASURE:
        if precision not in PRECISIONS:
            raise NotesRagError(f"unknown --precision {precision!r}; use auto, fp32, bf16 or measure")
        return precision
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choice = measured_precision(model_factory(), dev)
    typer.echo(f"precision: {choice.precision} ({choice.reason})")
    return choice.precision


@app.command("pretrain")
def pretrain_cmd(
    data: list[Path] = typer.Option(..., "--data", help="Files or folders of .txt/.md/.jsonl (optionally .gz/.xz)."),
    out: Path = typer.Option(..., "--out", help="Run folder: tokenizer, shards, checkpoints, metrics, loss.png."),
    config: str = typer.Option(_PRE.model, "--config", help="Model preset: tiny, small, base, medium, large."),
    time_budget: str = typer.Option(
        None, "--time-budget", help=f"Training time, e.g. 90m or 2h; the schedule fits it. {_TOTAL}"
    ),
    steps: int = _STEPS,
    resume: bool = _RESUME,
    vocab_size: int = typer.Option(
        _PRE.vocab_size, "--vocab-size", help="Tokenizer size when --out has no tokenizer yet."
    ),
    seq_len: int = typer.Option(
        None, "--seq-len", help="Training window in tokens (default: 512, or the preset's context when shorter)."
    ),
    lr: float = typer.Option(
        _PRE.train.lr, "--lr", help="Peak AdamW learning rate (with --optimizer muon: embeddings only)."
    ),
    optimizer: str = typer.Option(
        _PRE.train.optimizer, "--optimizer", help="adamw, or muon (Muon on block matrices, AdamW on embeddings)."
    ),
    muon_lr: float = typer.Option(
        _PRE.train.muon_lr, "--muon-lr", help="Peak Muon learning rate (with --optimizer muon)."
    ),
    batch_tokens: int = typer.Option(_PRE.train.batch_tokens, "--batch-tokens", help="Tokens per optimizer step."),
    device_batch: int = typer.Option(_PRE.train.device_batch, "--device-batch", help="Sequences per micro-batch."),
    eval_every: int = typer.Option(_PRE.train.eval_every, "--eval-every", help="Validate and sample every N steps."),
    warmup: int = typer.Option(_PRE.train.warmup_steps, "--warmup", help="Warmup steps."),
    upsample: str = typer.Option(
        ",".join(f"{lang}={n}" for lang, n in _PRE.data.upsample.items()),
        "--upsample",
        help="Repeat documents of a language, e.g. pl=3.",
    ),
    seed: int = typer.Option(_PRE.train.seed, "--seed"),
    compile_: bool = _COMPILE,
    precision: str = _PRECISION,
) -> None:
    """Train the tokenizer (if needed) and pretrain the GPT on raw text.

    Example: notes-rag pretrain --data ../shared/data/pretrain --out runs/base --time-budget 1h
    """
    tc = train_config(
        _PRE.train,
        steps=steps,
        time_budget=time_budget,
        lr=lr,
        optimizer=optimizer,
        muon_lr=muon_lr,
        batch_tokens=batch_tokens,
        device_batch=device_batch,
        eval_every=eval_every,
        warmup_steps=warmup,
        seed=seed,
        compile=compile_,
        precision=resolve_precision(precision, lambda: GPT(preset(config, vocab_size=vocab_size))),
    )
    data_cfg = replace(_PRE.data, upsample=parse_upsample(upsample))
    cfg = replace(_PRE, model=config, seq_len=seq_len, vocab_size=vocab_size, data=data_cfg, train=tc)
    result = pretrain(data, out, cfg, resume=resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return
    typer.echo(
        f"done: step {result['step']}, {result['tokens']:,} tokens, best val loss {result['best_val']:.4f}; "
        f"model in {out / 'best'}"
    )


@app.command("finetune")
def finetune_cmd(
    base: Path = typer.Option(..., "--base", help="Pretrained checkpoint folder (e.g. runs/base/best)."),
    data: list[Path] = typer.Option(
        ..., "--data", help="Conversation JSONL files, or folders with train.jsonl/val.jsonl."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder for checkpoints, metrics and loss.png."),
    time_budget: str = typer.Option(None, "--time-budget", help=f"Training time, e.g. 40m. {_TOTAL}"),
    steps: int = _STEPS,
    resume: bool = _RESUME,
    seq_len: int = typer.Option(_FT.seq_len, "--seq-len", help="Longest conversation kept, in tokens."),
    lr: float = typer.Option(_FT.train.lr, "--lr", help="Peak learning rate."),
    batch_tokens: int = typer.Option(
        _FT.train.batch_tokens, "--batch-tokens", help="Padded tokens per optimizer step."
    ),
    micro_tokens: int = typer.Option(_FT.micro_tokens, "--micro-tokens", help="Padded tokens per micro-batch."),
    eval_every: int = typer.Option(_FT.train.eval_every, "--eval-every", help="Validate and sample every N steps."),
    warmup: int = typer.Option(_FT.train.warmup_steps, "--warmup", help="Warmup steps."),
    seed: int = typer.Option(_FT.train.seed, "--seed"),
    compile_: bool = _COMPILE,
    precision: str = _PRECISION,
) -> None:
    """Instruction-tune a pretrained model on grounded QA conversations (loss on answers only).

    Example: notes-rag finetune --base runs/base/best --data data/sft --out runs/sft --time-budget 40m
    """
    tc = train_config(
        _FT.train,
        steps=steps,
        time_budget=time_budget,
        lr=lr,
        batch_tokens=batch_tokens,
        eval_every=eval_every,
        warmup_steps=warmup,
        seed=seed,
        compile=compile_,
        precision=resolve_precision(precision, lambda: load_model(base)[0]),
    )
    cfg = replace(_FT, seq_len=seq_len, micro_tokens=micro_tokens, train=tc)
    result = finetune(base, data, out, cfg, resume=resume)
    typer.echo(f"done: step {result['step']}, best val loss {result['best_val']:.4f}; model in {out / 'best'}")


@app.command("train-generator")
def train_generator_cmd(
    base: Path = typer.Option(
        ..., "--base", help="Checkpoint to start from: a chat or reader model, or a generator to continue."
    ),
    data: list[Path] = typer.Option(
        ..., "--data", help="Conversation JSONL files, or folders with train.jsonl/val.jsonl."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder for checkpoints, metrics and loss.png."),
    notes_qa: Path = typer.Option(
        None, "--notes-qa", help="notes_qa folder (student-style notes with questions); its train notes are mixed in."
    ),
    kit_share: float = typer.Option(_GEN.kit_share, "--kit-share", help="Kit items per notes_qa item in the mix."),
    notes_variants: int = typer.Option(
        _GEN.notes_variants, "--notes-variants", help="Items per notes_qa question (other retrieved passages, order)."
    ),
    codes: str = typer.Option(
        _GEN.codes, "--codes", help="Relevance codes the model reads: all, relevance (no structure), none (ablation)."
    ),
    learn: str = typer.Option(
        _GEN.learn,
        "--learn",
        help="Weights that learn: all, top (tables, copy head, last block), head (tables, copy head).",
    ),
    time_budget: str = typer.Option(None, "--time-budget", help=f"Training time, e.g. 70m. {_TOTAL}"),
    steps: int = _STEPS,
    resume: bool = _RESUME,
    lr: float = typer.Option(_GEN.train.lr, "--lr", help="Peak learning rate."),
    eval_every: int = typer.Option(_GEN.train.eval_every, "--eval-every", help="Validate every N steps."),
    threads: int = typer.Option(_GEN.train.threads, "--threads", help="CPU threads (default: all cores)."),
    seed: int = typer.Option(_GEN.train.seed, "--seed", help="Seed of the batch order (and the kit draw)."),
    precision: str = _PRECISION,
) -> None:
    """Train the generator: a copy head that lets the GPT write answers copied from the passages.

    Example: notes-rag train-generator --base models/ --data data/sft --notes-qa ../shared/data/notes_qa
    --out runs/generator --time-budget 3h
    """
    tc = train_config(
        _GEN.train,
        steps=steps,
        time_budget=time_budget,
        lr=lr,
        eval_every=eval_every,
        threads=threads,
        seed=seed,
        precision=resolve_precision(precision, lambda: load_model(base)[0]),
    )
    cfg = replace(
        _GEN, train=tc, notes_qa=notes_qa, kit_share=kit_share, notes_variants=notes_variants, codes=codes, learn=learn
    )
    result = train_generator(base, data, out, cfg, resume=resume)
    typer.echo(f"done: step {result['step']}, best val loss {result['best_val']:.4f}; generator in {out / 'best'}")

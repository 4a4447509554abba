"""`notes-rag train-reader`: train the reader heads (model/reader.py) on the finetuning data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from notes_rag.cli.app import app
from notes_rag.errors import NotesRagError


@app.command("train-reader")
def train_reader_cmd(
    base: Path = typer.Option(
        ..., "--base", help="Checkpoint to start from: a chat/base model, or a reader to continue."
    ),
    data: list[Path] = typer.Option(
        ..., "--data", help="Conversation JSONL files, or folders with train.jsonl/val.jsonl."
    ),
    out: Path = typer.Option(..., "--out", help="Run folder for checkpoints, metrics and loss.png."),
    time_budget: str = typer.Option(None, "--time-budget", help="Wall-clock budget, e.g. 70m."),
    steps: int = typer.Option(None, "--steps", help="Stop after this many optimizer steps."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default: ReaderTrainConfig's)."),
    eval_every: int = typer.Option(None, "--eval-every", help="Validate every N steps."),
    threads: int = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Train the reader: match flags and pointer heads that make the GPT read the passages.

    Example: notes-rag train-reader --base models/ --data data/sft --out runs/reader --time-budget 70m
    """
    from notes_rag.cli.train import parse_duration
    from notes_rag.train.reader import ReaderTrainConfig, train_reader

    if steps is None and time_budget is None:
        raise NotesRagError("give --steps or --time-budget")
    cfg = ReaderTrainConfig()
    changes = {"max_steps": steps, "time_budget": parse_duration(time_budget), "threads": threads}
    changes |= {k: v for k, v in {"lr": lr, "eval_every": eval_every}.items() if v is not None}
    cfg = replace(cfg, train=replace(cfg.train, **changes))
    result = train_reader(base, data, out, cfg, resume=resume)
    typer.echo(f"done: step {result['step']}, best val loss {result['best_val']:.4f}; reader in {out / 'best'}")

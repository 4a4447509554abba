"""A run folder and the training state it keeps for an exact `--resume`.

OUT/metrics.jsonl   one JSON record per log line and per evaluation
OUT/loss.png        the loss curves (train/plot.py)
OUT/last/           checkpoint + optimizer.safetensors, rng.safetensors, train_state.json
OUT/best/           weights only, of the best validation loss so far
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from notes_rag.model.checkpoint import (
    CheckpointError,
    load_weights,
    read_config,
    resolve_folder,
    unwrap,
    write_checkpoint,
)
from notes_rag.model.gpt import GPTConfig
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.train.optim import load_optimizer, optimizer_name, optimizer_tensors


class Run:
    """Paths and writers of one run folder."""

    def __init__(self, out: Path, master: bool):
        self.out, self.master = Path(out), master
        self.last, self.best = self.out / "last", self.out / "best"
        self.metrics = self.out / "metrics.jsonl"
        self.png = self.out / "loss.png"

    def log(self, record: dict) -> None:
        if self.master:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(record) + "\n")


@dataclass
class Progress:
    """Where a run is: saved in `last/` and restored by `--resume`."""

    step: int = 0
    elapsed: float = 0.0  # training seconds (evaluation and start-up excluded)
    tokens: int = 0
    best_val: float = math.inf

    def meta(self, meta: dict | None, metrics: dict | None = None) -> dict:
        """A checkpoint's `meta`: the caller's, this progress, and validation metrics."""
        return {
            **(meta or {}),
            "step": self.step,
            "tokens": self.tokens,
            "train_seconds": round(self.elapsed, 1),
            **(metrics or {}),
        }


def save_state(
    run: Run,
    progress: Progress,
    *,
    model: torch.nn.Module,
    tok: Tokenizer,
    opt: torch.optim.Optimizer,
    data_state: dict,
    train_config,
    meta: dict | None,
    reason: str,
) -> None:
    """The full training state to `run.last`: weights, optimizer, RNGs, data position, progress."""
    opt_t, opt_j = optimizer_tensors(opt)
    rng = {"torch": torch.get_rng_state()}
    state = {
        "step": progress.step,
        "elapsed": progress.elapsed,
        "tokens": progress.tokens,
        "best_val": progress.best_val,
        "data": data_state,
        "train_config": asdict(train_config),
        "python_random": _py_rng_state(),
        "optimizer": opt_j,
        "reason": reason,
    }
    write_checkpoint(
        run.last,
        model,
        tok,
        meta=progress.meta(meta),
        extra_files={"optimizer.safetensors": opt_t, "rng.safetensors": rng, "train_state.json": state},
    )


def restore(run: Run, model: torch.nn.Module, tok: Tokenizer, opt: torch.optim.Optimizer, source) -> Progress:
    """Load the full training state from `run.last` into the model, optimizer, data `source`
    and RNGs; clear errors for anything unusable."""
    folder = resolve_folder(run.last)
    config = read_config(folder)
    if config.get("tokenizer") != tok.fingerprint:
        raise CheckpointError(f"{folder} was trained with a different tokenizer")
    # compared as configs, not dicts: JSON keeps tuples (copy_features) as lists
    if GPTConfig.from_dict(config["model"]) != unwrap(model).config:
        raise CheckpointError(f"{folder} holds a model of a different shape than requested")
    try:
        state = json.loads((folder / "train_state.json").read_text())
        weights = load_file(str(folder / "model.safetensors"))
        opt_t = load_file(str(folder / "optimizer.safetensors"))
        rng = load_file(str(folder / "rng.safetensors"))
    except FileNotFoundError as e:
        raise CheckpointError(f"incomplete checkpoint {folder}: {e.filename} missing") from None
    except Exception as e:  # safetensors/json raise several types for truncated files
        raise CheckpointError(f"corrupt checkpoint {folder}: {e}") from None
    saved_opt = state["train_config"].get("optimizer", "adamw")
    if saved_opt != optimizer_name(opt):
        raise CheckpointError(f"{folder} was trained with --optimizer {saved_opt}; resume it with the same optimizer")
    load_weights(unwrap(model), weights, str(folder))
    try:
        load_optimizer(opt, opt_t, state["optimizer"]["param_groups"])
    except (ValueError, KeyError, RuntimeError) as e:  # e.g. a run saved before a layer was re-shaped
        raise CheckpointError(f"{folder}: its optimizer state does not fit this model ({e})") from None
    source.load_state_dict(state["data"])
    torch.set_rng_state(rng["torch"])
    random.setstate(_py_rng_from(state["python_random"]))
    return Progress(state["step"], state["elapsed"], state["tokens"], state["best_val"])


def _py_rng_state():
    v, state, gauss = random.getstate()
    return [v, list(state), gauss]


def _py_rng_from(s):
    return (s[0], tuple(s[1]), s[2])

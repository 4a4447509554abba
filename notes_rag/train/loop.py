"""The training loop shared by `pretrain`, `finetune` and `train-generator`.

It owns everything that is not about the data: the optimizer and its schedule (train/optim.py),
fitted to a step count or a wall-clock budget, gradient accumulation to a batch in tokens,
clipping, the precision (`TrainConfig.precision`: bf16 autocast or fp32, train/precision.py), DDP under
`torchrun` (train/distributed.py), periodic validation and samples, metrics.jsonl + loss-curve
PNG (train/plot.py), atomic checkpoints (`last/` with the full training state, `best/` with
weights only), exact `--resume`, and Ctrl-C (checkpoint, then KeyboardInterrupt for the CLI to
exit 130).

Callers supply a `BatchSource` (next_batch / state_dict / load_state_dict), an `evaluate`
function returning validation metrics, a `sample` function returning a short text, and
optionally a `loss_fn(model, x, y)` for batches that are not plain language-model batches.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from notes_rag.errors import NotesRagError
from notes_rag.model.checkpoint import unwrap, write_checkpoint
from notes_rag.model.tokenizer import Tokenizer
from notes_rag.train.distributed import (  # noqa: F401  (setup_distributed: callers import it from here too)
    Dist,
    any_rank,
    check_ranks_in_sync,
    leave_distributed,
    mean_over_ranks,
    setup_distributed,
)
from notes_rag.train.interrupt import GracefulStop, StopFlag
from notes_rag.train.optim import lr_factor, make_optimizer
from notes_rag.train.plot import plot_losses
from notes_rag.train.precision import autocast, matmul_peak, uses_bf16
from notes_rag.train.speed import StepLog
from notes_rag.train.state import Progress, Run, restore, save_state


@dataclass
class TrainConfig:
    lr: float = 2e-3  # peak AdamW learning rate (with Muon: for the embeddings only)
    optimizer: str = "adamw"  # "adamw", or "muon" (Muon for block matrices, AdamW for the rest)
    muon_lr: float = 0.02  # peak Muon learning rate
    min_lr_frac: float = 0.05  # final lr as a fraction of peak
    weight_decay: float = 0.1  # on matrices only (not embeddings)
    warmup_steps: int = 50
    decay_frac: float = 0.3  # last fraction of the run spent decaying (warmup-stable-decay)
    batch_tokens: int = 16384  # tokens per optimizer step (all ranks, all micro-batches)
    device_batch: int = 8  # sequences per micro-batch per rank
    grad_clip: float = 1.0
    max_steps: int | None = None  # stop after this many steps ...
    time_budget: float | None = None  # ... or after this many seconds (whichever comes first)
    eval_every: int = 100
    eval_batches: int = 20
    log_every: int = 10
    checkpoint_minutes: float = 10.0
    seed: int = 1337
    compile: bool = False
    threads: int | None = None
    # "auto": bf16 autocast on GPU, fp32 on CPU; "bf16" / "fp32" as measured by train/precision.py
    precision: str = "auto"


Batch = torch.Tensor | dict[str, torch.Tensor]


class BatchSource(Protocol):
    # x, y: (B, T) ids and targets (y == -1 is ignored), or dicts of tensors for a custom `loss_fn`
    def next_batch(self) -> tuple[Batch, Batch]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def train(
    model: torch.nn.Module,
    tok: Tokenizer,
    source: BatchSource,
    cfg: TrainConfig,
    out: Path,
    evaluate: Callable[[torch.nn.Module], dict],
    sample: Callable[[torch.nn.Module], str] | None = None,
    meta: dict | None = None,
    resume: bool = False,
    dist_info: Dist | None = None,
    device: torch.device = torch.device("cpu"),
    console=None,
    loss_fn: Callable[[torch.nn.Module, Batch, Batch], torch.Tensor] | None = None,
) -> dict:
    """Train until `max_steps` or `time_budget`; returns the final metrics.

    `loss_fn(model, x, y)` gives the loss of a batch; by default the language-model loss
    `model(x, targets=y)`. The generator passes its own (dict batches, the copy head's loss).
    """
    from rich.console import Console

    if cfg.max_steps is None and cfg.time_budget is None:
        raise NotesRagError("set a step limit or a time budget")
    d, console = dist_info or Dist(), console or Console(stderr=True)
    loop = _Loop(model, tok, source, cfg, Run(out, d.master), meta, d, device, console, loss_fn or _lm_loss)
    loop.start(resume)
    return loop.train(evaluate, sample)


def spent_budget(out: Path, elapsed: float, time_budget: float | None) -> str | None:
    """With --resume: the line that says the run has already trained for its whole time budget
    (the run's total, the earlier time included), so nothing more is trained."""
    if time_budget is None or elapsed < time_budget:
        return None
    return (
        f"nothing to train: {out} has trained {elapsed / 60:.1f} min and --time-budget "
        f"({time_budget / 60:.1f} min) is the run's total; give more to continue, e.g. "
        f"--time-budget {math.ceil((elapsed + time_budget) / 60)}m for {time_budget / 60:.0f} min more"
    )


class _Loop:
    """One training run: its model, optimizer and progress, and the steps of the loop."""

    def __init__(self, model, tok, source, cfg, run, meta, d, device, console, loss_fn):
        self.tok, self.source, self.cfg, self.run, self.meta = tok, source, cfg, run, meta
        self.d, self.device, self.console, self.loss_fn = d, device, console, loss_fn
        self.model, self.raw = model, unwrap(model)  # forward through `model`, save `raw`
        self.p = Progress()

    def start(self, resume: bool) -> None:
        """Make the optimizer, restore or seed, wrap the model for DDP / compile, size the batches."""
        cfg, d, run = self.cfg, self.d, self.run
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // d.world))
        run.out.mkdir(parents=True, exist_ok=True)
        self.opt = make_optimizer(self.raw, cfg)
        if resume:
            self.p = restore(run, self.raw, self.tok, self.opt, self.source)
            self.console.print(
                f"resumed from {run.last} at step {self.p.step} ({self.p.tokens:,} tokens, "
                f"{self.p.elapsed / 60:.1f} min)"
            )
            note = spent_budget(run.out, self.p.elapsed, cfg.time_budget)
            if note:
                self.console.print(f"[yellow]{note}[/]", highlight=False)
        elif (run.last / "config.json").exists():
            raise NotesRagError(f"{run.out} already holds a run; pass --resume to continue it or choose another --out")
        else:
            torch.manual_seed(cfg.seed)
            random.seed(cfg.seed)
        if d.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.raw, device_ids=ids)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self._size_batches()

    def _size_batches(self) -> None:
        before = self.source.state_dict()  # peek at one batch for its shape, then rewind
        x0, _ = self.source.next_batch()
        self.source.load_state_dict(before)
        x0 = _ids(x0)
        # sources of variable-shape batches (finetune) declare their nominal size
        micro_tokens = getattr(self.source, "micro_tokens", x0.numel())
        self.accum = max(1, round(self.cfg.batch_tokens / (micro_tokens * self.d.world)))
        self.flops_tok = self.raw.flops_per_token(x0.size(1))
        # MFU against the matmul rate of the precision the steps run in
        bf16 = uses_bf16(self.device, self.cfg.precision)
        self.peak = matmul_peak(self.device, torch.bfloat16 if bf16 else torch.float32)  # cached, time-boxed on CPU
        if self.d.master:
            self.console.print(
                f"model {self.raw.num_params() / 1e6:.2f}M params | {self.flops_tok / 1e6:.1f} MFLOP/token | "
                f"batch {micro_tokens * self.accum * self.d.world:,} tokens ({self.d.world} rank × {self.accum} "
                f"accum × {micro_tokens:,}) | device {self.device} {'bf16' if bf16 else 'fp32'} | "
                f"matmul peak {self.peak / 1e9:.0f} GFLOP/s"
            )

    def progress(self) -> float:
        """Share of the run done: by steps or by time, whichever is further."""
        p = 0.0
        if self.cfg.max_steps:
            p = max(p, self.p.step / self.cfg.max_steps)
        if self.cfg.time_budget:
            p = max(p, self.p.elapsed / self.cfg.time_budget)
        return min(p, 1.0)

    def plot(self) -> None:
        plot_losses(
            self.run.metrics, self.run.png, f"{(self.meta or {}).get('stage', 'training')}: {self.run.out.name}"
        )

    def save(self, reason: str) -> None:
        """The full training state to `last/` (rank 0 only), and a fresh loss plot."""
        if not self.d.master:
            return
        save_state(
            self.run,
            self.p,
            model=self.raw,
            tok=self.tok,
            opt=self.opt,
            data_state=self.source.state_dict(),
            train_config=self.cfg,
            meta=self.meta,
            reason=reason,
        )
        if self.run.metrics.exists():
            self.plot()

    def step(self) -> tuple[float, float, float, int]:
        """One optimizer step over `accum` micro-batches: (mean loss, grad norm, lr, tokens)."""
        cfg, d = self.cfg, self.d
        factor = lr_factor(self.p.step, self.progress(), cfg)
        for g in self.opt.param_groups:
            g["lr"] = g.get("base_lr", cfg.lr) * factor
        loss_sum = torch.zeros((), device=self.device)
        step_tokens = 0
        for micro in range(self.accum):
            x, y = self.source.next_batch()
            step_tokens += _ids(x).numel() * d.world
            x, y = _to(x, self.device), _to(y, self.device)
            sync = d.world == 1 or micro == self.accum - 1
            no_sync = not sync and hasattr(self.model, "no_sync")
            with self.model.no_sync() if no_sync else nullcontext(), autocast(self.device, cfg.precision):
                loss = self.loss_fn(self.model, x, y) / self.accum
            loss.backward()
            loss_sum += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        mean_over_ranks(loss_sum, d)
        return float(loss_sum), float(norm), cfg.lr * factor, step_tokens

    def evaluate(self, evaluate: Callable, sample: Callable | None) -> dict:
        """Validate (and sample), keep `best/` when validation improved, save `last/`."""
        self.raw.eval()
        # the plain module: a compiled one would recompile for every evaluation shape
        metrics = evaluate(self.raw)
        self.raw.train()
        text = sample(self.raw) if (sample and self.d.master) else ""
        result = {"step": self.p.step, "tokens": self.p.tokens, **metrics}
        self.run.log({**result, "sample": text})
        if self.d.master:
            shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self.console.print(f"[cyan]eval step {self.p.step}[/]: {shown}" + (f"\n  sample: {text!r}" if text else ""))
        if metrics.get("val_loss", math.inf) < self.p.best_val:
            self.p.best_val = metrics["val_loss"]
            if self.d.master:
                write_checkpoint(self.run.best, self.raw, self.tok, meta=self.p.meta(self.meta, metrics))
        self.save("eval")
        return result

    def train(self, evaluate: Callable, sample: Callable | None) -> dict:
        """Steps until the run is done; Ctrl-C saves at a step boundary (a second one aborts)."""
        stop = StopFlag()
        try:
            result = self._steps(evaluate, sample, stop)
        except GracefulStop:
            self.save("interrupted")
            if self.d.master:
                self.console.print(
                    f"[yellow]interrupted after step {self.p.step}: checkpoint saved to "
                    f"{self.run.last} (continue with --resume)[/]"
                )
            raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            if self.d.master:
                self.console.print(
                    f"[yellow]aborted during step {self.p.step + 1}; the last checkpoint in {self.run.last} is kept[/]"
                )
            raise
        finally:
            stop.restore()
        self.save("done")
        if self.d.world > 1:
            check_ranks_in_sync(self.raw, self.console if self.d.master else None)
            leave_distributed()
        if self.d.master:
            self.plot()
        p = self.p
        return {**result, "step": p.step, "tokens": p.tokens, "elapsed": p.elapsed, "best_val": p.best_val}

    def _steps(self, evaluate: Callable, sample: Callable | None, stop: StopFlag) -> dict:
        """The loop proper, with its progress bar and log lines; the last evaluation's metrics."""
        from rich import progress as rp

        cfg, p = self.cfg, self.p
        log = StepLog(self.run, self.console, self.flops_tok, self.peak, self.d.world, cfg.log_every)
        last_ckpt, result = time.time(), {}
        columns = [
            rp.TextColumn("[bold]{task.description}"),
            rp.BarColumn(),
            rp.TextColumn("{task.percentage:>3.0f}%"),
            rp.TimeElapsedColumn(),
            rp.TimeRemainingColumn(),
        ]
        with rp.Progress(*columns, console=self.console, disable=not (self.d.master and log.interactive)) as bar:
            log.bar, log.task = bar, bar.add_task("training", total=1000)
            while self.progress() < 1.0:
                t0 = time.time()
                lv, norm, lr, step_tokens = self.step()
                dt = time.time() - t0
                p.step, p.tokens, p.elapsed = p.step + 1, p.tokens + step_tokens, p.elapsed + dt
                if not math.isfinite(lv):
                    raise NotesRagError(f"loss became {lv} at step {p.step}; lower --lr or check the data")
                log.add(p, self.progress(), lv, norm, lr, step_tokens, dt)
                if any_rank(stop.flag, self.d):  # every rank stops at the same step
                    raise GracefulStop
                if p.step % cfg.eval_every == 0 or self.progress() >= 1.0:
                    result = self.evaluate(evaluate, sample)
                    last_ckpt = time.time()
                elif time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                    self.save("periodic")
                    last_ckpt = time.time()
        return result


def _lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, targets=y)


def _ids(x: Batch) -> torch.Tensor:
    """The token ids of a batch (a dict batch keeps them under "ids")."""
    return x["ids"] if isinstance(x, dict) else x


def _to(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch.to(device, non_blocking=True)

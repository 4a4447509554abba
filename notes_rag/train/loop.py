"""The training loop shared by `pretrain` and `finetune`.

It owns everything that is not about the data: AdamW (or Muon, muon.py), the warmup-stable-decay schedule fitted
to a step count or a wall-clock budget, gradient accumulation to a batch in tokens, clipping,
bf16 autocast on GPU (fp32 on CPU: these CPUs have no native bf16), DDP under `torchrun`,
periodic validation and samples, metrics.jsonl + loss-curve PNG, atomic checkpoints
(`last/` with the full training state, `best/` with weights only), exact `--resume`, and
Ctrl-C (checkpoint, then KeyboardInterrupt for the CLI to exit 130).

Callers supply a `BatchSource` (next_batch / state_dict / load_state_dict), an `evaluate`
function returning validation metrics, and a `sample` function returning a short text.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from notes_rag.model.checkpoint import CheckpointError, load_weights, read_config, resolve_folder, unwrap, write_checkpoint
from notes_rag.errors import NotesRagError
from notes_rag.train.muon import MuonAdamW
from notes_rag.model.tokenizer import Tokenizer


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


Batch = torch.Tensor | dict[str, torch.Tensor]


class BatchSource(Protocol):
    # x, y: (B, T) ids and targets (y == -1 is ignored), or dicts of tensors for a custom `loss_fn`
    def next_batch(self) -> tuple[Batch, Batch]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_distributed() -> tuple[Dist, torch.device]:
    """Join a torchrun process group when launched by torchrun; pick the device."""
    if "RANK" not in os.environ:
        return Dist(), torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
        return d, torch.device("cuda", d.local_rank)
    return d, torch.device("cpu")


def measure_matmul_flops(device: torch.device, n: int = 2048, trials: int = 5) -> float:
    """Best-of-`trials` FLOP/s of a square matmul on this device (the MFU denominator).

    Best, not mean: a busy machine at start-up would otherwise understate the peak and
    overstate MFU for the whole run.
    """
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Warmup by steps, flat, then linear decay over the last `decay_frac` of progress."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if progress < 1 - cfg.decay_frac:
        return warm
    frac = (1 - progress) / max(cfg.decay_frac, 1e-9)
    return warm * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * max(0.0, frac))


OPTIMIZERS = ("adamw", "muon")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Each group carries its peak `base_lr`; the schedule scales all of them by one factor."""
    if cfg.optimizer not in OPTIMIZERS:
        raise NotesRagError(f"unknown optimizer {cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    matrices, other = [], []
    for name, p in unwrap(model).named_parameters():
        (matrices if p.dim() >= 2 and "wte" not in name else other).append(p)
    if cfg.optimizer == "muon":
        groups = [{"params": matrices, "muon": True, "lr": cfg.muon_lr, "base_lr": cfg.muon_lr, "weight_decay": 0.0},
                  {"params": other, "muon": False, "lr": cfg.lr, "base_lr": cfg.lr, "weight_decay": 0.0}]
        return MuonAdamW(groups)
    groups = [{"params": matrices, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
              {"params": other, "weight_decay": 0.0, "base_lr": cfg.lr}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors (safetensors) + JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = t
    opt.load_state_dict({"state": state, "param_groups": groups})


def plot_losses(metrics_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = [], []
    for line in metrics_path.read_text().splitlines():
        m = json.loads(line)
        if "loss" in m:
            train.append((m["tokens"], m["loss"]))
        if "val_loss" in m:
            val.append((m["tokens"], m["val_loss"]))
    if not train:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train), label="train loss", alpha=0.7)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("tokens")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png_path)


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
    `model(x, targets=y)`. The reader passes its own (dict batches, several heads).
    """
    loss_fn = loss_fn or _lm_loss
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    d = dist_info or Dist()
    console = console or Console(stderr=True)
    if cfg.max_steps is None and cfg.time_budget is None:
        raise NotesRagError("set a step limit or a time budget")
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // d.world))
    run = Run(out, d.master)
    run.out.mkdir(parents=True, exist_ok=True)
    raw = unwrap(model)
    opt = make_optimizer(raw, cfg, device)

    step, elapsed, tokens_seen, best_val = 0, 0.0, 0, math.inf
    if resume:
        step, elapsed, tokens_seen, best_val = restore(run, raw, tok, opt, source, meta)
        console.print(f"resumed from {run.last} at step {step} ({tokens_seen:,} tokens, {elapsed / 60:.1f} min)")
    elif (run.last / "config.json").exists():
        raise NotesRagError(f"{run.out} already holds a run; pass --resume to continue it or choose another --out")
    else:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)

    fwd_model = model
    if d.world > 1:
        fwd_model = torch.nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        fwd_model = torch.compile(fwd_model)

    before = source.state_dict()  # peek at one batch for its shape, then rewind
    x0, _ = source.next_batch()
    source.load_state_dict(before)
    x0 = _ids(x0)
    source_seq = x0.size(1)
    # sources of variable-shape batches (finetune) declare their nominal size
    micro_tokens = getattr(source, "micro_tokens", x0.numel())
    accum = max(1, round(cfg.batch_tokens / (micro_tokens * d.world)))
    flops_tok = raw.flops_per_token(source_seq)
    peak = measure_matmul_flops(device)
    if d.master:
        console.print(
            f"model {raw.num_params() / 1e6:.2f}M params | {flops_tok / 1e6:.1f} MFLOP/token | "
            f"batch {micro_tokens * accum * d.world:,} tokens ({d.world} rank × {accum} accum × {micro_tokens:,}) | "
            f"device {device} | matmul peak {peak / 1e9:.0f} GFLOP/s"
        )

    def progress_of(step: int, elapsed: float) -> float:
        p = 0.0
        if cfg.max_steps:
            p = max(p, step / cfg.max_steps)
        if cfg.time_budget:
            p = max(p, elapsed / cfg.time_budget)
        return min(p, 1.0)

    def save(reason: str) -> None:
        if not d.master:
            return
        opt_t, opt_j = optimizer_tensors(opt)
        rng = {"torch": torch.get_rng_state()}
        state = {
            "step": step, "elapsed": elapsed, "tokens": tokens_seen, "best_val": best_val,
            "data": source.state_dict(), "train_config": asdict(cfg), "python_random": _py_rng_state(),
            "optimizer": opt_j, "reason": reason,
        }
        write_checkpoint(run.last, raw, tok, meta=_meta(meta, step, tokens_seen, elapsed),
                         extra_files={"optimizer.safetensors": opt_t, "rng.safetensors": rng, "train_state.json": state})
        if run.metrics.exists():
            plot_losses(run.metrics, run.png, f"{(meta or {}).get('stage', 'training')}: {run.out.name}")

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    last_ckpt = time.time()
    time_log, tok_log = 0.0, 0  # training time and tokens since the last log line (evals excluded)
    loss_ema = None
    result: dict = {}
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    interactive = console.is_terminal
    stop = _StopFlag()
    try:
        with Progress(*columns, console=console, disable=not (d.master and interactive)) as bar:
            task = bar.add_task("training", total=1000)
            while progress_of(step, elapsed) < 1.0:
                t0 = time.time()
                factor = lr_factor(step, progress_of(step, elapsed), cfg)
                lr = cfg.lr * factor
                for g in opt.param_groups:
                    g["lr"] = g.get("base_lr", cfg.lr) * factor
                loss_sum = torch.zeros((), device=device)
                step_tokens = 0
                for micro in range(accum):
                    x, y = source.next_batch()
                    step_tokens += _ids(x).numel() * d.world
                    x, y = _to(x, device), _to(y, device)
                    sync = d.world == 1 or micro == accum - 1
                    ctx = fwd_model.no_sync() if (not sync and hasattr(fwd_model, "no_sync")) else nullcontext()
                    with ctx, autocast:
                        loss = loss_fn(fwd_model, x, y) / accum
                    loss.backward()
                    loss_sum += loss.detach()
                norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if d.world > 1:
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
                step += 1
                tokens_seen += step_tokens
                tok_log += step_tokens
                elapsed += time.time() - t0
                time_log += time.time() - t0
                lv = float(loss_sum)
                if not math.isfinite(lv):
                    raise NotesRagError(f"loss became {lv} at step {step}; lower --lr or check the data")
                loss_ema = lv if loss_ema is None else 0.9 * loss_ema + 0.1 * lv
                p = progress_of(step, elapsed)
                if step % cfg.log_every == 0 or p >= 1.0:
                    tps = tok_log / max(time_log, 1e-9)
                    mfu = tps * flops_tok / (peak * d.world)
                    time_log, tok_log = 0.0, 0
                    rec = {"step": step, "tokens": tokens_seen, "loss": round(lv, 4), "lr": lr, "grad_norm": float(norm),
                           "tok_per_s": round(tps), "mfu": round(mfu, 4), "elapsed": round(elapsed, 1)}
                    run.log(rec)
                    bar.update(task, completed=int(p * 1000),
                               description=f"step {step} | loss {loss_ema:.3f} | {tps:,.0f} tok/s | MFU {mfu:.0%}")
                    if d.master and not interactive:
                        console.print(f"step {step} | loss {loss_ema:.3f} | lr {lr:.2e} | {tps:,.0f} tok/s | "
                                      f"MFU {mfu:.0%} | {elapsed / 60:.1f} min | {p:.0%}")
                if stop.requested(d):
                    raise _GracefulStop
                if step % cfg.eval_every == 0 or p >= 1.0:
                    raw.eval()
                    metrics = evaluate(fwd_model)
                    raw.train()
                    text = sample(raw) if (sample and d.master) else ""
                    result = {"step": step, "tokens": tokens_seen, **metrics}
                    run.log({**result, "sample": text})
                    if d.master:
                        shown = " | ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                        console.print(f"[cyan]eval step {step}[/]: {shown}" + (f"\n  sample: {text!r}" if text else ""))
                    if metrics.get("val_loss", math.inf) < best_val:
                        best_val = metrics["val_loss"]
                        if d.master:
                            write_checkpoint(run.best, raw, tok, meta=_meta(meta, step, tokens_seen, elapsed, metrics))
                    save("eval")
                    last_ckpt = time.time()
                elif time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                    save("periodic")
                    last_ckpt = time.time()
    except _GracefulStop:
        save("interrupted")
        if d.master:
            console.print(f"[yellow]interrupted after step {step}: checkpoint saved to {run.last} (continue with --resume)[/]")
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        if d.master:
            console.print(f"[yellow]aborted during step {step + 1}; the last checkpoint in {run.last} is kept[/]")
        raise
    finally:
        stop.restore()
    save("done")
    if d.world > 1:
        check_ranks_in_sync(raw, console if d.master else None)
    if d.master:
        plot_losses(run.metrics, run.png, f"{(meta or {}).get('stage', 'training')}: {run.out.name}")
    return {**result, "step": step, "tokens": tokens_seen, "elapsed": elapsed, "best_val": best_val}


def check_ranks_in_sync(model: torch.nn.Module, console=None) -> None:
    """All ranks must hold the same weights after DDP training; a mismatch is a bug, never silent."""
    total = torch.tensor([sum(float(p.detach().double().sum()) for p in model.parameters())], dtype=torch.float64)
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    values = [float(g) for g in gathered]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise NotesRagError(f"ranks diverged: weight checksums {values}")
    if console is not None:
        console.print(f"ranks in sync: {len(values)} ranks, weight checksum {values[0]:.6f}")


def restore(run: Run, model: torch.nn.Module, tok: Tokenizer, opt, source: BatchSource, meta: dict | None):
    """Load the full training state from `run.last`; clear errors for anything unusable."""
    folder = resolve_folder(run.last)
    config = read_config(folder)
    if config.get("tokenizer") != tok.fingerprint:
        raise CheckpointError(f"{folder} was trained with a different tokenizer")
    if config["model"] != unwrap(model).config.to_dict():
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
    if saved_opt != ("muon" if isinstance(opt, MuonAdamW) else "adamw"):
        raise CheckpointError(f"{folder} was trained with --optimizer {saved_opt}; resume it with the same optimizer")
    load_weights(unwrap(model), weights, str(folder))
    try:
        load_optimizer(opt, opt_t, state["optimizer"]["param_groups"])
    except (ValueError, KeyError, RuntimeError) as e:  # e.g. a run saved before a layer was re-shaped
        raise CheckpointError(f"{folder}: its optimizer state does not fit this model ({e})") from None
    source.load_state_dict(state["data"])
    torch.set_rng_state(rng["torch"])
    random.setstate(_py_rng_from(state["python_random"]))
    return state["step"], state["elapsed"], state["tokens"], state["best_val"]


def _lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, targets=y)


def _ids(x: Batch) -> torch.Tensor:
    """The token ids of a batch (a dict batch keeps them under "ids")."""
    return x["ids"] if isinstance(x, dict) else x


def _to(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch.to(device, non_blocking=True)


def _meta(meta: dict | None, step: int, tokens: int, elapsed: float, metrics: dict | None = None) -> dict:
    return {**(meta or {}), "step": step, "tokens": tokens, "train_seconds": round(elapsed, 1), **(metrics or {})}


def _py_rng_state():
    v, state, gauss = random.getstate()
    return [v, list(state), gauss]


def _py_rng_from(s):
    return (s[0], tuple(s[1]), s[2])


class _GracefulStop(KeyboardInterrupt):
    """Raised at a step boundary after Ctrl-C, when the training state is consistent."""


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step; a second aborts at once."""

    def __init__(self):
        self.flag = False
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def requested(self, d: Dist) -> bool:
        if d.world == 1:
            return self.flag
        t = torch.tensor([float(self.flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(t.item())

    def restore(self) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
